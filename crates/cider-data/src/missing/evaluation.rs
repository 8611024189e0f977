//! Evaluation-time missingness (docs/method.md §3.3): the concrete modes with their rates
//! ([`EvalMissing`]) and [`eval_view`], which draws the masks of a whole split once from NumPy's
//! legacy MT19937 seeded with 1111 (reset before every generation), consuming exactly the arrays
//! the reference draws, in its order, so the masks equal the reference's. The draws of each mode
//! live in `rmfm.rs` (RMFM, RMFM_same) and `eval_modes.rs` (RMM, TMFM, STMFM).

use super::view::{MissingView, SplitMasks, check_split, force_cls_sep, row};
use super::{eval_modes, rmfm};
use crate::dataset::Split;
use crate::error::DataError;
use crate::mt19937::Mt19937;

/// The reference's evaluation seed (`np.random.seed(1111)`, docs/method.md §3.3).
pub const DEFAULT_MISSING_SEED: u32 = 1111;

/// Evaluation-time missing modes (docs/method.md §3.3). Rates are probabilities of *missing*, in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EvalMissing {
    /// `RMFM` (the paper's; default): each valid position of `[text; audio; vision]` is
    /// missing with probability `rate`. Draws one `[N, T_l + T_a + T_v]` uniform array.
    Rmfm {
        /// Probability of missing, in [0, 1].
        rate: f64,
    },
    /// `RMFM_same`: per-modality rates `(p_t, p_a, p_v)`. Draws `[N, T_l]`, `[N, T_a]`,
    /// `[N, T_v]` uniform arrays, in that order. See
    /// [`smm_rates`](crate::missing::smm_rates) for SMM.
    RmfmSame {
        /// `(p_t, p_a, p_v)`, each in [0, 1].
        rates: [f64; 3],
    },
    /// `RMM`: each modality of each sample is dropped whole with probability `rate` (text keeps
    /// `[CLS]`/`[SEP]`). Draws one `[N, 3]` uniform array.
    Rmm {
        /// Probability of missing, in [0, 1].
        rate: f64,
    },
    /// `TMFM` (aligned data only): one per-time-step mask over the text mask, shared by all
    /// three modalities. Draws one `[N, T_l]` uniform array.
    Tmfm {
        /// Probability of missing, in [0, 1].
        rate: f64,
    },
    /// `STMFM` (aligned data only): one block of `round_half_even((text_len − 2)·rate)` steps,
    /// starting at `randint(1, text_len − block)`, missing in all three modalities. Draws one
    /// legacy `randint` per sample.
    Stmfm {
        /// Probability of missing, in [0, 1].
        rate: f64,
    },
}

impl EvalMissing {
    /// The reference's name of the mode (`"RMFM"`, `"RMFM_same"`, `"RMM"`, `"TMFM"`, `"STMFM"`).
    pub fn name(&self) -> &'static str {
        match self {
            EvalMissing::Rmfm { .. } => "RMFM",
            EvalMissing::RmfmSame { .. } => "RMFM_same",
            EvalMissing::Rmm { .. } => "RMM",
            EvalMissing::Tmfm { .. } => "TMFM",
            EvalMissing::Stmfm { .. } => "STMFM",
        }
    }

    /// True for the modes that share one time-step mask across modalities (TMFM, STMFM) and
    /// therefore need aligned data.
    pub fn needs_aligned(&self) -> bool {
        matches!(self, EvalMissing::Tmfm { .. } | EvalMissing::Stmfm { .. })
    }

    /// Every rate of the mode must be a number in [0, 1].
    fn validate(&self) -> Result<(), DataError> {
        let rates: &[f64] = match self {
            EvalMissing::RmfmSame { rates } => rates,
            EvalMissing::Rmfm { rate }
            | EvalMissing::Rmm { rate }
            | EvalMissing::Tmfm { rate }
            | EvalMissing::Stmfm { rate } => std::slice::from_ref(rate),
        };
        match rates.iter().find(|r| !(0.0..=1.0).contains(*r)) {
            Some(bad) => Err(DataError::Invalid {
                what: format!("{} missing rate", self.name()),
                message: format!("{bad} is not a number in [0, 1]"),
            }),
            None => Ok(()),
        }
    }
}

/// True when audio and vision share the text's time axis and lengths (the aligned layout,
/// docs/method.md §2.3), which TMFM and STMFM require.
fn is_aligned(split: &Split) -> bool {
    let d = split.dims;
    d.t_a == d.t_l
        && d.t_v == d.t_l
        && split.audio_len == split.text_len
        && split.vision_len == split.text_len
}

/// Checks that `mode` can be drawn on `split`: a valid rate, and aligned data for TMFM and
/// STMFM. [`eval_view`] runs it first; a protocol can run it on every point before any pass.
///
/// # Errors
/// As [`eval_view`] for these two cases.
pub fn check_mode(split: &Split, mode: EvalMissing) -> Result<(), DataError> {
    mode.validate()?;
    if mode.needs_aligned() && !is_aligned(split) {
        return Err(DataError::Invalid {
            what: format!("{} missing mode", mode.name()),
            message: format!(
                "split `{}` is unaligned (T_l, T_a, T_v = {}, {}, {}); {} needs aligned data",
                split.name,
                split.dims.t_l,
                split.dims.t_a,
                split.dims.t_v,
                mode.name()
            ),
        });
    }
    Ok(())
}

/// Evaluation masks and missing view of a whole split (docs/method.md §3.3), from NumPy's legacy MT19937
/// seeded with `seed` (the reference uses [`DEFAULT_MISSING_SEED`]). Draws exactly the arrays
/// of the mode, in the reference's order, and compares `u > p` in f64, so the result equals
/// the reference's; masks for one mode are nested across rates.
///
/// Errors: a rate outside [0, 1] or NaN; TMFM/STMFM on unaligned data; a split whose arrays
/// disagree with its dims or whose text lacks `[CLS]`/`[SEP]`.
pub fn eval_view(split: &Split, mode: EvalMissing, seed: u32) -> Result<MissingView, DataError> {
    check_mode(split, mode)?;
    check_split(split)?;
    let mut masks = SplitMasks::absent(split);
    let mut mt = Mt19937::new(seed);
    match mode {
        EvalMissing::Rmfm { rate } => rmfm::rmfm(split, rate, &mut mt, &mut masks),
        EvalMissing::RmfmSame { rates } => rmfm::rmfm_same(split, rates, &mut mt, &mut masks),
        EvalMissing::Rmm { rate } => eval_modes::rmm(split, rate, &mut mt, &mut masks),
        EvalMissing::Tmfm { rate } => eval_modes::tmfm(split, rate, &mut mt, &mut masks),
        EvalMissing::Stmfm { rate } => eval_modes::stmfm(split, rate, &mut mt, &mut masks)?,
    }
    let t_l = split.dims.t_l;
    for i in 0..split.n {
        force_cls_sep(&mut masks.text[row(i, t_l)], &split.text_mask[row(i, t_l)]);
    }
    if mode.needs_aligned() {
        eval_modes::share_text_mask(split, &mut masks);
    }
    let all: Vec<usize> = (0..split.n).collect();
    Ok(MissingView::build(
        split,
        &all,
        masks.text,
        masks.audio,
        masks.vision,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::missing::testkit::{
        aligned_split, all, check_rules, subset, toy_split, unaligned_split,
    };

    #[test]
    fn every_mode_keeps_the_rules_and_nests_across_rates() {
        let rates = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0];
        let unaligned = unaligned_split();
        let aligned = aligned_split();
        type Make = fn(f64) -> EvalMissing;
        let modes: [(Make, bool); 4] = [
            (|p| EvalMissing::Rmfm { rate: p }, false),
            (|p| EvalMissing::RmfmSame { rates: [p, p, p] }, false),
            (|p| EvalMissing::Rmm { rate: p }, false),
            (|p| EvalMissing::Tmfm { rate: p }, true),
        ];
        for (make, needs_aligned) in modes {
            let split = if needs_aligned { &aligned } else { &unaligned };
            let views: Vec<MissingView> = rates
                .iter()
                .map(|&p| eval_view(split, make(p), DEFAULT_MISSING_SEED).unwrap())
                .collect();
            for v in &views {
                check_rules(split, &all(split), v);
            }
            for w in views.windows(2) {
                assert!(subset(&w[1].text_missing, &w[0].text_missing));
                assert!(subset(&w[1].audio_missing, &w[0].audio_missing));
                assert!(subset(&w[1].vision_missing, &w[0].vision_missing));
            }
            // Rate 1: only [CLS]/[SEP] remain; every frame is missing, except that TMFM's
            // shared mask also keeps the frames at the [CLS]/[SEP] time steps.
            let last = views.last().unwrap();
            let kept: usize = last.text_missing.iter().map(|&m| usize::from(m)).sum();
            assert_eq!(kept, 2 * split.n, "{:?}", make(1.0));
            if needs_aligned {
                assert_eq!(last.audio_missing, last.text_missing);
                assert_eq!(last.vision_missing, last.text_missing);
            } else {
                let frames = last.audio_missing.iter().chain(&last.vision_missing);
                assert!(frames.into_iter().all(|&m| m == 0));
            }
            // Rate 0 keeps every valid position (u = 0 exactly has probability 2^-53).
            let first = &views[0];
            assert_eq!(first.text_missing, split.text_mask);
            assert_eq!(first.audio_missing, split.audio_mask());
        }
    }
    #[test]
    fn bad_options_are_typed_errors() {
        let split = unaligned_split();
        for mode in [
            EvalMissing::Rmfm { rate: -0.1 },
            EvalMissing::Rmfm { rate: f64::NAN },
            EvalMissing::RmfmSame {
                rates: [0.0, 1.5, 0.0],
            },
            EvalMissing::Rmm {
                rate: f64::INFINITY,
            },
            EvalMissing::Tmfm { rate: 0.3 },
            EvalMissing::Stmfm { rate: 0.3 },
        ] {
            assert!(
                matches!(
                    eval_view(&split, mode, 1111),
                    Err(DataError::Invalid { .. })
                ),
                "{mode:?}"
            );
        }
        let mut short = split.clone();
        short.audio.pop();
        assert!(matches!(
            eval_view(&short, EvalMissing::Rmfm { rate: 0.2 }, 1111),
            Err(DataError::Invalid { .. })
        ));
        let mut no_sep = toy_split([4, 4, 4], &[2], &[1], &[1]);
        no_sep.text_mask = vec![1, 0, 0, 0];
        assert!(eval_view(&no_sep, EvalMissing::Rmm { rate: 0.2 }, 1111).is_err());
    }

    /// One reference file of a fixture case, as i64 / f32 values (shape checked).
    fn fixture_values(dir: &std::path::Path, file: &serde_json::Value) -> (Vec<i64>, Vec<f32>) {
        let name = file["file"].as_str().unwrap();
        let array = crate::npy::from_path(dir.join(name)).unwrap();
        let shape: Vec<usize> = file["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(array.shape(), shape.as_slice(), "{name}");
        let ints = match array.data() {
            crate::ArrayData::I64(v) => v.clone(),
            crate::ArrayData::U8(v) => v.iter().map(|&x| i64::from(x)).collect(),
            _ => Vec::new(),
        };
        let floats = match array.data() {
            crate::ArrayData::F32(v) => v.clone(),
            _ => Vec::new(),
        };
        (ints, floats)
    }

    /// Parity with the reference pipeline (`testdata/masks/*/index.json`): the test split of
    /// the tiny MOSI fixtures, binary task, seed 1111. For every case (RMFM 0/0.3/0.7/1.0,
    /// RMFM_same, RMM, and on aligned data TMFM/STMFM) the missing masks, `[UNK]` ids, zeroed
    /// frames and counterfactual ids must equal the reference's exactly (frames compared by
    /// value: the reference's `0 · x` may be −0.0 where we write 0.0); the bias words (train
    /// split, threshold 100, [`BiasRule::Parity`]; [`BiasRule::Clean`] differs) too, in dictionary
    /// order.
    #[test]
    fn reference_fixtures_match_exactly() {
        use crate::bias::{BiasRule, bias_words, counterfactual_ids};
        use crate::dataset::{Dataset, Task};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
        let mut cases_checked = 0;
        for layout in ["mosi_aligned", "mosi_unaligned"] {
            let dir = root.join("masks").join(layout);
            let index: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
            assert_eq!(index["task"], "binary");
            assert_eq!(index["split"], "test");
            let seed = index["seed"].as_u64().unwrap() as u32;
            let pkl = root
                .join("mmsa")
                .join(index["source_fixture"].as_str().unwrap());
            let data = Dataset::from_path(&pkl).unwrap();
            assert_eq!(data.aligned, index["aligned"].as_bool().unwrap());

            let bias = bias_words(&data.train, Task::Binary, 100, BiasRule::Parity).unwrap();
            let bias_ref = crate::npy::from_path(dir.join("bias_word_ids.npy")).unwrap();
            let crate::ArrayData::I64(bias_ref) = bias_ref.data() else {
                panic!("bias_word_ids.npy is not int64");
            };
            let bias_i64: Vec<i64> = bias.iter().map(|&x| i64::from(x)).collect();
            assert_eq!(&bias_i64, bias_ref, "{layout}: bias words");
            // The stale-cv quirk matters here: skipping neutral-only tokens changes the list.
            let clean = bias_words(&data.train, Task::Binary, 100, BiasRule::Clean).unwrap();
            assert_ne!(clean, bias, "{layout}: clean rule");

            for (name, case) in index["cases"].as_object().unwrap() {
                let rate = &case["rate"];
                let scalar = || rate.as_f64().or_else(|| rate[0].as_f64()).unwrap();
                let mode = match case["mode"].as_str().unwrap() {
                    "RMFM" => EvalMissing::Rmfm { rate: scalar() },
                    "RMFM_same" => EvalMissing::RmfmSame {
                        rates: [0, 1, 2].map(|k| rate[k].as_f64().unwrap()),
                    },
                    "RMM" => EvalMissing::Rmm { rate: scalar() },
                    "TMFM" => EvalMissing::Tmfm { rate: scalar() },
                    "STMFM" => EvalMissing::Stmfm { rate: scalar() },
                    other => panic!("unknown mode {other}"),
                };
                let v = eval_view(&data.test, mode, seed).unwrap();
                let cf = counterfactual_ids(&v.text_m_ids, &bias);
                let files = &case["files"];
                let as_i64 = |x: &[u32]| x.iter().map(|&v| i64::from(v)).collect::<Vec<_>>();
                let bytes = |x: &[u8]| x.iter().map(|&v| i64::from(v)).collect::<Vec<_>>();
                let ours: [(&str, Vec<i64>); 5] = [
                    ("text_m_ids", as_i64(&v.text_m_ids)),
                    ("text_cf_ids", as_i64(&cf)),
                    ("text_missing_mask", bytes(&v.text_missing)),
                    ("audio_missing_mask", bytes(&v.audio_missing)),
                    ("vision_missing_mask", bytes(&v.vision_missing)),
                ];
                for (key, values) in ours {
                    let (reference, _) = fixture_values(&dir, &files[key]);
                    assert_eq!(values, reference, "{layout} {name}: {key}");
                }
                for (key, values) in [("audio_m", &v.audio_m), ("vision_m", &v.vision_m)] {
                    let (_, reference) = fixture_values(&dir, &files[key]);
                    assert!(
                        values.len() == reference.len()
                            && values.iter().zip(&reference).all(|(a, b)| a == b),
                        "{layout} {name}: {key}"
                    );
                }
                cases_checked += 1;
            }
        }
        assert_eq!(cases_checked, 16);
    }
}
