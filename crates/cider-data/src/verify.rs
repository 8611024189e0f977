//! Checking a downloaded dataset file against its [catalog](crate::catalog) entry
//! (docs/method.md §2.1–§2.4): per split and per key, the sample count, the shapes (hence the
//! sequence lengths `T_l`, `T_a`, `T_v` and feature sizes `d_l`, `d_a`, `d_v`), NaN and infinite
//! values, the score range, the 3-way labels against the scores, the length arrays, the text
//! rows, and the presence of every key the entry lists; for the whole file, the format the
//! reference reads it with and the publisher's SHA-256.
//!
//! Unlike [`Dataset::from_path`], which stops at the first problem, a check reports every
//! problem it finds, one [`Mismatch`] per split and key, so that a user sees at once what is off
//! in a download. A file with no mismatch is then read with [`Dataset::from_pyvalue`] as
//! training will read it, and a refusal is reported too.
//!
//! ```no_run
//! use cider_data::catalog::Catalog;
//! use cider_data::verify::FileContents;
//!
//! let catalog = Catalog::builtin()?;
//! let path = std::path::Path::new("data/MOSI/Processed/aligned_50.pkl");
//! let file = FileContents::read(path)?;
//! let choice = catalog.choose(path, file.layout().as_ref())?;
//! let report = file.verify(choice.entry);
//! for mismatch in &report.mismatches {
//!     println!("{mismatch}"); // e.g. `train: 1283 samples, expected 1284`
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::catalog::{Entry, FileFormat, FileLayout};
use crate::dataset::{Dataset, SPLIT_NAMES, three_way_label};
use crate::error::DataError;
use crate::value::{ArrayData, DType, NumpyArray, PyValue};

/// One thing that is off: where (`train/audio`, `valid`, or `file`) and what, with what was
/// expected. Displayed as one line, `train/audio: shape [24, 50, 6], expected [24, 50, 5] …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// `split/key`, a split name, or `file`.
    pub scope: String,
    /// What was found and what was expected.
    pub message: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.scope, self.message)
    }
}

/// What a check saw in one split, for the report.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct SplitFacts {
    /// `"train"`, `"valid"` or `"test"`.
    pub name: String,
    /// `N`, from the first of `text_bert`, `audio`, `vision`, `regression_labels` present.
    pub samples: Option<usize>,
    /// Shapes of the feature arrays present, in the order `text_bert`, `text`, `audio`,
    /// `vision`.
    pub shapes: Vec<(String, Vec<usize>)>,
    /// `-inf` audio values (the reference and cider replace them by 0; not a mismatch).
    pub audio_neg_inf: usize,
    /// Smallest and largest finite score, when there are scores.
    pub score_range: Option<[f32; 2]>,
}

/// The outcome of checking a file against an entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    /// The file (as given).
    pub source: String,
    /// How the file is written.
    pub format: FileFormat,
    /// SHA-256 of the file's bytes (lower-case hex), when they were read from disk.
    pub sha256: Option<String>,
    /// The entry checked against.
    pub entry: String,
    /// What each split holds, in file order.
    pub splits: Vec<SplitFacts>,
    /// Everything that is off, file-level first, then by split and key; empty when the file
    /// matches.
    pub mismatches: Vec<Mismatch>,
}

impl Verification {
    /// True when nothing is off.
    pub fn matches(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// A dataset file read for checking: its unpickled value, how it was written and its hash.
#[derive(Debug, Clone)]
pub struct FileContents {
    source: String,
    format: FileFormat,
    sha256: Option<String>,
    value: PyValue,
}

impl FileContents {
    /// Reads an MMSA pickle or a CIDer joblib dump (recognised by content, as
    /// [`Dataset::from_path`] does) and hashes its bytes.
    ///
    /// # Errors
    /// [`DataError`] when the file cannot be read or is not a pickle / joblib stream; problems of
    /// content are not errors but [`Mismatch`]es of [`FileContents::verify`].
    pub fn read(path: &Path) -> Result<Self, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let source = path.display().to_string();
        let sha256: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let (format, value) = if crate::dataset::looks_like_joblib(&bytes) {
            (
                FileFormat::Joblib,
                crate::joblib::from_bytes(&bytes, &source)?,
            )
        } else {
            (
                FileFormat::Pickle,
                crate::pickle::from_bytes(&bytes, &source)?,
            )
        };
        Ok(Self {
            source,
            format,
            sha256: Some(sha256),
            value,
        })
    }

    /// An already unpickled value (no hash is checked).
    pub fn from_value(value: PyValue, source: &str, format: FileFormat) -> Self {
        Self {
            source: source.to_string(),
            format,
            sha256: None,
            value,
        }
    }

    /// How the file is written.
    pub fn format(&self) -> FileFormat {
        self.format
    }

    /// SHA-256 of the file's bytes (lower-case hex), when read from disk.
    pub fn sha256(&self) -> Option<&str> {
        self.sha256.as_deref()
    }

    /// The layout of the training split (`T_l` from `text_bert [N, 3, T_l]`, `T_a, d_a` from
    /// `audio [N, T_a, d_a]`, `T_v, d_v` from `vision [N, T_v, d_v]`, aligned when it has no
    /// `audio_lengths`), for [`crate::catalog::Catalog::choose`]; `None` when those arrays are
    /// not all there.
    pub fn layout(&self) -> Option<FileLayout> {
        let train = self.value.get("train")?;
        let shape = |key: &str| match train.get(key) {
            Some(PyValue::Array(a)) if a.shape().len() == 3 => Some(a.shape().to_vec()),
            _ => None,
        };
        let (text, audio, vision) = (shape("text_bert")?, shape("audio")?, shape("vision")?);
        Some(FileLayout {
            t_l: text[2],
            t_a: audio[1],
            t_v: vision[1],
            d_a: audio[2],
            d_v: vision[2],
            aligned: train.get("audio_lengths").is_none() && train.get("vision_lengths").is_none(),
        })
    }

    /// Checks the file against `entry` and reports every mismatch. When there is none, the
    /// file is also read as training reads it ([`Dataset::from_pyvalue`]); if that refuses it,
    /// the refusal is the one mismatch.
    pub fn verify(self, entry: &Entry) -> Verification {
        let mut out = Vec::new();
        if !entry.format.reads(self.format) {
            out.push(Mismatch {
                scope: "file".into(),
                message: format!(
                    "a {} dump, expected a plain pickle (the reference reads this file with \
                     pickle.load, which does not rebuild joblib's arrays)",
                    self.format.name()
                ),
            });
        }
        if let (Some(want), Some(got)) = (&entry.sha256, &self.sha256)
            && want != got
        {
            out.push(Mismatch {
                scope: "file".into(),
                message: format!(
                    "sha256 {got}, expected {want} (the publisher's hash of {})",
                    entry.path
                ),
            });
        }
        let mut splits = Vec::new();
        if self.value.entries().is_none() {
            out.push(Mismatch {
                scope: "file".into(),
                message: format!(
                    "{} at the top level, expected a dict with keys train, valid, test",
                    self.value.type_name()
                ),
            });
        } else {
            for name in SPLIT_NAMES {
                let mut check = SplitCheck {
                    entry,
                    name,
                    out: &mut out,
                };
                splits.push(check.run(self.value.get(name)));
            }
        }
        if out.is_empty()
            && let Err(e) = Dataset::from_pyvalue(self.value, &self.source)
        {
            out.push(Mismatch {
                scope: "file".into(),
                message: format!("cider's reader refuses it: {e}"),
            });
        }
        Verification {
            source: self.source,
            format: self.format,
            sha256: self.sha256,
            entry: entry.name.clone(),
            splits,
            mismatches: out,
        }
    }
}

/// What a key holds, for the line that reports it missing.
fn describe(key: &str) -> &'static str {
    match key {
        "text_bert" => "WordPiece ids, attention mask and segment ids [N, 3, T_l]",
        "text" => {
            "precomputed BERT features [N, T_l, d_l], which cider needs for the class prototypes \
             and its default text encoder"
        }
        "audio" => "audio frames [N, T_a, d_a]",
        "vision" => "vision frames [N, T_v, d_v]",
        "audio_lengths" => "valid audio frames per sample [N]",
        "vision_lengths" => "valid vision frames per sample [N]",
        "regression_labels" => "sentiment scores [N]",
        "classification_labels" => "3-way labels [N], which the reference reads for this file",
        "raw_text" => "the utterances' text [N]",
        "id" => "sample ids [N]",
        _ => "a key the catalog entry lists",
    }
}

/// `[a, b, c]`.
fn shape_text(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// NaN, `+inf` and `-inf` counts of a numeric array (integers have none).
fn non_finite(data: &ArrayData) -> [usize; 3] {
    fn count(values: impl Iterator<Item = f64>) -> [usize; 3] {
        let mut c = [0; 3];
        for x in values {
            if x.is_nan() {
                c[0] += 1;
            } else if x == f64::INFINITY {
                c[1] += 1;
            } else if x == f64::NEG_INFINITY {
                c[2] += 1;
            }
        }
        c
    }
    match data {
        ArrayData::F32(v) => count(v.iter().map(|&x| f64::from(x))),
        ArrayData::F64(v) => count(v.iter().copied()),
        _ => [0; 3],
    }
}

/// The checks of one split, writing into the verification's mismatch list.
struct SplitCheck<'a> {
    entry: &'a Entry,
    name: &'static str,
    out: &'a mut Vec<Mismatch>,
}

impl SplitCheck<'_> {
    fn push(&mut self, key: Option<&str>, message: String) {
        let scope = match key {
            Some(key) => format!("{}/{key}", self.name),
            None => self.name.to_string(),
        };
        self.out.push(Mismatch { scope, message });
    }

    fn run(&mut self, split: Option<&PyValue>) -> SplitFacts {
        let mut facts = SplitFacts {
            name: self.name.to_string(),
            ..SplitFacts::default()
        };
        let Some(split) = split else {
            self.push(None, "missing split, expected a dict of arrays".into());
            return facts;
        };
        if split.entries().is_none() {
            self.push(
                None,
                format!("{}, expected a dict of arrays", split.type_name()),
            );
            return facts;
        }
        let present = |key: &str| !matches!(split.get(key), None | Some(PyValue::None));
        for key in &self.entry.keys {
            if !present(key) {
                self.push(Some(key), format!("missing, expected {}", describe(key)));
            }
        }

        // N: the count most per-sample arrays agree on (the first of a tie), so one array
        // of another length is the one reported. A file of another size than the catalog's
        // gets one line for it, and its arrays are checked against its own N.
        let leading: Vec<usize> = ["text_bert", "text", "audio", "vision", "regression_labels"]
            .iter()
            .filter_map(|key| match split.get(key) {
                Some(PyValue::Array(a)) if !a.shape().is_empty() => Some(a.shape()[0]),
                _ => None,
            })
            .collect();
        let observed = leading.iter().copied().max_by_key(|&n| {
            let first = leading.iter().position(|&m| m == n);
            (
                leading.iter().filter(|&&m| m == n).count(),
                std::cmp::Reverse(first),
            )
        });
        facts.samples = observed;
        if let (Some(n), Some(want)) = (observed, self.entry.samples.of(self.name))
            && n != want
        {
            self.push(None, format!("{n} samples, expected {want}"));
        }
        let n = observed.unwrap_or(0);

        let d = self.entry.dims;
        let arrays: [(&str, [usize; 3], &str); 4] = [
            ("text_bert", [n, 3, d.t_l], "[N, 3, T_l]"),
            ("text", [n, d.t_l, d.d_l], "[N, T_l, d_l]"),
            ("audio", [n, d.t_a, d.d_a], "[N, T_a, d_a]"),
            ("vision", [n, d.t_v, d.d_v], "[N, T_v, d_v]"),
        ];
        for (key, want, symbols) in arrays {
            let Some(value) = split.get(key).filter(|v| !matches!(v, PyValue::None)) else {
                continue;
            };
            let Some(array) = self.numeric(key, value) else {
                continue;
            };
            facts.shapes.push((key.to_string(), array.shape().to_vec()));
            if array.shape() != want {
                self.push(
                    Some(key),
                    format!(
                        "shape {}, expected {} = {symbols}",
                        shape_text(array.shape()),
                        shape_text(&want)
                    ),
                );
            }
            let [nan, pos, neg] = non_finite(array.data());
            if key == "audio" {
                facts.audio_neg_inf = neg;
                if nan + pos > 0 {
                    self.push(
                        Some(key),
                        format!(
                            "{nan} NaN and {pos} +inf values, expected finite values (or -inf, \
                             which is replaced by 0)"
                        ),
                    );
                }
            } else if nan + pos + neg > 0 {
                self.push(
                    Some(key),
                    format!("{nan} NaN, {pos} +inf and {neg} -inf values, expected finite values"),
                );
            }
            if key == "text_bert" && array.shape().len() == 3 && array.shape()[1] == 3 {
                self.text_rows(array);
            }
        }

        let scores = split
            .get("regression_labels")
            .and_then(|v| self.numeric("regression_labels", v))
            .filter(|a| self.vector("regression_labels", a, n))
            .and_then(NumpyArray::to_f32);
        if let Some(scores) = &scores {
            facts.score_range = self.scores(scores);
        }
        if let Some(labels) = split
            .get("classification_labels")
            .filter(|v| !matches!(v, PyValue::None))
            .and_then(|v| self.numeric("classification_labels", v))
            .filter(|a| self.vector("classification_labels", a, n))
            .and_then(NumpyArray::to_f64)
            && let Some(scores) = &scores
        {
            self.labels(&labels, scores);
        }

        for (key, t) in [("audio_lengths", d.t_a), ("vision_lengths", d.t_v)] {
            let Some(value) = split.get(key).filter(|v| !matches!(v, PyValue::None)) else {
                continue;
            };
            if self.entry.aligned {
                self.push(
                    Some(key),
                    "present, expected none in an aligned file (cider reads a file with lengths \
                     as unaligned)"
                        .into(),
                );
            } else {
                self.lengths(key, value, n, t);
            }
        }
        for key in ["raw_text", "id"] {
            if let Some(value) = split.get(key).filter(|v| !matches!(v, PyValue::None)) {
                self.strings(key, value, n);
            }
        }
        facts
    }

    /// The value as a numeric array, or a mismatch line.
    fn numeric<'v>(&mut self, key: &str, value: &'v PyValue) -> Option<&'v NumpyArray> {
        match value {
            PyValue::Array(a) if a.dtype() != DType::Object => Some(a),
            other => {
                let found = match other {
                    PyValue::Array(a) => format!("a numpy array of {}", a.dtype().name()),
                    v => v.type_name().to_string(),
                };
                self.push(Some(key), format!("{found}, expected a numeric array"));
                None
            }
        }
    }

    /// Whether a per-sample vector has shape `[n]`; a mismatch line if not.
    fn vector(&mut self, key: &str, array: &NumpyArray, n: usize) -> bool {
        if array.shape() == [n] {
            return true;
        }
        self.push(
            Some(key),
            format!("shape {}, expected [{n}] = [N]", shape_text(array.shape())),
        );
        false
    }

    /// Ids that are non-negative integers, a 0/1 attention mask that is a prefix of at least
    /// two ones (`[CLS] … [SEP]`), integer segment ids (docs/method.md §2.2).
    fn text_rows(&mut self, text_bert: &NumpyArray) {
        let (n, t_l) = (text_bert.shape()[0], text_bert.shape()[2]);
        let Some(values) = text_bert.to_f64() else {
            return;
        };
        let integral = |v: f64| v.is_finite() && v >= 0.0 && v.fract() == 0.0;
        let mut bad_ids = Vec::new();
        let mut bad_masks = Vec::new();
        let mut bad_segments = Vec::new();
        for i in 0..n {
            let row = |r: usize| &values[(i * 3 + r) * t_l..(i * 3 + r + 1) * t_l];
            if !row(0).iter().all(|&v| integral(v)) {
                bad_ids.push(i);
            }
            let mask = row(1);
            let ones = mask.iter().take_while(|&&v| v == 1.0).count();
            if ones < 2 || !mask[ones..].iter().all(|&v| v == 0.0) {
                bad_masks.push(i);
            }
            if !row(2).iter().all(|&v| integral(v)) {
                bad_segments.push(i);
            }
        }
        let groups = [
            (bad_ids, "whose token ids are not all non-negative integers"),
            (
                bad_masks,
                "whose attention mask is not a prefix of at least two ones ([CLS] … [SEP]) \
                 followed by zeros",
            ),
            (
                bad_segments,
                "whose segment ids are not all non-negative integers",
            ),
        ];
        for (samples, what) in groups {
            if let Some(first) = samples.first() {
                self.push(
                    Some("text_bert"),
                    format!(
                        "{} sample(s) {what} (first: sample {first}), expected none",
                        samples.len()
                    ),
                );
            }
        }
    }

    /// NaN scores and scores outside the entry's range; returns the finite range.
    fn scores(&mut self, scores: &[f32]) -> Option<[f32; 2]> {
        let [lo, hi] = self.entry.score_range;
        let nan = scores.iter().filter(|s| s.is_nan()).count();
        let finite = || scores.iter().copied().filter(|s| !s.is_nan());
        let range = finite().fold(None, |acc: Option<[f32; 2]>, s| {
            Some(acc.map_or([s, s], |[a, b]| [a.min(s), b.max(s)]))
        });
        let outside = finite().filter(|s| !(lo..=hi).contains(s)).count();
        if nan > 0 {
            self.push(
                Some("regression_labels"),
                format!("{nan} NaN score(s), expected none"),
            );
        }
        if outside > 0
            && let Some([min, max]) = range
        {
            self.push(
                Some("regression_labels"),
                format!(
                    "{outside} score(s) outside [{lo}, {hi}] (min {min}, max {max}), expected \
                     every score in [{lo}, {hi}]"
                ),
            );
        }
        range
    }

    /// 3-way labels that are not the sign class of their score (0 negative, 1 neutral,
    /// 2 positive; docs/method.md §2.4).
    fn labels(&mut self, labels: &[f64], scores: &[f32]) {
        let wrong: Vec<usize> = labels
            .iter()
            .zip(scores)
            .enumerate()
            .filter(|(_, (l, s))| s.is_nan() || **l != f64::from(three_way_label(**s)))
            .map(|(i, _)| i)
            .collect();
        if let Some(&i) = wrong.first() {
            self.push(
                Some("classification_labels"),
                format!(
                    "{} label(s) disagree with the sign of the score (first: sample {i}, label \
                     {} for score {}), expected 0 for < 0, 1 for 0, 2 for > 0",
                    wrong.len(),
                    labels[i],
                    scores[i]
                ),
            );
        }
    }

    /// Lengths: `n` integers in `0..=t`, from a list or a 1-D array.
    fn lengths(&mut self, key: &str, value: &PyValue, n: usize, t: usize) {
        let values: Vec<f64> = match value {
            PyValue::List(items) | PyValue::Tuple(items) => items
                .iter()
                .map(|v| match v {
                    PyValue::Int(x) => *x as f64,
                    PyValue::Float(x) => *x,
                    _ => f64::NAN,
                })
                .collect(),
            PyValue::Array(a) if a.shape().len() == 1 && a.dtype() != DType::Object => {
                a.to_f64().unwrap_or_default()
            }
            other => {
                let found = match other {
                    PyValue::Array(a) => format!("an array of shape {}", shape_text(a.shape())),
                    v => v.type_name().to_string(),
                };
                self.push(
                    Some(key),
                    format!("{found}, expected a list or 1-D array of {n} lengths"),
                );
                return;
            }
        };
        if values.len() != n {
            self.push(
                Some(key),
                format!("{} length(s), expected {n}", values.len()),
            );
            return;
        }
        let bad = values
            .iter()
            .filter(|&&v| !(v.fract() == 0.0 && (0.0..=t as f64).contains(&v)))
            .count();
        if bad > 0 {
            self.push(
                Some(key),
                format!("{bad} length(s) that are not integers in 0..={t}, expected none"),
            );
        }
    }

    /// `n` strings, from a list or an object array.
    fn strings(&mut self, key: &str, value: &PyValue, n: usize) {
        let items: &[PyValue] = match value {
            PyValue::List(items) | PyValue::Tuple(items) => items,
            PyValue::Array(a) => match a.data() {
                ArrayData::Object(items) => items,
                other => {
                    self.push(
                        Some(key),
                        format!(
                            "a numpy array of {}, expected strings",
                            other.dtype().name()
                        ),
                    );
                    return;
                }
            },
            other => {
                self.push(
                    Some(key),
                    format!("{}, expected a list or array of strings", other.type_name()),
                );
                return;
            }
        };
        if items.len() != n {
            self.push(Some(key), format!("{} entries, expected {n}", items.len()));
            return;
        }
        let bad = items
            .iter()
            .filter(|v| !matches!(v, PyValue::Str(_) | PyValue::Bytes(_)))
            .count();
        if bad > 0 {
            self.push(
                Some(key),
                format!("{bad} entries that are not strings, expected none"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, Samples};
    use crate::testkit::{json, testdata};

    /// The catalog entry `name`, with the split sizes and the hash of the fixture `file` from
    /// `testdata/mmsa/manifest.json` in place of the real file's.
    fn fixture_entry(name: &str, file: &str) -> Entry {
        let manifest = json("mmsa/manifest.json");
        let facts = &manifest["files"][file];
        let n = |split: &str| {
            facts["splits"][split]["audio"]["shape"][0]
                .as_u64()
                .map(|n| n as usize)
        };
        let mut entry = Catalog::builtin().unwrap().entry(name).unwrap().clone();
        entry.samples = Samples {
            train: n("train"),
            valid: n("valid"),
            test: n("test"),
        };
        entry.sha256 = facts["sha256"].as_str().map(str::to_string);
        entry
    }

    fn read(file: &str) -> FileContents {
        FileContents::read(&testdata(&format!("mmsa/{file}"))).unwrap()
    }

    fn lines(report: &Verification) -> Vec<String> {
        report.mismatches.iter().map(Mismatch::to_string).collect()
    }

    #[test]
    fn the_fixtures_match_entries_sized_from_their_manifest() {
        let cases = [
            (
                "mosi_aligned_50_tiny.pkl",
                "mosi-aligned",
                FileFormat::Pickle,
            ),
            (
                "mosi_unaligned_50_tiny.pkl",
                "mosi-unaligned",
                FileFormat::Pickle,
            ),
            (
                "ood_mosi_unaligned_50_tiny.joblib.pkl",
                "mosi-unaligned-ood-binary",
                FileFormat::Joblib,
            ),
        ];
        let manifest = json("mmsa/manifest.json");
        for (file, name, format) in cases {
            let entry = fixture_entry(name, file);
            let contents = read(file);
            assert_eq!(contents.format(), format, "{file}");
            assert_eq!(contents.sha256(), entry.sha256.as_deref(), "{file}");
            let report = contents.verify(&entry);
            assert_eq!(lines(&report), Vec::<String>::new(), "{file}");
            assert!(report.matches());
            for facts in &report.splits {
                let want = &manifest["files"][file]["splits"][facts.name.as_str()];
                assert_eq!(
                    facts.samples,
                    want["audio"]["shape"][0].as_u64().map(|n| n as usize)
                );
                for (key, shape) in &facts.shapes {
                    let listed: Vec<usize> = want[key.as_str()]["shape"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|d| d.as_u64().unwrap() as usize)
                        .collect();
                    assert_eq!(shape, &listed, "{file} {} {key}", facts.name);
                }
                assert_eq!(facts.shapes.len(), 4, "text_bert, text, audio, vision");
            }
        }
    }

    #[test]
    fn against_the_real_entry_a_fixture_differs_only_in_its_size_and_hash() {
        let contents = read("mosi_aligned_50_tiny.pkl");
        let catalog = Catalog::builtin().unwrap();
        let report = contents.verify(catalog.entry("mosi-aligned").unwrap());
        assert_eq!(
            lines(&report),
            [
                "file: sha256 a639858a2fee8c8977411f2ba282a7c6369c94bdc4f239f50126ad935bc0039a, \
                 expected d3994fd25681f9c7ad6e9c6596a6fe9b4beb85ff7d478ba978b124139002e5f9 (the \
                 publisher's hash of MOSI/Processed/aligned_50.pkl)",
                "train: 24 samples, expected 1284",
                "valid: 8 samples, expected 229",
                "test: 8 samples, expected 686",
            ]
        );
        // The OOD joblib dump against the plain-pickle IID entry: the format is named too.
        let report = read("ood_mosi_unaligned_50_tiny.joblib.pkl").verify(&fixture_entry(
            "mosi-unaligned",
            "mosi_unaligned_50_tiny.pkl",
        ));
        let first = &lines(&report)[0];
        assert!(
            first.starts_with("file: a joblib dump, expected a plain pickle"),
            "{first}"
        );
    }

    #[test]
    fn the_layout_of_a_file_chooses_its_entry() {
        let catalog = Catalog::builtin().unwrap();
        for (file, name) in [
            ("mosi_aligned_50_tiny.pkl", "mosi-aligned"),
            ("mosi_unaligned_50_tiny.pkl", "mosi-unaligned"),
            (
                "ood_mosi_unaligned_50_tiny.joblib.pkl",
                "mosi-unaligned-ood-binary",
            ),
        ] {
            let contents = read(file);
            let path = testdata(&format!("mmsa/{file}"));
            let choice = catalog.choose(&path, contents.layout().as_ref()).unwrap();
            assert_eq!(choice.entry.name, name);
        }
    }

    /// Replaces (or, with `None`, removes) `key` in split `split` of a file's value.
    fn edit(value: &mut PyValue, split: &str, key: &str, new: Option<PyValue>) {
        let PyValue::Dict(splits) = value else {
            panic!("a dict")
        };
        let (_, split) = splits
            .iter_mut()
            .find(|(k, _)| matches!(k, PyValue::Str(s) if s == split))
            .unwrap();
        let PyValue::Dict(items) = split else {
            panic!("a dict")
        };
        items.retain(|(k, _)| !matches!(k, PyValue::Str(s) if s == key));
        if let Some(new) = new {
            items.push((PyValue::Str(key.into()), new));
        }
    }

    fn array_of(value: &PyValue, split: &str, key: &str) -> NumpyArray {
        match value.get(split).and_then(|s| s.get(key)) {
            Some(PyValue::Array(a)) => a.clone(),
            other => panic!("{split}/{key}: {other:?}"),
        }
    }

    fn with_f32(array: &NumpyArray, edit: impl FnOnce(&mut Vec<f32>)) -> PyValue {
        let mut values = array.to_f32().unwrap();
        edit(&mut values);
        PyValue::Array(NumpyArray::new(array.shape().to_vec(), ArrayData::F32(values)).unwrap())
    }

    #[test]
    fn a_damaged_copy_gets_one_precise_line_per_split_and_key() {
        let file = "mosi_unaligned_50_tiny.pkl";
        let entry = fixture_entry("mosi-unaligned", file);
        let mut value = read(file).value;

        // train: vision with a NaN and a +inf, a score beyond 3 in magnitude (of the same
        // sign, so its 3-way label stays right), no `id`.
        let vision = array_of(&value, "train", "vision");
        let damaged = with_f32(&vision, |v| {
            v[7] = f32::NAN;
            v[8] = f32::INFINITY;
        });
        edit(&mut value, "train", "vision", Some(damaged));
        let mut scores = array_of(&value, "train", "regression_labels")
            .to_f32()
            .unwrap();
        scores[0] = 3.5f32.copysign(scores[0]);
        let [min, max] = scores
            .iter()
            .fold([f32::MAX, f32::MIN], |[a, b], &s| [a.min(s), b.max(s)]);
        let array = NumpyArray::new(vec![scores.len()], ArrayData::F32(scores)).unwrap();
        edit(
            &mut value,
            "train",
            "regression_labels",
            Some(PyValue::Array(array)),
        );
        edit(&mut value, "train", "id", None);

        // valid: audio frames of 6 features and a length beyond T_a.
        let audio = array_of(&value, "valid", "audio");
        let (n, t_a) = (audio.shape()[0], audio.shape()[1]);
        let six = NumpyArray::new(vec![n, t_a, 6], ArrayData::F32(vec![0.5; n * t_a * 6]));
        edit(
            &mut value,
            "valid",
            "audio",
            Some(PyValue::Array(six.unwrap())),
        );
        let lengths = (0..n).map(|i| PyValue::Int(if i == 2 { 400 } else { 10 }));
        edit(
            &mut value,
            "valid",
            "audio_lengths",
            Some(PyValue::List(lengths.collect())),
        );

        // test: a wrong 3-way label and no precomputed text features.
        let mut labels = array_of(&value, "test", "classification_labels")
            .to_f64()
            .unwrap();
        labels[3] = (labels[3] + 1.0) % 3.0;
        let label = labels[3];
        let score = array_of(&value, "test", "regression_labels")
            .to_f32()
            .unwrap()[3];
        let array = NumpyArray::new(vec![labels.len()], ArrayData::F64(labels)).unwrap();
        edit(
            &mut value,
            "test",
            "classification_labels",
            Some(PyValue::Array(array)),
        );
        edit(&mut value, "test", "text", None);

        let report = FileContents::from_value(value, "copy.pkl", FileFormat::Pickle).verify(&entry);
        assert_eq!(
            lines(&report),
            [
                "train/id: missing, expected sample ids [N]".to_string(),
                "train/vision: 1 NaN, 1 +inf and 0 -inf values, expected finite values".into(),
                format!(
                    "train/regression_labels: 1 score(s) outside [-3, 3] (min {min}, max {max}), \
                     expected every score in [-3, 3]"
                ),
                "valid/audio: shape [8, 375, 6], expected [8, 375, 5] = [N, T_a, d_a]".into(),
                "valid/audio_lengths: 1 length(s) that are not integers in 0..=375, expected \
                 none"
                    .into(),
                "test/text: missing, expected precomputed BERT features [N, T_l, d_l], which \
                 cider needs for the class prototypes and its default text encoder"
                    .into(),
                format!(
                    "test/classification_labels: 1 label(s) disagree with the sign of the score \
                     (first: sample 3, label {label} for score {score}), expected 0 for < 0, 1 \
                     for 0, 2 for > 0"
                ),
            ]
        );
        assert!(!report.matches());
    }

    #[test]
    fn the_one_array_of_another_length_is_the_one_reported() {
        let file = "mosi_aligned_50_tiny.pkl";
        let entry = fixture_entry("mosi-aligned", file);
        let mut value = read(file).value;
        // text_bert, the first per-sample array, loses its last sample.
        let text_bert = array_of(&value, "train", "text_bert");
        let [n, three, t_l] = [0, 1, 2].map(|i| text_bert.shape()[i]);
        let values = text_bert.to_f64().unwrap()[..(n - 1) * three * t_l].to_vec();
        let short = NumpyArray::new(vec![n - 1, three, t_l], ArrayData::F64(values)).unwrap();
        edit(
            &mut value,
            "train",
            "text_bert",
            Some(PyValue::Array(short)),
        );
        let expected = format!(
            "train/text_bert: shape [{}, {three}, {t_l}], expected [{n}, {three}, {t_l}] = \
             [N, 3, T_l]",
            n - 1
        );
        let report = FileContents::from_value(value, "copy.pkl", FileFormat::Pickle).verify(&entry);
        assert_eq!(lines(&report), [expected]);
        assert_eq!(report.splits[0].samples, Some(n));
    }

    #[test]
    fn synthetic_data_of_another_layout_is_named_field_by_field() {
        use crate::synth::{Layout, SynthConfig, generate};
        let config = SynthConfig {
            layout: Layout::MoseiAligned,
            n_train: 12,
            n_valid: 4,
            n_test: 6,
            ..SynthConfig::default()
        };
        let data = generate(&config).unwrap();
        let contents =
            FileContents::from_value(data.to_pyvalue().unwrap(), "synth.pkl", FileFormat::Pickle);
        let report = contents.verify(Catalog::builtin().unwrap().entry("mosi-aligned").unwrap());
        let mut expected = Vec::new();
        for (split, n, want) in [("train", 12, 1284), ("valid", 4, 229), ("test", 6, 686)] {
            expected.push(format!(
                "{split}/text: missing, expected precomputed BERT features [N, T_l, d_l], which \
                 cider needs for the class prototypes and its default text encoder"
            ));
            expected.push(format!("{split}: {n} samples, expected {want}"));
            expected.push(format!(
                "{split}/audio: shape [{n}, 50, 74], expected [{n}, 50, 5] = [N, T_a, d_a]"
            ));
            expected.push(format!(
                "{split}/vision: shape [{n}, 50, 35], expected [{n}, 50, 20] = [N, T_v, d_v]"
            ));
        }
        assert_eq!(lines(&report), expected);
    }

    #[test]
    fn text_rows_are_checked_and_the_reader_has_the_last_word() {
        let file = "mosi_aligned_50_tiny.pkl";
        let entry = fixture_entry("mosi-aligned", file);
        let text_bert = array_of(&read(file).value, "valid", "text_bert");
        let t_l = text_bert.shape()[2];
        let with_row_value = |index: usize, v: f64| {
            let mut value = read(file).value;
            let mut rows = text_bert.to_f64().unwrap();
            rows[index] = v;
            let rows = NumpyArray::new(text_bert.shape().to_vec(), ArrayData::F64(rows));
            edit(
                &mut value,
                "valid",
                "text_bert",
                Some(PyValue::Array(rows.unwrap())),
            );
            FileContents::from_value(value, "rows.pkl", FileFormat::Pickle).verify(&entry)
        };
        // Sample 0, attention-mask row, position 1: a hole in the prefix.
        assert_eq!(
            lines(&with_row_value(t_l + 1, 0.0)),
            [
                "valid/text_bert: 1 sample(s) whose attention mask is not a prefix of at least two \
              ones ([CLS] … [SEP]) followed by zeros (first: sample 0), expected none"
            ]
        );
        // Sample 1, id row, position 1: a fractional id.
        assert_eq!(
            lines(&with_row_value(3 * t_l + 1, 7.5)),
            [
                "valid/text_bert: 1 sample(s) whose token ids are not all non-negative integers \
              (first: sample 1), expected none"
            ]
        );
        // An id no vocabulary has passes the checks; the reader refuses it, and says why.
        assert_eq!(
            lines(&with_row_value(1, 2.0e7)),
            [
                "file: cider's reader refuses it: rows.pkl: key `valid/text_bert` at index 0: token \
              id 20000000 is not a non-negative integer"
            ]
        );
    }
}
