//! MMSA-layout datasets (docs/method.md §2): the types of a dataset, its splits, their layout
//! and labels.
//!
//! A file holds a dict `{"train", "valid", "test"}`, each a dict of arrays (docs/method.md §2.2).
//! We keep every array flat and in C order next to its dimensions, validate all of them on load,
//! and derive the 3-way and 7-way labels from the score. Reading a file (MMSA pickle or CIDer
//! joblib dump) is in `read.rs`, with the typed field checks of `fields.rs`; writing the MMSA
//! layout back is in `write.rs`.

use crate::error::DataError;

mod fields;
mod read;
#[cfg(test)]
mod testkit;
mod write;

pub(crate) use read::looks_like_joblib;

/// Special WordPiece ids of `bert-base-uncased` (docs/method.md §2.2).
pub mod special {
    /// `[PAD]`
    pub const PAD: u32 = 0;
    /// `[UNK]`: replaces a missing text token.
    pub const UNK: u32 = 100;
    /// `[CLS]`: always the first token.
    pub const CLS: u32 = 101;
    /// `[SEP]`: the last real token.
    pub const SEP: u32 = 102;
    /// `[MASK]`: replaces non-bias words in counterfactual text.
    pub const MASK: u32 = 103;
    /// All five; never bias words, never changed by counterfactual text.
    pub const ALL: [u32; 5] = [PAD, UNK, CLS, SEP, MASK];
}

/// Names of the three splits, in file order.
pub const SPLIT_NAMES: [&str; 3] = ["train", "valid", "test"];

/// Sequence lengths and feature sizes of a dataset layout (docs/method.md §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dims {
    /// Size `d_l` of precomputed text features (BERT hidden size; 768 for MMSA files).
    pub d_l: usize,
    /// Text length `T_l` (tokens, including `[CLS]`/`[SEP]` and padding).
    pub t_l: usize,
    /// Audio frames `T_a` (= `T_l` when aligned).
    pub t_a: usize,
    /// Vision frames `T_v` (= `T_l` when aligned).
    pub t_v: usize,
    /// Audio feature size `d_a`.
    pub d_a: usize,
    /// Vision feature size `d_v`.
    pub d_v: usize,
}

/// Which label a task trains on (docs/method.md §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Task {
    /// The "binary" task: 3 classes, negative / neutral / positive.
    Binary,
    /// Seven classes, `round_half_even(clip(score, -3, 3)) + 3`.
    Seven,
}

impl Task {
    /// Number of classes `C`.
    pub fn num_classes(self) -> usize {
        match self {
            Task::Binary => 3,
            Task::Seven => 7,
        }
    }
}

/// The 3-way label of a score: 0 negative (`< 0`), 1 neutral (`== 0`), 2 positive (`> 0`).
pub fn three_way_label(score: f32) -> u8 {
    if score < 0.0 {
        0
    } else if score == 0.0 {
        1
    } else {
        2
    }
}

/// The 7-way label of a score: `round_half_even(clip(score, -3, 3)) + 3 ∈ 0..=6`.
pub fn seven_way_label(score: f32) -> u8 {
    (score.clamp(-3.0, 3.0).round_ties_even() + 3.0) as u8
}

/// One split (`train`, `valid` or `test`). Arrays are flat, C order, shapes in the field docs.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// `"train"`, `"valid"` or `"test"`.
    pub name: String,
    /// Number of samples `N`.
    pub n: usize,
    /// Sizes of every array below.
    pub dims: Dims,
    /// WordPiece ids, `[N, T_l]` (row 0 of `text_bert`).
    pub text_ids: Vec<u32>,
    /// BERT attention mask = text input mask, `[N, T_l]` (row 1 of `text_bert`).
    pub text_mask: Vec<u8>,
    /// Token-type ids, `[N, T_l]` (row 2 of `text_bert`).
    pub text_segment: Vec<u8>,
    /// Audio frames, `[N, T_a, d_a]`; `-inf` replaced by 0.
    pub audio: Vec<f32>,
    /// Vision frames, `[N, T_v, d_v]`.
    pub vision: Vec<f32>,
    /// Real text length per sample (sum of the attention mask, `[CLS]`…`[SEP]`), `[N]`.
    pub text_len: Vec<usize>,
    /// Valid audio frames per sample, `[N]` (= `text_len` when aligned).
    pub audio_len: Vec<usize>,
    /// Valid vision frames per sample, `[N]` (= `text_len` when aligned).
    pub vision_len: Vec<usize>,
    /// Sentiment score in [-3, 3], `[N]`.
    pub score: Vec<f32>,
    /// 3-way label, `[N]`.
    pub label3: Vec<u8>,
    /// 7-way label, `[N]`.
    pub label7: Vec<u8>,
    /// Raw utterance text, `[N]` (empty strings when the file has none).
    pub raw_text: Vec<String>,
    /// Sample ids, `[N]` (empty strings when the file has none).
    pub id: Vec<String>,
    /// Precomputed BERT features `[N, T_l, 768]`, when the file holds `text`.
    pub text_features: Option<Vec<f32>>,
    /// Number of non-finite audio values that were replaced by 0 on load.
    pub audio_nonfinite: usize,
    /// Sum (f64) of the finite audio values as read.
    pub audio_sum: f64,
    /// Sum (f64) of the vision values as read.
    pub vision_sum: f64,
}

impl Split {
    /// The label of sample `i` for a task.
    pub fn label(&self, task: Task, i: usize) -> u8 {
        match task {
            Task::Binary => self.label3[i],
            Task::Seven => self.label7[i],
        }
    }

    /// All labels for a task, `[N]`.
    pub fn labels(&self, task: Task) -> &[u8] {
        match task {
            Task::Binary => &self.label3,
            Task::Seven => &self.label7,
        }
    }

    /// Sample counts per 3-way class (negative, neutral, positive).
    pub fn three_way_counts(&self) -> [usize; 3] {
        let mut counts = [0; 3];
        for &l in &self.label3 {
            counts[usize::from(l)] += 1;
        }
        counts
    }

    /// Prefix input mask of `len` valid positions out of `t`, as 0/1.
    pub fn prefix_mask(len: usize, t: usize) -> Vec<u8> {
        (0..t).map(|j| u8::from(j < len)).collect()
    }

    /// Audio input mask `[N, T_a]` (prefix of `audio_len`).
    pub fn audio_mask(&self) -> Vec<u8> {
        self.audio_len
            .iter()
            .flat_map(|&len| Self::prefix_mask(len, self.dims.t_a))
            .collect()
    }

    /// Vision input mask `[N, T_v]` (prefix of `vision_len`).
    pub fn vision_mask(&self) -> Vec<u8> {
        self.vision_len
            .iter()
            .flat_map(|&len| Self::prefix_mask(len, self.dims.t_v))
            .collect()
    }
}

/// A whole dataset file: three splits sharing one layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Where it came from (a path, or `"synthetic:<layout>"`), used in error messages.
    pub source: String,
    /// Unaligned files carry `audio_lengths` / `vision_lengths`; aligned ones do not.
    pub aligned: bool,
    /// Shared layout.
    pub dims: Dims,
    /// The training split.
    pub train: Split,
    /// The validation split.
    pub valid: Split,
    /// The test split.
    pub test: Split,
}

impl Dataset {
    /// The splits in file order.
    pub fn splits(&self) -> [&Split; 3] {
        [&self.train, &self.valid, &self.test]
    }

    /// A split by name (`train`, `valid`, `test`).
    pub fn split(&self, name: &str) -> Result<&Split, DataError> {
        self.splits()
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| DataError::Invalid {
                what: "split".into(),
                message: format!("`{name}` is not one of train, valid, test"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_spec_rounding() {
        assert_eq!(three_way_label(-0.2), 0);
        assert_eq!(three_way_label(0.0), 1);
        assert_eq!(three_way_label(0.2), 2);
        let sevens: Vec<u8> = [-3.4, -2.5, -0.5, 0.5, 1.5, 2.5, 3.0]
            .map(seven_way_label)
            .to_vec();
        assert_eq!(sevens, vec![0, 1, 3, 3, 5, 5, 6]);
    }
}
