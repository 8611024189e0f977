//! The generative model of the synthetic dataset (docs/method.md §2, §2.5, §4; formulas in
//! `docs/synthetic-data.md`): what the splits share (modality offsets and directions, word
//! weights, text features), per-split class priors and shortcut-word statistics, and the
//! sample-by-sample generation of text, audio, vision, scores and labels.

use super::config::{SynthConfig, Variant};
use super::sampler::{Sampler, cumulative};
use super::vocab;
use crate::dataset::{Dataset, Dims, Split, seven_way_label, special, three_way_label};
use crate::error::DataError;

/// Probability that an utterance is neutral (`s = 0`), in every split.
const NEUTRAL_RATE: f64 = 0.1;
/// Weights of the score magnitude `|s| = k/3`, `k = 1..=9` (roughly MOSI's 7-way histogram).
const MAGNITUDE_WEIGHTS: [f64; 9] = [0.16, 0.12, 0.12, 0.12, 0.14, 0.14, 0.14, 0.03, 0.03];
/// Fewest and most words per utterance (`text_len` = words + 2 for `[CLS]`/`[SEP]`).
const MIN_WORDS: usize = 6;
const MAX_WORDS: usize = 30;
/// Probability that a non-shortcut word is a polar (sentiment) word.
const POLAR_RATE: f64 = 0.2;
/// Probability that an utterance carries one shortcut word.
const SHORTCUT_RATE: f64 = 0.5;
/// Per-utterance noise `σ_s` and per-frame noise `σ_f` (at `T = T_l`) of audio / vision.
const UTTERANCE_NOISE: f32 = 0.5;
const FRAME_NOISE: f32 = 2.0;
/// The signal burst covers a fraction `ρ ~ U(BURST_MIN, BURST_MAX)` of the valid frames.
const BURST_MIN: f64 = 0.3;
const BURST_MAX: f64 = 0.7;
/// Unaligned lengths: `T_m · text_len / (MAX_WORDS + 2) · u`, `u ~ U(DURATION_MIN, 1)`.
const DURATION_MIN: f64 = 0.7;

/// Generates the dataset described by `cfg` (see the module docs and `docs/synthetic-data.md`).
/// Deterministic: the same configuration always gives the same [`Dataset`].
pub fn generate(cfg: &SynthConfig) -> Result<Dataset, DataError> {
    cfg.validate()?;
    let world = World::new(cfg);
    let split = |kind: SplitKind, n: usize| SplitGenerator::new(cfg, &world, kind).run(n);
    Ok(Dataset {
        source: format!("synthetic:{}", cfg.layout),
        aligned: cfg.layout.aligned(),
        dims: cfg.layout.dims(),
        train: split(SplitKind::Train, cfg.n_train),
        valid: split(SplitKind::Valid, cfg.n_valid),
        test: split(SplitKind::Test, cfg.n_test),
    })
}

/// The three splits; each draws from its own ChaCha stream of the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SplitKind {
    Train,
    Valid,
    Test,
}

impl SplitKind {
    fn name(self) -> &'static str {
        match self {
            SplitKind::Train => "train",
            SplitKind::Valid => "valid",
            SplitKind::Test => "test",
        }
    }

    /// ChaCha stream (stream 0 is the world).
    fn stream(self) -> u64 {
        match self {
            SplitKind::Train => 1,
            SplitKind::Valid => 2,
            SplitKind::Test => 3,
        }
    }
}

/// Class prior `π = (neg, neu, pos)`: `(1 − ν)·((1 − b)/2, ·, (1 + b)/2)` with `ν` the
/// neutral rate; `shifted` (the OOD test split) swaps the polar entries.
fn class_prior(label_bias: f64, shifted: bool) -> [f64; 3] {
    let polar = 1.0 - NEUTRAL_RATE;
    let (neg, pos) = ((1.0 - label_bias) / 2.0, (1.0 + label_bias) / 2.0);
    let (neg, pos) = if shifted { (pos, neg) } else { (neg, pos) };
    [polar * neg, NEUTRAL_RATE, polar * pos]
}

/// Probability that a polar utterance's shortcut word comes from its own polarity's group:
/// `(1 + λ)/2`, or `(1 − λ)/2` when `shifted`.
fn shortcut_match(language_bias: f64, shifted: bool) -> f64 {
    if shifted {
        (1.0 - language_bias) / 2.0
    } else {
        (1.0 + language_bias) / 2.0
    }
}

/// Fixed parameters of one non-text modality: offset `μ` `[d]` and unit direction `w` `[d]`.
struct ModalityWorld {
    offset: Vec<f32>,
    direction: Vec<f32>,
}

impl ModalityWorld {
    fn new(sampler: &mut Sampler, d: usize) -> Self {
        let offset = (0..d).map(|_| sampler.normal()).collect();
        let mut direction: Vec<f32> = (0..d).map(|_| sampler.normal()).collect();
        let norm = direction
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            .sqrt()
            .max(f32::MIN_POSITIVE);
        for x in &mut direction {
            *x /= norm;
        }
        ModalityWorld { offset, direction }
    }
}

/// Everything shared by the three splits, drawn from stream 0 of the seed.
struct World {
    audio: ModalityWorld,
    vision: ModalityWorld,
    /// Zipf cumulative weights over [`vocab::FILLER`].
    filler: Vec<f64>,
    /// Cumulative weights of `k = 1..=9` in `|s| = k/3`.
    magnitude: Vec<f64>,
    /// Text features `[V + 1, d_l]`: row `v` for word `v` of [`vocab::all`], last row `[SEP]`.
    embedding: Option<Vec<f32>>,
}

impl World {
    fn new(cfg: &SynthConfig) -> Self {
        let dims = cfg.layout.dims();
        let mut sampler = Sampler::new(cfg.seed, 0);
        let audio = ModalityWorld::new(&mut sampler, dims.d_a);
        let vision = ModalityWorld::new(&mut sampler, dims.d_v);
        let embedding = cfg
            .text_features
            .then(|| word_embeddings(&mut sampler, dims.d_l));
        World {
            audio,
            vision,
            filler: cumulative((0..vocab::FILLER.len()).map(|r| 1.0 / (r as f64 + 1.0))),
            magnitude: cumulative(MAGNITUDE_WEIGHTS),
            embedding,
        }
    }
}

/// Word vectors `[V + 1, d_l]`: `e_v = (g_v + p_v·g_sent) / 2` with `g ~ N(0, I_{d_l})` and
/// polarity `p_v` = +1 (positive word), −1 (negative word) or 0; last row `g_SEP / 2` (`[SEP]`).
fn word_embeddings(sampler: &mut Sampler, d_l: usize) -> Vec<f32> {
    let sentiment: Vec<f32> = (0..d_l).map(|_| sampler.normal()).collect();
    let mut table = Vec::with_capacity((vocab::LEN + 1) * d_l);
    for v in 0..=vocab::LEN {
        let polarity = if v == vocab::LEN {
            0.0
        } else {
            Word(v).polarity()
        };
        for g_sent in &sentiment {
            table.push(0.5 * (sampler.normal() + polarity * g_sent));
        }
    }
    table
}

/// A word, as its index in [`vocab::all`].
#[derive(Debug, Clone, Copy)]
struct Word(usize);

const NEGATIVE_START: usize = vocab::POSITIVE.len();
const SHORTCUT_POSITIVE_START: usize = NEGATIVE_START + vocab::NEGATIVE.len();
const SHORTCUT_NEGATIVE_START: usize = SHORTCUT_POSITIVE_START + vocab::SHORTCUT_POSITIVE.len();
const FILLER_START: usize = SHORTCUT_NEGATIVE_START + vocab::SHORTCUT_NEGATIVE.len();

impl Word {
    /// The word's text and WordPiece id.
    fn entry(self) -> (&'static str, u32) {
        let i = self.0;
        if i < NEGATIVE_START {
            vocab::POSITIVE[i]
        } else if i < SHORTCUT_POSITIVE_START {
            vocab::NEGATIVE[i - NEGATIVE_START]
        } else if i < SHORTCUT_NEGATIVE_START {
            vocab::SHORTCUT_POSITIVE[i - SHORTCUT_POSITIVE_START]
        } else if i < FILLER_START {
            vocab::SHORTCUT_NEGATIVE[i - SHORTCUT_NEGATIVE_START]
        } else {
            vocab::FILLER[i - FILLER_START]
        }
    }

    /// +1 for positive, −1 for negative sentiment words, 0 otherwise.
    fn polarity(self) -> f32 {
        if self.0 < NEGATIVE_START {
            1.0
        } else if self.0 < SHORTCUT_POSITIVE_START {
            -1.0
        } else {
            0.0
        }
    }
}

/// Generates one split sample by sample.
struct SplitGenerator<'a> {
    cfg: &'a SynthConfig,
    world: &'a World,
    kind: SplitKind,
    dims: Dims,
    sampler: Sampler,
    /// Cumulative class prior `π` of this split.
    prior: Vec<f64>,
    /// Shortcut-group match probability of this split.
    shortcut_match: f64,
}

impl<'a> SplitGenerator<'a> {
    fn new(cfg: &'a SynthConfig, world: &'a World, kind: SplitKind) -> Self {
        let shifted = cfg.variant == Variant::Ood && kind == SplitKind::Test;
        SplitGenerator {
            cfg,
            world,
            kind,
            dims: cfg.layout.dims(),
            sampler: Sampler::new(cfg.seed, kind.stream()),
            prior: cumulative(class_prior(
                cfg.label_bias,
                shifted && cfg.ood_shift.shifts_labels(),
            )),
            shortcut_match: shortcut_match(
                cfg.language_bias,
                shifted && cfg.ood_shift.shifts_language(),
            ),
        }
    }

    fn run(mut self, n: usize) -> Split {
        let Dims {
            d_l,
            t_l,
            t_a,
            t_v,
            d_a,
            d_v,
        } = self.dims;
        let mut split = Split {
            name: self.kind.name().to_string(),
            n,
            dims: self.dims,
            text_ids: vec![special::PAD; n * t_l],
            text_mask: vec![0; n * t_l],
            text_segment: vec![0; n * t_l],
            audio: vec![0.0; n * t_a * d_a],
            vision: vec![0.0; n * t_v * d_v],
            text_len: Vec::with_capacity(n),
            audio_len: Vec::with_capacity(n),
            vision_len: Vec::with_capacity(n),
            score: Vec::with_capacity(n),
            label3: Vec::with_capacity(n),
            label7: Vec::with_capacity(n),
            raw_text: Vec::with_capacity(n),
            id: Vec::with_capacity(n),
            text_features: self
                .world
                .embedding
                .as_ref()
                .map(|_| vec![0.0; n * t_l * d_l]),
            audio_nonfinite: 0,
            audio_sum: 0.0,
            vision_sum: 0.0,
        };
        let mut words = Vec::with_capacity(MAX_WORDS);
        for i in 0..n {
            let score = self.score();
            self.utterance(score, &mut words);
            let text_len = words.len() + 2;
            let (audio_len, vision_len) = if self.cfg.layout.aligned() {
                (text_len, text_len)
            } else {
                (self.duration(text_len, t_a), self.duration(text_len, t_v))
            };
            let z = score / 3.0;

            let ids = &mut split.text_ids[i * t_l..(i + 1) * t_l];
            ids[0] = special::CLS;
            for (slot, word) in ids[1..].iter_mut().zip(&words) {
                *slot = word.entry().1;
            }
            ids[text_len - 1] = special::SEP;
            split.text_mask[i * t_l..i * t_l + text_len].fill(1);
            if let (Some(features), Some(table)) =
                (split.text_features.as_mut(), self.world.embedding.as_ref())
            {
                let row = t_l * d_l;
                write_text_features(&mut features[i * row..(i + 1) * row], table, &words, d_l);
            }

            let audio_noise = FRAME_NOISE * (t_a as f32 / t_l as f32).sqrt();
            self.frames(
                &mut split.audio[i * t_a * d_a..(i + 1) * t_a * d_a],
                audio_len,
                (self.cfg.audio_strength as f32) * z,
                &self.world.audio,
                audio_noise,
            );
            let vision_noise = FRAME_NOISE * (t_v as f32 / t_l as f32).sqrt();
            self.frames(
                &mut split.vision[i * t_v * d_v..(i + 1) * t_v * d_v],
                vision_len,
                (self.cfg.vision_strength as f32) * z,
                &self.world.vision,
                vision_noise,
            );

            split.text_len.push(text_len);
            split.audio_len.push(audio_len);
            split.vision_len.push(vision_len);
            split.score.push(score);
            split.label3.push(three_way_label(score));
            split.label7.push(seven_way_label(score));
            split.raw_text.push(
                words
                    .iter()
                    .map(|w| w.entry().0)
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            split.id.push(format!("synth_{}_{i}", self.kind.name()));
        }
        split.audio_sum = split.audio.iter().map(|&x| f64::from(x)).sum();
        split.vision_sum = split.vision.iter().map(|&x| f64::from(x)).sum();
        split
    }

    /// Class `c ~ π`, then `s = 0` (neutral) or `s = ±k/3` with `k ~ MAGNITUDE_WEIGHTS`.
    fn score(&mut self) -> f32 {
        let class = self.sampler.categorical(&self.prior);
        if class == 1 {
            return 0.0;
        }
        let k = (self.sampler.categorical(&self.world.magnitude) + 1) as f32;
        if class == 0 { -k / 3.0 } else { k / 3.0 }
    }

    /// The words of one utterance (without `[CLS]`/`[SEP]`) into `words`.
    fn utterance(&mut self, score: f32, words: &mut Vec<Word>) {
        words.clear();
        let n_words = MIN_WORDS + self.sampler.index(MAX_WORDS - MIN_WORDS + 1);
        let shortcut_slot = self
            .sampler
            .chance(SHORTCUT_RATE)
            .then(|| self.sampler.index(n_words));
        let p_positive = 1.0 / (1.0 + (-self.cfg.text_strength * f64::from(score)).exp());
        for slot in 0..n_words {
            let word = if shortcut_slot == Some(slot) {
                self.shortcut_word(score)
            } else if self.sampler.chance(POLAR_RATE) {
                if self.sampler.chance(p_positive) {
                    Word(self.sampler.index(vocab::POSITIVE.len()))
                } else {
                    Word(NEGATIVE_START + self.sampler.index(vocab::NEGATIVE.len()))
                }
            } else {
                Word(FILLER_START + self.sampler.categorical(&self.world.filler))
            };
            words.push(word);
        }
    }

    /// A shortcut word: from the utterance's own polarity group with the split's match
    /// probability, from either group with probability 1/2 for a neutral utterance.
    fn shortcut_word(&mut self, score: f32) -> Word {
        let positive_group = if score == 0.0 {
            self.sampler.chance(0.5)
        } else {
            self.sampler.chance(self.shortcut_match) == (score > 0.0)
        };
        if positive_group {
            Word(SHORTCUT_POSITIVE_START + self.sampler.index(vocab::SHORTCUT_POSITIVE.len()))
        } else {
            Word(SHORTCUT_NEGATIVE_START + self.sampler.index(vocab::SHORTCUT_NEGATIVE.len()))
        }
    }

    /// Unaligned frame count: `clamp(round(T_m · text_len / (MAX_WORDS + 2) · u), 1, T_m)`.
    fn duration(&mut self, text_len: usize, t_m: usize) -> usize {
        let u = self.sampler.uniform_in(DURATION_MIN, 1.0);
        let frames = (t_m as f64 * text_len as f64 / (MAX_WORDS + 2) as f64 * u).round();
        (frames as usize).clamp(1, t_m)
    }

    /// Frames `x_t = μ + σ_s·η + amp·g(t)·w + σ_f·ξ_t` for `t < len` into `out` `[T_m, d]`
    /// (padding frames stay 0); `g` is a raised-cosine burst over `⌈ρ·len⌉` frames.
    fn frames(
        &mut self,
        out: &mut [f32],
        len: usize,
        amp: f32,
        modality: &ModalityWorld,
        frame_noise: f32,
    ) {
        let base: Vec<f32> = modality
            .offset
            .iter()
            .map(|&mu| mu + UTTERANCE_NOISE * self.sampler.normal())
            .collect();
        let rho = self.sampler.uniform_in(BURST_MIN, BURST_MAX);
        let width = ((rho * len as f64).ceil() as usize).clamp(1, len);
        let start = self.sampler.index(len - width + 1);
        let d = base.len();
        for (t, frame) in out.chunks_exact_mut(d).take(len).enumerate() {
            let g = if (start..start + width).contains(&t) {
                let phase = std::f32::consts::PI * ((t - start) as f32 + 0.5) / width as f32;
                phase.sin().powi(2)
            } else {
                0.0
            };
            let a = amp * g;
            for ((x, &b), &w) in frame.iter_mut().zip(&base).zip(&modality.direction) {
                *x = b + a * w + frame_noise * self.sampler.normal();
            }
        }
    }
}

/// Precomputed text features of one utterance into `out` `[T_l, d_l]`: word vectors at the
/// word positions, their mean at `[CLS]`, the `[SEP]` row at `text_len − 1`, zeros after.
fn write_text_features(out: &mut [f32], table: &[f32], words: &[Word], d_l: usize) {
    let row = |v: usize| &table[v * d_l..(v + 1) * d_l];
    let (cls, rest) = out.split_at_mut(d_l);
    for (dst, word) in rest.chunks_exact_mut(d_l).zip(words) {
        dst.copy_from_slice(row(word.0));
        for (c, &x) in cls.iter_mut().zip(dst.iter()) {
            *c += x / words.len() as f32;
        }
    }
    let sep = words.len() * d_l;
    rest[sep..sep + d_l].copy_from_slice(row(vocab::LEN));
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{Layout, OodShift};

    /// A small IID / OOD configuration for the statistical tests.
    fn config(variant: Variant, n: usize) -> SynthConfig {
        SynthConfig {
            variant,
            n_train: n,
            n_valid: n / 4,
            n_test: n,
            ..SynthConfig::default()
        }
    }

    /// The default configuration at 2000 / 500 / 2000 samples, generated once per test binary.
    fn shared(variant: Variant) -> &'static Dataset {
        static IID: std::sync::OnceLock<Dataset> = std::sync::OnceLock::new();
        static OOD: std::sync::OnceLock<Dataset> = std::sync::OnceLock::new();
        let cell = match variant {
            Variant::Iid => &IID,
            Variant::Ood => &OOD,
        };
        cell.get_or_init(|| generate(&config(variant, 2000)).unwrap())
    }

    /// Vocabulary position of every id, for bag-of-words features.
    fn vocab_index() -> std::collections::HashMap<u32, usize> {
        vocab::all()
            .enumerate()
            .map(|(v, (_, id))| (id, v))
            .collect()
    }

    /// Per-sample feature vectors of one modality.
    fn bag_of_words(split: &Split) -> Vec<Vec<f64>> {
        let index = vocab_index();
        let t_l = split.dims.t_l;
        (0..split.n)
            .map(|i| {
                let len = split.text_len[i];
                let mut bow = vec![0.0; vocab::LEN];
                for &id in &split.text_ids[i * t_l + 1..i * t_l + len - 1] {
                    bow[index[&id]] += 1.0 / (len - 2) as f64;
                }
                bow
            })
            .collect()
    }

    /// Mean over each sample's valid frames of `[N, T, d]` frames, keeping frame `t` of sample
    /// `i` iff `keep(i, t)` (dropped frames count as zeros, as in missing-frame simulation).
    fn time_mean(
        frames: &[f32],
        lens: &[usize],
        t: usize,
        d: usize,
        mut keep: impl FnMut(usize, usize) -> bool,
    ) -> Vec<Vec<f64>> {
        lens.iter()
            .enumerate()
            .map(|(i, &len)| {
                let mut mean = vec![0.0; d];
                for step in 0..len {
                    if keep(i, step) {
                        let frame = &frames[(i * t + step) * d..(i * t + step + 1) * d];
                        for (m, &x) in mean.iter_mut().zip(frame) {
                            *m += f64::from(x) / len as f64;
                        }
                    }
                }
                mean
            })
            .collect()
    }

    /// Negative-vs-positive nearest-centroid classifier. Its decision value
    /// `‖x − μ_neg‖² − ‖x − μ_pos‖² = x·2(μ_pos − μ_neg) + ‖μ_neg‖² − ‖μ_pos‖²` (> 0 ⇒ positive)
    /// is linear; it is divided by its standard deviation on the training samples so that
    /// decision values of several modalities can be summed.
    struct Centroids {
        weight: Vec<f64>,
        bias: f64,
    }

    impl Centroids {
        fn fit(features: &[Vec<f64>], labels: &[u8]) -> Self {
            let mean = |class: u8| {
                let mut mean = vec![0.0; features[0].len()];
                let mut count = 0.0;
                for (row, _) in features.iter().zip(labels).filter(|&(_, &l)| l == class) {
                    count += 1.0;
                    for (m, x) in mean.iter_mut().zip(row) {
                        *m += x;
                    }
                }
                mean.iter().map(|m| m / count).collect::<Vec<f64>>()
            };
            let (neg, pos) = (mean(0), mean(2));
            let square = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>();
            let mut fitted = Centroids {
                weight: pos.iter().zip(&neg).map(|(p, n)| 2.0 * (p - n)).collect(),
                bias: square(&neg) - square(&pos),
            };
            let values: Vec<f64> = features.iter().map(|x| fitted.decision(x)).collect();
            let avg = values.iter().sum::<f64>() / values.len() as f64;
            let var = values.iter().map(|v| (v - avg).powi(2)).sum::<f64>() / values.len() as f64;
            let scale = var.sqrt();
            for w in &mut fitted.weight {
                *w /= scale;
            }
            fitted.bias /= scale;
            fitted
        }

        fn decision(&self, x: &[f64]) -> f64 {
            x.iter().zip(&self.weight).map(|(a, w)| a * w).sum::<f64>() + self.bias
        }
    }

    /// Mean of the recalls of the negative and positive classes (neutral samples ignored), for
    /// predictions `decision > 0 ⇒ positive`.
    fn balanced_accuracy(decisions: &[f64], labels: &[u8]) -> f64 {
        let recall = |class: u8| {
            let (hit, total) = decisions
                .iter()
                .zip(labels)
                .filter(|&(_, &l)| l == class)
                .fold((0usize, 0usize), |(hit, total), (&d, _)| {
                    (hit + usize::from((d > 0.0) == (class == 2)), total + 1)
                });
            hit as f64 / total as f64
        };
        (recall(0) + recall(2)) / 2.0
    }

    /// Four-sigma binomial tolerance for an estimated proportion `p` from `n` draws.
    fn tolerance(p: f64, n: usize) -> f64 {
        4.0 * (p * (1.0 - p) / n as f64).sqrt()
    }

    fn fraction(split: &Split, class: u8) -> f64 {
        split.label3.iter().filter(|&&l| l == class).count() as f64 / split.n as f64
    }
    #[test]
    fn same_seed_gives_the_same_data_and_splits_are_independent_streams() {
        let cfg = config(Variant::Ood, 80);
        let a = generate(&cfg).unwrap();
        assert_eq!(a, generate(&cfg).unwrap());
        assert_eq!(a.source, "synthetic:mosi-aligned");

        let other = generate(&SynthConfig {
            seed: cfg.seed + 1,
            ..cfg.clone()
        })
        .unwrap();
        assert_ne!(a.train.text_ids, other.train.text_ids);
        assert_ne!(a.train.audio, other.train.audio);
        assert_ne!(a.test.vision, other.test.vision);

        // More training samples leave validation and test untouched.
        let bigger = generate(&SynthConfig {
            n_train: 120,
            ..cfg.clone()
        })
        .unwrap();
        assert_eq!(a.valid, bigger.valid);
        assert_eq!(a.test, bigger.test);
        assert_eq!(a.train.score[..], bigger.train.score[..80]);

        // Text features are an addition: every other array is unchanged.
        let mut with_text = generate(&SynthConfig {
            text_features: true,
            ..cfg
        })
        .unwrap();
        for split in [
            &mut with_text.train,
            &mut with_text.valid,
            &mut with_text.test,
        ] {
            assert!(split.text_features.take().is_some());
        }
        assert_eq!(a, with_text);
    }

    /// Checks every documented structural property of one split.
    fn check_split(split: &Split, name: &str, aligned: bool) {
        let Dims {
            d_l,
            t_l,
            t_a,
            t_v,
            d_a,
            d_v,
        } = split.dims;
        let n = split.n;
        assert_eq!(split.name, name);
        assert_eq!(split.text_ids.len(), n * t_l);
        assert_eq!(split.text_mask.len(), n * t_l);
        assert_eq!(split.text_segment, vec![0; n * t_l]);
        assert_eq!(split.audio.len(), n * t_a * d_a);
        assert_eq!(split.vision.len(), n * t_v * d_v);
        for field in [&split.text_len, &split.audio_len, &split.vision_len] {
            assert_eq!(field.len(), n);
        }
        assert_eq!(split.score.len(), n);
        assert_eq!(split.audio_nonfinite, 0);
        let index = vocab_index();
        let words: Vec<(&str, u32)> = vocab::all().collect();
        for i in 0..n {
            let len = split.text_len[i];
            assert!((MIN_WORDS + 2..=MAX_WORDS + 2).contains(&len));
            let ids = &split.text_ids[i * t_l..(i + 1) * t_l];
            let mask = &split.text_mask[i * t_l..(i + 1) * t_l];
            assert_eq!(mask, &Split::prefix_mask(len, t_l)[..]);
            assert_eq!((ids[0], ids[len - 1]), (special::CLS, special::SEP));
            assert!(ids[len..].iter().all(|&id| id == special::PAD));
            let tokens: Vec<&str> = split.raw_text[i].split(' ').collect();
            assert_eq!(tokens.len(), len - 2);
            for (token, id) in tokens.iter().zip(&ids[1..len - 1]) {
                assert_eq!(words[index[id]].0, *token);
            }
            assert_eq!(split.id[i], format!("synth_{name}_{i}"));

            let (audio_len, vision_len) = (split.audio_len[i], split.vision_len[i]);
            if aligned {
                assert_eq!((audio_len, vision_len), (len, len));
            } else {
                assert!((1..=t_a).contains(&audio_len) && (1..=t_v).contains(&vision_len));
            }
            for (frames, len, t, d) in [
                (&split.audio, audio_len, t_a, d_a),
                (&split.vision, vision_len, t_v, d_v),
            ] {
                let sample = &frames[i * t * d..(i + 1) * t * d];
                assert!(sample[..len * d].iter().all(|x| x.is_finite() && *x != 0.0));
                assert!(sample[len * d..].iter().all(|&x| x == 0.0));
            }
        }
        let sum = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>();
        assert_eq!(split.audio_sum, sum(&split.audio));
        assert_eq!(split.vision_sum, sum(&split.vision));

        if let Some(features) = &split.text_features {
            assert_eq!(features.len(), n * t_l * d_l);
            let row = |i: usize, t: usize| &features[(i * t_l + t) * d_l..(i * t_l + t + 1) * d_l];
            let mut by_id: std::collections::HashMap<u32, &[f32]> = Default::default();
            for i in 0..n {
                let len = split.text_len[i];
                let mut mean = vec![0.0f32; d_l];
                for t in 1..len - 1 {
                    let id = split.text_ids[i * t_l + t];
                    // The same word has the same vector everywhere.
                    assert_eq!(*by_id.entry(id).or_insert(row(i, t)), row(i, t));
                    for (m, x) in mean.iter_mut().zip(row(i, t)) {
                        *m += x / (len - 2) as f32;
                    }
                }
                for (c, m) in row(i, 0).iter().zip(&mean) {
                    assert!((c - m).abs() < 1e-4, "[CLS] = mean of the words");
                }
                assert_eq!(row(i, len - 1), row(0, split.text_len[0] - 1), "[SEP]");
                assert!((len..t_l).all(|t| row(i, t).iter().all(|&x| x == 0.0)));
            }
        }
    }

    #[test]
    fn splits_are_consistent_in_every_layout() {
        for layout in [
            Layout::MosiAligned,
            Layout::MosiUnaligned,
            Layout::MoseiAligned,
        ] {
            let cfg = SynthConfig {
                layout,
                n_train: 24,
                n_valid: 8,
                n_test: 16,
                text_features: layout == Layout::MosiAligned,
                ..SynthConfig::default()
            };
            let data = generate(&cfg).unwrap();
            assert_eq!(data.aligned, layout.aligned());
            assert_eq!(data.dims, layout.dims());
            for (split, name, n) in [
                (&data.train, "train", 24),
                (&data.valid, "valid", 8),
                (&data.test, "test", 16),
            ] {
                assert_eq!(split.n, n);
                assert_eq!(split.dims, layout.dims());
                assert_eq!(split.text_features.is_some(), cfg.text_features);
                check_split(split, name, layout.aligned());
            }
        }
    }

    #[test]
    fn unaligned_lengths_follow_the_utterance_duration() {
        let data = generate(&SynthConfig {
            layout: Layout::MosiUnaligned,
            n_train: 300,
            n_valid: 1,
            n_test: 1,
            ..SynthConfig::default()
        })
        .unwrap();
        let train = &data.train;
        for i in 0..train.n {
            // T_m · text_len / 32 · u with u ∈ [0.7, 1), rounded.
            let full = |t: f64| t * train.text_len[i] as f64 / 32.0;
            for (len, t) in [(train.audio_len[i], 375.0), (train.vision_len[i], 500.0)] {
                assert!((full(t) * 0.7).round() <= len as f64 && len as f64 <= full(t).round());
            }
        }
        // The longest utterances reach most of the padded length, the shortest a fifth of it.
        let max = *train.vision_len.iter().max().unwrap();
        let min = *train.vision_len.iter().min().unwrap();
        assert!(max > 400 && min < 100, "{min}..{max}");
    }

    #[test]
    fn scores_are_annotator_like_and_labels_match_them() {
        let train = &shared(Variant::Iid).train;
        let mut polar = 0;
        let mut small = 0;
        for i in 0..train.n {
            let s = f64::from(train.score[i]);
            let thirds = s * 3.0;
            assert!(
                (thirds - thirds.round()).abs() < 1e-5 && s.abs() <= 3.0,
                "{s}"
            );
            let expected3 = if thirds.round() < 0.0 {
                0
            } else if thirds.round() == 0.0 {
                1
            } else {
                2
            };
            assert_eq!(train.label3[i], expected3);
            // k/3 is never a half-integer, so plain rounding equals NumPy's round-half-even.
            assert_eq!(f64::from(train.label7[i]), s.round() + 3.0);
            if s != 0.0 {
                polar += 1;
                small += usize::from(s.abs() < 0.5);
            }
        }
        let neutral = fraction(train, 1);
        assert!((neutral - 0.1).abs() < tolerance(0.1, train.n), "{neutral}");
        // |s| = 1/3 has weight 0.16 among polar samples (7-way label 3).
        let p_small = small as f64 / polar as f64;
        assert!((p_small - 0.16).abs() < tolerance(0.16, polar), "{p_small}");
        let counts7 = (0..7).map(|c| train.label7.iter().filter(|&&l| l == c).count());
        assert!(counts7.into_iter().all(|count| count > 0));
    }

    #[test]
    fn class_priors_shift_only_in_the_ood_test_split() {
        // b = 0.4, ν = 0.1: training (neg, pos) = 0.9·(0.3, 0.7) = (0.27, 0.63), OOD test mirrored.
        let (ood, iid) = (shared(Variant::Ood), shared(Variant::Iid));
        let cases = [
            (&ood.train, 0.27, 0.63),
            (&ood.valid, 0.27, 0.63),
            (&ood.test, 0.63, 0.27),
            (&iid.train, 0.27, 0.63),
            (&iid.valid, 0.27, 0.63),
            (&iid.test, 0.27, 0.63),
        ];
        for (split, neg, pos) in cases {
            for (class, p) in [(0, neg), (1, 0.1), (2, pos)] {
                let got = fraction(split, class);
                assert!(
                    (got - p).abs() < tolerance(p, split.n),
                    "{} class {class}: {got} vs {p}",
                    split.name
                );
            }
        }
        // Without label bias the polar classes are balanced everywhere.
        let n = 1000;
        let flat = generate(&SynthConfig {
            label_bias: 0.0,
            ..config(Variant::Ood, n)
        })
        .unwrap();
        for split in [&flat.train, &flat.test] {
            assert!((fraction(split, 2) - 0.45).abs() < tolerance(0.45, n));
        }
    }

    /// Shortcut statistics of a split: (utterances with a shortcut word, P(shortcut group =
    /// own polarity | polar utterance with a shortcut), P(positive | positive shortcut present)).
    fn shortcut_stats(split: &Split) -> (f64, f64, f64) {
        let group = |id: u32| {
            if vocab::SHORTCUT_POSITIVE.iter().any(|&(_, s)| s == id) {
                Some(2u8)
            } else if vocab::SHORTCUT_NEGATIVE.iter().any(|&(_, s)| s == id) {
                Some(0u8)
            } else {
                None
            }
        };
        let t_l = split.dims.t_l;
        let (mut with, mut polar, mut matched, mut pos_group, mut pos_given_group) =
            (0, 0, 0, 0, 0);
        for i in 0..split.n {
            let ids = &split.text_ids[i * t_l..(i + 1) * t_l];
            let groups: Vec<u8> = ids.iter().filter_map(|&id| group(id)).collect();
            assert!(groups.len() <= 1, "at most one shortcut word per utterance");
            let Some(&g) = groups.first() else { continue };
            let label = split.label3[i];
            with += 1;
            if label != 1 {
                polar += 1;
                matched += usize::from(g == label);
            }
            if g == 2 {
                pos_group += 1;
                pos_given_group += usize::from(label == 2);
            }
        }
        (
            with as f64 / split.n as f64,
            matched as f64 / polar as f64,
            pos_given_group as f64 / pos_group as f64,
        )
    }

    #[test]
    fn shortcut_words_follow_the_language_bias() {
        // λ = 0.8: match probability 0.9 in training, 0.1 in the OOD test split.
        // P(pos | positive shortcut) = π_pos·q / (π_pos·q + π_neg·(1 − q) + π_neu/2):
        // training (0.27, 0.1, 0.63), q = 0.9: 0.567 / 0.644 = 0.8804;
        // OOD test (0.63, 0.1, 0.27), q = 0.1: 0.027 / 0.644 = 0.0419.
        let (ood, iid) = (shared(Variant::Ood), shared(Variant::Iid));
        for (split, q, p_pos) in [
            (&ood.train, 0.9, 0.8804),
            (&ood.test, 0.1, 0.0419),
            (&iid.train, 0.9, 0.8804),
            (&iid.test, 0.9, 0.8804),
        ] {
            let (rate, matched, pos) = shortcut_stats(split);
            let name = &split.name;
            assert!(
                (rate - 0.5).abs() < tolerance(0.5, split.n),
                "{name}: {rate}"
            );
            let with = (rate * split.n as f64) as usize;
            assert!(
                (matched - q).abs() < tolerance(q, with),
                "{name}: {matched} vs {q}"
            );
            assert!(
                (pos - p_pos).abs() < tolerance(p_pos, with / 2),
                "{name}: {pos}"
            );
        }
        // No language bias: shortcut groups carry no label information.
        let n = 1000;
        let neutral = generate(&SynthConfig {
            language_bias: 0.0,
            ..config(Variant::Ood, n)
        })
        .unwrap();
        let (_, matched, _) = shortcut_stats(&neutral.train);
        assert!((matched - 0.5).abs() < tolerance(0.5, n / 3), "{matched}");
    }

    #[test]
    fn an_ood_shift_of_one_kind_reverses_only_that_bias() {
        // Label only: mirrored priors (0.63 negative), shortcut match 0.9 as in training.
        // Language only: training priors (0.27 negative), match 0.1. Training is unchanged.
        let n = 2000;
        let both = shared(Variant::Ood);
        for (shift, neg, q) in [
            (OodShift::Label, 0.63, 0.9),
            (OodShift::Language, 0.27, 0.1),
        ] {
            let data = generate(&SynthConfig {
                ood_shift: shift,
                ..config(Variant::Ood, n)
            })
            .unwrap();
            assert_eq!(data.train, both.train, "{shift:?}");
            let got = fraction(&data.test, 0);
            assert!((got - neg).abs() < tolerance(neg, n), "{shift:?}: {got}");
            let (rate, matched, _) = shortcut_stats(&data.test);
            let with = (rate * n as f64) as usize;
            assert!(
                (matched - q).abs() < tolerance(q, with),
                "{shift:?}: {matched}"
            );
        }
    }

    /// Per-modality features `[text bag of words, audio mean, vision mean]`; each audio frame
    /// is kept with probability `audio_keep` (the draw uses its own fixed seed).
    fn modality_features(split: &Split, audio_keep: f64) -> [Vec<Vec<f64>>; 3] {
        let dims = split.dims;
        let mut drop = Sampler::new(7, 9);
        [
            bag_of_words(split),
            time_mean(
                &split.audio,
                &split.audio_len,
                dims.t_a,
                dims.d_a,
                |_, _| drop.chance(audio_keep),
            ),
            time_mean(
                &split.vision,
                &split.vision_len,
                dims.t_v,
                dims.d_v,
                |_, _| true,
            ),
        ]
    }

    /// Balanced test accuracies of nearest-centroid classifiers fitted on train: text, audio,
    /// vision, and the sum of the three standardised decision values.
    fn accuracies(data: &Dataset, audio_keep: f64) -> [f64; 4] {
        let train = modality_features(&data.train, audio_keep);
        let test = modality_features(&data.test, audio_keep);
        let labels = &data.test.label3;
        let mut fused = vec![0.0; data.test.n];
        let mut out = [0.0; 4];
        for m in 0..3 {
            let centroids = Centroids::fit(&train[m], &data.train.label3);
            let decisions: Vec<f64> = test[m].iter().map(|x| centroids.decision(x)).collect();
            for (f, d) in fused.iter_mut().zip(&decisions) {
                *f += d;
            }
            out[m] = balanced_accuracy(&decisions, labels);
        }
        out[3] = balanced_accuracy(&fused, labels);
        out
    }

    #[test]
    fn each_modality_is_informative_and_all_three_are_better() {
        // No shortcut words, so that text accuracy measures the genuine text signal.
        let data = generate(&SynthConfig {
            language_bias: 0.0,
            ..config(Variant::Iid, 2000)
        })
        .unwrap();
        let [text, audio, vision, all] = accuracies(&data, 1.0);
        for (name, acc) in [("text", text), ("audio", audio), ("vision", vision)] {
            assert!(acc > 0.6, "{name} alone: {acc}");
            assert!(acc < all - 0.03, "{name} alone {acc} vs all three {all}");
        }
        // Dropping 80% of the audio frames (as zeros) loses much of the audio evidence.
        let [_, audio_missing, ..] = accuracies(&data, 0.2);
        assert!(audio_missing < audio - 0.04, "{audio_missing} vs {audio}");
    }

    #[test]
    fn language_bias_makes_text_fail_out_of_distribution() {
        let iid = accuracies(shared(Variant::Iid), 1.0);
        let ood = accuracies(shared(Variant::Ood), 1.0);
        // Text leans on the shortcut words: helped in IID, hurt by their reversal in OOD.
        assert!(iid[0] > 0.68 && ood[0] < iid[0] - 0.12, "{iid:?} {ood:?}");
        // Audio and vision carry no shortcut and keep their accuracy.
        for m in 1..3 {
            assert!((iid[m] - ood[m]).abs() < 0.06, "{iid:?} {ood:?}");
        }
    }
}
