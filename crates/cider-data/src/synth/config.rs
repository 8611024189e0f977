//! The configuration of the synthetic dataset (docs/method.md §2.1, §2.5): the MMSA feature
//! layouts of MOSI and MOSEI, the IID / OOD variants, and [`SynthConfig`] with its defaults and
//! checks.

use std::fmt;
use std::str::FromStr;

use crate::dataset::Dims;
use crate::error::DataError;

/// MMSA feature layouts of MOSI and MOSEI (docs/method.md §2.1; cross-dataset CASP layouts are not
/// synthesised).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// MOSI word-aligned: `T_l = T_a = T_v = 50`, `d_a = 5`, `d_v = 20`.
    MosiAligned,
    /// MOSI unaligned: `T_l = 50`, `T_a = 375`, `T_v = 500`, `d_a = 5`, `d_v = 20`.
    MosiUnaligned,
    /// MOSEI word-aligned: `T_l = T_a = T_v = 50`, `d_a = 74`, `d_v = 35`.
    MoseiAligned,
    /// MOSEI unaligned: `T_l = 50`, `T_a = T_v = 500`, `d_a = 74`, `d_v = 35`.
    MoseiUnaligned,
}

impl Layout {
    /// All layouts, in the order of their names in [`Layout::NAMES`].
    pub const ALL: [Layout; 4] = [
        Layout::MosiAligned,
        Layout::MosiUnaligned,
        Layout::MoseiAligned,
        Layout::MoseiUnaligned,
    ];

    /// The accepted names (`FromStr` / `Display`).
    pub const NAMES: [&'static str; 4] = [
        "mosi-aligned",
        "mosi-unaligned",
        "mosei-aligned",
        "mosei-unaligned",
    ];

    /// The layout's name, e.g. `"mosi-unaligned"`.
    pub fn name(self) -> &'static str {
        match self {
            Layout::MosiAligned => Self::NAMES[0],
            Layout::MosiUnaligned => Self::NAMES[1],
            Layout::MoseiAligned => Self::NAMES[2],
            Layout::MoseiUnaligned => Self::NAMES[3],
        }
    }

    /// Whether audio and vision are word-aligned (`T_a = T_v = T_l`, lengths = `text_len`).
    pub fn aligned(self) -> bool {
        matches!(self, Layout::MosiAligned | Layout::MoseiAligned)
    }

    /// Sequence lengths and feature sizes (docs/method.md §2.1 table).
    pub fn dims(self) -> Dims {
        let t_l = 50;
        let (d_a, d_v, t_a, t_v) = match self {
            Layout::MosiAligned => (5, 20, t_l, t_l),
            Layout::MosiUnaligned => (5, 20, 375, 500),
            Layout::MoseiAligned => (74, 35, t_l, t_l),
            Layout::MoseiUnaligned => (74, 35, 500, 500),
        };
        Dims {
            d_l: 768,
            t_l,
            t_a,
            t_v,
            d_a,
            d_v,
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Layout {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Layout::ALL
            .into_iter()
            .find(|layout| layout.name() == s)
            .ok_or_else(|| DataError::Invalid {
                what: "synthetic layout".into(),
                message: format!("`{s}` is not one of {}", Layout::NAMES.join(", ")),
            })
    }
}

/// Distribution variant (docs/method.md §2.5): which splits share the training statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Variant {
    /// Train, valid and test follow the same class priors and shortcut-word statistics.
    Iid,
    /// The test split has mirrored polar class priors and a reversed shortcut-word association;
    /// valid still follows training.
    Ood,
}

impl Variant {
    /// The variant's name, `"iid"` or `"ood"`.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Iid => "iid",
            Variant::Ood => "ood",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Variant {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "iid" => Ok(Variant::Iid),
            "ood" => Ok(Variant::Ood),
            _ => Err(DataError::Invalid {
                what: "synthetic variant".into(),
                message: format!("`{s}` is not one of iid, ood"),
            }),
        }
    }
}
/// Which of the training biases the OOD test split reverses (the IID variant reverses none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum OodShift {
    /// Mirrored polar priors and reversed shortcut words.
    #[default]
    Both,
    /// Mirrored polar priors only: the shortcut words keep their training association.
    Label,
    /// Reversed shortcut words only: the polar priors stay those of training.
    Language,
}

impl OodShift {
    /// `"both"`, `"label"` or `"language"`.
    pub fn name(self) -> &'static str {
        match self {
            OodShift::Both => "both",
            OodShift::Label => "label",
            OodShift::Language => "language",
        }
    }

    /// Whether the OOD test split's polar priors are mirrored.
    pub fn shifts_labels(self) -> bool {
        self != OodShift::Language
    }

    /// Whether the OOD test split's shortcut words are reversed.
    pub fn shifts_language(self) -> bool {
        self != OodShift::Label
    }
}

/// Largest number of f32 values a configuration may allocate (16 GiB).
const MAX_VALUES: usize = 1 << 32;

/// How to generate a synthetic dataset. All strengths are ≥ 0; biases are in [0, 1].
///
/// It is also the `[data]` table of a training configuration with `source = "synthetic"`:
/// every key is optional (the [`Default`] fills it) and an unknown key is an error.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthConfig {
    /// Feature layout (dims, alignment).
    pub layout: Layout,
    /// IID (all splits alike) or OOD (shifted test split).
    pub variant: Variant,
    /// Which biases the OOD test split reverses (training and validation never change).
    pub ood_shift: OodShift,
    /// Seed of everything; each split has its own stream, so split sizes do not interact.
    pub seed: u64,
    /// Training samples (≥ 1).
    pub n_train: usize,
    /// Validation samples (≥ 1).
    pub n_valid: usize,
    /// Test samples (≥ 1).
    pub n_test: usize,
    /// Text signal `κ_l`: a polar word is positive with probability `sigmoid(κ_l · s)`.
    pub text_strength: f64,
    /// Audio signal amplitude `α_a` (multiplies `z·g(t)·w_a`).
    pub audio_strength: f64,
    /// Vision signal amplitude `α_v` (multiplies `z·g(t)·w_v`).
    pub vision_strength: f64,
    /// Label bias `b ∈ [0, 1]`: training polar priors `((1 − b)/2, (1 + b)/2)` (neg, pos).
    pub label_bias: f64,
    /// Language bias `λ ∈ [0, 1]`: a shortcut word matches the utterance's polarity with
    /// probability `(1 + λ)/2` in training.
    pub language_bias: f64,
    /// Also emit precomputed text features `text`, `[N, T_l, 768]` (large; off by default).
    /// Not a configuration key: training always turns it on (the prototypes need the text).
    #[serde(skip)]
    pub text_features: bool,
}

impl Default for SynthConfig {
    /// A demo-sized OOD dataset in the MOSI aligned layout: 600 / 150 / 300 samples.
    fn default() -> Self {
        SynthConfig {
            layout: Layout::MosiAligned,
            variant: Variant::Ood,
            ood_shift: OodShift::Both,
            seed: 1111,
            n_train: 600,
            n_valid: 150,
            n_test: 300,
            text_strength: 1.0,
            audio_strength: 3.0,
            vision_strength: 3.0,
            label_bias: 0.4,
            language_bias: 0.8,
            text_features: false,
        }
    }
}

impl SynthConfig {
    /// The defaults with MOSI's split sizes, 1284 / 229 / 686 (docs/method.md §2.2).
    pub fn mosi_size() -> Self {
        SynthConfig {
            n_train: 1284,
            n_valid: 229,
            n_test: 686,
            ..SynthConfig::default()
        }
    }

    /// Checks sizes, strengths and biases, and that all arrays together hold at most 2^32
    /// floats (16 GiB).
    pub fn validate(&self) -> Result<(), DataError> {
        let invalid = |message: String| DataError::Invalid {
            what: "synthetic data configuration".into(),
            message,
        };
        for (name, n) in [
            ("n_train", self.n_train),
            ("n_valid", self.n_valid),
            ("n_test", self.n_test),
        ] {
            if n == 0 {
                return Err(invalid(format!("{name} is 0, expected at least 1 sample")));
            }
        }
        for (name, v) in [
            ("text_strength", self.text_strength),
            ("audio_strength", self.audio_strength),
            ("vision_strength", self.vision_strength),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(format!(
                    "{name} = {v}, expected a finite value ≥ 0"
                )));
            }
        }
        for (name, v) in [
            ("label_bias", self.label_bias),
            ("language_bias", self.language_bias),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(invalid(format!("{name} = {v}, expected a value in [0, 1]")));
            }
        }
        let dims = self.layout.dims();
        let text = if self.text_features {
            dims.t_l * dims.d_l
        } else {
            0
        };
        let per_sample = dims.t_a * dims.d_a + dims.t_v * dims.d_v + text;
        let values = self
            .n_train
            .checked_add(self.n_valid)
            .and_then(|n| n.checked_add(self.n_test))
            .and_then(|n| n.checked_mul(per_sample))
            .filter(|&v| v <= MAX_VALUES);
        if values.is_none() {
            return Err(invalid(format!(
                "{} + {} + {} samples of {per_sample} values each exceed the limit of {MAX_VALUES} values",
                self.n_train, self.n_valid, self.n_test
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::generate;

    /// Sizes from docs/method.md §2.1 table.
    #[test]
    fn layouts_have_the_spec_dims_and_parse_by_name() {
        let expected = [
            ("mosi-aligned", true, (50, 50, 50, 5, 20)),
            ("mosi-unaligned", false, (50, 375, 500, 5, 20)),
            ("mosei-aligned", true, (50, 50, 50, 74, 35)),
            ("mosei-unaligned", false, (50, 500, 500, 74, 35)),
        ];
        for (name, aligned, (t_l, t_a, t_v, d_a, d_v)) in expected {
            let layout: Layout = name.parse().unwrap();
            assert_eq!(layout.to_string(), name);
            assert_eq!(layout.aligned(), aligned);
            let dims = layout.dims();
            assert_eq!(
                (dims.d_l, dims.t_l, dims.t_a, dims.t_v, dims.d_a, dims.d_v),
                (768, t_l, t_a, t_v, d_a, d_v)
            );
        }
        let err = "mosi".parse::<Layout>().unwrap_err();
        assert!(matches!(err, DataError::Invalid { .. }));
        let message = err.to_string();
        for name in Layout::NAMES {
            assert!(message.contains(name), "{message}");
        }
        assert_eq!("iid".parse::<Variant>().unwrap(), Variant::Iid);
        assert_eq!("ood".parse::<Variant>().unwrap(), Variant::Ood);
        assert!(matches!(
            "OOD".parse::<Variant>(),
            Err(DataError::Invalid { .. })
        ));
    }

    #[test]
    fn invalid_configurations_are_refused() {
        assert!(SynthConfig::default().validate().is_ok());
        let mosi = SynthConfig::mosi_size();
        assert_eq!((mosi.n_train, mosi.n_valid, mosi.n_test), (1284, 229, 686));
        let bad = [
            SynthConfig {
                n_valid: 0,
                ..SynthConfig::default()
            },
            SynthConfig {
                label_bias: 1.5,
                ..SynthConfig::default()
            },
            SynthConfig {
                language_bias: -0.1,
                ..SynthConfig::default()
            },
            SynthConfig {
                audio_strength: f64::NAN,
                ..SynthConfig::default()
            },
            SynthConfig {
                text_strength: -1.0,
                ..SynthConfig::default()
            },
            // 2^30 samples × 1250 floats each is far beyond the 2^32-value limit.
            SynthConfig {
                n_train: 1 << 30,
                ..SynthConfig::default()
            },
            SynthConfig {
                n_train: usize::MAX,
                ..SynthConfig::default()
            },
        ];
        for cfg in bad {
            assert!(
                matches!(generate(&cfg), Err(DataError::Invalid { .. })),
                "{cfg:?}"
            );
        }
    }
}
