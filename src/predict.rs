//! Predictions of a trained [`Run`]: for utterances given as arrays, with optional missing
//! modalities or frames, and for whole dataset splits.
//!
//! Each prediction carries `p(y|x) = exp(ℓ)` of the factual input and, with MACI, the
//! debiased distribution `softmax(s_τ)`, `s_τ = ℓ − τ·ℓ_cf` (docs/method.md §7.4), whose argmax
//! is the label; any τ ≥ 0 is accepted, not only the evaluation grid's.

use burn::tensor::backend::Backend;
use cider_data::bias::counterfactual_ids;
use cider_data::dataset::{Dims, Split, Task, special, three_way_label};
use cider_data::missing::MissingView;
use cider_maci::counterfactual::debiased_scores_at;
use cider_maci::inference::{Debiasing, EVAL_BATCH_SIZE, predict};
use cider_maci::metrics::argmax;
use cider_maci::prototypes::Prototypes;
use cider_model::batch_input::check_bert_text;
use cider_model::network_config::TextSource;

use crate::error::Error;
use crate::run::Run;

/// The text of one utterance, in a form the run's text encoder can take.
#[derive(Debug, Clone, PartialEq)]
pub enum Text {
    /// Raw text, tokenised with the run's BERT tokenizer (models with a BERT text encoder).
    Raw(String),
    /// WordPiece ids including `[CLS]` and `[SEP]` (models with a BERT text encoder).
    Tokens(Vec<u32>),
    /// Precomputed text features `[tokens, d_l]` row-major with the WordPiece ids of those
    /// tokens (`[CLS]` … `[SEP]`), as MMSA files hold them (models reading precomputed text).
    /// The ids place the counterfactual text's bias words.
    Features {
        /// `[ids.len(), d_l]`, row-major.
        values: Vec<f32>,
        /// One id per feature row.
        ids: Vec<u32>,
    },
}

/// The frames of one modality, `[frames, d]` row-major (`d = d_a` for audio, `d_v` for
/// vision). Frames beyond the model's `T_a` / `T_v` are cut off; fewer are zero-padded.
#[derive(Debug, Clone, PartialEq)]
pub struct Frames {
    /// `[frames, d]`, row-major.
    pub values: Vec<f32>,
    /// Number of frames.
    pub frames: usize,
}

impl Frames {
    /// `frames` frames of `d` zeros each, for a modality that is absent altogether (give it
    /// [`Presence::Missing`] too).
    pub fn zeros(frames: usize, d: usize) -> Self {
        Frames {
            values: vec![0.0; frames * d],
            frames,
        }
    }
}

/// Which positions of one modality the model sees.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Presence {
    /// Every position is present.
    #[default]
    Present,
    /// The whole modality is missing (text keeps `[CLS]` and `[SEP]`).
    Missing,
    /// Per position: `true` = present. One entry per token (text, `[CLS]` and `[SEP]`
    /// included; they stay present) or per frame given (audio, vision).
    Positions(Vec<bool>),
}

/// One utterance: text, audio `[frames, d_a]` and vision `[frames, d_v]`, and which parts of
/// each the model sees.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// The text.
    pub text: Text,
    /// Audio features.
    pub audio: Frames,
    /// Vision features.
    pub vision: Frames,
    /// Presence of text, audio and vision positions.
    pub presence: [Presence; 3],
}

impl Utterance {
    /// A complete utterance (every position present).
    pub fn new(text: Text, audio: Frames, vision: Frames) -> Self {
        Utterance {
            text,
            audio,
            vision,
            presence: Default::default(),
        }
    }

    /// Sample `i` of a dataset split as a complete utterance: its precomputed text features
    /// with their WordPiece ids when the split has them, else its token ids; its real audio
    /// and vision frames.
    ///
    /// # Errors
    /// [`Error::Input`] when `i` is out of range.
    pub fn from_sample(split: &Split, i: usize) -> Result<Self, Error> {
        if i >= split.n {
            return Err(Error::input(
                "sample",
                format!(
                    "index {i} is out of range for split `{}` of {} samples",
                    split.name, split.n
                ),
            ));
        }
        let d = split.dims;
        let tokens = split.text_len[i].min(d.t_l);
        let ids = split.text_ids[i * d.t_l..i * d.t_l + tokens].to_vec();
        let text = match &split.text_features {
            Some(features) => Text::Features {
                values: features[i * d.t_l * d.d_l..(i * d.t_l + tokens) * d.d_l].to_vec(),
                ids,
            },
            None => Text::Tokens(ids),
        };
        let frames = |values: &[f32], t: usize, width: usize, len: usize| Frames {
            values: values[i * t * width..(i * t + len) * width].to_vec(),
            frames: len,
        };
        Ok(Utterance::new(
            text,
            frames(&split.audio, d.t_a, d.d_a, split.audio_len[i]),
            frames(&split.vision, d.t_v, d.d_v, split.vision_len[i]),
        ))
    }

    /// The same utterance with the audio missing altogether.
    pub fn without_audio(mut self) -> Self {
        self.presence[1] = Presence::Missing;
        self
    }

    /// The same utterance with the vision missing altogether.
    pub fn without_vision(mut self) -> Self {
        self.presence[2] = Presence::Missing;
        self
    }
}

/// The model's answer for one utterance or sample.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// `exp(ℓ)`: the classifier's distribution for the factual input, `[C]`.
    pub probs: Vec<f64>,
    /// `softmax(ℓ − τ·ℓ_cf)`, `[C]` (equal to `probs` at τ = 0).
    pub debiased: Vec<f64>,
    /// argmax of the debiased scores.
    pub label: usize,
    /// The label's name: `negative` / `neutral` / `positive`, or a score `-3` … `+3`.
    pub label_name: String,
    /// The τ used.
    pub tau: f64,
}

/// The class names of a task: negative / neutral / positive, or the seven scores −3 … +3.
pub fn class_names(task: Task) -> Vec<String> {
    match task {
        Task::Binary => ["negative", "neutral", "positive"]
            .map(String::from)
            .to_vec(),
        Task::Seven => (-3..=3).map(|s| format!("{s:+}")).collect(),
    }
}

impl<B: Backend> Run<B> {
    /// Predicts one utterance with the τ saved with the model ([`Run::saved_tau`]).
    ///
    /// # Errors
    /// See [`Run::predict_many`].
    pub fn predict(&self, utterance: &Utterance, device: &B::Device) -> Result<Prediction, Error> {
        let mut out = self.predict_many(std::slice::from_ref(utterance), None, device)?;
        Ok(out.remove(0))
    }

    /// Predicts utterances, with τ given or the saved one. Utterances have no split of their
    /// own, so the test-time prototypes are the training prototypes' mean (the clean rule,
    /// docs/method.md §7.2).
    ///
    /// # Errors
    /// [`Error::Input`] for arrays whose width does not fit the model, no utterance, raw text
    /// or token ids for a model reading precomputed text (or the reverse), non-finite values,
    /// a presence mask of the wrong length, or τ that is negative, not finite, or non-zero
    /// for a model without MACI.
    pub fn predict_many(
        &self,
        utterances: &[Utterance],
        tau: Option<f64>,
        device: &B::Device,
    ) -> Result<Vec<Prediction>, Error> {
        if utterances.is_empty() {
            return Err(Error::input("utterances", "no utterance given"));
        }
        let split = self.utterance_split(utterances)?;
        let masks = presence_masks(&split, utterances)?;
        let view = MissingView::from_masks(&split, &masks[0], &masks[1], &masks[2])?;
        let (bias, train_prototypes) = self.maci_parts(None)?;
        let prototypes = train_prototypes.collapsed();
        self.predict_view(&split, &view, &bias, &prototypes, tau, device)
    }

    /// Predicts every sample of a dataset split, complete inputs, with the split's test-time
    /// prototypes under the run's rule.
    ///
    /// # Errors
    /// A split of another layout than the model's, and the τ errors of [`Run::predict_many`].
    pub fn predict_split(
        &self,
        split: &Split,
        tau: Option<f64>,
        device: &B::Device,
    ) -> Result<Vec<Prediction>, Error> {
        let (bias, train_prototypes) = self.maci_parts(None)?;
        let prototypes = self.test_prototypes(&train_prototypes, split)?;
        let all_present = |t: usize| vec![1u8; split.n * t];
        let Dims { t_l, t_a, t_v, .. } = split.dims;
        let view = MissingView::from_masks(
            split,
            &all_present(t_l),
            &all_present(t_a),
            &all_present(t_v),
        )?;
        self.predict_view(split, &view, &bias, &prototypes, tau, device)
    }

    /// The τ to use: the one given (checked), else the saved one.
    fn resolve_tau(&self, tau: Option<f64>) -> Result<f64, Error> {
        match (self.default_debiasing(), tau) {
            (_, Some(t)) if !(t.is_finite() && t >= 0.0) => {
                Err(Error::input("tau", format!("{t}: expected a finite τ ≥ 0")))
            }
            (Debiasing::NoMaci, Some(t)) if t != 0.0 => Err(Error::input(
                "tau",
                format!("{t}: this model has a linear head (no MACI), τ must be 0"),
            )),
            (_, Some(t)) => Ok(t),
            (_, None) => Ok(self.saved_tau()),
        }
    }

    fn predict_view(
        &self,
        split: &Split,
        view: &MissingView,
        bias: &[u32],
        prototypes: &Prototypes,
        tau: Option<f64>,
        device: &B::Device,
    ) -> Result<Vec<Prediction>, Error> {
        let tau = self.resolve_tau(tau)?;
        if let Some(bert) = &self.model_config.network.bert {
            check_bert_text(split, "the predicted data", bert)?;
        }
        let cf_ids = (self.default_debiasing() == Debiasing::Maci && tau != 0.0)
            .then(|| counterfactual_ids(&view.text_m_ids, bias));
        let out = predict(
            &self.model,
            split,
            view,
            cf_ids.as_deref(),
            prototypes,
            EVAL_BATCH_SIZE,
            device,
        )?;
        let names = class_names(self.task());
        let c = out.classes;
        let scores: Vec<f64> = match &out.cf_pred {
            Some(cf) => debiased_scores_at(&out.pred, cf, tau)?,
            None => out.pred.iter().map(|&l| f64::from(l)).collect(),
        };
        Ok(out
            .pred
            .chunks_exact(c)
            .zip(scores.chunks_exact(c))
            .map(|(pred, s)| {
                let label = usize::from(argmax(s));
                Prediction {
                    probs: pred.iter().map(|&l| f64::from(l).exp()).collect(),
                    debiased: softmax(s),
                    label,
                    label_name: names
                        .get(label)
                        .cloned()
                        .unwrap_or_else(|| label.to_string()),
                    tau,
                }
            })
            .collect())
    }

    /// The utterances as one split of the model's layout: text tokenised or copied to `T_l`,
    /// audio and vision cut or zero-padded to `T_a`, `T_v`.
    fn utterance_split(&self, utterances: &[Utterance]) -> Result<Split, Error> {
        let network = &self.model_config.network;
        let dims = Dims {
            d_l: network.d_l,
            t_l: network.t_l,
            t_a: network.t_a,
            t_v: network.t_v,
            d_a: network.d_a,
            d_v: network.d_v,
        };
        let n = utterances.len();
        let reads_features = self.config.model.text_encoder == TextSource::Precomputed;
        let mut split = Split {
            name: "utterances".into(),
            n,
            dims,
            text_ids: Vec::with_capacity(n * dims.t_l),
            text_mask: Vec::with_capacity(n * dims.t_l),
            text_segment: vec![0; n * dims.t_l],
            audio: Vec::with_capacity(n * dims.t_a * dims.d_a),
            vision: Vec::with_capacity(n * dims.t_v * dims.d_v),
            text_len: Vec::with_capacity(n),
            audio_len: Vec::with_capacity(n),
            vision_len: Vec::with_capacity(n),
            score: vec![0.0; n],
            label3: vec![three_way_label(0.0); n],
            label7: vec![3; n],
            raw_text: Vec::with_capacity(n),
            id: (0..n).map(|i| format!("utterance {i}")).collect(),
            text_features: reads_features.then(|| Vec::with_capacity(n * dims.t_l * dims.d_l)),
            audio_nonfinite: 0,
            audio_sum: 0.0,
            vision_sum: 0.0,
        };
        for (i, utterance) in utterances.iter().enumerate() {
            let what = |part: &str| format!("utterance {i}: {part}");
            let ids = match (&utterance.text, reads_features) {
                (Text::Raw(text), false) => {
                    split.raw_text.push(text.clone());
                    let rows = self.tokenizer()?.encode(text)?;
                    let len = rows.attention_mask.iter().filter(|&&m| m != 0).count();
                    rows.ids[..len].to_vec()
                }
                (Text::Tokens(ids), false) => {
                    split.raw_text.push(String::new());
                    ids.clone()
                }
                (Text::Features { values, ids }, true) => {
                    split.raw_text.push(String::new());
                    let features = split.text_features.as_mut().expect("features are kept");
                    features.extend(
                        rows_fitted(
                            values,
                            ids.len(),
                            dims.d_l,
                            dims.t_l,
                            &what("text features"),
                        )?
                        .0,
                    );
                    ids.clone()
                }
                (_, true) => {
                    return Err(Error::input(
                        &what("text"),
                        "this model reads precomputed text features (model.text_encoder = \
                         \"precomputed\"): give Text::Features",
                    ));
                }
                (Text::Features { .. }, false) => {
                    return Err(Error::input(
                        &what("text"),
                        "this model encodes text with BERT: give Text::Raw or Text::Tokens",
                    ));
                }
            };
            if ids.len() < 2 || ids.len() > dims.t_l {
                return Err(Error::input(
                    &what("text"),
                    format!(
                        "{} tokens: expected 2 to T_l = {} ([CLS] … [SEP] included)",
                        ids.len(),
                        dims.t_l
                    ),
                ));
            }
            split.text_len.push(ids.len());
            split
                .text_mask
                .extend(Split::prefix_mask(ids.len(), dims.t_l));
            split.text_ids.extend(ids.iter().copied());
            split
                .text_ids
                .extend(std::iter::repeat_n(special::PAD, dims.t_l - ids.len()));
            for (frames, d, t, values, lens, part) in [
                (
                    &utterance.audio,
                    dims.d_a,
                    dims.t_a,
                    &mut split.audio,
                    &mut split.audio_len,
                    "audio",
                ),
                (
                    &utterance.vision,
                    dims.d_v,
                    dims.t_v,
                    &mut split.vision,
                    &mut split.vision_len,
                    "vision",
                ),
            ] {
                let (fitted, len) = rows_fitted(&frames.values, frames.frames, d, t, &what(part))?;
                values.extend(fitted);
                lens.push(len);
            }
        }
        split.audio_sum = split.audio.iter().map(|&x| f64::from(x)).sum();
        split.vision_sum = split.vision.iter().map(|&x| f64::from(x)).sum();
        Ok(split)
    }
}

/// `rows` rows of width `d` cut or zero-padded to `t` rows; with the number of real rows.
fn rows_fitted(
    values: &[f32],
    rows: usize,
    d: usize,
    t: usize,
    what: &str,
) -> Result<(Vec<f32>, usize), Error> {
    if Some(values.len()) != rows.checked_mul(d) {
        return Err(Error::input(
            what,
            format!("{} values do not fill [{rows}, {d}]", values.len()),
        ));
    }
    if rows == 0 {
        return Err(Error::input(
            what,
            "no frame (give Frames::zeros(1, d) and Presence::Missing for an absent modality)",
        ));
    }
    if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::input(
            what,
            format!("non-finite value at index {bad}"),
        ));
    }
    let len = rows.min(t);
    let mut out = vec![0.0f32; t * d];
    out[..len * d].copy_from_slice(&values[..len * d]);
    Ok((out, len))
}

/// The presence of every utterance as missing masks `[N, T_l]`, `[N, T_a]`, `[N, T_v]`.
fn presence_masks(split: &Split, utterances: &[Utterance]) -> Result<[Vec<u8>; 3], Error> {
    let Dims { t_l, t_a, t_v, .. } = split.dims;
    let mut masks = [
        Vec::with_capacity(split.n * t_l),
        Vec::with_capacity(split.n * t_a),
        Vec::with_capacity(split.n * t_v),
    ];
    for (i, utterance) in utterances.iter().enumerate() {
        let lens = [
            split.text_len[i],
            utterance.audio.frames,
            utterance.vision.frames,
        ];
        for (m, (presence, t)) in utterance.presence.iter().zip([t_l, t_a, t_v]).enumerate() {
            let row: Vec<u8> = match presence {
                Presence::Present => vec![1; t],
                Presence::Missing => vec![0; t],
                Presence::Positions(present) if present.len() == lens[m] => {
                    let mut row: Vec<u8> = present.iter().map(|&p| u8::from(p)).collect();
                    row.resize(t, 0);
                    row
                }
                Presence::Positions(present) => {
                    let part = ["text", "audio", "vision"][m];
                    return Err(Error::input(
                        &format!("utterance {i}: {part} presence"),
                        format!("{} entries for {} positions", present.len(), lens[m]),
                    ));
                }
            };
            masks[m].extend(row);
        }
    }
    Ok(masks)
}

fn softmax(row: &[f64]) -> Vec<f64> {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = row.iter().map(|v| (v - max).exp()).collect();
    let total: f64 = exp.iter().sum();
    exp.iter().map(|e| e / total).collect()
}
