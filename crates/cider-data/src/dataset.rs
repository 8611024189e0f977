//! MMSA-layout datasets (docs/method.md §2): splits, derived lengths and masks, and labels.
//!
//! A file holds a dict `{"train", "valid", "test"}`, each a dict of arrays (docs/method.md §2.2). We keep
//! every array flat and in C order next to its dimensions, validate all of them on load, and
//! derive the 3-way and 7-way labels from the score.

use crate::error::DataError;
use crate::value::{ArrayData, NumpyArray, PyValue};

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

/// How far into a file we look for joblib's array wrapper class.
const JOBLIB_SNIFF_BYTES: usize = 1 << 20;

/// True for joblib dumps: compressed ones by their magic bytes (`ZF`, zlib, gzip), plain ones by
/// the `NumpyArrayWrapper` class named near the start of the pickle stream.
fn looks_like_joblib(bytes: &[u8]) -> bool {
    let compressed =
        bytes.starts_with(b"ZF") || bytes.starts_with(&[0x78]) || bytes.starts_with(&[0x1f, 0x8b]);
    let head = &bytes[..bytes.len().min(JOBLIB_SNIFF_BYTES)];
    let needle = b"NumpyArrayWrapper";
    compressed || head.windows(needle.len()).any(|w| w == needle)
}

/// Largest text id we accept (BERT vocabularies are far smaller; guards the `u32` cast).
const MAX_TOKEN_ID: f64 = 1.0e7;

impl Dataset {
    /// Reads an MMSA pickle (`aligned_50.pkl`, `unaligned_50.pkl`) or a CIDer joblib dump (OOD
    /// files), recognised by content, and validates it.
    pub fn from_path(path: &std::path::Path) -> Result<Self, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let source = path.display().to_string();
        let value = if looks_like_joblib(&bytes) {
            crate::joblib::from_bytes(&bytes, &source)?
        } else {
            crate::pickle::from_bytes(&bytes, &source)?
        };
        drop(bytes);
        Self::from_pyvalue(value, &source)
    }

    /// Builds a dataset from an unpickled MMSA dict `{"train", "valid", "test"}` (docs/method.md §2.2).
    ///
    /// Unaligned files are recognised by their `audio_lengths` key. `-inf` audio values become 0
    /// (counted in [`Split::audio_nonfinite`]); any other non-finite feature is an error.
    pub fn from_pyvalue(value: PyValue, source: &str) -> Result<Self, DataError> {
        let PyValue::Dict(items) = value else {
            return Err(DataError::WrongType {
                file: source.to_string(),
                key: "<top level>".into(),
                expected: "a dict with keys train, valid, test".into(),
                found: value.type_name().into(),
            });
        };
        let mut splits: Vec<Option<PyValue>> = vec![None, None, None];
        for (key, split) in items {
            if let PyValue::Str(name) = &key
                && let Some(slot) = SPLIT_NAMES.iter().position(|s| s == name)
            {
                splits[slot] = Some(split);
            }
        }
        let mut built = Vec::with_capacity(3);
        for (slot, name) in splits.into_iter().zip(SPLIT_NAMES) {
            let split = slot.ok_or_else(|| DataError::MissingKey {
                file: source.to_string(),
                key: name.into(),
                expected: "a split dict".into(),
            })?;
            built.push(read_split(split, name, source)?);
        }
        let test = built.pop().expect("three splits");
        let valid = built.pop().expect("three splits");
        let train = built.pop().expect("three splits");
        for other in [&valid, &test] {
            if other.split.dims != train.split.dims || other.aligned_source != train.aligned_source
            {
                let d = other.split.dims;
                return Err(DataError::Shape {
                    file: source.to_string(),
                    key: format!("{}/audio, vision, text_bert", other.split.name),
                    expected: format!(
                        "the train split's layout {:?}, {}",
                        train.split.dims,
                        if train.aligned_source {
                            "aligned"
                        } else {
                            "unaligned"
                        }
                    ),
                    found: vec![d.t_l, d.t_a, d.t_v, d.d_a, d.d_v],
                });
            }
        }
        let aligned = train.aligned_source;
        Ok(Dataset {
            source: source.to_string(),
            aligned,
            dims: train.split.dims,
            train: train.split,
            valid: valid.split,
            test: test.split,
        })
    }

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

    /// The dataset as an MMSA-layout Python dict, ready for `pickle_write` (docs/method.md §2.2): `text_bert`
    /// float64 `[N, 3, T_l]`, `audio`/`vision` float32, `audio_lengths`/`vision_lengths` (unaligned
    /// only), `regression_labels` float32, `classification_labels` float64, `raw_text`, `id`, and
    /// `text` when present.
    pub fn to_pyvalue(&self) -> Result<PyValue, DataError> {
        let mut top = Vec::with_capacity(3);
        for split in self.splits() {
            top.push((
                PyValue::Str(split.name.clone()),
                split_to_pyvalue(split, self.aligned)?,
            ));
        }
        Ok(PyValue::Dict(top))
    }
}

/// A split being read, with whether its file marked it as aligned.
struct ReadSplit {
    split: Split,
    aligned_source: bool,
}

/// Field access with errors that name the file and `split/key`.
struct Fields<'a> {
    items: Vec<(PyValue, PyValue)>,
    source: &'a str,
    split: &'a str,
}

impl<'a> Fields<'a> {
    fn key(&self, key: &str) -> String {
        format!("{}/{}", self.split, key)
    }

    fn take(&mut self, key: &str) -> Option<PyValue> {
        let pos = self
            .items
            .iter()
            .position(|(k, _)| matches!(k, PyValue::Str(s) if s == key))?;
        Some(self.items.swap_remove(pos).1)
    }

    fn array(&mut self, key: &str, expected: &str) -> Result<NumpyArray, DataError> {
        match self.take(key) {
            Some(value) => self.as_array(key, value, expected),
            None => Err(DataError::MissingKey {
                file: self.source.to_string(),
                key: self.key(key),
                expected: expected.to_string(),
            }),
        }
    }

    fn optional_array(
        &mut self,
        key: &str,
        expected: &str,
    ) -> Result<Option<NumpyArray>, DataError> {
        match self.take(key) {
            Some(PyValue::None) | None => Ok(None),
            Some(value) => self.as_array(key, value, expected).map(Some),
        }
    }

    /// A 1-D numeric array or a list/tuple of numbers (MMSA stores lengths as lists).
    fn optional_numbers(&mut self, key: &str) -> Result<Option<Vec<f64>>, DataError> {
        let expected = "a 1-D integer array or list of ints";
        let items = match self.take(key) {
            None | Some(PyValue::None) => return Ok(None),
            Some(PyValue::List(items)) | Some(PyValue::Tuple(items)) => items,
            Some(value) => {
                let array = self.as_array(key, value, expected)?;
                self.check_shape(key, &array, &[None])?;
                return Ok(array.to_f64());
            }
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                PyValue::Int(x) => Ok(*x as f64),
                PyValue::Float(x) => Ok(*x),
                PyValue::Bool(b) => Ok(f64::from(u8::from(*b))),
                other => Err(self.value_error(
                    key,
                    i,
                    format!("expected a number, found {}", other.type_name()),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn as_array(&self, key: &str, value: PyValue, expected: &str) -> Result<NumpyArray, DataError> {
        match value {
            PyValue::Array(a) if a.dtype() != crate::value::DType::Object => Ok(a),
            other => Err(DataError::WrongType {
                file: self.source.to_string(),
                key: self.key(key),
                expected: expected.to_string(),
                found: match &other {
                    PyValue::Array(a) => format!("numpy array of {}", a.dtype().name()),
                    v => v.type_name().to_string(),
                },
            }),
        }
    }

    fn check_shape(
        &self,
        key: &str,
        array: &NumpyArray,
        want: &[Option<usize>],
    ) -> Result<(), DataError> {
        let shape = array.shape();
        let fits = shape.len() == want.len()
            && shape
                .iter()
                .zip(want)
                .all(|(&d, w)| w.is_none_or(|w| w == d));
        if fits {
            return Ok(());
        }
        let expected = want
            .iter()
            .map(|w| w.map_or_else(|| "_".to_string(), |d| d.to_string()))
            .collect::<Vec<_>>()
            .join(", ");
        Err(DataError::Shape {
            file: self.source.to_string(),
            key: self.key(key),
            expected: format!("[{expected}]"),
            found: shape.to_vec(),
        })
    }

    fn value_error(&self, key: &str, index: usize, message: String) -> DataError {
        DataError::Value {
            file: self.source.to_string(),
            key: self.key(key),
            index,
            message,
        }
    }

    /// Strings from an object array or a list; empty strings when the key is absent.
    fn strings(&mut self, key: &str, n: usize) -> Result<Vec<String>, DataError> {
        let items = match self.take(key) {
            None | Some(PyValue::None) => return Ok(vec![String::new(); n]),
            Some(PyValue::Array(a)) => match a.into_parts().1 {
                ArrayData::Object(items) => items,
                other => {
                    return Err(DataError::WrongType {
                        file: self.source.to_string(),
                        key: self.key(key),
                        expected: "an object array of str".into(),
                        found: format!("numpy array of {}", other.dtype().name()),
                    });
                }
            },
            Some(PyValue::List(items)) | Some(PyValue::Tuple(items)) => items,
            Some(other) => {
                return Err(DataError::WrongType {
                    file: self.source.to_string(),
                    key: self.key(key),
                    expected: "a list or object array of str".into(),
                    found: other.type_name().into(),
                });
            }
        };
        if items.len() != n {
            return Err(DataError::Shape {
                file: self.source.to_string(),
                key: self.key(key),
                expected: format!("[{n}]"),
                found: vec![items.len()],
            });
        }
        items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                PyValue::Str(s) => Ok(s),
                PyValue::Bytes(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
                other => Err(self.value_error(
                    key,
                    i,
                    format!("expected str, found {}", other.type_name()),
                )),
            })
            .collect()
    }
}

/// The elements of a numeric array as `f32`, without a copy when they already are.
fn into_f32(array: NumpyArray) -> Vec<f32> {
    match array.into_parts().1 {
        ArrayData::F32(v) => v,
        other => NumpyArray::new(vec![other.len()], other)
            .ok()
            .and_then(|a| a.to_f32())
            .unwrap_or_default(),
    }
}

/// Integer lengths `[N]` in `0..=max`, from integral numbers.
fn lengths(
    fields: &Fields,
    key: &str,
    values: &[f64],
    n: usize,
    max: usize,
) -> Result<Vec<usize>, DataError> {
    if values.len() != n {
        return Err(DataError::Shape {
            file: fields.source.to_string(),
            key: fields.key(key),
            expected: format!("[{n}]"),
            found: vec![values.len()],
        });
    }
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v.fract() == 0.0 && (0.0..=max as f64).contains(&v) {
                Ok(v as usize)
            } else {
                Err(fields.value_error(
                    key,
                    i,
                    format!("length {v} is not an integer in 0..={max}"),
                ))
            }
        })
        .collect()
}

fn read_split(value: PyValue, name: &str, source: &str) -> Result<ReadSplit, DataError> {
    let PyValue::Dict(items) = value else {
        return Err(DataError::WrongType {
            file: source.to_string(),
            key: name.to_string(),
            expected: "a dict of arrays".into(),
            found: value.type_name().into(),
        });
    };
    let mut f = Fields {
        items,
        source,
        split: name,
    };

    let text_bert = f.array("text_bert", "a numeric array [N, 3, T_l]")?;
    f.check_shape("text_bert", &text_bert, &[None, Some(3), None])?;
    let (n, t_l) = (text_bert.shape()[0], text_bert.shape()[2]);
    if n == 0 {
        return Err(DataError::EmptySplit {
            file: source.into(),
            split: name.into(),
        });
    }
    let audio = f.array("audio", "a float array [N, T_a, d_a]")?;
    f.check_shape("audio", &audio, &[Some(n), None, None])?;
    let vision = f.array("vision", "a float array [N, T_v, d_v]")?;
    f.check_shape("vision", &vision, &[Some(n), None, None])?;
    let (t_a, d_a) = (audio.shape()[1], audio.shape()[2]);
    let (t_v, d_v) = (vision.shape()[1], vision.shape()[2]);

    let TextRows {
        ids: text_ids,
        mask: text_mask,
        segment: text_segment,
        text_len,
    } = read_text_bert(&f, &text_bert, n, t_l)?;
    drop(text_bert);

    let audio_lengths = f.optional_numbers("audio_lengths")?;
    let vision_lengths = f.optional_numbers("vision_lengths")?;
    let aligned = audio_lengths.is_none() && vision_lengths.is_none();
    let (audio_len, vision_len) = match (audio_lengths, vision_lengths) {
        (Some(a), Some(v)) => (
            lengths(&f, "audio_lengths", &a, n, t_a)?,
            lengths(&f, "vision_lengths", &v, n, t_v)?,
        ),
        (None, None) => {
            if t_a != t_l || t_v != t_l {
                return Err(DataError::Shape {
                    file: source.into(),
                    key: f.key("audio, vision"),
                    expected: format!(
                        "T_a = T_v = T_l = {t_l} for an aligned file (or audio_lengths and vision_lengths for an unaligned one)"
                    ),
                    found: vec![t_a, t_v],
                });
            }
            (text_len.clone(), text_len.clone())
        }
        (a, _) => {
            let missing = if a.is_some() {
                "vision_lengths"
            } else {
                "audio_lengths"
            };
            return Err(DataError::MissingKey {
                file: source.into(),
                key: f.key(missing),
                expected: "both audio_lengths and vision_lengths in an unaligned file".into(),
            });
        }
    };

    let mut audio = into_f32(audio);
    let mut audio_nonfinite = 0;
    let mut audio_sum = 0.0f64;
    for (i, x) in audio.iter_mut().enumerate() {
        if x.is_finite() {
            audio_sum += f64::from(*x);
        } else if *x == f32::NEG_INFINITY {
            *x = 0.0;
            audio_nonfinite += 1;
        } else {
            return Err(f.value_error(
                "audio",
                i,
                format!("{x} is not a finite feature (only -inf is replaced by 0)"),
            ));
        }
    }
    let vision = into_f32(vision);
    let mut vision_sum = 0.0f64;
    for (i, &x) in vision.iter().enumerate() {
        if !x.is_finite() {
            return Err(f.value_error("vision", i, format!("{x} is not a finite feature")));
        }
        vision_sum += f64::from(x);
    }

    let scores = f.array(
        "regression_labels",
        "a float array [N] of scores in [-3, 3]",
    )?;
    f.check_shape("regression_labels", &scores, &[Some(n)])?;
    let score = into_f32(scores);
    for (i, &s) in score.iter().enumerate() {
        if !(-3.0..=3.0).contains(&s) {
            return Err(f.value_error(
                "regression_labels",
                i,
                format!("score {s} is outside [-3, 3]"),
            ));
        }
    }
    let label3: Vec<u8> = score.iter().map(|&s| three_way_label(s)).collect();
    let label7: Vec<u8> = score.iter().map(|&s| seven_way_label(s)).collect();
    if let Some(given) =
        f.optional_array("classification_labels", "an integer array [N] in {0, 1, 2}")?
    {
        f.check_shape("classification_labels", &given, &[Some(n)])?;
        for (i, (&g, &derived)) in given
            .to_f64()
            .unwrap_or_default()
            .iter()
            .zip(&label3)
            .enumerate()
        {
            if g != f64::from(derived) {
                return Err(f.value_error(
                    "classification_labels",
                    i,
                    format!("label {g} disagrees with score {} (expected {derived}: 0 negative, 1 neutral, 2 positive)", score[i]),
                ));
            }
        }
    }

    let text_features = match f.optional_array("text", "a float array [N, T_l, d_l]")? {
        Some(t) => {
            f.check_shape("text", &t, &[Some(n), Some(t_l), None])?;
            let d_l = t.shape()[2];
            let values = into_f32(t);
            if let Some(i) = values.iter().position(|x| !x.is_finite()) {
                return Err(f.value_error(
                    "text",
                    i,
                    format!("{} is not a finite feature", values[i]),
                ));
            }
            Some((d_l, values))
        }
        None => None,
    };
    let raw_text = f.strings("raw_text", n)?;
    let id = f.strings("id", n)?;

    let d_l = text_features.as_ref().map_or(768, |(d, _)| *d);
    let split = Split {
        name: name.to_string(),
        n,
        dims: Dims {
            d_l,
            t_l,
            t_a,
            t_v,
            d_a,
            d_v,
        },
        text_ids,
        text_mask,
        text_segment,
        audio,
        vision,
        text_len,
        audio_len,
        vision_len,
        score,
        label3,
        label7,
        raw_text,
        id,
        text_features: text_features.map(|(_, v)| v),
        audio_nonfinite,
        audio_sum,
        vision_sum,
    };
    Ok(ReadSplit {
        split,
        aligned_source: aligned,
    })
}

/// The rows of `text_bert`, each `[N, T_l]`, and the text lengths `[N]`.
struct TextRows {
    ids: Vec<u32>,
    mask: Vec<u8>,
    segment: Vec<u8>,
    text_len: Vec<usize>,
}

/// Splits `text_bert [N, 3, T_l]` into ids, attention mask and segments, and validates them: ids
/// are integers, the mask is a 0/1 prefix covering at least `[CLS]` and `[SEP]`.
fn read_text_bert(
    f: &Fields,
    text_bert: &NumpyArray,
    n: usize,
    t_l: usize,
) -> Result<TextRows, DataError> {
    let values = text_bert.to_f64().unwrap_or_default();
    let mut ids = Vec::with_capacity(n * t_l);
    let mut mask = Vec::with_capacity(n * t_l);
    let mut segment = Vec::with_capacity(n * t_l);
    let mut text_len = Vec::with_capacity(n);
    for i in 0..n {
        let row = |r: usize| &values[(i * 3 + r) * t_l..(i * 3 + r + 1) * t_l];
        for &v in row(0) {
            if v.fract() != 0.0 || !(0.0..MAX_TOKEN_ID).contains(&v) {
                return Err(f.value_error(
                    "text_bert",
                    i,
                    format!("token id {v} is not a non-negative integer"),
                ));
            }
            ids.push(v as u32);
        }
        let mut len = 0;
        for (j, &v) in row(1).iter().enumerate() {
            if v != 0.0 && v != 1.0 {
                return Err(f.value_error(
                    "text_bert",
                    i,
                    format!("attention mask value {v} is not 0 or 1"),
                ));
            }
            if v == 1.0 {
                if len != j {
                    return Err(f.value_error(
                        "text_bert",
                        i,
                        "attention mask is not a prefix of ones".into(),
                    ));
                }
                len += 1;
            }
            mask.push(v as u8);
        }
        if len < 2 {
            return Err(f.value_error(
                "text_bert",
                i,
                format!("text length {len}: expected at least [CLS] and [SEP]"),
            ));
        }
        text_len.push(len);
        for &v in row(2) {
            if v.fract() != 0.0 || !(0.0..=255.0).contains(&v) {
                return Err(f.value_error(
                    "text_bert",
                    i,
                    format!("segment id {v} is not a small non-negative integer"),
                ));
            }
            segment.push(v as u8);
        }
    }
    Ok(TextRows {
        ids,
        mask,
        segment,
        text_len,
    })
}

fn split_to_pyvalue(split: &Split, aligned: bool) -> Result<PyValue, DataError> {
    let Dims {
        d_l,
        t_l,
        t_a,
        t_v,
        d_a,
        d_v,
    } = split.dims;
    let n = split.n;
    let mut text_bert = Vec::with_capacity(n * 3 * t_l);
    for i in 0..n {
        let row = i * t_l..(i + 1) * t_l;
        text_bert.extend(split.text_ids[row.clone()].iter().map(|&x| f64::from(x)));
        text_bert.extend(split.text_mask[row.clone()].iter().map(|&x| f64::from(x)));
        text_bert.extend(split.text_segment[row].iter().map(|&x| f64::from(x)));
    }
    let array =
        |shape: Vec<usize>, data: ArrayData| NumpyArray::new(shape, data).map(PyValue::Array);
    let strings = |v: &[String]| {
        array(
            vec![v.len()],
            ArrayData::Object(v.iter().cloned().map(PyValue::Str).collect()),
        )
    };
    let key = |k: &str| PyValue::Str(k.to_string());
    let mut items = vec![
        (key("raw_text"), strings(&split.raw_text)?),
        (key("id"), strings(&split.id)?),
        (
            key("audio"),
            array(vec![n, t_a, d_a], ArrayData::F32(split.audio.clone()))?,
        ),
        (
            key("vision"),
            array(vec![n, t_v, d_v], ArrayData::F32(split.vision.clone()))?,
        ),
        (
            key("text_bert"),
            array(vec![n, 3, t_l], ArrayData::F64(text_bert))?,
        ),
        (
            key("regression_labels"),
            array(vec![n], ArrayData::F32(split.score.clone()))?,
        ),
        (
            key("classification_labels"),
            array(
                vec![n],
                ArrayData::F64(split.label3.iter().map(|&l| f64::from(l)).collect()),
            )?,
        ),
    ];
    if !aligned {
        let ints = |v: &[usize]| ArrayData::I64(v.iter().map(|&x| x as i64).collect());
        items.push((
            key("audio_lengths"),
            array(vec![n], ints(&split.audio_len))?,
        ));
        items.push((
            key("vision_lengths"),
            array(vec![n], ints(&split.vision_len))?,
        ));
    }
    if let Some(text) = &split.text_features {
        items.push((
            key("text"),
            array(vec![n, t_l, d_l], ArrayData::F32(text.clone()))?,
        ));
    }
    Ok(PyValue::Dict(items))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key/value pairs of a split dict.
    type Entries = Vec<(PyValue, PyValue)>;

    fn array(shape: Vec<usize>, data: ArrayData) -> PyValue {
        PyValue::Array(NumpyArray::new(shape, data).unwrap())
    }

    fn key(k: &str) -> PyValue {
        PyValue::Str(k.to_string())
    }

    /// An aligned split of two samples, `T = 4`, `d_a = 2`, `d_v = 1`: texts of 3 and 4 tokens.
    fn aligned_split(scores: [f32; 2]) -> Entries {
        let text_bert = vec![
            101., 2204., 102., 0., 1., 1., 1., 0., 0., 0., 0., 0., //
            101., 2919., 2204., 102., 1., 1., 1., 1., 0., 0., 0., 0.,
        ];
        vec![
            (
                key("text_bert"),
                array(vec![2, 3, 4], ArrayData::F64(text_bert)),
            ),
            (
                key("audio"),
                array(
                    vec![2, 4, 2],
                    ArrayData::F32((0..16).map(|x| x as f32).collect()),
                ),
            ),
            (
                key("vision"),
                array(vec![2, 4, 1], ArrayData::F32(vec![0.5; 8])),
            ),
            (
                key("regression_labels"),
                array(vec![2], ArrayData::F32(scores.to_vec())),
            ),
        ]
    }

    fn file(split: Entries) -> PyValue {
        PyValue::Dict(
            SPLIT_NAMES
                .iter()
                .map(|name| (key(name), PyValue::Dict(split.clone())))
                .collect(),
        )
    }

    fn replace(mut split: Entries, name: &str, value: PyValue) -> Entries {
        split.retain(|(k, _)| k != &key(name));
        split.push((key(name), value));
        split
    }

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

    #[test]
    fn an_aligned_file_yields_lengths_masks_and_labels() {
        let data = Dataset::from_pyvalue(file(aligned_split([-1.5, 0.0])), "t.pkl").unwrap();
        assert!(data.aligned);
        let test = &data.test;
        assert_eq!(
            data.dims,
            Dims {
                d_l: 768,
                t_l: 4,
                t_a: 4,
                t_v: 4,
                d_a: 2,
                d_v: 1
            }
        );
        assert_eq!(test.text_ids, vec![101, 2204, 102, 0, 101, 2919, 2204, 102]);
        assert_eq!(test.text_len, vec![3, 4]);
        assert_eq!(test.audio_len, test.text_len);
        assert_eq!(test.audio_mask(), vec![1, 1, 1, 0, 1, 1, 1, 1]);
        assert_eq!(
            (test.label3.clone(), test.label7.clone()),
            (vec![0, 1], vec![1, 3])
        );
        assert_eq!(test.audio_sum, (0..16).sum::<i32>() as f64);
        assert_eq!(test.raw_text, vec![String::new(), String::new()]);
    }

    #[test]
    fn minus_infinity_audio_becomes_zero_and_is_counted() {
        let mut audio: Vec<f32> = vec![1.0; 16];
        audio[3] = f32::NEG_INFINITY;
        audio[9] = f32::NEG_INFINITY;
        let split = replace(
            aligned_split([1.0, 1.0]),
            "audio",
            array(vec![2, 4, 2], ArrayData::F32(audio)),
        );
        let data = Dataset::from_pyvalue(file(split), "t.pkl").unwrap();
        assert_eq!(data.train.audio_nonfinite, 2);
        assert_eq!(data.train.audio[3], 0.0);
        assert_eq!(data.train.audio_sum, 14.0);
    }

    #[test]
    fn a_pickled_dataset_round_trips_through_the_python_layout() {
        let data = Dataset::from_pyvalue(file(aligned_split([2.0, -0.4])), "t.pkl").unwrap();
        let again = Dataset::from_pyvalue(data.to_pyvalue().unwrap(), "t.pkl").unwrap();
        assert_eq!(again.train, data.train);
    }

    fn error_of(split: Entries) -> String {
        Dataset::from_pyvalue(file(split), "bad.pkl")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_inputs_name_the_file_the_key_and_the_expectation() {
        let base = || aligned_split([1.0, -1.0]);
        let nan_vision = array(vec![2, 4, 1], ArrayData::F32(vec![f32::NAN; 8]));
        let cases: Vec<(Entries, &[&str])> = vec![
            (
                base()
                    .into_iter()
                    .filter(|(k, _)| k != &key("audio"))
                    .collect(),
                &["bad.pkl", "train/audio", "missing key"],
            ),
            (
                replace(
                    base(),
                    "vision",
                    array(vec![3, 4, 1], ArrayData::F32(vec![0.0; 12])),
                ),
                &["train/vision", "[2, _, _]"],
            ),
            (
                replace(base(), "vision", nan_vision),
                &["train/vision", "NaN"],
            ),
            (
                replace(
                    base(),
                    "regression_labels",
                    array(vec![2], ArrayData::F32(vec![4.0, 0.0])),
                ),
                &["regression_labels", "outside [-3, 3]"],
            ),
            (
                replace(
                    base(),
                    "classification_labels",
                    array(vec![2], ArrayData::F64(vec![2.0, 1.0])),
                ),
                &["classification_labels", "index 1", "expected 0"],
            ),
            (
                replace(
                    base(),
                    "audio_lengths",
                    PyValue::List(vec![PyValue::Int(2), PyValue::Int(9)]),
                ),
                &["vision_lengths", "both audio_lengths and vision_lengths"],
            ),
            (
                replace(
                    base(),
                    "text_bert",
                    array(vec![0, 3, 4], ArrayData::F64(vec![])),
                ),
                &["split `train` is empty"],
            ),
            (
                replace(base(), "audio", PyValue::Str("frames".into())),
                &["train/audio", "type str"],
            ),
        ];
        for (split, needles) in cases {
            let message = error_of(split);
            for needle in needles {
                assert!(message.contains(needle), "`{needle}` not in `{message}`");
            }
        }
    }

    #[test]
    fn a_text_mask_that_is_not_a_prefix_is_refused() {
        let mut text_bert = vec![0.0f64; 24];
        text_bert[..4].copy_from_slice(&[101., 5., 102., 0.]);
        text_bert[4..8].copy_from_slice(&[1., 0., 1., 0.]);
        text_bert[12..16].copy_from_slice(&[101., 5., 102., 0.]);
        text_bert[16..20].copy_from_slice(&[1., 1., 1., 0.]);
        let split = replace(
            aligned_split([1.0, 1.0]),
            "text_bert",
            array(vec![2, 3, 4], ArrayData::F64(text_bert)),
        );
        assert!(error_of(split).contains("not a prefix"));
    }
}
