//! Bias words and fine-grained counterfactual text (docs/method.md §4), the data side of MACI.
//!
//! Bias words are the frequent tokens whose per-class counts in the training split vary most
//! across classes (coefficient of variation `cv ≥ 0.1`): label "shortcuts". The counterfactual
//! text keeps only them (and the special tokens) and hides every other token behind `[MASK]`.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};

use crate::dataset::{Split, Task, special};
use crate::error::DataError;

/// Number of bias words kept by default (`bias_thresh`, docs/method.md §4.1).
pub const DEFAULT_BIAS_THRESH: usize = 100;

/// Smallest coefficient of variation of a bias word.
const MIN_CV: f32 = 0.1;

/// What to do, in the binary task, with a token never seen in a negative or positive sample
/// (its `cv` is `0/0`; docs/method.md §4.1 step 2, §11.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum BiasRule {
    /// The reference's stale variables: reuse the `std`/`mean` of the previously processed
    /// token (insertion order). If the very first token is such a token the reference crashes;
    /// we return an error.
    Parity,
    /// Skip such tokens: they carry no negative/positive shortcut.
    Clean,
}

/// One entry of the bias-word dictionary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BiasWord {
    /// WordPiece id.
    pub id: u32,
    /// Occurrences in the training split (all classes).
    pub count: u64,
    /// Coefficient of variation of the per-class counts, as the reference computes it (f32).
    pub cv: f32,
}

/// Population standard deviation and mean of counts, computed as NumPy does for a float32
/// array (`np.std`, `np.mean`): f32 throughout, sums accumulated left to right from 0.
fn numpy_std_mean(counts: &[f32]) -> (f32, f32) {
    let n = counts.len() as f32;
    let mean = counts.iter().fold(0.0f32, |s, &c| s + c) / n;
    let var = counts.iter().fold(0.0f32, |s, &c| {
        let d = c - mean;
        s + d * d
    }) / n;
    (var.sqrt(), mean)
}

/// The bias-word dictionary of a training split (docs/method.md §4.1), in dictionary order: tokens of
/// the complete text ids (specials {0, 100, 101, 102, 103} skipped) counted per occurrence and
/// per class of `task`; `cv` over the class counts (binary: negative and positive only, i.e.
/// `|c_0 − c_2| / (c_0 + c_2)`; seven: `std(c_0..c_6) / mean`); tokens with `cv ≥ 0.1` sorted
/// by total count, descending (stable, ties in first-occurrence order); the first `thresh`.
///
/// Errors: a split whose arrays disagree with its dims, a label outside the task's classes,
/// and, under [`BiasRule::Parity`], a first token without negative or positive occurrence.
pub fn bias_dictionary(
    train: &Split,
    task: Task,
    thresh: usize,
    rule: BiasRule,
) -> Result<Vec<BiasWord>, DataError> {
    let t_l = train.dims.t_l;
    let labels = train.labels(task);
    let classes = task.num_classes();
    let invalid = |message: String| DataError::Invalid {
        what: format!("split `{}` for the bias-word dictionary", train.name),
        message,
    };
    if Some(train.text_ids.len()) != train.n.checked_mul(t_l) || labels.len() != train.n {
        return Err(invalid(format!(
            "{} token ids and {} labels do not fit {} samples of T_l = {t_l}",
            train.text_ids.len(),
            labels.len(),
            train.n
        )));
    }

    // Per-token class counts, in first-occurrence order (samples, then positions).
    let mut order: HashMap<u32, usize> = HashMap::new();
    let mut tokens: Vec<(u32, [u64; 7], u64)> = Vec::new();
    for (i, ids) in train.text_ids.chunks_exact(t_l.max(1)).enumerate() {
        let label = usize::from(labels[i]);
        if label >= classes {
            return Err(invalid(format!(
                "sample {i} has label {label}, expected one of 0..{classes} for the {task:?} task"
            )));
        }
        for &id in ids.iter().filter(|id| !special::ALL.contains(id)) {
            let slot = *order.entry(id).or_insert_with(|| {
                tokens.push((id, [0; 7], 0));
                tokens.len() - 1
            });
            tokens[slot].1[label] += 1;
            tokens[slot].2 += 1;
        }
    }

    let mut kept = Vec::new();
    let mut previous: Option<(f32, f32)> = None;
    for (id, counts, count) in tokens {
        let counts = counts.map(|c| c as f32);
        let std_mean = match task {
            Task::Seven => numpy_std_mean(&counts),
            Task::Binary if counts[0] > 0.0 || counts[2] > 0.0 => {
                numpy_std_mean(&[counts[0], counts[2]])
            }
            Task::Binary => match rule {
                BiasRule::Clean => continue,
                BiasRule::Parity => previous.ok_or_else(|| {
                    invalid(format!(
                        "the first token ({id}) occurs only in neutral samples, so the \
                         reference's cv is undefined (it crashes); use BiasRule::Clean"
                    ))
                })?,
            },
        };
        previous = Some(std_mean);
        let cv = std_mean.0 / std_mean.1;
        if cv >= MIN_CV {
            kept.push(BiasWord { id, count, cv });
        }
    }
    kept.sort_by_key(|w| Reverse(w.count));
    kept.truncate(thresh);
    Ok(kept)
}

/// The ids of [`bias_dictionary`], in dictionary order.
pub fn bias_words(
    train: &Split,
    task: Task,
    thresh: usize,
    rule: BiasRule,
) -> Result<Vec<u32>, DataError> {
    Ok(bias_dictionary(train, task, thresh, rule)?
        .into_iter()
        .map(|w| w.id)
        .collect())
}

/// Fine-grained counterfactual text (docs/method.md §4.2) from the missing-view ids `text_m_ids`
/// (`[N, T_l]`, flat): special ids and bias words are kept, every other id becomes `[MASK]`
/// (103). Same shape as the input.
pub fn counterfactual_ids(text_m_ids: &[u32], bias: &[u32]) -> Vec<u32> {
    let bias: HashSet<u32> = bias.iter().copied().collect();
    text_m_ids
        .iter()
        .map(|&id| {
            if special::ALL.contains(&id) || bias.contains(&id) {
                id
            } else {
                special::MASK
            }
        })
        .collect()
}

/// Per row of `text_ids` (`[N, T_l]`, flat), whether it holds a word of `bias` (special ids do
/// not count), `[N]`.
pub fn bias_word_flags(text_ids: &[u32], t_l: usize, bias: &[u32]) -> Vec<bool> {
    let bias: HashSet<u32> = bias.iter().copied().collect();
    text_ids
        .chunks(t_l.max(1))
        .map(|row| {
            row.iter()
                .any(|id| !special::ALL.contains(id) && bias.contains(id))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Dims;

    /// A training split with the given id rows (padded with 0 to the longest) and labels
    /// (used for both tasks).
    fn train_split(rows: &[Vec<u32>], labels: &[u8]) -> Split {
        let t_l = rows.iter().map(Vec::len).max().unwrap_or(0);
        let n = rows.len();
        let mut text_ids = Vec::new();
        let mut text_mask = Vec::new();
        for row in rows {
            for j in 0..t_l {
                text_ids.push(row.get(j).copied().unwrap_or(special::PAD));
                text_mask.push(u8::from(j < row.len()));
            }
        }
        Split {
            name: "train".into(),
            n,
            dims: Dims {
                d_l: 0,
                t_l,
                t_a: 1,
                t_v: 1,
                d_a: 1,
                d_v: 1,
            },
            text_ids,
            text_segment: vec![0; text_mask.len()],
            text_mask,
            audio: vec![0.0; n],
            vision: vec![0.0; n],
            text_len: rows.iter().map(Vec::len).collect(),
            audio_len: vec![1; n],
            vision_len: vec![1; n],
            score: vec![0.0; n],
            label3: labels.to_vec(),
            label7: labels.to_vec(),
            raw_text: vec![String::new(); n],
            id: vec![String::new(); n],
            text_features: None,
            audio_nonfinite: 0,
            audio_sum: 0.0,
            vision_sum: 0.0,
        }
    }

    /// Hand-counted binary example (labels 0 = negative, 1 = neutral, 2 = positive):
    /// 2000: c = (2, 0, 0), sum 2, cv 1; 2001: (1, 0, 2), sum 3, cv 1/3; 2002: (0, 1, 1),
    /// sum 2, cv 1; 2003: neutral only (stale cv 1 from 2002 under Parity); 2004: (0, 0, 1),
    /// sum 1, cv 1. Sorted by count: 2001 (3), 2000 (2), 2002 (2), 2003 (1), 2004 (1).
    fn hand_split() -> Split {
        train_split(
            &[
                vec![101, 2000, 2001, 2000, 102],
                vec![101, 2001, 2002, 102],
                vec![101, 2002, 2003, 102],
                vec![101, 2001, 2004, 100, 103, 102],
            ],
            &[0, 2, 1, 2],
        )
    }

    #[test]
    fn binary_dictionary_by_hand() {
        let split = hand_split();
        let dict = bias_dictionary(&split, Task::Binary, 100, BiasRule::Parity).unwrap();
        let ids: Vec<u32> = dict.iter().map(|w| w.id).collect();
        assert_eq!(ids, [2001, 2000, 2002, 2003, 2004]);
        assert_eq!(dict[0].count, 3);
        assert_eq!(dict[0].cv, 1.0f32 / 3.0);
        assert_eq!(dict[3].cv, 1.0, "stale cv of the previous token (2002)");
        let clean = bias_words(&split, Task::Binary, 100, BiasRule::Clean).unwrap();
        assert_eq!(clean, [2001, 2000, 2002, 2004]);
        let top = bias_words(&split, Task::Binary, 3, BiasRule::Parity).unwrap();
        assert_eq!(top, [2001, 2000, 2002]);
    }

    /// cv exactly at the threshold: (11 − 9)/(11 + 9) = 0.1 is kept; (21 − 19)/40 = 0.05 is not.
    #[test]
    fn threshold_is_inclusive() {
        let mut neg = vec![101];
        neg.extend([3000; 11]);
        neg.extend([3001; 21]);
        let mut pos = vec![101];
        pos.extend([3000; 9]);
        pos.extend([3001; 19]);
        let split = train_split(&[neg, pos], &[0, 2]);
        let dict = bias_dictionary(&split, Task::Binary, 100, BiasRule::Parity).unwrap();
        assert_eq!(dict.len(), 1);
        assert_eq!((dict[0].id, dict[0].count, dict[0].cv), (3000, 20, 0.1));
    }

    /// Seven classes: counts (1, 0, 0, 0, 0, 0, 1) have mean 2/7 and population std √10/7, so
    /// cv = √10/2 ≈ 1.5811; one occurrence in every class gives cv 0 (dropped).
    #[test]
    fn seven_class_cv_by_hand() {
        let mut rows: Vec<Vec<u32>> = (0..7).map(|_| vec![101, 4000, 102]).collect();
        rows[0].push(4001);
        rows[6].push(4001);
        let labels: Vec<u8> = (0..7).collect();
        let split = train_split(&rows, &labels);
        let dict = bias_dictionary(&split, Task::Seven, 100, BiasRule::Clean).unwrap();
        assert_eq!(dict.len(), 1);
        assert_eq!(dict[0].id, 4001);
        assert!((f64::from(dict[0].cv) - 10f64.sqrt() / 2.0).abs() < 1e-6);
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        // The first token (5000) occurs only in a neutral sample.
        let split = train_split(&[vec![101, 5000, 102], vec![101, 5001, 102]], &[1, 0]);
        assert!(matches!(
            bias_words(&split, Task::Binary, 100, BiasRule::Parity),
            Err(DataError::Invalid { .. })
        ));
        assert_eq!(
            bias_words(&split, Task::Binary, 100, BiasRule::Clean).unwrap(),
            [5001]
        );
        let bad_label = train_split(&[vec![101, 5000, 102]], &[3]);
        assert!(bias_words(&bad_label, Task::Binary, 100, BiasRule::Clean).is_err());
        let mut short = hand_split();
        short.text_ids.pop();
        assert!(bias_words(&short, Task::Binary, 100, BiasRule::Clean).is_err());
    }

    #[test]
    fn counterfactual_keeps_specials_and_bias_words() {
        let text_m = [101, 2001, 100, 2005, 2000, 102, 0, 103];
        let cf = counterfactual_ids(&text_m, &[2000, 2001]);
        assert_eq!(cf, [101, 2001, 100, 103, 2000, 102, 0, 103]);
        assert_eq!(
            counterfactual_ids(&text_m, &[]),
            [101, 103, 100, 103, 103, 102, 0, 103]
        );
    }

    #[test]
    fn a_row_holds_a_bias_word_only_through_a_non_special_id() {
        // 102 ([SEP]) in the list does not count: it is in every row.
        let text = [101, 2005, 102, 0, 101, 2000, 102, 0];
        assert_eq!(bias_word_flags(&text, 4, &[2000, 102]), [false, true]);
        assert_eq!(bias_word_flags(&text, 4, &[]), [false, false]);
    }
}
