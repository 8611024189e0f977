//! The confounder of MACI's backdoor adjustment (docs/method.md §7.2): class prototypes `z_i` and class
//! priors `P(z_i)`.
//!
//! Prototype of class `i` = mean over the split's class-`i` samples of each modality's features
//! averaged over its valid positions, concatenated `[text (d_l) ; audio (d_a) ; vision (d_v)]`.
//! Priors = class frequencies `count_i / N` of the training split. At valid/test time every
//! `z_i` is replaced by one shared vector and the priors by `1/C` ([`TestPrototypes`]).
//! Reference-format `.npy` files can be read instead of computing them.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use cider_data::dataset::{Split, Task};
use cider_data::{ArrayData, NumpyArray};
use serde::{Deserialize, Serialize};

use crate::error::MaciError;
use crate::full_model::Confounders;
use crate::metrics::check_labels;

/// Largest allowed `|Σ priors − 1|` in a reference priors file (f32 rounding of `count/N`).
const PRIOR_SUM_TOLERANCE: f64 = 1e-4;

/// Class prototypes `z_i` and priors `P(z_i)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Prototypes {
    /// `z_i`, `C × (d_l + d_a + d_v)`: `[text ; audio ; vision]` per class.
    pub per_class: Vec<Vec<f32>>,
    /// `P(z_i)`, `[C]`.
    pub priors: Vec<f32>,
}

/// Where the text part of the prototypes comes from.
#[derive(Debug, Clone, Copy)]
pub enum TextFeatures<'a> {
    /// The split's precomputed BERT features `text_features` `[N, T_l, d_l]`, averaged over
    /// the positions where `text_mask` is 1.
    FromSplit,
    /// Already pooled text features supplied by the caller, `[N, d_l]` row-major.
    Pooled {
        /// `[N, d_l]` row-major.
        values: &'a [f32],
        /// `d_l`, the width of each row.
        d_l: usize,
    },
}

impl Prototypes {
    /// Checks and wraps prototypes and priors: `C ≥ 1` rows of one non-zero length, `C` priors,
    /// all finite. The expected length is the one most rows have, so that the error names the
    /// row that differs.
    pub fn new(per_class: Vec<Vec<f32>>, priors: Vec<f32>) -> Result<Self, MaciError> {
        let count = |len: usize| per_class.iter().filter(|r| r.len() == len).count();
        let feature_len = per_class
            .iter()
            .map(Vec::len)
            .fold(None, |best: Option<usize>, len| match best {
                Some(b) if count(b) >= count(len) => Some(b),
                _ => Some(len),
            })
            .unwrap_or(0);
        if feature_len == 0 {
            return Err(MaciError::Invalid {
                what: "prototypes".into(),
                message: "need at least one class with a non-empty prototype".into(),
            });
        }
        for (class, row) in per_class.iter().enumerate() {
            if row.len() != feature_len {
                return Err(MaciError::Length {
                    what: format!("prototype of class {class}"),
                    expected: feature_len,
                    found: row.len(),
                });
            }
            check_finite(&format!("prototype of class {class}"), row)?;
        }
        if priors.len() != per_class.len() {
            return Err(MaciError::Length {
                what: "priors (one per class)".into(),
                expected: per_class.len(),
                found: priors.len(),
            });
        }
        check_finite("priors", &priors)?;
        Ok(Self { per_class, priors })
    }

    /// Number of classes `C`.
    pub fn num_classes(&self) -> usize {
        self.per_class.len()
    }

    /// Length of one prototype, `d_l + d_a + d_v`.
    pub fn feature_len(&self) -> usize {
        self.per_class.first().map_or(0, Vec::len)
    }

    /// The confounder input of the MCM for a batch (docs/method.md §7.2): every prototype `z_i` and prior
    /// `P(z_i)` repeated for each sample, feats `[C, batch, F]`, probs `[batch, C]`.
    pub fn confounders<B: Backend>(&self, batch: usize, device: &B::Device) -> Confounders<B> {
        let (c, f) = (self.num_classes(), self.feature_len());
        let feats = TensorData::new(self.per_class.concat(), [c, 1, f]);
        let probs = TensorData::new(self.priors.clone(), [1, c]);
        Confounders {
            feats: Tensor::<B, 3>::from_data(feats, device).repeat_dim(1, batch), // [C, B, F]
            probs: Tensor::<B, 2>::from_data(probs, device).repeat_dim(0, batch), // [B, C]
        }
    }

    /// Prototypes and priors of a split (the training split, for training).
    ///
    /// Per sample: text averaged over its `text_mask` positions (or the caller's pooled row),
    /// audio over its first `audio_len` frames, vision over its first `vision_len` frames. A
    /// sample with no valid position in a modality does not enter that modality's class mean.
    /// Priors: `count_i / N`.
    ///
    /// Errors: array sizes that disagree with `N` and `dims`, a label `≥ C`, a class with no
    /// sample ([`MaciError::EmptyClass`]) or with no valid position in some modality, missing
    /// text features, non-finite results.
    pub fn from_split(
        split: &Split,
        task: Task,
        text: TextFeatures<'_>,
    ) -> Result<Self, MaciError> {
        let classes = task.num_classes();
        let n = split.n;
        if n == 0 {
            return Err(MaciError::Empty {
                what: format!("prototypes of split `{}`", split.name),
                reason: "the split has no sample".into(),
            });
        }
        let labels = split.labels(task);
        check_len(split, "labels", labels.len(), n)?;
        check_labels(&format!("split `{}` labels", split.name), labels, classes)?;

        let text = pooled_text(split, text)?;
        let dims = split.dims;
        let audio = Modality {
            name: "audio",
            frames: &split.audio,
            t: dims.t_a,
            d: dims.d_a,
            lengths: &split.audio_len,
        };
        let vision = Modality {
            name: "vision",
            frames: &split.vision,
            t: dims.t_v,
            d: dims.d_v,
            lengths: &split.vision_len,
        };
        let audio = audio.pooled(split)?;
        let vision = vision.pooled(split)?;

        let mut counts = vec![0usize; classes];
        for &label in labels {
            counts[usize::from(label)] += 1;
        }
        if let Some(class) = counts.iter().position(|&c| c == 0) {
            return Err(MaciError::EmptyClass {
                split: split.name.clone(),
                class,
            });
        }
        let mut per_class = Vec::with_capacity(classes);
        for class in 0..classes {
            let mut row = Vec::with_capacity(text.d + audio.d + vision.d);
            for part in [&text, &audio, &vision] {
                row.extend(part.class_mean(split, labels, class)?);
            }
            per_class.push(row);
        }
        let priors = counts
            .iter()
            .map(|&c| (c as f64 / n as f64) as f32)
            .collect();
        Self::new(per_class, priors)
    }

    /// The test-time confounder (docs/method.md §7.2): every `z_i` replaced by the unweighted mean of the
    /// `C` prototypes, priors uniform `1/C`.
    pub fn collapsed(&self) -> Prototypes {
        let classes = self.num_classes();
        let mut mean = vec![0.0f64; self.feature_len()];
        for row in &self.per_class {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += f64::from(x);
            }
        }
        let mean: Vec<f32> = mean.iter().map(|&m| (m / classes as f64) as f32).collect();
        Prototypes {
            per_class: vec![mean; classes],
            priors: vec![(1.0 / classes as f64) as f32; classes],
        }
    }

    /// Prototypes and priors from reference-format files: one prototype `.npy` per class (in
    /// class order) and one priors `.npy` of length `C = class_files.len()`.
    pub fn from_reference_files<P: AsRef<Path>>(
        class_files: &[P],
        priors_file: &Path,
        feature_len: usize,
    ) -> Result<Self, MaciError> {
        let per_class = class_files
            .iter()
            .map(|path| read_reference_prototype(path.as_ref(), feature_len))
            .collect::<Result<Vec<_>, _>>()?;
        let priors = read_reference_priors(priors_file, class_files.len())?;
        Self::new(per_class, priors)
    }
}

/// Which prototypes the valid/test splits use (docs/method.md §7.2, §11.4). Priors are `1/C` in
/// both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TestPrototypes {
    /// Clean: every `z_i` = the mean of the *training* prototypes (no label of the evaluated
    /// split is used).
    #[default]
    Clean,
    /// Reference parity: every `z_i` = the mean of the evaluated split's own per-class
    /// prototypes (computed with that split's labels).
    Parity,
}

impl TestPrototypes {
    /// The prototypes and priors for an evaluated split. `evaluated` and `text` are used only
    /// by [`TestPrototypes::Parity`].
    pub fn build(
        self,
        train: &Prototypes,
        evaluated: &Split,
        task: Task,
        text: TextFeatures<'_>,
    ) -> Result<Prototypes, MaciError> {
        match self {
            TestPrototypes::Clean => Ok(train.collapsed()),
            TestPrototypes::Parity => {
                let own = Prototypes::from_split(evaluated, task, text)?;
                if own.feature_len() != train.feature_len() {
                    return Err(MaciError::Length {
                        what: format!("prototype length of split `{}`", evaluated.name),
                        expected: train.feature_len(),
                        found: own.feature_len(),
                    });
                }
                Ok(own.collapsed())
            }
        }
    }
}

/// Reads a reference priors file: a 1-D float32 or float64 array of length `C`, finite,
/// non-negative, summing to 1.
pub fn read_reference_priors(path: &Path, num_classes: usize) -> Result<Vec<f32>, MaciError> {
    let priors = read_vector(path, num_classes, "class priors")?;
    let file = || path.display().to_string();
    if let Some(index) = priors.iter().position(|&p| p < 0.0) {
        return Err(MaciError::File {
            file: file(),
            expected: "non-negative class priors".into(),
            found: format!("{} at index {index}", priors[index]),
        });
    }
    let sum: f64 = priors.iter().sum();
    if (sum - 1.0).abs() > PRIOR_SUM_TOLERANCE {
        return Err(MaciError::File {
            file: file(),
            expected: "class priors summing to 1".into(),
            found: format!("sum {sum}"),
        });
    }
    Ok(priors.into_iter().map(|p| p as f32).collect())
}

/// Reads a reference prototype file: a 1-D float64 (or float32) array of length
/// `d_l + d_a + d_v`, finite.
pub fn read_reference_prototype(path: &Path, feature_len: usize) -> Result<Vec<f32>, MaciError> {
    let values = read_vector(path, feature_len, "class prototype [text ; audio ; vision]")?;
    Ok(values.into_iter().map(|v| v as f32).collect())
}

/// Reads a 1-D float array of an exact length, with finite values, as `f64`.
fn read_vector(path: &Path, len: usize, what: &str) -> Result<Vec<f64>, MaciError> {
    let array = cider_data::npy::from_path(path)?;
    let file = path.display().to_string();
    let expected = || format!("{what}: a 1-D float32 or float64 array of length {len}");
    let values = match array.data() {
        ArrayData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        ArrayData::F64(v) => v.clone(),
        _ => {
            return Err(MaciError::File {
                file,
                expected: expected(),
                found: describe(&array),
            });
        }
    };
    if array.shape() != [len] {
        return Err(MaciError::File {
            file,
            expected: expected(),
            found: describe(&array),
        });
    }
    if let Some(index) = values.iter().position(|v: &f64| !v.is_finite()) {
        return Err(MaciError::NonFinite {
            what: file,
            index,
            value: values[index],
        });
    }
    Ok(values)
}

/// `"float64 array of shape [3]"`.
fn describe(array: &NumpyArray) -> String {
    format!(
        "{} array of shape {:?}",
        array.dtype().name(),
        array.shape()
    )
}

/// One modality's features pooled per sample: `[N, d]` plus which samples have a valid position.
struct PooledModality {
    name: &'static str,
    d: usize,
    /// `[N, d]`, row-major; rows of samples without a valid position are 0 and unused.
    values: Vec<f64>,
    /// `[N]`: the sample had at least one valid position.
    valid: Vec<bool>,
}

impl PooledModality {
    /// Mean of the valid pooled rows of one class, `[d]`.
    fn class_mean(
        &self,
        split: &Split,
        labels: &[u8],
        class: usize,
    ) -> Result<Vec<f32>, MaciError> {
        let mut sum = vec![0.0f64; self.d];
        let mut count = 0usize;
        for (i, &label) in labels.iter().enumerate() {
            if usize::from(label) != class || !self.valid[i] {
                continue;
            }
            count += 1;
            for (s, &x) in sum
                .iter_mut()
                .zip(&self.values[i * self.d..(i + 1) * self.d])
            {
                *s += x;
            }
        }
        if count == 0 {
            return Err(MaciError::EmptyModality {
                split: split.name.clone(),
                class,
                modality: self.name,
            });
        }
        Ok(sum.iter().map(|&s| (s / count as f64) as f32).collect())
    }
}

/// The audio or vision frames of a split with their valid lengths.
struct Modality<'a> {
    name: &'static str,
    /// `[N, T, d]`.
    frames: &'a [f32],
    t: usize,
    d: usize,
    /// `[N]`, each `≤ T`.
    lengths: &'a [usize],
}

impl Modality<'_> {
    /// Averages each sample's first `length` frames, `[N, d]`.
    fn pooled(&self, split: &Split) -> Result<PooledModality, MaciError> {
        let n = split.n;
        check_len(
            split,
            self.name,
            self.frames.len(),
            frames_len(n, self.t, self.d),
        )?;
        check_len(
            split,
            &format!("{} lengths", self.name),
            self.lengths.len(),
            n,
        )?;
        let mut values = vec![0.0f64; n * self.d];
        let mut valid = vec![false; n];
        for (i, &len) in self.lengths.iter().enumerate() {
            if len > self.t {
                return Err(MaciError::Invalid {
                    what: format!("split `{}` {} lengths", split.name, self.name),
                    message: format!("sample {i} has length {len} > T = {}", self.t),
                });
            }
            let positions = (0..len).map(|j| (i * self.t + j) * self.d);
            valid[i] = average_rows(
                self.frames,
                positions,
                self.d,
                &mut values[i * self.d..(i + 1) * self.d],
            );
        }
        Ok(PooledModality {
            name: self.name,
            d: self.d,
            values,
            valid,
        })
    }
}

/// The text part pooled per sample, `[N, d_l]`.
fn pooled_text(split: &Split, text: TextFeatures<'_>) -> Result<PooledModality, MaciError> {
    let n = split.n;
    match text {
        TextFeatures::Pooled { values, d_l } => {
            check_len(
                split,
                "pooled text [N, d_l]",
                values.len(),
                frames_len(n, 1, d_l),
            )?;
            if d_l == 0 {
                return Err(MaciError::Invalid {
                    what: "pooled text".into(),
                    message: "d_l must be positive".into(),
                });
            }
            Ok(PooledModality {
                name: "text",
                d: d_l,
                values: values.iter().map(|&v| f64::from(v)).collect(),
                valid: vec![true; n],
            })
        }
        TextFeatures::FromSplit => {
            let features = split
                .text_features
                .as_deref()
                .ok_or_else(|| MaciError::Invalid {
                    what: format!("text of split `{}`", split.name),
                    message: "the split has no precomputed `text` features; supply pooled text"
                        .into(),
                })?;
            let (t_l, d_l) = (split.dims.t_l, split.dims.d_l);
            check_len(
                split,
                "text mask [N, T_l]",
                split.text_mask.len(),
                frames_len(n, t_l, 1),
            )?;
            check_len(
                split,
                "text features [N, T_l, d_l]",
                features.len(),
                frames_len(n, t_l, d_l),
            )?;
            let mut values = vec![0.0f64; n * d_l];
            let mut valid = vec![false; n];
            for i in 0..n {
                let mask = &split.text_mask[i * t_l..(i + 1) * t_l];
                let positions = (0..t_l)
                    .filter(|&j| mask[j] != 0)
                    .map(|j| (i * t_l + j) * d_l);
                valid[i] = average_rows(
                    features,
                    positions,
                    d_l,
                    &mut values[i * d_l..(i + 1) * d_l],
                );
            }
            Ok(PooledModality {
                name: "text",
                d: d_l,
                values,
                valid,
            })
        }
    }
}

/// Writes into `out` (`[d]`) the mean of the rows `data[start..start + d]` for each start;
/// returns false (leaving `out` at 0) when there is none.
fn average_rows(
    data: &[f32],
    starts: impl Iterator<Item = usize>,
    d: usize,
    out: &mut [f64],
) -> bool {
    let mut count = 0usize;
    for start in starts {
        count += 1;
        for (o, &x) in out.iter_mut().zip(&data[start..start + d]) {
            *o += f64::from(x);
        }
    }
    if count > 0 {
        out.iter_mut().for_each(|o| *o /= count as f64);
    }
    count > 0
}

/// `N·T·d`, saturating so that an impossible size never matches a real length.
fn frames_len(n: usize, t: usize, d: usize) -> usize {
    n.saturating_mul(t).saturating_mul(d)
}

/// Checks one array length of a split.
fn check_len(split: &Split, what: &str, found: usize, expected: usize) -> Result<(), MaciError> {
    if found == expected {
        Ok(())
    } else {
        Err(MaciError::Length {
            what: format!("split `{}` {what}", split.name),
            expected,
            found,
        })
    }
}

/// Checks that every value is finite.
fn check_finite(what: &str, values: &[f32]) -> Result<(), MaciError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(MaciError::NonFinite {
            what: what.into(),
            index,
            value: f64::from(values[index]),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use cider_data::dataset::Dims;

    use super::*;

    /// Four samples, `T_l = 3`, `d_l = 2`, `T_a = 2`, `d_a = 1`, `T_v = 2`, `d_v = 2`; 3-way
    /// labels [0, 2, 1, 2]. Per-sample averages over valid positions:
    ///
    /// | sample | label | text (mask)          | audio (len)   | vision (len)        |
    /// |--------|-------|----------------------|---------------|---------------------|
    /// | 0      | 0     | (1,2),(3,4) → (2,3)  | 1,3 → 2       | (1,1),(3,5) → (2,3) |
    /// | 1      | 2     | all 3 → (3,4)        | 4 (len 1) → 4 | (2,0) (len 1)       |
    /// | 2      | 1     | (5,7) → (5,7)        | 2,6 → 4       | (0,4),(2,2) → (1,3) |
    /// | 3      | 2     | (2,2),(4,6) → (3,4)  | len 0: none   | (6,6),(2,2) → (4,4) |
    fn tiny_split() -> Split {
        let dims = Dims {
            d_l: 2,
            t_l: 3,
            t_a: 2,
            t_v: 2,
            d_a: 1,
            d_v: 2,
        };
        let n = 4;
        let text_mask = vec![1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0];
        let text_features = vec![
            1.0, 2.0, 3.0, 4.0, 100.0, 100.0, // sample 0
            0.0, 0.0, 3.0, 3.0, 6.0, 9.0, // sample 1
            5.0, 7.0, 9.0, 9.0, 9.0, 9.0, // sample 2
            2.0, 2.0, 4.0, 6.0, -50.0, 0.0, // sample 3
        ];
        Split {
            name: "train".into(),
            n,
            dims,
            text_ids: vec![0; n * dims.t_l],
            text_segment: vec![0; n * dims.t_l],
            text_len: vec![2, 3, 1, 2],
            text_mask,
            audio: vec![1.0, 3.0, 4.0, 100.0, 2.0, 6.0, 8.0, 9.0],
            audio_len: vec![2, 1, 2, 0],
            vision: vec![
                1.0, 1.0, 3.0, 5.0, // sample 0
                2.0, 0.0, 9.0, 9.0, // sample 1
                0.0, 4.0, 2.0, 2.0, // sample 2
                6.0, 6.0, 2.0, 2.0, // sample 3
            ],
            vision_len: vec![2, 1, 2, 2],
            score: vec![-1.0, 1.0, 0.0, 2.0],
            label3: vec![0, 2, 1, 2],
            label7: vec![2, 4, 3, 5],
            raw_text: vec![String::new(); n],
            id: vec![String::new(); n],
            text_features: Some(text_features),
            audio_nonfinite: 0,
            audio_sum: 0.0,
            vision_sum: 0.0,
        }
    }

    #[test]
    fn prototypes_and_priors_by_hand() {
        let p =
            Prototypes::from_split(&tiny_split(), Task::Binary, TextFeatures::FromSplit).unwrap();
        // class 0 = sample 0; class 1 = sample 2; class 2 = samples 1 and 3 (audio of sample 3
        // has no valid frame, so class 2's audio is sample 1's alone).
        assert_eq!(p.per_class[0], vec![2.0, 3.0, 2.0, 2.0, 3.0]);
        assert_eq!(p.per_class[1], vec![5.0, 7.0, 4.0, 1.0, 3.0]);
        assert_eq!(p.per_class[2], vec![3.0, 4.0, 4.0, 3.0, 2.0]);
        assert_eq!(p.priors, vec![0.25, 0.25, 0.5]);
        assert_eq!((p.num_classes(), p.feature_len()), (3, 5));
    }

    #[test]
    fn caller_pooled_text_replaces_split_features() {
        let mut split = tiny_split();
        split.text_features = None;
        let missing = Prototypes::from_split(&split, Task::Binary, TextFeatures::FromSplit);
        assert!(matches!(missing, Err(MaciError::Invalid { .. })));
        let pooled = [1.0, 2.0, 3.0, 5.0];
        let text = TextFeatures::Pooled {
            values: &pooled,
            d_l: 1,
        };
        let p = Prototypes::from_split(&split, Task::Binary, text).unwrap();
        // text: class 0 → 1, class 1 → 3, class 2 → (2 + 5) / 2 = 3.5
        assert_eq!(p.per_class[0], vec![1.0, 2.0, 2.0, 3.0]);
        assert_eq!(p.per_class[1], vec![3.0, 4.0, 1.0, 3.0]);
        assert_eq!(p.per_class[2], vec![3.5, 4.0, 3.0, 2.0]);
        let short = TextFeatures::Pooled {
            values: &pooled[..3],
            d_l: 1,
        };
        assert!(matches!(
            Prototypes::from_split(&split, Task::Binary, short),
            Err(MaciError::Length { .. })
        ));
    }

    #[test]
    fn test_time_prototypes_clean_and_parity() {
        let train =
            Prototypes::from_split(&tiny_split(), Task::Binary, TextFeatures::FromSplit).unwrap();
        // Clean: mean of the training rows [2,3,2,2,3], [5,7,4,1,3], [3,4,4,3,2].
        let clean = TestPrototypes::Clean
            .build(&train, &tiny_split(), Task::Binary, TextFeatures::FromSplit)
            .unwrap();
        let mean = [10.0 / 3.0, 14.0 / 3.0, 10.0 / 3.0, 2.0, 8.0 / 3.0];
        for row in &clean.per_class {
            for (&got, &want) in row.iter().zip(&mean) {
                assert!((f64::from(got) - want).abs() < 1e-6, "{got} vs {want}");
            }
        }
        assert_eq!(clean.priors, vec![1.0 / 3.0; 3]);
        // Parity: an evaluated split whose labels are permuted to [2, 0, 1, 1]:
        // class 0 = sample 1 → [3,4,4,2,0]; class 1 = samples 2, 3 → text (4, 5.5), audio 4
        // (sample 3 has none), vision (2.5, 3.5); class 2 = sample 0 → [2,3,2,2,3].
        // Mean: text ((3+4+2)/3, (4+5.5+3)/3) = (3, 25/6), audio 10/3, vision (6.5/3, 6.5/3).
        let mut test = tiny_split();
        test.name = "test".into();
        test.label3 = vec![2, 0, 1, 1];
        let parity = TestPrototypes::Parity
            .build(&train, &test, Task::Binary, TextFeatures::FromSplit)
            .unwrap();
        let mean = [3.0, 25.0 / 6.0, 10.0 / 3.0, 6.5 / 3.0, 6.5 / 3.0];
        for row in &parity.per_class {
            for (&got, &want) in row.iter().zip(&mean) {
                assert!((f64::from(got) - want).abs() < 1e-6, "{got} vs {want}");
            }
        }
        assert_eq!(parity.priors, vec![1.0 / 3.0; 3]);
    }

    #[test]
    fn bad_splits_are_typed_errors() {
        let build =
            |split: &Split| Prototypes::from_split(split, Task::Binary, TextFeatures::FromSplit);
        let mut no_class_1 = tiny_split();
        no_class_1.label3 = vec![0, 2, 0, 2];
        assert!(matches!(
            build(&no_class_1),
            Err(MaciError::EmptyClass { class: 1, .. })
        ));
        let mut no_audio = tiny_split();
        no_audio.audio_len = vec![2, 0, 2, 0];
        assert!(matches!(
            build(&no_audio),
            Err(MaciError::EmptyModality {
                class: 2,
                modality: "audio",
                ..
            })
        ));
        let mut too_long = tiny_split();
        too_long.vision_len[1] = 3;
        assert!(matches!(build(&too_long), Err(MaciError::Invalid { .. })));
        let mut truncated = tiny_split();
        truncated.vision.pop();
        assert!(matches!(build(&truncated), Err(MaciError::Length { .. })));
        let mut bad_label = tiny_split();
        bad_label.label3[2] = 3;
        assert!(matches!(
            build(&bad_label),
            Err(MaciError::Label { index: 2, .. })
        ));
        let mut ragged_text = tiny_split();
        if let Some(features) = ragged_text.text_features.as_mut() {
            features.pop();
        }
        assert!(matches!(build(&ragged_text), Err(MaciError::Length { .. })));
    }

    /// A fresh scratch folder under the system temp dir for one test.
    fn scratch(test: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("cider-maci-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(dir: &Path, name: &str, shape: Vec<usize>, data: ArrayData) -> std::path::PathBuf {
        let path = dir.join(name);
        cider_data::npy::to_path(&NumpyArray::new(shape, data).unwrap(), &path).unwrap();
        path
    }

    #[test]
    fn reference_files_round_trip_and_errors() {
        let dir = scratch("reference-files");
        let rows = [
            [2.0, 3.0, 2.0, 2.0, 3.0],
            [5.0, 7.0, 4.0, 1.0, 3.0],
            [3.0, 4.0, 4.0, 3.0, 2.0],
        ];
        let class_files: Vec<_> = rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                write(
                    &dir,
                    &format!("train_{i}.npy"),
                    vec![5],
                    ArrayData::F64(row.to_vec()),
                )
            })
            .collect();
        let priors = write(
            &dir,
            "priors.npy",
            vec![3],
            ArrayData::F32(vec![0.25, 0.25, 0.5]),
        );
        let read = Prototypes::from_reference_files(&class_files, &priors, 5).unwrap();
        let computed =
            Prototypes::from_split(&tiny_split(), Task::Binary, TextFeatures::FromSplit).unwrap();
        assert_eq!(read, computed);

        let wrong_len = Prototypes::from_reference_files(&class_files, &priors, 6);
        assert!(matches!(wrong_len, Err(MaciError::File { .. })));
        assert!(matches!(
            read_reference_priors(&priors, 4),
            Err(MaciError::File { .. })
        ));
        let two_d = write(
            &dir,
            "two_d.npy",
            vec![1, 3],
            ArrayData::F64(vec![0.25, 0.25, 0.5]),
        );
        assert!(matches!(
            read_reference_priors(&two_d, 3),
            Err(MaciError::File { .. })
        ));
        let ints = write(&dir, "ints.npy", vec![3], ArrayData::I64(vec![0, 1, 0]));
        assert!(matches!(
            read_reference_priors(&ints, 3),
            Err(MaciError::File { .. })
        ));
        let unnormalised = write(
            &dir,
            "sum.npy",
            vec![3],
            ArrayData::F64(vec![0.5, 0.5, 0.5]),
        );
        assert!(matches!(
            read_reference_priors(&unnormalised, 3),
            Err(MaciError::File { .. })
        ));
        let nan = write(
            &dir,
            "nan.npy",
            vec![2],
            ArrayData::F64(vec![1.0, f64::NAN]),
        );
        assert!(matches!(
            read_reference_prototype(&nan, 2),
            Err(MaciError::NonFinite { index: 1, .. })
        ));
        let absent = read_reference_prototype(&dir.join("absent.npy"), 5);
        assert!(matches!(absent, Err(MaciError::Data(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn new_checks_shapes() {
        assert!(Prototypes::new(vec![vec![1.0, 2.0], vec![3.0, 4.0]], vec![0.5, 0.5]).is_ok());
        assert!(matches!(
            Prototypes::new(vec![vec![1.0, 2.0], vec![3.0]], vec![0.5, 0.5]),
            Err(MaciError::Length { .. })
        ));
        assert!(matches!(
            Prototypes::new(vec![vec![1.0], vec![3.0]], vec![1.0]),
            Err(MaciError::Length { .. })
        ));
        assert!(matches!(
            Prototypes::new(vec![vec![f32::NAN]], vec![1.0]),
            Err(MaciError::NonFinite { .. })
        ));
        assert!(matches!(
            Prototypes::new(vec![], vec![]),
            Err(MaciError::Invalid { .. })
        ));
    }

    /// The row that differs from the others is named, with the others' length as expected.
    #[test]
    fn a_short_first_prototype_is_the_one_named() {
        let rows = vec![vec![0.1; 5], vec![0.2; 793], vec![0.3; 793]];
        let error = Prototypes::new(rows, vec![0.3, 0.3, 0.4]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "prototype of class 0: expected 793 values, found 5"
        );
    }
}
