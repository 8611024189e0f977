//! The catalog of real dataset files (docs/method.md §2.1, §2.2, §2.5): for every file the
//! reference CIDer code reads (MMSA's MOSI / MOSEI pickles, the authors' OOD joblib dumps, CASP's
//! cross-dataset pickles) where it is published, where it goes, and what it must hold: feature
//! sizes and sequence lengths ([`Dims`]), split sizes, keys and the score range.
//!
//! The catalog is `datasets/catalog.toml` at the repository root, embedded with
//! `include_str!` ([`Catalog::builtin`]); `datasets/README.md` is its table for people, and every
//! entry names its training configuration `datasets/<name>.toml`. Checking a file against an
//! entry is [`crate::verify`].
//!
//! ```
//! use cider_data::catalog::Catalog;
//!
//! let catalog = Catalog::builtin()?;
//! let mosi = catalog.entry("mosi-unaligned")?;
//! assert_eq!((mosi.dims.t_a, mosi.dims.t_v, mosi.dims.d_a, mosi.dims.d_v), (375, 500, 5, 20));
//! assert_eq!(mosi.samples.train, Some(1284));
//! # Ok::<(), cider_data::catalog::CatalogError>(())
//! ```

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::dataset::{Dims, Task};

/// The catalog shipped with the repository (`datasets/catalog.toml`).
const BUILTIN: &str = include_str!("../../../datasets/catalog.toml");

/// A catalog that cannot be read or used, or an entry that cannot be found. Displayed as one
/// line.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The catalog file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Not TOML, an unknown key, or a value of the wrong type.
    #[error("{source_name}: {message}")]
    Parse {
        /// What the text came from (a file name, or `datasets/catalog.toml` for the built-in one).
        source_name: String,
        /// What is wrong, and what was expected.
        message: String,
    },

    /// A well-typed catalog that contradicts itself (two entries of one name, an unknown source,
    /// an aligned entry whose lengths differ…).
    #[error("{source_name}: entry `{entry}`: {message}")]
    Invalid {
        /// What the text came from.
        source_name: String,
        /// The entry involved.
        entry: String,
        /// What is wrong, and what was expected.
        message: String,
    },

    /// No entry of that name.
    #[error("no catalog entry `{name}` (known: {known})")]
    UnknownEntry {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },

    /// Neither the file's name nor its layout points to an entry.
    #[error(
        "{file}: cannot tell which catalog entry this file is; give --dataset NAME (one of {known})"
    )]
    Undecided {
        /// The file involved.
        file: String,
        /// The known names, comma-separated.
        known: String,
    },
}

/// The corpus a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Corpus {
    /// CMU-MOSI (2199 opinion clips).
    Mosi,
    /// CMU-MOSEI.
    Mosei,
}

impl Corpus {
    /// `"mosi"` or `"mosei"`.
    pub fn name(self) -> &'static str {
        match self {
            Corpus::Mosi => "mosi",
            Corpus::Mosei => "mosei",
        }
    }
}

/// The experimental setting a file belongs to (docs/method.md §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Setting {
    /// MMSA's standard splits.
    Iid,
    /// The CIDer authors' re-split with shifted word–label statistics, one file per task.
    Ood,
    /// CASP's features: train on one corpus, test on the other.
    Cross,
}

impl Setting {
    /// `"iid"`, `"ood"` or `"cross"`.
    pub fn name(self) -> &'static str {
        match self {
            Setting::Iid => "iid",
            Setting::Ood => "ood",
            Setting::Cross => "cross",
        }
    }
}

/// How a file is serialised, hence which Python call the reference reads it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// A plain pickle (`pickle.load`).
    Pickle,
    /// A joblib dump (`joblib.load`, which also reads plain pickles).
    Joblib,
}

impl FileFormat {
    /// `"pickle"` or `"joblib"`.
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Pickle => "pickle",
            FileFormat::Joblib => "joblib",
        }
    }

    /// Whether the reference's reader for `self` reads a file written as `written`
    /// (`joblib.load` reads both; `pickle.load` does not rebuild joblib's array wrappers).
    pub fn reads(self, written: FileFormat) -> bool {
        self == FileFormat::Joblib || written == FileFormat::Pickle
    }
}

/// One download location of a [`Source`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// The hosting site (`Google Drive`, `BaiduYun Disk`, `Hugging Face`).
    pub site: String,
    /// The address.
    pub url: String,
    /// The extraction code a BaiduYun share asks for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// A publisher of dataset files and where to download them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Short name the entries refer to (`mmsa`, `cider-ood`, `casp`).
    pub name: String,
    /// What it is and where its instructions are.
    pub title: String,
    /// Download locations.
    pub links: Vec<Link>,
}

/// Expected sample counts per split; `None` where no source states the size (not checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Samples {
    /// `N` of the training split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<usize>,
    /// `N` of the validation split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<usize>,
    /// `N` of the test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<usize>,
}

impl Samples {
    /// The expected count of split `name` (`"train"`, `"valid"`, `"test"`).
    pub fn of(&self, name: &str) -> Option<usize> {
        match name {
            "train" => self.train,
            "valid" => self.valid,
            "test" => self.test,
            _ => None,
        }
    }
}

/// One dataset file and what it must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Unique name, e.g. `mosi-unaligned` or `mosei-aligned-ood-seven`.
    pub name: String,
    /// One line for people.
    pub title: String,
    /// The corpus.
    pub dataset: Corpus,
    /// IID, OOD or cross-dataset.
    pub setting: Setting,
    /// The task an OOD re-split was made for (each task has its own file); `None` when the file
    /// serves both tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    /// Word-aligned (`T_a = T_v = T_l`, no length arrays) or not.
    pub aligned: bool,
    /// How the reference reads it.
    pub format: FileFormat,
    /// The [`Source`] that publishes it.
    pub published: String,
    /// Where the file sits in its publisher's release (`MOSI/Processed/aligned_50.pkl`).
    pub path: String,
    /// Where the reference's loader looks for it under its `--data_path`.
    pub reference_path: String,
    /// SHA-256 of the published file (lower-case hex), where the publisher states one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The training configuration next to the catalog (`datasets/<config>`).
    pub config: String,
    /// For cross-dataset files: the entry whose test split the reference scores a model
    /// trained on this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tested_on: Option<String>,
    /// Keys every split dict must hold.
    pub keys: Vec<String>,
    /// `d_l`, `T_l`, `T_a`, `T_v`, `d_a`, `d_v`.
    pub dims: Dims,
    /// Expected split sizes.
    #[serde(default)]
    pub samples: Samples,
    /// `[min, max]` of `regression_labels`.
    pub score_range: [f32; 2],
}

/// The whole catalog: sources and entries, in file order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Publishers and their download locations (`[[source]]` tables).
    #[serde(rename = "source", default)]
    pub sources: Vec<Source>,
    /// The files (`[[entry]]` tables).
    #[serde(rename = "entry", default)]
    pub entries: Vec<Entry>,
}

/// What a file's training split shows of its layout, for choosing an entry (`d_l` is left out:
/// a file need not hold precomputed text features).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLayout {
    /// `T_l`, from `text_bert [N, 3, T_l]`.
    pub t_l: usize,
    /// `T_a`, from `audio [N, T_a, d_a]`.
    pub t_a: usize,
    /// `T_v`, from `vision [N, T_v, d_v]`.
    pub t_v: usize,
    /// `d_a`.
    pub d_a: usize,
    /// `d_v`.
    pub d_v: usize,
    /// No `audio_lengths` / `vision_lengths` keys.
    pub aligned: bool,
}

impl Entry {
    /// Whether a file of layout `layout` has this entry's sizes and alignment.
    pub fn fits(&self, layout: &FileLayout) -> bool {
        let d = self.dims;
        (d.t_l, d.t_a, d.t_v, d.d_a, d.d_v, self.aligned)
            == (
                layout.t_l,
                layout.t_a,
                layout.t_v,
                layout.d_a,
                layout.d_v,
                layout.aligned,
            )
    }
}

/// What led [`Catalog::choose`] to an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChoiceBasis {
    /// The path's words, confirmed by the file's layout.
    NameAndLayout,
    /// The path's words alone (the layout is unknown or fits no entry).
    Name,
    /// The file's layout (the path's words allow no entry of that layout).
    Layout,
}

/// The entry [`Catalog::choose`] picked, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice<'a> {
    /// The chosen entry.
    pub entry: &'a Entry,
    /// What it was chosen from.
    pub basis: ChoiceBasis,
    /// Other entries that fit just as well (e.g. the other task's OOD file, whose layout is the
    /// same), in catalog order.
    pub also: Vec<&'a str>,
}

impl fmt::Display for Choice<'_> {
    /// `mosi-aligned (from the file name and its layout)`, plus the equally good entries.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let basis = match self.basis {
            ChoiceBasis::NameAndLayout => "from the file name and its layout",
            ChoiceBasis::Name => "from the file name alone",
            ChoiceBasis::Layout => {
                "from the file's layout; its name points to no entry of that layout"
            }
        };
        write!(f, "{} ({basis}", self.entry.name)?;
        if !self.also.is_empty() {
            write!(
                f,
                "; {} fit(s) as well, give --dataset to choose",
                self.also.join(", ")
            )?;
        }
        f.write_str(")")
    }
}

/// What a file's path says about it: each field is `None` when the path does not say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct NameHints {
    dataset: Option<Corpus>,
    setting: Option<Setting>,
    aligned: Option<bool>,
    task: Option<Task>,
}

impl NameHints {
    /// The words of the file name and its two parent folders, lower-cased and split at every
    /// character that is not a letter or a digit: `OOD_MOSI/binary/MOSI_unaligned_50.pkl` says
    /// MOSI, OOD, unaligned, binary; `MSA_cross_datasets/mosei.pkl` says MOSEI, cross-dataset.
    fn of(path: &Path) -> Self {
        let components: Vec<String> = path
            .components()
            .rev()
            .take(3)
            .map(|c| c.as_os_str().to_string_lossy().to_lowercase())
            .collect();
        let mut hints = NameHints::default();
        for word in components
            .iter()
            .flat_map(|c| c.split(|ch: char| !ch.is_ascii_alphanumeric()))
        {
            match word {
                "mosi" | "cmumosi" => hints.dataset = Some(Corpus::Mosi),
                "mosei" | "cmumosei" => hints.dataset = Some(Corpus::Mosei),
                "ood" => hints.setting = Some(Setting::Ood),
                "cross" => hints.setting = Some(Setting::Cross),
                "iid" => hints.setting = Some(Setting::Iid),
                "aligned" if hints.aligned.is_none() => hints.aligned = Some(true),
                "unaligned" | "noalign" => hints.aligned = Some(false),
                "binary" => hints.task = Some(Task::Binary),
                "seven" => hints.task = Some(Task::Seven),
                _ => {}
            }
        }
        hints
    }

    /// Whether `entry` agrees with everything the path says; a path that names no setting is
    /// taken to be an IID file (MMSA's names never say `iid`; OOD and cross-dataset files live
    /// under folders that say so).
    fn allow(&self, entry: &Entry) -> bool {
        self.dataset.is_none_or(|d| d == entry.dataset)
            && self.setting.unwrap_or(Setting::Iid) == entry.setting
            && self.aligned.is_none_or(|a| a == entry.aligned)
            && self.task.is_none_or(|t| entry.task.is_none_or(|e| e == t))
    }
}

impl Catalog {
    /// The catalog shipped with the repository, `datasets/catalog.toml`.
    ///
    /// # Errors
    /// [`CatalogError::Parse`] / [`CatalogError::Invalid`] if the embedded file is broken (the
    /// crate's tests make sure it is not).
    pub fn builtin() -> Result<Self, CatalogError> {
        Self::from_toml_str(BUILTIN, "datasets/catalog.toml")
    }

    /// Reads a catalog file of the same format as `datasets/catalog.toml`.
    ///
    /// # Errors
    /// [`CatalogError::Io`], or what [`Catalog::from_toml_str`] returns.
    pub fn from_file(path: &Path) -> Result<Self, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses catalog TOML (`source_name` names it in errors) and checks it.
    ///
    /// # Errors
    /// [`CatalogError::Parse`] for TOML that is not a catalog (unknown keys included),
    /// [`CatalogError::Invalid`] for a catalog that contradicts itself.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Self, CatalogError> {
        let catalog: Catalog = toml::from_str(text).map_err(|e| CatalogError::Parse {
            source_name: source_name.to_string(),
            message: e
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        catalog.check(source_name)?;
        Ok(catalog)
    }

    /// The catalog as TOML.
    ///
    /// # Errors
    /// [`CatalogError::Parse`] if it cannot be written (not expected for a catalog that was
    /// read).
    pub fn to_toml_string(&self) -> Result<String, CatalogError> {
        toml::to_string(self).map_err(|e| CatalogError::Parse {
            source_name: "catalog".into(),
            message: e.to_string(),
        })
    }

    /// Checks what serde cannot: unique names, known sources and cross-dataset partners,
    /// lengths that fit the alignment, the keys an alignment needs, an ordered score range.
    fn check(&self, source_name: &str) -> Result<(), CatalogError> {
        let invalid = |entry: &Entry, message: String| CatalogError::Invalid {
            source_name: source_name.to_string(),
            entry: entry.name.clone(),
            message,
        };
        for (i, entry) in self.entries.iter().enumerate() {
            if self.entries[..i].iter().any(|e| e.name == entry.name) {
                return Err(invalid(entry, "the name is used twice".into()));
            }
            if !self.sources.iter().any(|s| s.name == entry.published) {
                return Err(invalid(
                    entry,
                    format!("`published = \"{}\"` names no [[source]]", entry.published),
                ));
            }
            if let Some(other) = &entry.tested_on
                && !self.entries.iter().any(|e| &e.name == other)
            {
                return Err(invalid(
                    entry,
                    format!("`tested_on = \"{other}\"` names no entry"),
                ));
            }
            let d = entry.dims;
            if entry.aligned && (d.t_a != d.t_l || d.t_v != d.t_l) {
                return Err(invalid(
                    entry,
                    format!(
                        "aligned, but T_a = {} and T_v = {} differ from T_l = {}",
                        d.t_a, d.t_v, d.t_l
                    ),
                ));
            }
            let lengths = ["audio_lengths", "vision_lengths"];
            for key in lengths {
                let listed = entry.keys.iter().any(|k| k == key);
                if listed == entry.aligned {
                    return Err(invalid(
                        entry,
                        format!(
                            "`keys` {} `{key}`, but {} files {} it",
                            if listed { "lists" } else { "lacks" },
                            if entry.aligned {
                                "aligned"
                            } else {
                                "unaligned"
                            },
                            if entry.aligned { "do not have" } else { "need" }
                        ),
                    ));
                }
            }
            for key in ["text_bert", "audio", "vision", "regression_labels"] {
                if !entry.keys.iter().any(|k| k == key) {
                    return Err(invalid(entry, format!("`keys` lacks `{key}`")));
                }
            }
            let [lo, hi] = entry.score_range;
            if lo.partial_cmp(&hi).is_none_or(|o| o.is_gt()) {
                return Err(invalid(
                    entry,
                    format!("score_range [{lo}, {hi}] is not an interval"),
                ));
            }
            if let Some(sha) = &entry.sha256
                && (sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()))
            {
                return Err(invalid(entry, "sha256 is not 64 hexadecimal digits".into()));
            }
        }
        Ok(())
    }

    /// The entry called `name`.
    ///
    /// # Errors
    /// [`CatalogError::UnknownEntry`], listing the known names.
    pub fn entry(&self, name: &str) -> Result<&Entry, CatalogError> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| CatalogError::UnknownEntry {
                name: name.to_string(),
                known: self.names(),
            })
    }

    /// The source called `name`, if any.
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// The entry names, comma-separated, in catalog order.
    pub fn names(&self) -> String {
        self.entries
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Picks the entry a file at `path` belongs to: the entries its name allows (the words of
    /// the file name and its two parent folders: corpus, `ood` / `cross`, `aligned` /
    /// `unaligned`, `binary` / `seven`; IID when no setting is named), narrowed by `layout`
    /// (the file's own sizes, when known); if the name allows none that fits, the entries
    /// whose layout fits (those of the named setting first); if none fits either, the first
    /// entry the name allows (a name without any of those words allows none). Ties go to the
    /// first in catalog order and are listed in [`Choice::also`].
    ///
    /// # Errors
    /// [`CatalogError::Undecided`] when neither the name nor the layout points anywhere.
    pub fn choose(
        &self,
        path: &Path,
        layout: Option<&FileLayout>,
    ) -> Result<Choice<'_>, CatalogError> {
        let hints = NameHints::of(path);
        let says_something = hints != NameHints::default();
        let by_name: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| says_something && hints.allow(e))
            .collect();
        let fits = |e: &&Entry| layout.is_some_and(|l| e.fits(l));
        let named_and_fitting: Vec<&Entry> = by_name.iter().copied().filter(fits).collect();
        let by_layout: Vec<&Entry> = self.entries.iter().filter(fits).collect();
        let setting = hints.setting.unwrap_or(Setting::Iid);
        let by_layout = if by_layout.iter().any(|e| e.setting == setting) {
            by_layout
                .into_iter()
                .filter(|e| e.setting == setting)
                .collect()
        } else {
            by_layout
        };
        let (basis, found) = if !named_and_fitting.is_empty() {
            (ChoiceBasis::NameAndLayout, named_and_fitting)
        } else if !by_layout.is_empty() {
            (ChoiceBasis::Layout, by_layout)
        } else {
            (ChoiceBasis::Name, by_name)
        };
        match found.split_first() {
            Some((entry, rest)) => Ok(Choice {
                entry,
                basis,
                also: rest.iter().map(|e| e.name.as_str()).collect(),
            }),
            None => Err(CatalogError::Undecided {
                file: path.display().to_string(),
                known: self.names(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> Catalog {
        Catalog::builtin().expect("the shipped catalog parses")
    }

    #[test]
    fn the_shipped_catalog_holds_the_reference_numbers() {
        let c = builtin();
        assert_eq!(c.entries.len(), 14);
        let dims = |name: &str| {
            let d = c.entry(name).unwrap().dims;
            (d.d_l, d.t_l, d.t_a, d.t_v, d.d_a, d.d_v)
        };
        // main.py lines 180-184, 186-187, 190-194, 196-197 of the reference.
        assert_eq!(dims("mosi-aligned"), (768, 50, 50, 50, 5, 20));
        assert_eq!(dims("mosi-unaligned"), (768, 50, 375, 500, 5, 20));
        assert_eq!(dims("mosei-aligned"), (768, 50, 50, 50, 74, 35));
        assert_eq!(dims("mosei-unaligned"), (768, 50, 500, 500, 74, 35));
        assert_eq!(dims("mosi-unaligned-ood-seven"), dims("mosi-unaligned"));
        assert_eq!(dims("mosei-aligned-ood-binary"), dims("mosei-aligned"));
        assert_eq!(dims("mosi-cross"), (768, 44, 44, 44, 25, 171));
        assert_eq!(dims("mosei-cross"), (768, 75, 75, 75, 25, 171));
        let samples = |name: &str| {
            let s = c.entry(name).unwrap().samples;
            (s.train, s.valid, s.test)
        };
        for name in ["mosi-aligned", "mosi-unaligned"] {
            assert_eq!(samples(name), (Some(1284), Some(229), Some(686)));
        }
        for name in ["mosei-aligned", "mosei-unaligned"] {
            assert_eq!(samples(name), (Some(16326), Some(1871), Some(4659)));
        }
        assert_eq!(samples("mosi-aligned-ood-binary"), (Some(1284), None, None));
        assert_eq!(
            samples("mosei-unaligned-ood-seven"),
            (Some(16326), None, None)
        );
        assert_eq!(samples("mosi-cross"), (Some(1274), None, None));
        assert_eq!(samples("mosei-cross"), (Some(16245), None, None));
        for entry in &c.entries {
            assert_eq!(entry.score_range, [-3.0, 3.0], "{}", entry.name);
            assert_eq!(entry.config, format!("{}.toml", entry.name));
            assert_eq!(
                entry.task.is_some(),
                entry.setting == Setting::Ood,
                "{}",
                entry.name
            );
            assert_eq!(
                entry.format == FileFormat::Joblib,
                entry.setting == Setting::Ood
            );
            assert_eq!(entry.sha256.is_some(), entry.setting == Setting::Iid);
            assert!(c.source(&entry.published).is_some());
        }
        assert_eq!(
            c.entry("mosi-cross").unwrap().tested_on.as_deref(),
            Some("mosei-cross")
        );
    }

    #[test]
    fn every_entry_has_its_training_config_and_nothing_else_is_there() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets");
        let mut configs: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".toml") && name != "catalog.toml")
            .collect();
        configs.sort();
        let mut wanted: Vec<String> = builtin().entries.into_iter().map(|e| e.config).collect();
        wanted.sort();
        assert_eq!(configs, wanted);
    }

    #[test]
    fn the_catalog_round_trips_and_refuses_contradictions() {
        let c = builtin();
        let again = Catalog::from_toml_str(&c.to_toml_string().unwrap(), "again.toml").unwrap();
        assert_eq!(again, c);

        let error = |edit: &dyn Fn(&mut Catalog)| {
            let mut bad = c.clone();
            edit(&mut bad);
            let text = bad.to_toml_string().unwrap();
            Catalog::from_toml_str(&text, "bad.toml")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error(&|c| c.entries[1].name = "mosi-aligned".into()),
            "bad.toml: entry `mosi-aligned`: the name is used twice"
        );
        assert_eq!(
            error(&|c| c.entries[0].dims.t_a = 51),
            "bad.toml: entry `mosi-aligned`: aligned, but T_a = 51 and T_v = 50 differ from \
             T_l = 50"
        );
        assert_eq!(
            error(&|c| c.entries[1].keys.retain(|k| k != "vision_lengths")),
            "bad.toml: entry `mosi-unaligned`: `keys` lacks `vision_lengths`, but unaligned \
             files need it"
        );
        assert_eq!(
            error(&|c| c.entries[0].published = "nobody".into()),
            "bad.toml: entry `mosi-aligned`: `published = \"nobody\"` names no [[source]]"
        );
        let unknown = Catalog::from_toml_str("[[entry]]\nname = \"x\"\nsize = 3\n", "u.toml")
            .unwrap_err()
            .to_string();
        assert!(
            unknown.starts_with("u.toml: unknown field `size`"),
            "{unknown}"
        );
        // A typo inside the `dims` table is refused too.
        let text = c.to_toml_string().unwrap().replacen("t_v =", "tv =", 1);
        let typo = Catalog::from_toml_str(&text, "typo.toml")
            .unwrap_err()
            .to_string();
        assert!(typo.contains("unknown field `tv`"), "{typo}");
        assert_eq!(
            c.entry("mosi").unwrap_err().to_string(),
            format!("no catalog entry `mosi` (known: {})", c.names())
        );
    }

    fn layout_of(entry: &Entry) -> FileLayout {
        let d = entry.dims;
        FileLayout {
            t_l: d.t_l,
            t_a: d.t_a,
            t_v: d.t_v,
            d_a: d.d_a,
            d_v: d.d_v,
            aligned: entry.aligned,
        }
    }

    #[test]
    fn an_entry_is_chosen_from_the_path_and_the_layout() {
        let c = builtin();
        let layout = |name: &str| layout_of(c.entry(name).unwrap());
        let pick = |path: &str, from: Option<&str>| {
            let l = from.map(layout);
            let choice = c.choose(Path::new(path), l.as_ref()).unwrap();
            (choice.entry.name.clone(), choice.basis, choice.also.len())
        };
        let named = ChoiceBasis::NameAndLayout;
        assert_eq!(
            pick("data/MOSI/Processed/aligned_50.pkl", Some("mosi-aligned")),
            ("mosi-aligned".into(), named, 0)
        );
        assert_eq!(
            pick(
                "/x/CMU-MOSEI/Processed/unaligned_50.pkl",
                Some("mosei-unaligned")
            ),
            ("mosei-unaligned".into(), named, 0)
        );
        assert_eq!(
            pick(
                "OOD_MOSI/seven/MOSI_unaligned_50.pkl",
                Some("mosi-unaligned")
            ),
            ("mosi-unaligned-ood-seven".into(), named, 0)
        );
        assert_eq!(
            pick("MSA_cross_datasets/mosei.pkl", Some("mosei-cross")),
            ("mosei-cross".into(), named, 0)
        );
        // A name without the task: both OOD files fit, the first is taken and the other named.
        assert_eq!(
            pick(
                "testdata/mmsa/ood_mosi_unaligned_50_tiny.joblib.pkl",
                Some("mosi-unaligned")
            ),
            ("mosi-unaligned-ood-binary".into(), named, 1)
        );
        // The name says MOSI but the sizes are MOSEI's: the name alone decides nothing, the
        // layout does.
        assert_eq!(
            pick("mosi_copy.pkl", Some("mosei-unaligned")),
            ("mosei-unaligned".into(), ChoiceBasis::Layout, 0)
        );
        // A CASP file saved under a bare name: its 25 / 171 sizes point to a cross entry.
        assert_eq!(
            pick("features.pkl", Some("mosi-cross")),
            ("mosi-cross".into(), ChoiceBasis::Layout, 0)
        );
        // Layout unknown: the name decides.
        assert_eq!(
            pick("MOSEI/Processed/aligned_50.pkl", None),
            ("mosei-aligned".into(), ChoiceBasis::Name, 0)
        );
        let odd = FileLayout {
            d_a: 7,
            ..layout("mosi-aligned")
        };
        let error = c
            .choose(Path::new("features.pkl"), Some(&odd))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("features.pkl: cannot tell which catalog entry"),
            "{error}"
        );
        let choice = c
            .choose(
                Path::new("ood_mosi_unaligned_50_tiny.joblib.pkl"),
                Some(&layout("mosi-unaligned")),
            )
            .unwrap();
        assert_eq!(
            choice.to_string(),
            "mosi-unaligned-ood-binary (from the file name and its layout; \
             mosi-unaligned-ood-seven fit(s) as well, give --dataset to choose)"
        );
    }
}
