//! Reading a dataset file (docs/method.md §2.2–§2.4): an MMSA pickle (`aligned_50.pkl`,
//! `unaligned_50.pkl`) or a CIDer joblib dump (OOD files), recognised by content, into a
//! validated [`Dataset`]: `text_bert` split into ids, mask and segments, lengths derived for
//! aligned files (§2.3), `-inf` audio replaced by 0, and the labels derived from the scores and
//! checked against `classification_labels` (§2.4).

use super::fields::{Fields, into_f32, lengths};
use super::{Dataset, Dims, SPLIT_NAMES, Split, seven_way_label, three_way_label};
use crate::error::DataError;
use crate::value::{NumpyArray, PyValue};

/// How far into a file we look for joblib's array wrapper class.
const JOBLIB_SNIFF_BYTES: usize = 1 << 20;

/// True for joblib dumps: compressed ones by their magic bytes (`ZF`, zlib, gzip), plain ones by
/// the `NumpyArrayWrapper` class named near the start of the pickle stream.
pub(crate) fn looks_like_joblib(bytes: &[u8]) -> bool {
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
}

/// A split being read, with whether its file marked it as aligned.
struct ReadSplit {
    split: Split,
    aligned_source: bool,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::testkit::{Entries, aligned_split, array, file, key, replace};
    use crate::value::ArrayData;

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
