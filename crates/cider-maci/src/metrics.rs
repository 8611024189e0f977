//! Classification metrics of docs/method.md §8.1 and the AUILC of docs/method.md §8.2.
//!
//! Scores are row-major `[N, C]` (log-probabilities, or the debiased `s_τ` of §7.4), labels are
//! `[N]`. Class decisions are argmaxes with ties going to the first index (as NumPy's `argmax`).
//! F1 scores are scikit-learn's `f1_score(average='weighted')`: per-class F1 over the sorted union
//! of the labels present in truth or prediction (zero division gives 0), weighted by the true
//! support of each class.

use std::fmt;

use cider_data::dataset::Task;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::error::MaciError;

/// The 3-way label of a neutral sample in the binary task (0 negative, 1 neutral, 2 positive).
pub(crate) const NEUTRAL: u8 = 1;

/// One metric of docs/method.md §8.1; its serde and display name is the reference's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Metric {
    /// Binary task, samples with a non-neutral label, argmax over all 3 columns (headline).
    #[serde(rename = "Non0_acc_2")]
    Non0Acc2,
    /// Weighted F1 on the same samples and predictions as [`Metric::Non0Acc2`].
    #[serde(rename = "Non0_F1_score")]
    Non0F1Score,
    /// Binary task, all samples, argmax over columns {0, 2}; neutral truths count as positive.
    #[serde(rename = "Has0_acc_2")]
    Has0Acc2,
    /// Weighted F1 on the same samples and predictions as [`Metric::Has0Acc2`].
    #[serde(rename = "Has0_F1_score")]
    Has0F1Score,
    /// Binary task, all samples, 3-way accuracy.
    #[serde(rename = "Acc_3")]
    Acc3,
    /// Binary task, all samples, 3-way weighted F1.
    #[serde(rename = "F1_score_3")]
    F1Score3,
    /// Seven task, 7-way accuracy (headline).
    #[serde(rename = "Acc_7")]
    Acc7,
    /// Seven task, 7-way weighted F1.
    #[serde(rename = "F1_score_7")]
    F1Score7,
}

impl Metric {
    /// The reference's name (`"Non0_acc_2"`, `"Acc_7"`, …).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Non0Acc2 => "Non0_acc_2",
            Metric::Non0F1Score => "Non0_F1_score",
            Metric::Has0Acc2 => "Has0_acc_2",
            Metric::Has0F1Score => "Has0_F1_score",
            Metric::Acc3 => "Acc_3",
            Metric::F1Score3 => "F1_score_3",
            Metric::Acc7 => "Acc_7",
            Metric::F1Score7 => "F1_score_7",
        }
    }

    /// The metrics of a task, in the order the reference reports them.
    pub fn for_task(task: Task) -> &'static [Metric] {
        match task {
            Task::Binary => &[
                Metric::Has0Acc2,
                Metric::Has0F1Score,
                Metric::Non0Acc2,
                Metric::Non0F1Score,
                Metric::Acc3,
                Metric::F1Score3,
            ],
            Task::Seven => &[Metric::Acc7, Metric::F1Score7],
        }
    }

    /// The task's headline metric: `Non0_acc_2` (binary) or `Acc_7` (seven).
    pub fn headline(task: Task) -> Metric {
        match task {
            Task::Binary => Metric::Non0Acc2,
            Task::Seven => Metric::Acc7,
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The metrics of one task on one set of scores, as fractions in [0, 1].
///
/// Serialises as a map from the reference's names to values, in [`Metric::for_task`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    task: Task,
    /// One value per metric of [`Metric::for_task`], same order.
    values: Vec<f64>,
}

impl Metrics {
    /// Builds the metrics of a task from one value per [`Metric::for_task`] entry, in order.
    pub fn new(task: Task, values: Vec<f64>) -> Result<Self, MaciError> {
        let expected = Metric::for_task(task).len();
        if values.len() != expected {
            return Err(MaciError::Length {
                what: format!("metric values of the {task:?} task"),
                expected,
                found: values.len(),
            });
        }
        Ok(Self { task, values })
    }

    /// The task these metrics belong to.
    pub fn task(&self) -> Task {
        self.task
    }

    /// The value of a metric; `None` if it does not belong to the task.
    pub fn get(&self, metric: Metric) -> Option<f64> {
        Metric::for_task(self.task)
            .iter()
            .position(|&m| m == metric)
            .map(|i| self.values[i])
    }

    /// The headline metric and its value (`Non0_acc_2` or `Acc_7`).
    pub fn headline(&self) -> (Metric, f64) {
        let metric = Metric::headline(self.task);
        let index = Metric::for_task(self.task)
            .iter()
            .position(|&m| m == metric)
            .unwrap_or(0);
        (metric, self.values[index])
    }

    /// `(metric, value)` pairs in [`Metric::for_task`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Metric, f64)> + '_ {
        Metric::for_task(self.task)
            .iter()
            .copied()
            .zip(self.values.iter().copied())
    }

    /// The per-metric maximum over several sets of metrics of the same task (the oracle of
    /// docs/method.md §7.4); `None` when `all` is empty or mixes tasks.
    pub fn elementwise_max(all: &[Metrics]) -> Option<Metrics> {
        let first = all.first()?;
        if all.iter().any(|m| m.task != first.task) {
            return None;
        }
        let values = (0..first.values.len())
            .map(|i| {
                all.iter()
                    .map(|m| m.values[i])
                    .fold(f64::NEG_INFINITY, f64::max)
            })
            .collect();
        Some(Metrics {
            task: first.task,
            values,
        })
    }
}

impl Serialize for Metrics {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.values.len()))?;
        for (metric, value) in self.iter() {
            map.serialize_entry(metric.name(), &value)?;
        }
        map.end()
    }
}

/// All metrics of a task (docs/method.md §8.1) from scores `[N, C]` (row-major) and labels `[N]`.
///
/// Binary task (`C = 3`): `Acc_3`/`F1_score_3` over all samples; `Has0_*` with the argmax over
/// columns {0, 2} against "label is negative → 0, else 1"; `Non0_*` over the samples whose label
/// is not neutral, argmax over all 3 columns (a neutral prediction is an error). Seven task
/// (`C = 7`): `Acc_7`, `F1_score_7`.
///
/// Errors: `scores.len() != N·C`, a label `≥ C`, a NaN score, no sample at all, or (binary) no
/// non-neutral sample.
pub fn evaluate<T: Copy + Into<f64>>(
    task: Task,
    scores: &[T],
    labels: &[u8],
) -> Result<Metrics, MaciError> {
    let c = task.num_classes();
    let scores = checked_scores(scores, labels, c)?;
    let rows = || scores.chunks_exact(c);
    let pred: Vec<u8> = rows().map(argmax).collect();
    let values = match task {
        Task::Binary => {
            // Has0: argmax over columns {0, 2}, first index on ties → 1 only if s₂ > s₀.
            let has0_pred: Vec<u8> = rows().map(|row| u8::from(row[2] > row[0])).collect();
            let has0_truth: Vec<u8> = labels.iter().map(|&l| u8::from(l >= NEUTRAL)).collect();
            let (non0_truth, non0_pred): (Vec<u8>, Vec<u8>) = labels
                .iter()
                .zip(&pred)
                .filter(|&(&l, _)| l != NEUTRAL)
                .map(|(&l, &p)| (l, p))
                .unzip();
            if non0_truth.is_empty() {
                return Err(MaciError::Empty {
                    what: "Non0_acc_2 / Non0_F1_score".into(),
                    reason: "every label is neutral".into(),
                });
            }
            vec![
                accuracy(&has0_truth, &has0_pred)?,
                weighted_f1(&has0_truth, &has0_pred)?,
                accuracy(&non0_truth, &non0_pred)?,
                weighted_f1(&non0_truth, &non0_pred)?,
                accuracy(labels, &pred)?,
                weighted_f1(labels, &pred)?,
            ]
        }
        Task::Seven => vec![accuracy(labels, &pred)?, weighted_f1(labels, &pred)?],
    };
    Metrics::new(task, values)
}

/// Checks sizes, labels and NaNs, and converts the scores to `f64`.
fn checked_scores<T: Copy + Into<f64>>(
    scores: &[T],
    labels: &[u8],
    classes: usize,
) -> Result<Vec<f64>, MaciError> {
    if labels.is_empty() {
        return Err(MaciError::Empty {
            what: "metrics".into(),
            reason: "no label given".into(),
        });
    }
    let expected = labels.len().saturating_mul(classes);
    if scores.len() != expected {
        return Err(MaciError::Length {
            what: format!("scores [N = {}, C = {classes}]", labels.len()),
            expected,
            found: scores.len(),
        });
    }
    check_labels("labels", labels, classes)?;
    let scores: Vec<f64> = scores.iter().map(|&s| s.into()).collect();
    if let Some(index) = scores.iter().position(|s| s.is_nan()) {
        return Err(MaciError::NonFinite {
            what: "scores".into(),
            index,
            value: f64::NAN,
        });
    }
    Ok(scores)
}

/// Checks that every label is in `0..classes`.
pub(crate) fn check_labels(what: &str, labels: &[u8], classes: usize) -> Result<(), MaciError> {
    match labels.iter().position(|&l| usize::from(l) >= classes) {
        Some(index) => Err(MaciError::Label {
            what: what.into(),
            index,
            label: labels[index],
            classes,
        }),
        None => Ok(()),
    }
}

/// The index of the largest score of one row, the first on ties (NumPy's `argmax`).
pub fn argmax(row: &[f64]) -> u8 {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate().skip(1) {
        if v > row[best] {
            best = j;
        }
    }
    // Rows have C ≤ 7 columns.
    best as u8
}

/// Fraction of positions where `pred` equals `truth` (scikit-learn's `accuracy_score`).
pub fn accuracy(truth: &[u8], pred: &[u8]) -> Result<f64, MaciError> {
    check_pair(truth, pred)?;
    let correct = truth.iter().zip(pred).filter(|(t, p)| t == p).count();
    Ok(correct as f64 / truth.len() as f64)
}

/// scikit-learn's `f1_score(truth, pred, average='weighted')`.
///
/// For every class `k` of the sorted union of labels in `truth` and `pred`:
/// `F1_k = 2·tp_k / (support_k + predicted_k)` (0 when the denominator is 0); the result is
/// `Σ_k F1_k·support_k / N`.
pub fn weighted_f1(truth: &[u8], pred: &[u8]) -> Result<f64, MaciError> {
    check_pair(truth, pred)?;
    let mut support = [0usize; 256];
    let mut predicted = [0usize; 256];
    let mut true_positive = [0usize; 256];
    for (&t, &p) in truth.iter().zip(pred) {
        support[usize::from(t)] += 1;
        predicted[usize::from(p)] += 1;
        if t == p {
            true_positive[usize::from(t)] += 1;
        }
    }
    let mut weighted_sum = 0.0;
    let mut total_support = 0.0;
    for k in 0..256 {
        if support[k] == 0 && predicted[k] == 0 {
            continue;
        }
        let denominator = (support[k] + predicted[k]) as f64;
        let f1 = 2.0 * true_positive[k] as f64 / denominator;
        weighted_sum += f1 * support[k] as f64;
        total_support += support[k] as f64;
    }
    Ok(weighted_sum / total_support)
}

/// Checks that truth and prediction are non-empty and of equal length.
fn check_pair(truth: &[u8], pred: &[u8]) -> Result<(), MaciError> {
    if truth.is_empty() {
        return Err(MaciError::Empty {
            what: "accuracy / F1".into(),
            reason: "no label given".into(),
        });
    }
    if pred.len() != truth.len() {
        return Err(MaciError::Length {
            what: "predictions (one per label)".into(),
            expected: truth.len(),
            found: pred.len(),
        });
    }
    Ok(())
}

/// AUILC (docs/method.md §8.2): the area under a metric-vs-missing-rate curve by the trapezoid rule,
/// `Σ_k (m(p_k) + m(p_{k+1})) / 2 · (p_{k+1} − p_k)`.
///
/// `rates` must be finite and strictly increasing (typically 0.0, 0.1, …, 1.0), `values` finite
/// and of the same length, with at least 2 points.
pub fn auilc(rates: &[f64], values: &[f64]) -> Result<f64, MaciError> {
    if values.len() != rates.len() {
        return Err(MaciError::Length {
            what: "AUILC metric values (one per missing rate)".into(),
            expected: rates.len(),
            found: values.len(),
        });
    }
    if rates.len() < 2 {
        return Err(MaciError::Invalid {
            what: "AUILC rates".into(),
            message: format!("need at least 2 points, got {}", rates.len()),
        });
    }
    for (what, series) in [("AUILC rates", rates), ("AUILC values", values)] {
        if let Some(index) = series.iter().position(|v| !v.is_finite()) {
            return Err(MaciError::NonFinite {
                what: what.into(),
                index,
                value: series[index],
            });
        }
    }
    if let Some(k) = rates.windows(2).position(|w| w[1] <= w[0]) {
        return Err(MaciError::Invalid {
            what: "AUILC rates".into(),
            message: format!(
                "must be strictly increasing, but rate {} is {} and rate {} is {}",
                k,
                rates[k],
                k + 1,
                rates[k + 1]
            ),
        });
    }
    Ok(rates
        .windows(2)
        .zip(values.windows(2))
        .map(|(p, m)| (m[0] + m[1]) / 2.0 * (p[1] - p[0]))
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_f1_two_classes_by_hand() {
        // truth = [0, 0, 0, 1, 1], pred = [0, 0, 1, 1, 0]
        // class 0: tp 2, support 3, predicted 3 → F1 = 4/6 = 2/3
        // class 1: tp 1, support 2, predicted 2 → F1 = 2/4 = 1/2
        // weighted = (2/3·3 + 1/2·2) / 5 = (2 + 1) / 5 = 0.6
        let truth = [0, 0, 0, 1, 1];
        let pred = [0, 0, 1, 1, 0];
        assert!((weighted_f1(&truth, &pred).unwrap() - 0.6).abs() < 1e-15);
        assert!((accuracy(&truth, &pred).unwrap() - 0.6).abs() < 1e-15);
    }

    #[test]
    fn weighted_f1_counts_predicted_only_classes_with_zero_weight() {
        // truth = [0, 0, 2, 2], pred = [0, 1, 2, 2]; labels {0, 1, 2}
        // class 0: tp 1, support 2, predicted 1 → 2/3; class 1: support 0 → weight 0;
        // class 2: tp 2, support 2, predicted 2 → 1. weighted = (2/3·2 + 1·2) / 4 = 5/6.
        let f1 = weighted_f1(&[0, 0, 2, 2], &[0, 1, 2, 2]).unwrap();
        assert!((f1 - 5.0 / 6.0).abs() < 1e-15);
        // A class that is never predicted has F1 0 (zero division → 0): truth [0, 1], pred [0, 0]
        // class 0: tp 1, support 1, predicted 2 → 2/3; class 1: tp 0 → 0; weighted = 1/3.
        let f1 = weighted_f1(&[0, 1], &[0, 0]).unwrap();
        assert!((f1 - 1.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn binary_metrics_by_hand() {
        // Rows (neg, neu, pos) → 3-way argmax; Has0 argmax over (neg, pos).
        let scores: [f32; 15] = [
            -0.1, -2.0, -3.0, // label 0: pred3 0, has0 0
            -2.0, -0.1, -1.0, // label 1: pred3 1, has0 1 (pos > neg)
            -1.0, -0.2, -1.0, // label 2: pred3 1, has0 tie → 0
            -3.0, -2.0, -0.1, // label 2: pred3 2, has0 1
            -0.5, -0.5, -2.0, // label 0: tie → pred3 0, has0 0
        ];
        let labels = [0, 1, 2, 2, 0];
        let m = evaluate(Task::Binary, &scores, &labels).unwrap();
        // Acc_3: correct at 0, 1, 3, 4 → 4/5.
        assert_eq!(m.get(Metric::Acc3), Some(0.8));
        // Has0: truth [0,1,1,1,0], pred [0,1,0,1,0] → 4/5.
        assert_eq!(m.get(Metric::Has0Acc2), Some(0.8));
        // Non0: samples 0, 2, 3, 4; truth [0,2,2,0], pred [0,1,2,0] → 3/4.
        assert_eq!(m.get(Metric::Non0Acc2), Some(0.75));
        // Non0 F1: class 0: tp 2, sup 2, pred 2 → 1; class 1: sup 0; class 2: tp 1, sup 2,
        // pred 1 → 2/3. weighted = (1·2 + 2/3·2) / 4 = 5/6.
        assert!((m.get(Metric::Non0F1Score).unwrap() - 5.0 / 6.0).abs() < 1e-15);
        assert_eq!(m.headline(), (Metric::Non0Acc2, 0.75));
        assert_eq!(m.get(Metric::Acc7), None);
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.starts_with("{\"Has0_acc_2\":0.8,\"Has0_F1_score\":"));
        assert!(json.contains("\"Non0_acc_2\":0.75"));
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let all_neutral = evaluate(Task::Binary, &[0.0f32, 1.0, 0.0], &[1]);
        assert!(matches!(all_neutral, Err(MaciError::Empty { .. })));
        let empty = evaluate::<f32>(Task::Seven, &[], &[]);
        assert!(matches!(empty, Err(MaciError::Empty { .. })));
        let short = evaluate(Task::Binary, &[0.0f64; 5], &[0, 2]);
        assert!(matches!(
            short,
            Err(MaciError::Length {
                expected: 6,
                found: 5,
                ..
            })
        ));
        let label = evaluate(Task::Binary, &[0.0f64; 6], &[0, 3]);
        assert!(matches!(
            label,
            Err(MaciError::Label {
                index: 1,
                label: 3,
                ..
            })
        ));
        let nan = evaluate(Task::Binary, &[0.0, 1.0, f64::NAN], &[0]);
        assert!(matches!(nan, Err(MaciError::NonFinite { index: 2, .. })));
    }

    #[test]
    fn auilc_of_a_constant_curve_is_the_constant() {
        let rates: Vec<f64> = (0..=10).map(|k| f64::from(k) / 10.0).collect();
        let values = vec![0.625; 11];
        assert!((auilc(&rates, &values).unwrap() - 0.625).abs() < 1e-15);
    }

    #[test]
    fn auilc_of_a_line_on_an_uneven_grid() {
        // m(p) = 1 − p on [0, 0.5]: area = 0.5 − 0.125 = 0.375 exactly (trapezoids are exact).
        let rates = [0.0, 0.125, 0.5];
        let values = [1.0, 0.875, 0.5];
        assert!((auilc(&rates, &values).unwrap() - 0.375).abs() < 1e-15);
    }

    #[test]
    fn auilc_rejects_bad_grids() {
        assert!(matches!(
            auilc(&[0.0, 0.1], &[1.0]),
            Err(MaciError::Length { .. })
        ));
        assert!(matches!(
            auilc(&[0.0], &[1.0]),
            Err(MaciError::Invalid { .. })
        ));
        assert!(matches!(
            auilc(&[0.0, 0.2, 0.1], &[1.0, 1.0, 1.0]),
            Err(MaciError::Invalid { .. })
        ));
        assert!(matches!(
            auilc(&[0.0, 0.1], &[1.0, f64::NAN]),
            Err(MaciError::NonFinite { index: 1, .. })
        ));
    }
}
