//! From a data [`Batch`] to the network's inputs: the one place that decides which text a
//! text encoder reads (docs/method.md §4.2, §5.1, §6.1).
//!
//! | view | BERT reads | precomputed features are |
//! |---|---|---|
//! | complete | `text_ids` | the split's `text` rows |
//! | missing | `text_m_ids` (missing → `[UNK]`) | zeroed on missing tokens |
//! | counterfactual | `text_cf_ids` | zeroed wherever the counterfactual id differs from the original (hidden behind `[MASK]` or missing) |
//!
//! The counterfactual rule is the feature analogue of the reference's id substitution.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use cider_data::batch::Batch;
use cider_data::dataset::Split;

use crate::ModelError;
use crate::bert::BertConfig;
use crate::network::{InputMasks, TextEncoder, TextInput, ViewInput};
use crate::network_config::TextSource;

/// Which version of a batch's inputs to feed the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchView {
    /// All features (the teacher of MSSD).
    Complete,
    /// After the batch's missing view (the student of MSSD; the factual input at test time).
    Missing,
    /// The counterfactual text of MACI with the missing view's audio and vision.
    Counterfactual,
}

/// Checks that a split's tokens fit a BERT (docs/method.md §5.1) before any batch reaches it:
/// `T_l` at most `max_position_embeddings`, every `text_bert` id below `vocab_size` and every
/// segment id below `type_vocab_size` (Burn's embedding lookup would panic otherwise).
/// `source` names the dataset file.
///
/// # Errors
/// [`ModelError::Text`] naming the file, the split, the sample and the field.
pub fn check_bert_text(split: &Split, source: &str, bert: &BertConfig) -> Result<(), ModelError> {
    let t_l = split.dims.t_l;
    let fail = |message: String| {
        Err(ModelError::Text {
            source_name: source.to_string(),
            split: split.name.clone(),
            message,
        })
    };
    if t_l > bert.max_position_embeddings {
        return fail(format!(
            "`text_bert` has T_l = {t_l} tokens per sample, above the BERT's \
             max_position_embeddings = {}",
            bert.max_position_embeddings
        ));
    }
    let checks = [
        (
            "token id",
            first_at_or_above(
                split.text_ids.iter().map(|&id| id as usize),
                bert.vocab_size,
            ),
            bert.vocab_size,
            "vocab_size",
        ),
        (
            "segment id",
            first_at_or_above(
                split.text_segment.iter().map(|&s| usize::from(s)),
                bert.type_vocab_size,
            ),
            bert.type_vocab_size,
            "type_vocab_size",
        ),
    ];
    for (what, found, bound, key) in checks {
        if let Some((at, id)) = found {
            let sample = at / t_l.max(1);
            let name = split
                .id
                .get(sample)
                .map_or(String::new(), |id| format!(" ({id})"));
            return fail(format!(
                "sample {sample}{name}, `text_bert` position {}: {what} {id} is not below the \
                 BERT's {key} = {bound}",
                at % t_l.max(1)
            ));
        }
    }
    Ok(())
}

/// The first `(index, id)` of `ids` with `id ≥ bound`.
fn first_at_or_above(ids: impl Iterator<Item = usize>, bound: usize) -> Option<(usize, usize)> {
    ids.enumerate().find(|&(_, id)| id >= bound)
}

impl TextSource {
    /// The text of `batch` in `view`, in the form this encoder takes. `split` names the
    /// batch's split in errors.
    ///
    /// # Errors
    /// [`ModelError::Input`] when a precomputed-feature encoder meets a batch without `text`
    /// features, or a counterfactual view is asked of a batch without counterfactual ids.
    pub fn text_of<B: Backend>(
        self,
        batch: &Batch<B>,
        view: BatchView,
        split: &str,
    ) -> Result<TextInput<B>, ModelError> {
        let counterfactual_ids = || {
            batch.text_cf_ids.clone().ok_or_else(|| ModelError::Input {
                what: "counterfactual text".into(),
                message: format!("the batch of split `{split}` has no counterfactual ids"),
            })
        };
        match self {
            TextSource::Bert => Ok(TextInput::Tokens {
                ids: match view {
                    BatchView::Complete => batch.text_ids.clone(),
                    BatchView::Missing => batch.text_m_ids.clone(),
                    BatchView::Counterfactual => counterfactual_ids()?,
                },
                attention_mask: batch.text_mask.clone(),
                token_types: batch.text_segment.clone(),
            }),
            TextSource::Precomputed => {
                let features = batch
                    .text_features
                    .clone()
                    .ok_or_else(|| ModelError::Input {
                        what: "text".into(),
                        message: format!(
                            "the model reads precomputed text features, but split `{split}` has no \
                         `text` array"
                        ),
                    })?; // [B, T_l, d_l]
                let keep: Tensor<B, 2> = match view {
                    BatchView::Complete => return Ok(TextInput::Features(features)),
                    BatchView::Missing => batch.text_missing.clone(),
                    BatchView::Counterfactual => {
                        counterfactual_ids()?.equal(batch.text_ids.clone()).float()
                    }
                }; // [B, T_l]
                Ok(TextInput::Features(features * keep.unsqueeze_dim::<3>(2)))
            }
        }
    }

    /// The whole input of `batch` in `view`: its text ([`TextSource::text_of`]) with the
    /// complete audio and vision for [`BatchView::Complete`], the missing view's otherwise.
    ///
    /// # Errors
    /// As [`TextSource::text_of`].
    pub fn view_of<B: Backend>(
        self,
        batch: &Batch<B>,
        view: BatchView,
        split: &str,
    ) -> Result<ViewInput<B>, ModelError> {
        let (audio, vision) = match view {
            BatchView::Complete => (batch.audio.clone(), batch.vision.clone()),
            BatchView::Missing | BatchView::Counterfactual => {
                (batch.audio_m.clone(), batch.vision_m.clone())
            }
        };
        Ok(ViewInput {
            text: self.text_of(batch, view, split)?,
            audio,
            vision,
        })
    }
}

impl<B: Backend> TextEncoder<B> {
    /// What this encoder reads: token ids (BERT) or features.
    pub fn source(&self) -> TextSource {
        match self {
            TextEncoder::Bert(_) => TextSource::Bert,
            TextEncoder::Precomputed(_) => TextSource::Precomputed,
        }
    }

    /// [`TextSource::text_of`] for this encoder's source.
    ///
    /// # Errors
    /// As [`TextSource::text_of`].
    pub fn text_of(
        &self,
        batch: &Batch<B>,
        view: BatchView,
        split: &str,
    ) -> Result<TextInput<B>, ModelError> {
        self.source().text_of(batch, view, split)
    }

    /// [`TextSource::view_of`] for this encoder's source.
    ///
    /// # Errors
    /// As [`TextSource::text_of`].
    pub fn view_of(
        &self,
        batch: &Batch<B>,
        view: BatchView,
        split: &str,
    ) -> Result<ViewInput<B>, ModelError> {
        self.source().view_of(batch, view, split)
    }
}

impl<B: Backend> InputMasks<B> {
    /// The input masks and text lengths of `batch` (the same for every view).
    pub fn of(batch: &Batch<B>) -> Self {
        InputMasks {
            text: batch.text_mask.clone(),
            audio: batch.audio_mask.clone(),
            vision: batch.vision_mask.clone(),
            text_len: batch.text_len.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::backend::flex::FlexDevice;
    use burn::tensor::{Int, TensorData};
    use cider_data::synth::{self, SynthConfig};

    use super::*;
    use crate::bert::BertConfig;
    use crate::network::PrecomputedText;

    type TB = Flex;

    /// A batch of the first 3 training samples with hand-set masks and counterfactual ids:
    /// sample rows `[T_l = 50]`, token 1 missing in sample 0, token 2 hidden in sample 1.
    fn batch(device: &FlexDevice) -> (Batch<TB>, Vec<u32>) {
        let data = synth::generate(&SynthConfig {
            n_train: 3,
            n_valid: 1,
            n_test: 1,
            text_features: true,
            ..SynthConfig::default()
        })
        .expect("synthetic data");
        let split = &data.train;
        let rmfm = cider_data::missing::EvalMissing::Rmfm { rate: 0.0 };
        let mut view = cider_data::missing::eval_view(split, rmfm, 0).expect("complete view");
        let t_l = split.dims.t_l;
        view.text_missing[1] = 0; // sample 0, token 1 missing
        let mut cf: Vec<u32> = split.text_ids[..3 * t_l].to_vec();
        cf[t_l + 2] = 103; // sample 1, token 2 behind [MASK]
        let batch = Batch::new(split, &[0, 1, 2], &view, Some(&cf), &[0, 1, 2], device);
        (batch, cf)
    }

    fn features(input: TextInput<TB>) -> Vec<f32> {
        match input {
            TextInput::Features(x) => x.into_data().to_vec().expect("f32"),
            TextInput::Tokens { .. } => panic!("expected features"),
        }
    }

    fn ids(input: TextInput<TB>) -> Tensor<TB, 2, Int> {
        match input {
            TextInput::Tokens { ids, .. } => ids,
            TextInput::Features(_) => panic!("expected token ids"),
        }
    }

    #[test]
    fn precomputed_views_zero_the_rows_the_table_says() {
        let device = FlexDevice;
        let (batch, _) = batch(&device);
        let encoder = TextEncoder::<TB>::Precomputed(PrecomputedText);
        let complete = features(
            encoder
                .text_of(&batch, BatchView::Complete, "train")
                .unwrap(),
        );
        let missing = features(
            encoder
                .text_of(&batch, BatchView::Missing, "train")
                .unwrap(),
        );
        let cf = features(
            encoder
                .text_of(&batch, BatchView::Counterfactual, "train")
                .unwrap(),
        );
        let (t_l, d_l) = (50, 768);
        let row = |x: &[f32], b: usize, t: usize| x[(b * t_l + t) * d_l..][..d_l].to_vec();
        assert!(row(&complete, 0, 1).iter().any(|v| *v != 0.0));
        for b in 0..3 {
            for t in 0..t_l {
                let zero_missing = b == 0 && t == 1;
                let zero_cf = b == 1 && t == 2;
                let want = |zero: bool| {
                    if zero {
                        vec![0.0; d_l]
                    } else {
                        row(&complete, b, t)
                    }
                };
                assert_eq!(row(&missing, b, t), want(zero_missing), "missing b{b} t{t}");
                assert_eq!(row(&cf, b, t), want(zero_cf), "counterfactual b{b} t{t}");
            }
        }
    }

    #[test]
    fn bert_views_read_the_three_id_arrays() {
        let device = FlexDevice;
        let (batch, cf) = batch(&device);
        let bert = BertConfig::new(30_522, 16, 1, 2, 32, 64)
            .init::<TB>(&device)
            .unwrap();
        let encoder = TextEncoder::Bert(bert);
        let text_of = |view| ids(encoder.text_of(&batch, view, "train").unwrap());
        let same = |a: Tensor<TB, 2, Int>, b: Tensor<TB, 2, Int>| {
            a.into_data().assert_eq(&b.into_data(), true)
        };
        same(text_of(BatchView::Complete), batch.text_ids.clone());
        same(text_of(BatchView::Missing), batch.text_m_ids.clone());
        let cf: Vec<i64> = cf.iter().map(|&id| i64::from(id)).collect();
        same(
            text_of(BatchView::Counterfactual),
            Tensor::from_data(TensorData::new(cf, [3, 50]), &device),
        );
    }

    #[test]
    fn missing_inputs_are_named() {
        let device = FlexDevice;
        let (mut batch, _) = batch(&device);
        batch.text_cf_ids = None;
        let encoder = TextEncoder::<TB>::Precomputed(PrecomputedText);
        let err = encoder
            .text_of(&batch, BatchView::Counterfactual, "test")
            .unwrap_err();
        assert!(err.to_string().contains("no counterfactual ids"), "{err}");
        batch.text_features = None;
        let err = encoder
            .text_of(&batch, BatchView::Complete, "valid")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "model input `text`: the model reads precomputed text features, but split `valid` \
             has no `text` array"
        );
    }

    /// A token id outside the vocabulary and a text longer than the position table are
    /// refused with the file, the split, the sample and the field, before any lookup.
    #[test]
    fn bert_text_out_of_range_is_named() {
        let mut data = synth::generate(&SynthConfig {
            n_train: 4,
            n_valid: 1,
            n_test: 1,
            ..SynthConfig::default()
        })
        .expect("synthetic data");
        let bert = BertConfig::new(30522, 16, 1, 2, 32, 512);
        let split = &mut data.train;
        assert!(check_bert_text(split, "tiny.pkl", &bert).is_ok());
        let t_l = split.dims.t_l;
        split.text_ids[2 * t_l + 3] = 9_999_999;
        let id = split.id[2].clone();
        assert_eq!(
            check_bert_text(split, "tiny.pkl", &bert)
                .unwrap_err()
                .to_string(),
            format!(
                "tiny.pkl: split `train`: sample 2 ({id}), `text_bert` position 3: token id \
                 9999999 is not below the BERT's vocab_size = 30522"
            )
        );
        let short = BertConfig::new(30522, 16, 1, 2, 32, t_l - 1);
        assert_eq!(
            check_bert_text(split, "tiny.pkl", &short)
                .unwrap_err()
                .to_string(),
            format!(
                "tiny.pkl: split `train`: `text_bert` has T_l = {t_l} tokens per sample, above \
                 the BERT's max_position_embeddings = {}",
                t_l - 1
            )
        );
    }
}
