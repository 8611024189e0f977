//! Counterfactual debiasing at inference (docs/method.md §7.4) and the choice of τ (docs/method.md §11.3).
//!
//! For each sample, with `ℓ` the log-probabilities of the factual input and `ℓ_cf` those of the
//! counterfactual input (only bias words left in the text), the debiased scores are
//! `s_τ = ℓ − τ·ℓ_cf` for τ on the grid {0.0, 0.1, …, 3.0}; τ = 0 is the plain MCM prediction.
//! Metrics (docs/method.md §8.1) are computed from `s_τ` for every τ, then τ is chosen by a
//! [`TauSelection`].

use cider_data::dataset::Task;
use serde::{Deserialize, Serialize};

use crate::error::MaciError;
use crate::metrics::{self, Metrics};

/// Number of τ values on the grid {0.0, 0.1, …, 3.0}.
pub const TAU_STEPS: usize = 31;

/// One τ of the grid, held as its index `k` so that τ = k/10 exactly as a decimal (no drift
/// from repeated additions of 0.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tau(u8);

impl Tau {
    /// τ = 0: the plain, undebiased prediction.
    pub const ZERO: Tau = Tau(0);

    /// The τ of grid index `k` (τ = k/10), or `None` if `k ≥ 31`.
    pub fn from_index(k: usize) -> Option<Tau> {
        (k < TAU_STEPS).then_some(Tau(k as u8))
    }

    /// The grid index `k` (τ = k/10).
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// τ as a number, `k / 10`.
    pub fn value(self) -> f64 {
        f64::from(self.0) / 10.0
    }

    /// The 31 values of the grid in increasing order.
    pub fn grid() -> impl Iterator<Item = Tau> {
        (0..TAU_STEPS as u8).map(Tau)
    }
}

impl Serialize for Tau {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.value())
    }
}

/// The τ grid as numbers: `[0.0, 0.1, …, 3.0]`, 31 values, each `k / 10`.
pub fn tau_grid() -> Vec<f64> {
    Tau::grid().map(Tau::value).collect()
}

/// The model outputs of one evaluated split, all row-major.
#[derive(Debug, Clone, Copy)]
pub struct CfOutputs<'a, T> {
    /// `ℓ = pred_m`: log-probabilities of the factual (missing-view) input, `[N, C]`.
    pub pred: &'a [T],
    /// `ℓ_cf = cf_pred_m`: log-probabilities of the counterfactual input, `[N, C]`.
    pub cf_pred: &'a [T],
    /// Labels of the task, `[N]`.
    pub labels: &'a [u8],
}

/// `s_τ = ℓ − τ·ℓ_cf` element-wise, `[N, C]` (computed in `f64`).
///
/// `ℓ` and `ℓ_cf` must have the same length and be finite (`τ·ℓ_cf` is undefined for τ = 0 and
/// an infinite `ℓ_cf`).
pub fn debiased_scores<T: Copy + Into<f64>>(
    pred: &[T],
    cf_pred: &[T],
    tau: Tau,
) -> Result<Vec<f64>, MaciError> {
    debiased_scores_at(pred, cf_pred, tau.value())
}

/// [`debiased_scores`] at any `τ ≥ 0`, not only a grid point (a τ saved with a model, or one a
/// caller chooses).
///
/// # Errors
/// As [`debiased_scores`], and [`MaciError::Invalid`] for a τ that is negative or not finite.
pub fn debiased_scores_at<T: Copy + Into<f64>>(
    pred: &[T],
    cf_pred: &[T],
    tau: f64,
) -> Result<Vec<f64>, MaciError> {
    if !(tau.is_finite() && tau >= 0.0) {
        return Err(MaciError::Invalid {
            what: "τ".into(),
            message: format!("{tau}: expected a finite τ ≥ 0"),
        });
    }
    let (pred, cf_pred) = checked_pair(pred, cf_pred)?;
    Ok(debias(&pred, &cf_pred, tau))
}

/// `s_τ` from checked `f64` inputs.
fn debias(pred: &[f64], cf_pred: &[f64], tau: f64) -> Vec<f64> {
    pred.iter()
        .zip(cf_pred)
        .map(|(&l, &l_cf)| l - tau * l_cf)
        .collect()
}

/// Converts `ℓ`, `ℓ_cf` to `f64`, checking equal lengths and finite values.
pub(crate) fn checked_pair<T: Copy + Into<f64>>(
    pred: &[T],
    cf_pred: &[T],
) -> Result<(Vec<f64>, Vec<f64>), MaciError> {
    if cf_pred.len() != pred.len() {
        return Err(MaciError::Length {
            what: "counterfactual log-probabilities cf_pred (same shape as pred)".into(),
            expected: pred.len(),
            found: cf_pred.len(),
        });
    }
    let to_f64 = |what: &str, values: &[T]| {
        let values: Vec<f64> = values.iter().map(|&v| v.into()).collect();
        match values.iter().position(|v| !v.is_finite()) {
            Some(index) => Err(MaciError::NonFinite {
                what: what.into(),
                index,
                value: values[index],
            }),
            None => Ok(values),
        }
    };
    Ok((to_f64("pred", pred)?, to_f64("cf_pred", cf_pred)?))
}

/// The metrics of one split at every τ of the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct TauSweep {
    /// `per_tau[k]`: the metrics of `s_τ` for τ = k/10.
    per_tau: Vec<Metrics>,
}

impl TauSweep {
    /// Computes the metrics of `s_τ` for the 31 values of τ.
    ///
    /// Errors as [`metrics::evaluate`] (sizes, labels, no non-neutral sample), and on
    /// non-finite `ℓ` or `ℓ_cf`.
    pub fn new<T: Copy + Into<f64>>(
        task: Task,
        outputs: &CfOutputs<'_, T>,
    ) -> Result<Self, MaciError> {
        let (pred, cf_pred) = checked_pair(outputs.pred, outputs.cf_pred)?;
        let per_tau = Tau::grid()
            .map(|tau| {
                metrics::evaluate(task, &debias(&pred, &cf_pred, tau.value()), outputs.labels)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { per_tau })
    }

    /// The metrics at one τ.
    pub fn at(&self, tau: Tau) -> &Metrics {
        &self.per_tau[tau.index()]
    }

    /// `(τ, metrics)` for the whole grid, τ increasing.
    pub fn iter(&self) -> impl Iterator<Item = (Tau, &Metrics)> + '_ {
        Tau::grid().zip(&self.per_tau)
    }

    /// The τ with the best headline metric (`Non0_acc_2` / `Acc_7`); the smallest such τ on ties.
    pub fn best_tau(&self) -> Tau {
        let mut best = (Tau::ZERO, f64::NEG_INFINITY);
        for (tau, metrics) in self.iter() {
            let (_, value) = metrics.headline();
            if value > best.1 {
                best = (tau, value);
            }
        }
        best.0
    }

    /// Every metric maximised separately over τ (the reference's reported numbers).
    pub fn oracle(&self) -> Metrics {
        // `per_tau` always holds 31 metrics of one task.
        Metrics::elementwise_max(&self.per_tau).unwrap_or_else(|| self.per_tau[0].clone())
    }
}

/// How τ is chosen (docs/method.md §11.3): without the evaluated split's labels, or by the
/// per-point oracle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum TauSelection {
    /// Clean: one τ chosen without test labels, then fixed for every evaluated point: in
    /// training, the best headline metric on the validation split; in the protocol, the τ of
    /// its rule ([`crate::tau_rules::TauChoice`], shift-gated by default).
    #[default]
    Validation,
    /// Reference parity: every metric maximised separately over τ on the evaluated split itself
    /// (uses its labels; accuracy and F1 may come from different τ).
    Oracle,
}

/// A [`TauSelection`] made concrete: a fixed τ, or the per-split oracle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TauRule {
    /// One τ for every evaluated set (chosen on the validation split).
    Fixed(Tau),
    /// Per metric, the maximum over τ on the evaluated set.
    Oracle,
}

impl TauRule {
    /// [`TauSelection::Validation`]: the τ with the best headline metric on the validation
    /// split's outputs (smallest τ on ties).
    pub fn from_validation<T: Copy + Into<f64>>(
        task: Task,
        validation: &CfOutputs<'_, T>,
    ) -> Result<Self, MaciError> {
        Ok(TauRule::Fixed(TauSweep::new(task, validation)?.best_tau()))
    }

    /// The selection this rule implements.
    pub fn selection(self) -> TauSelection {
        match self {
            TauRule::Fixed(_) => TauSelection::Validation,
            TauRule::Oracle => TauSelection::Oracle,
        }
    }

    /// The metrics of an evaluated split under this rule.
    pub fn evaluate<T: Copy + Into<f64>>(
        self,
        task: Task,
        outputs: &CfOutputs<'_, T>,
    ) -> Result<Metrics, MaciError> {
        match self {
            TauRule::Fixed(tau) => {
                let scores = debiased_scores(outputs.pred, outputs.cf_pred, tau)?;
                metrics::evaluate(task, &scores, outputs.labels)
            }
            TauRule::Oracle => Ok(TauSweep::new(task, outputs)?.oracle()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use cider_data::ArrayData;

    use super::*;
    use crate::metrics::Metric;

    #[test]
    fn tau_grid_has_31_decimal_values() {
        let grid = tau_grid();
        assert_eq!(grid.len(), 31);
        assert_eq!(grid[0], 0.0);
        assert_eq!(grid[3], 0.3);
        assert_eq!(grid[7], 0.7);
        assert_eq!(grid[30], 3.0);
        assert!(grid.windows(2).all(|w| w[1] > w[0]));
        assert_eq!(Tau::from_index(30).map(Tau::value), Some(3.0));
        assert_eq!(Tau::from_index(31), None);
    }

    #[test]
    fn debiased_scores_by_hand() {
        let tau = Tau::from_index(5).unwrap();
        let s = debiased_scores(&[-1.0f32, -0.5], &[-2.0f32, -0.25], tau).unwrap();
        // −1 − 0.5·(−2) = 0; −0.5 − 0.5·(−0.25) = −0.375
        assert_eq!(s, vec![0.0, -0.375]);
        assert!(matches!(
            debiased_scores(&[0.0f32], &[f32::NEG_INFINITY], tau),
            Err(MaciError::NonFinite { .. })
        ));
        assert!(matches!(
            debiased_scores(&[0.0f32, 1.0], &[0.0f32], tau),
            Err(MaciError::Length { .. })
        ));
        // Off the grid: −1 − 0.25·(−2) = −0.5; −0.5 − 0.25·(−0.25) = −0.4375.
        let s = debiased_scores_at(&[-1.0f32, -0.5], &[-2.0f32, -0.25], 0.25).unwrap();
        assert_eq!(s, vec![-0.5, -0.4375]);
        for bad in [-0.1, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                debiased_scores_at(&[0.0f32], &[0.0f32], bad),
                Err(MaciError::Invalid { .. })
            ));
        }
    }

    /// Two samples whose decision flips with τ, so that the τ choice is visible.
    ///
    /// Sample 0 (label 0): ℓ = (−1, −2, −0.9), ℓ_cf = (−1, −1, −0.4). s_τ = (−1+τ, −2+τ,
    /// −0.9+0.4τ): column 0 beats column 2 once 0.6τ > 0.1, i.e. argmax 2 for τ ≤ 0.1 and 0 from
    /// τ = 0.2 on (margin 0.02 there, far from rounding).
    /// Sample 1 (label 2): ℓ = (−2, −3, −1), ℓ_cf = (−1, −1, −1.8). s_τ = (−2+τ, −3+τ,
    /// −1+1.8τ): argmax 2 for every τ ≥ 0.
    const PRED: [f64; 6] = [-1.0, -2.0, -0.9, -2.0, -3.0, -1.0];
    const CF_PRED: [f64; 6] = [-1.0, -1.0, -0.4, -1.0, -1.0, -1.8];
    const LABELS: [u8; 2] = [0, 2];

    #[test]
    fn validation_picks_the_smallest_best_tau_and_fixes_it() {
        let outputs = CfOutputs {
            pred: &PRED,
            cf_pred: &CF_PRED,
            labels: &LABELS,
        };
        let sweep = TauSweep::new(Task::Binary, &outputs).unwrap();
        assert_eq!(sweep.at(Tau::ZERO).get(Metric::Non0Acc2), Some(0.5));
        assert_eq!(sweep.best_tau(), Tau::from_index(2).unwrap());
        let rule = TauRule::from_validation(Task::Binary, &outputs).unwrap();
        assert_eq!(rule, TauRule::Fixed(Tau::from_index(2).unwrap()));
        assert_eq!(rule.selection(), TauSelection::Validation);
        // Applied to a "test" set where τ = 0.2 hurts: sample (label 2) with ℓ = (−1, −3, −0.95),
        // ℓ_cf = (−1, −1, −0.5): s_0.2 = (−0.8, −2.8, −0.85) → predicts 0, wrong.
        let test = CfOutputs {
            pred: &[-1.0, -3.0, -0.95],
            cf_pred: &[-1.0, -1.0, -0.5],
            labels: &[2],
        };
        let fixed = rule.evaluate(Task::Binary, &test).unwrap();
        assert_eq!(fixed.get(Metric::Non0Acc2), Some(0.0));
        // The oracle on the same test set keeps τ = 0, where it is right.
        let oracle = TauRule::Oracle.evaluate(Task::Binary, &test).unwrap();
        assert_eq!(oracle.get(Metric::Non0Acc2), Some(1.0));
    }

    fn testdata() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/metrics")
    }

    fn read_f32(name: &str) -> Vec<f32> {
        let array = cider_data::npy::from_path(testdata().join(name)).unwrap();
        match array.data() {
            ArrayData::F32(v) => v.clone(),
            other => panic!("{name}: expected float32, found {:?}", other.dtype()),
        }
    }

    fn read_labels(name: &str) -> Vec<u8> {
        let array = cider_data::npy::from_path(testdata().join(name)).unwrap();
        match array.data() {
            ArrayData::I64(v) => v.iter().map(|&l| u8::try_from(l).unwrap()).collect(),
            other => panic!("{name}: expected int64, found {:?}", other.dtype()),
        }
    }

    fn assert_metrics(case: &str, which: &str, got: &Metrics, expected: &serde_json::Value) {
        let expected = expected.as_object().unwrap();
        assert_eq!(got.iter().count(), expected.len(), "{case} {which}");
        for (metric, value) in got.iter() {
            let want = expected[metric.name()].as_f64().unwrap();
            assert!(
                (value - want).abs() <= 1e-12,
                "{case} {which} {metric}: got {value}, reference {want}"
            );
        }
    }

    #[test]
    fn reference_metric_fixtures() {
        let text = std::fs::read_to_string(testdata().join("metrics.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let cases = json["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 4);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let task = match case["task"].as_str().unwrap() {
                "binary" => Task::Binary,
                "seven" => Task::Seven,
                other => panic!("unknown task {other}"),
            };
            assert_eq!(case["classes"].as_u64(), Some(task.num_classes() as u64));
            let inputs = &case["inputs"];
            let pred = read_f32(inputs["pred"].as_str().unwrap());
            let cf_pred = read_f32(inputs["cf_pred"].as_str().unwrap());
            let labels = read_labels(inputs["truth"].as_str().unwrap());
            assert_eq!(labels.len() as u64, case["n"].as_u64().unwrap());
            let outputs = CfOutputs {
                pred: &pred,
                cf_pred: &cf_pred,
                labels: &labels,
            };
            let plain = metrics::evaluate(task, &pred, &labels).unwrap();
            assert_metrics(name, "plain_tau0", &plain, &case["plain_tau0"]);
            let sweep = TauSweep::new(task, &outputs).unwrap();
            assert_eq!(sweep.at(Tau::ZERO), &plain, "{name}: s_0 = ℓ");
            let oracle = TauRule::Oracle.evaluate(task, &outputs).unwrap();
            assert_metrics(name, "oracle_tau_max", &oracle, &case["oracle_tau_max"]);
        }
    }

    #[test]
    fn reference_auilc_example() {
        let text = std::fs::read_to_string(testdata().join("metrics.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let example = &json["auilc_example"];
        let floats = |key: &str| -> Vec<f64> {
            let array = example[key].as_array().unwrap();
            array.iter().map(|v| v.as_f64().unwrap()).collect()
        };
        let got = metrics::auilc(&floats("rates"), &floats("values")).unwrap();
        let want = example["auilc"].as_f64().unwrap();
        assert!((got - want).abs() <= 1e-12, "got {got}, reference {want}");
    }
}
