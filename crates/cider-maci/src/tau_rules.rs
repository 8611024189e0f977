//! Rules that choose τ for counterfactual debiasing without the evaluated split's labels
//! (docs/method.md §7.5).
//!
//! The τ of `s_τ = ℓ − τ·ℓ_cf` trades the factual prediction against the bias-only one. The
//! reference picks it with the test labels (the oracle); a user has none. Each rule here picks
//! one τ of the grid {0.0, …, 3.0} from what a user does have:
//!
//! - [`TauChoice::Validation`]: the best headline metric on the validation split.
//! - [`TauChoice::BalancedValidation`]: the same, with each validation sample weighted by
//!   `P(y)·P(b) / P(y, b)`, `b` whether its text holds a bias word, so that in the weighted split
//!   the bias words' presence says nothing about the label.
//! - [`TauChoice::PriorMatching`] (transductive): the class prior of the evaluated split is
//!   estimated without labels by EM (Saerens, Latinne & Decaestecker, Neural Computation 14,
//!   2002) from the τ = 0 posteriors, starting from the validation split's label frequencies;
//!   τ is the one whose predicted class frequencies are closest to it in KL divergence.
//! - [`TauChoice::BiasIndependence`] (transductive): the τ minimising the mutual information
//!   between the debiased prediction and the bias-only prediction (argmax of `ℓ_cf`).
//! - [`TauChoice::ShiftGated`] (transductive): a two-sample test asks whether the evaluated split
//!   differs from validation at all, on the joint distribution of (factual prediction, bias-only
//!   prediction): black-box shift detection on the model's outputs (Rabanser, Günnemann &
//!   Lipton, "Failing Loudly", NeurIPS 2019), here a permutation test of the χ² statistic of
//!   homogeneity. Without evidence of a shift (p ≥ [`SHIFT_TEST_ALPHA`]) τ is the validation
//!   rule's; with it, the bias-independence rule's.
//! - [`TauChoice::Fixed`]: a τ given by the caller.
//!
//! Transductive rules read the evaluated split's outputs at missing rate 0, never its labels;
//! like the validation rule, the τ they pick is then fixed for every missing rate.

use std::fmt;
use std::str::FromStr;

use cider_data::dataset::Task;
use cider_data::splitmix::SplitMix64;

use crate::counterfactual::{CfOutputs, Tau, TauSweep, checked_pair};
use crate::error::MaciError;
use crate::metrics::{NEUTRAL, argmax};

/// Significance level of [`TauChoice::ShiftGated`]'s shift test.
pub const SHIFT_TEST_ALPHA: f64 = 0.01;
/// Permutations of the shift test (its p-value has a resolution of 1 / (this + 1)).
pub const SHIFT_TEST_PERMUTATIONS: usize = 999;
/// Seed of the shift test's permutations (the same outputs give the same p-value).
const SHIFT_TEST_SEED: u64 = 1111;
/// EM stops when no prior component moves by more than this.
const EM_TOLERANCE: f64 = 1e-10;
/// EM stops after this many iterations at the latest.
const EM_MAX_ITERATIONS: usize = 10_000;

/// How τ is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TauChoice {
    /// τ with the best headline metric on the validation split (smallest on ties).
    Validation,
    /// τ with the best bias-balanced headline metric on the validation split.
    BalancedValidation,
    /// τ whose predicted class frequencies on the evaluated split match its EM prior estimate.
    PriorMatching,
    /// τ minimising the mutual information between the debiased and the bias-only predictions
    /// on the evaluated split.
    BiasIndependence,
    /// Validation's τ unless the evaluated split's outputs differ from validation's, then
    /// bias-independence's τ. The default: on the built-in data it is the one rule that gains
    /// under the full OOD shift and costs nothing without a shift (docs/results.md).
    #[default]
    ShiftGated,
    /// A given τ (`Fixed(Tau::ZERO)` is no counterfactual debiasing).
    Fixed(Tau),
}

/// The rule names `--tau` accepts, in the order of the docs.
pub const TAU_RULE_NAMES: [&str; 5] = [
    "validation",
    "balanced-validation",
    "prior-matching",
    "bias-independence",
    "shift-gated",
];

/// The named rules, in the order of [`TAU_RULE_NAMES`].
pub const NAMED_RULES: [TauChoice; 5] = [
    TauChoice::Validation,
    TauChoice::BalancedValidation,
    TauChoice::PriorMatching,
    TauChoice::BiasIndependence,
    TauChoice::ShiftGated,
];

impl TauChoice {
    /// The rule's name (`"prior-matching"`, …; `"fixed"` for a given τ).
    pub fn name(self) -> &'static str {
        match self {
            TauChoice::Validation => TAU_RULE_NAMES[0],
            TauChoice::BalancedValidation => TAU_RULE_NAMES[1],
            TauChoice::PriorMatching => TAU_RULE_NAMES[2],
            TauChoice::BiasIndependence => TAU_RULE_NAMES[3],
            TauChoice::ShiftGated => TAU_RULE_NAMES[4],
            TauChoice::Fixed(_) => "fixed",
        }
    }

    /// Chooses τ from `evidence`.
    ///
    /// # Errors
    /// [`MaciError::Invalid`] when a transductive rule gets no evaluated outputs; size,
    /// label and non-finite errors of the outputs.
    pub fn choose(self, evidence: &TauEvidence<'_>) -> Result<TauDecision, MaciError> {
        let validation = || TauSweep::new(evidence.task, &evidence.validation);
        let evaluated = || {
            evidence.evaluated.ok_or_else(|| MaciError::Invalid {
                what: "τ rule".into(),
                message: format!(
                    "`{}` reads the evaluated split's outputs, and none were given",
                    self.name()
                ),
            })
        };
        let classes = evidence.task.num_classes();
        Ok(match self {
            TauChoice::Validation => TauDecision::plain(validation()?.best_tau()),
            TauChoice::Fixed(tau) => TauDecision::plain(tau),
            TauChoice::BalancedValidation => TauDecision::plain(balanced_validation_tau(
                evidence.task,
                &evidence.validation,
                evidence.validation_bias_words,
            )?),
            TauChoice::PriorMatching => {
                let source = label_frequencies(evidence.validation.labels, classes)?;
                let (tau, prior) = prior_matching_tau(&evaluated()?, classes, &source)?;
                TauDecision {
                    tau,
                    detail: format!("EM prior estimate {}", format_vector(&prior)),
                }
            }
            TauChoice::BiasIndependence => {
                TauDecision::plain(bias_independence_tau(&evaluated()?, classes)?)
            }
            TauChoice::ShiftGated => {
                let evaluated = evaluated()?;
                let valid = Unlabeled {
                    pred: evidence.validation.pred,
                    cf_pred: evidence.validation.cf_pred,
                };
                let test = shift_test(&valid, &evaluated, classes)?;
                let (tau, verdict) = if test.p_value < SHIFT_TEST_ALPHA {
                    (bias_independence_tau(&evaluated, classes)?, "shift")
                } else {
                    (validation()?.best_tau(), "no shift")
                };
                TauDecision {
                    tau,
                    detail: format!(
                        "{verdict}: χ² {:.2}, permutation p = {:.4} (α {SHIFT_TEST_ALPHA})",
                        test.statistic, test.p_value
                    ),
                }
            }
        })
    }
}

impl fmt::Display for TauChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TauChoice::Fixed(tau) => write!(f, "{}", tau.value()),
            rule => f.write_str(rule.name()),
        }
    }
}

impl FromStr for TauChoice {
    type Err = MaciError;

    /// A rule name of [`TAU_RULE_NAMES`], or a τ of the grid (`0`, `0.7`, …, `3`).
    fn from_str(s: &str) -> Result<Self, MaciError> {
        if let Some(k) = TAU_RULE_NAMES.iter().position(|name| *name == s) {
            return Ok(NAMED_RULES[k]);
        }
        let bad = || MaciError::Invalid {
            what: "τ".into(),
            message: format!(
                "`{s}`: expected one of {} or a τ of the grid 0, 0.1, …, 3",
                TAU_RULE_NAMES.join(", ")
            ),
        };
        let value: f64 = s.trim().parse().map_err(|_| bad())?;
        let k = (value * 10.0).round();
        if !(value.is_finite() && (value * 10.0 - k).abs() < 1e-9 && k >= 0.0) {
            return Err(bad());
        }
        Tau::from_index(k as usize)
            .map(TauChoice::Fixed)
            .ok_or_else(bad)
    }
}

/// A chosen τ and, for rules that estimate something on the way, what they found.
#[derive(Debug, Clone, PartialEq)]
pub struct TauDecision {
    /// The τ.
    pub tau: Tau,
    /// One line on how it was reached (empty for rules with nothing to add).
    pub detail: String,
}

impl TauDecision {
    fn plain(tau: Tau) -> Self {
        Self {
            tau,
            detail: String::new(),
        }
    }
}

/// The model outputs of a split whose labels a rule must not read, row-major `[N, C]`.
#[derive(Debug, Clone, Copy)]
pub struct Unlabeled<'a> {
    /// `ℓ`: log-probabilities of the factual input.
    pub pred: &'a [f32],
    /// `ℓ_cf`: log-probabilities of the counterfactual (bias-only) input.
    pub cf_pred: &'a [f32],
}

/// What the rules choose from.
#[derive(Debug, Clone, Copy)]
pub struct TauEvidence<'a> {
    /// The task (its headline metric and classes).
    pub task: Task,
    /// The validation split's outputs at missing rate 0, with its labels.
    pub validation: CfOutputs<'a, f32>,
    /// Per validation sample, whether its text holds a word of the bias dictionary, `[N]`.
    pub validation_bias_words: &'a [bool],
    /// The evaluated split's outputs at missing rate 0 (needed by transductive rules only).
    pub evaluated: Option<Unlabeled<'a>>,
}

/// [`TauChoice::BalancedValidation`]: τ maximising the headline accuracy on `validation`, each
/// counted sample weighted by `n_y·n_b / (n·n_yb)` over the cells of (label `y`, bias word
/// present `b`); the smallest τ on ties. The counted samples are the headline's (non-neutral
/// labels in the binary task).
///
/// # Errors
/// Sizes that disagree, a label out of range, non-finite outputs, no counted sample.
pub fn balanced_validation_tau(
    task: Task,
    validation: &CfOutputs<'_, f32>,
    bias_words: &[bool],
) -> Result<Tau, MaciError> {
    let classes = task.num_classes();
    let (pred, cf_pred) = checked_pair(validation.pred, validation.cf_pred)?;
    let n = validation.labels.len();
    if pred.len() != n * classes {
        return Err(MaciError::Length {
            what: format!("validation outputs [N, {classes}] for {n} labels"),
            expected: n * classes,
            found: pred.len(),
        });
    }
    if bias_words.len() != n {
        return Err(MaciError::Length {
            what: format!("validation bias-word flags [N] for {n} labels"),
            expected: n,
            found: bias_words.len(),
        });
    }
    let counted: Vec<usize> = (0..n)
        .filter(|&i| task == Task::Seven || validation.labels[i] != NEUTRAL)
        .collect();
    if counted.is_empty() {
        return Err(MaciError::Empty {
            what: "balanced validation".into(),
            reason: "no sample counts for the headline metric".into(),
        });
    }
    let mut cells = vec![[0usize; 2]; classes];
    for &i in &counted {
        let label = usize::from(validation.labels[i]);
        if label >= classes {
            return Err(MaciError::Label {
                what: "validation labels".into(),
                label: validation.labels[i],
                index: i,
                classes,
            });
        }
        cells[label][usize::from(bias_words[i])] += 1;
    }
    let total = counted.len() as f64;
    let by_label: Vec<f64> = cells.iter().map(|c| (c[0] + c[1]) as f64).collect();
    let by_word = [0, 1].map(|b| cells.iter().map(|c| c[b]).sum::<usize>() as f64);
    let weight = |i: usize| {
        let (y, b) = (
            usize::from(validation.labels[i]),
            usize::from(bias_words[i]),
        );
        by_label[y] * by_word[b] / (total * cells[y][b] as f64)
    };
    let weights: Vec<f64> = counted.iter().map(|&i| weight(i)).collect();
    let total_weight: f64 = weights.iter().sum();
    let mut best = (Tau::ZERO, f64::NEG_INFINITY);
    for tau in Tau::grid() {
        let t = tau.value();
        let correct: f64 = counted
            .iter()
            .zip(&weights)
            .filter(|&(&i, _)| {
                let row = i * classes..(i + 1) * classes;
                let scores: Vec<f64> = pred[row.clone()]
                    .iter()
                    .zip(&cf_pred[row])
                    .map(|(l, c)| l - t * c)
                    .collect();
                argmax(&scores) == validation.labels[i]
            })
            .map(|(_, w)| w)
            .sum();
        let value = correct / total_weight;
        if value > best.1 {
            best = (tau, value);
        }
    }
    Ok(best.0)
}

/// [`TauChoice::PriorMatching`]: the EM estimate of the evaluated split's class prior
/// ([`em_prior`], from the τ = 0 posteriors and the `source` prior) and the τ minimising
/// `KL(prior ‖ q_τ)`, `q_τ` the predicted class frequencies of `s_τ` with one added count per
/// class (so that no class has frequency 0); the smallest τ on ties.
///
/// # Errors
/// Sizes that disagree (a `source` of another length than `classes` included), non-finite
/// outputs, an empty split.
pub fn prior_matching_tau(
    outputs: &Unlabeled<'_>,
    classes: usize,
    source: &[f64],
) -> Result<(Tau, Vec<f64>), MaciError> {
    if source.len() != classes {
        return Err(MaciError::Length {
            what: "source prior [C]".into(),
            expected: classes,
            found: source.len(),
        });
    }
    let (pred, cf_pred) = unlabeled_rows(outputs, classes)?;
    let posteriors: Vec<f64> = pred.chunks_exact(classes).flat_map(softmax).collect();
    let prior = em_prior(&posteriors, source)?;
    let n = pred.len() / classes;
    let mut best = (Tau::ZERO, f64::INFINITY);
    for tau in Tau::grid() {
        let mut counts = vec![1.0; classes];
        for class in predictions(&pred, &cf_pred, classes, tau.value()) {
            counts[usize::from(class)] += 1.0;
        }
        let q: Vec<f64> = counts.iter().map(|c| c / (n + classes) as f64).collect();
        let kl: f64 = prior
            .iter()
            .zip(&q)
            .filter(|&(&p, _)| p > 0.0)
            .map(|(p, q)| p * (p / q).ln())
            .sum();
        if kl < best.1 {
            best = (tau, kl);
        }
    }
    Ok((best.0, prior))
}

/// The class prior of a split estimated from its posteriors `[N, C]` (rows summing to 1) by
/// the EM of Saerens et al. (2002): starting from `source` (the prior the classifier was fit
/// under), rescale each posterior by `π / source`, renormalise, and take the mean as the new
/// `π`, until it moves by less than 1e-10. A `source` class of prior 0 keeps prior 0.
///
/// # Errors
/// An empty split, posteriors that do not fill rows of `source.len()` classes, or a `source`
/// that is not a distribution.
pub fn em_prior(posteriors: &[f64], source: &[f64]) -> Result<Vec<f64>, MaciError> {
    let classes = source.len();
    let sum: f64 = source.iter().sum();
    if classes == 0
        || source.iter().any(|p| !(p.is_finite() && *p >= 0.0))
        || (sum - 1.0).abs() > 1e-6
    {
        return Err(MaciError::Invalid {
            what: "source prior".into(),
            message: format!("{source:?}: expected non-negative values summing to 1"),
        });
    }
    if posteriors.is_empty() || !posteriors.len().is_multiple_of(classes) {
        return Err(MaciError::Length {
            what: "posteriors [N, C] for the EM prior".into(),
            expected: classes.max(posteriors.len().div_ceil(classes) * classes),
            found: posteriors.len(),
        });
    }
    let n = (posteriors.len() / classes) as f64;
    let mut prior = source.to_vec();
    let mut row = vec![0.0; classes];
    for _ in 0..EM_MAX_ITERATIONS {
        let mut next = vec![0.0; classes];
        for posterior in posteriors.chunks_exact(classes) {
            for c in 0..classes {
                row[c] = if source[c] > 0.0 {
                    posterior[c] * prior[c] / source[c]
                } else {
                    0.0
                };
            }
            let total: f64 = row.iter().sum();
            if total > 0.0 {
                for c in 0..classes {
                    next[c] += row[c] / total / n;
                }
            }
        }
        // Rows whose rescaled mass is 0 (posteriors only on classes of prior 0) are left out.
        let mass: f64 = next.iter().sum();
        if mass > 0.0 {
            next.iter_mut().for_each(|p| *p /= mass);
        }
        let moved = next
            .iter()
            .zip(&prior)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        prior = next;
        if moved < EM_TOLERANCE {
            break;
        }
    }
    Ok(prior)
}

/// [`TauChoice::BiasIndependence`]: the τ minimising the plug-in mutual information between the
/// prediction of `s_τ` and the bias-only prediction `argmax ℓ_cf`; the smallest τ on ties
/// (within 1e-12 nats).
///
/// # Errors
/// Sizes that disagree, non-finite outputs, an empty split.
pub fn bias_independence_tau(outputs: &Unlabeled<'_>, classes: usize) -> Result<Tau, MaciError> {
    let (pred, cf_pred) = unlabeled_rows(outputs, classes)?;
    let bias: Vec<u8> = cf_pred.chunks_exact(classes).map(argmax).collect();
    let mut best = (Tau::ZERO, f64::INFINITY);
    for tau in Tau::grid() {
        let debiased = predictions(&pred, &cf_pred, classes, tau.value());
        let mi = mutual_information(&debiased, &bias, classes);
        if mi < best.1 - 1e-12 {
            best = (tau, mi);
        }
    }
    Ok(best.0)
}

/// The plug-in mutual information (nats) of two label sequences of equal length over
/// `classes` values (every value below `classes`, as argmaxes of rows of that width are):
/// `Σ p(a, b) ln(p(a, b) / (p(a) p(b)))` over the observed pairs.
fn mutual_information(a: &[u8], b: &[u8], classes: usize) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    let mut joint = vec![0usize; classes * classes];
    for (&x, &y) in a.iter().zip(b) {
        joint[usize::from(x) * classes + usize::from(y)] += 1;
    }
    let row: Vec<usize> = (0..classes)
        .map(|x| joint[x * classes..(x + 1) * classes].iter().sum())
        .collect();
    let col: Vec<usize> = (0..classes)
        .map(|y| (0..classes).map(|x| joint[x * classes + y]).sum())
        .collect();
    let n = n as f64;
    let mut mi = 0.0;
    for x in 0..classes {
        for y in 0..classes {
            let count = joint[x * classes + y];
            if count > 0 {
                let p = count as f64 / n;
                mi += p * (p * n * n / (row[x] as f64 * col[y] as f64)).ln();
            }
        }
    }
    mi.max(0.0)
}

/// The outcome of [`shift_test`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShiftTest {
    /// The χ² statistic of homogeneity of the two splits' (factual, bias-only) prediction
    /// pairs.
    pub statistic: f64,
    /// The permutation p-value, `(1 + #{permuted ≥ observed}) / (1 + permutations)`.
    pub p_value: f64,
}

/// Tests whether two splits' outputs come from one distribution: the χ² statistic of the
/// `2 × C²` table of (split, (argmax ℓ, argmax ℓ_cf)) counts, against its distribution over
/// [`SHIFT_TEST_PERMUTATIONS`] seeded shuffles of the pooled samples between the splits.
///
/// # Errors
/// Sizes that disagree, non-finite outputs, an empty split.
pub fn shift_test(
    reference: &Unlabeled<'_>,
    evaluated: &Unlabeled<'_>,
    classes: usize,
) -> Result<ShiftTest, MaciError> {
    let cells = |outputs: &Unlabeled<'_>| -> Result<Vec<usize>, MaciError> {
        let (pred, cf_pred) = unlabeled_rows(outputs, classes)?;
        Ok(pred
            .chunks_exact(classes)
            .zip(cf_pred.chunks_exact(classes))
            .map(|(l, c)| usize::from(argmax(l)) * classes + usize::from(argmax(c)))
            .collect())
    };
    let mut pooled = cells(reference)?;
    let first = pooled.len();
    pooled.extend(cells(evaluated)?);
    let categories = classes * classes;
    let statistic = |pooled: &[usize]| {
        let mut table = vec![[0usize; 2]; categories];
        for (i, &cell) in pooled.iter().enumerate() {
            table[cell][usize::from(i >= first)] += 1;
        }
        chi_square(&table, [first, pooled.len() - first])
    };
    let observed = statistic(&pooled);
    let mut rng = SplitMix64(SHIFT_TEST_SEED);
    let mut exceed = 0usize;
    for _ in 0..SHIFT_TEST_PERMUTATIONS {
        for i in (1..pooled.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            pooled.swap(i, j);
        }
        if statistic(&pooled) >= observed - 1e-12 {
            exceed += 1;
        }
    }
    Ok(ShiftTest {
        statistic: observed,
        p_value: (1 + exceed) as f64 / (1 + SHIFT_TEST_PERMUTATIONS) as f64,
    })
}

/// The χ² statistic of homogeneity of a `K × 2` table with column totals `totals`; categories
/// seen in neither column are left out.
fn chi_square(table: &[[usize; 2]], totals: [usize; 2]) -> f64 {
    let n = (totals[0] + totals[1]) as f64;
    table
        .iter()
        .filter(|row| row[0] + row[1] > 0)
        .map(|row| {
            let row_total = (row[0] + row[1]) as f64;
            (0..2)
                .map(|j| {
                    let expected = row_total * totals[j] as f64 / n;
                    (row[j] as f64 - expected).powi(2) / expected
                })
                .sum::<f64>()
        })
        .sum()
}

/// The outputs as checked `f64` rows of `classes` columns.
fn unlabeled_rows(
    outputs: &Unlabeled<'_>,
    classes: usize,
) -> Result<(Vec<f64>, Vec<f64>), MaciError> {
    let (pred, cf_pred) = checked_pair(outputs.pred, outputs.cf_pred)?;
    if pred.is_empty() || classes == 0 || !pred.len().is_multiple_of(classes) {
        return Err(MaciError::Length {
            what: format!("outputs [N, {classes}] for a τ rule"),
            expected: classes.max(pred.len().div_ceil(classes.max(1)) * classes),
            found: pred.len(),
        });
    }
    Ok((pred, cf_pred))
}

/// The argmax of `s_τ` per row.
fn predictions(pred: &[f64], cf_pred: &[f64], classes: usize, tau: f64) -> Vec<u8> {
    let mut row = vec![0.0; classes];
    pred.chunks_exact(classes)
        .zip(cf_pred.chunks_exact(classes))
        .map(|(l, c)| {
            for j in 0..classes {
                row[j] = l[j] - tau * c[j];
            }
            argmax(&row)
        })
        .collect()
}

/// `softmax(row)`, computed stably.
fn softmax(row: &[f64]) -> Vec<f64> {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = row.iter().map(|v| (v - max).exp()).collect();
    let total: f64 = exp.iter().sum();
    exp.into_iter().map(|v| v / total).collect()
}

/// The label frequencies of `labels` over `classes` classes.
fn label_frequencies(labels: &[u8], classes: usize) -> Result<Vec<f64>, MaciError> {
    if labels.is_empty() {
        return Err(MaciError::Empty {
            what: "validation labels".into(),
            reason: "the split has no sample".into(),
        });
    }
    let mut counts = vec![0.0; classes];
    for (index, &label) in labels.iter().enumerate() {
        *counts.get_mut(usize::from(label)).ok_or(MaciError::Label {
            what: "validation labels".into(),
            label,
            index,
            classes,
        })? += 1.0;
    }
    Ok(counts
        .into_iter()
        .map(|c| c / labels.len() as f64)
        .collect())
}

/// `[0.470, 0.000, 0.530]`.
fn format_vector(values: &[f64]) -> String {
    let parts: Vec<String> = values.iter().map(|v| format!("{v:.3}")).collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows `ℓ = (x, −20, 0)`, `ℓ_cf = (c, 0, 0)` for pairs `(x, c)`: column 1 is never chosen,
    /// and `s_τ` picks column 0 exactly when `x − τ·c > 0`.
    fn rows(pairs: &[(f32, f32)]) -> (Vec<f32>, Vec<f32>) {
        let pred = pairs.iter().flat_map(|&(x, _)| [x, -20.0, 0.0]).collect();
        let cf = pairs.iter().flat_map(|&(_, c)| [c, 0.0, 0.0]).collect();
        (pred, cf)
    }

    fn tau(k: usize) -> Tau {
        Tau::from_index(k).unwrap()
    }

    #[test]
    fn rule_names_and_numbers_parse_and_print() {
        for name in TAU_RULE_NAMES {
            let rule: TauChoice = name.parse().unwrap();
            assert_eq!(rule.to_string(), name);
        }
        assert_eq!(
            "0".parse::<TauChoice>().unwrap(),
            TauChoice::Fixed(Tau::ZERO)
        );
        assert_eq!(
            "0.7".parse::<TauChoice>().unwrap(),
            TauChoice::Fixed(tau(7))
        );
        assert_eq!("3".parse::<TauChoice>().unwrap().to_string(), "3");
        for bad in ["0.75", "3.1", "-0.1", "NaN", "oracle", "Validation", ""] {
            let err = bad.parse::<TauChoice>().unwrap_err().to_string();
            assert!(
                err.contains(&format!(
                    "`{bad}`: expected one of validation, balanced-validation"
                )),
                "{err}"
            );
        }
    }

    #[test]
    fn mutual_information_by_hand() {
        let same = mutual_information(&[0, 0, 2, 2], &[0, 0, 2, 2], 3);
        assert!((same - 2f64.ln()).abs() < 1e-15, "{same}");
        assert_eq!(mutual_information(&[0, 2, 0, 2], &[0, 0, 2, 2], 3), 0.0);
        assert_eq!(mutual_information(&[], &[], 3), 0.0);
    }

    #[test]
    fn em_finds_the_interior_fixed_point() {
        // Posteriors (0.9, 0.1) and (0.3, 0.7) from a source prior (0.5, 0.5): the fixed points
        // of π₀ = ½[0.9π₀/(0.1 + 0.8π₀) + 0.3π₀/(0.7 − 0.4π₀)] are 0, 1 and the root of
        // 0.64π₀² − 1.16π₀ + 0.52 = 0 in between, π₀ = (1.16 − 0.12)/1.28 = 0.8125.
        let prior = em_prior(&[0.9, 0.1, 0.3, 0.7], &[0.5, 0.5]).unwrap();
        assert!((prior[0] - 0.8125).abs() < 1e-8, "{prior:?}");
        assert!((prior[1] - 0.1875).abs() < 1e-8, "{prior:?}");
        // A class the source never saw keeps prior 0.
        let prior = em_prior(&[0.5, 0.2, 0.3], &[0.5, 0.0, 0.5]).unwrap();
        assert_eq!(prior[1], 0.0);
        assert!(em_prior(&[0.5, 0.5], &[0.7, 0.7]).is_err());
        assert!(em_prior(&[], &[0.5, 0.5]).is_err());
    }

    #[test]
    fn prior_matching_moves_the_predictions_towards_the_estimated_prior() {
        // Posteriors ≈ (0.9, 0, 0.1) and (0.3, 0, 0.7), so EM from (0.5, 0, 0.5) gives
        // ≈ (0.8125, 0, 0.1875). The second sample's ℓ_cf pulls it to class 0 from τ = 0.4
        // on (s₀ − s₂ = ln(3/7) + τ·ln 9 > 0 for τ > 0.3856). With one added count per
        // class, q = (2, 1, 2)/5 before and (3, 1, 1)/5 after; the KL divergence to the
        // prior falls from 0.434 to 0.234, so τ = 0.4.
        let eps = 1e-12f32;
        let pred = [
            0.9f32.ln(),
            eps.ln(),
            0.1f32.ln(),
            0.3f32.ln(),
            eps.ln(),
            0.7f32.ln(),
        ];
        let cf = [0.0, 0.0, 0.0, 0.1f32.ln(), 0.0, 0.9f32.ln()];
        let outputs = Unlabeled {
            pred: &pred,
            cf_pred: &cf,
        };
        let (chosen, prior) = prior_matching_tau(&outputs, 3, &[0.5, 0.0, 0.5]).unwrap();
        assert!((prior[0] - 0.8125).abs() < 1e-6, "{prior:?}");
        assert_eq!(chosen, tau(4));
    }

    #[test]
    fn bias_independence_picks_the_first_tau_that_decouples_the_predictions() {
        // ℓ = (x, −20, 0); ℓ_cf = (0.5, 0, 0) (bias-only prediction 0) for the first two
        // samples and (0, 0, 0.5) (prediction 2) for the last two, so s₀ − s₂ = x ∓ 0.5τ.
        // τ ≤ 0.4 predicts 0, 0, 2, 2 (MI ln 2 with the bias); from 0.5 to 2.0, 0, 2, 0, 2
        // (MI 0); from 2.1 on, 2, 2, 0, 0 (MI ln 2 again).
        let x = [1.03f32, 0.23, -0.23, -1.03];
        let pred: Vec<f32> = x.iter().flat_map(|&x| [x, -20.0, 0.0]).collect();
        let cf = [0.5, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.5];
        let outputs = Unlabeled {
            pred: &pred,
            cf_pred: &cf,
        };
        assert_eq!(bias_independence_tau(&outputs, 3).unwrap(), tau(5));
    }

    /// Validation outputs where the bias word helps the majority cell: four label-2 samples
    /// with a bias word (one of them, x = −0.23, turns wrong from τ = 0.5), a label-0 sample
    /// with a bias word that turns right from τ = 0.5, and a label-0 sample without one that
    /// is always right. Unweighted, τ = 0 and τ = 0.5 both score 5/6.
    fn biased_validation() -> (Vec<f32>, Vec<f32>, Vec<u8>, Vec<bool>) {
        let (pred, cf) = rows(&[
            (-0.23, -0.5),
            (-2.0, -0.5),
            (-2.0, -0.5),
            (-2.0, -0.5),
            (-0.23, -0.5),
            (2.0, 0.0),
        ]);
        let labels = vec![2, 2, 2, 2, 0, 0];
        let words = vec![true, true, true, true, true, false];
        (pred, cf, labels, words)
    }

    #[test]
    fn balanced_validation_weights_the_bias_word_cells() {
        // Cells (label, word): (2, yes) 4, (0, yes) 1, (0, no) 1 of 6; weights n_y·n_b/(n·n_yb)
        // are 4·5/24 = 5/6, 2·5/6 = 5/3 and 2·1/6 = 1/3, total 16/3. τ = 0 scores
        // (4·5/6 + 1/3)/(16/3) = 0.6875; τ = 0.5 scores (3·5/6 + 5/3 + 1/3)/(16/3) = 0.84375.
        let (pred, cf, labels, words) = biased_validation();
        let outputs = CfOutputs {
            pred: &pred,
            cf_pred: &cf,
            labels: &labels,
        };
        assert_eq!(
            balanced_validation_tau(Task::Binary, &outputs, &words).unwrap(),
            tau(5)
        );
        let evidence = TauEvidence {
            task: Task::Binary,
            validation: outputs,
            validation_bias_words: &words,
            evaluated: None,
        };
        let plain = TauChoice::Validation.choose(&evidence).unwrap();
        assert_eq!(plain.tau, Tau::ZERO);
        let err = balanced_validation_tau(Task::Binary, &outputs, &words[..5])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "validation bias-word flags [N] for 6 labels: expected 6 values, found 5"
        );
        let err = prior_matching_tau(
            &Unlabeled {
                pred: &pred,
                cf_pred: &cf,
            },
            3,
            &[0.5, 0.5],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err, "source prior [C]: expected 3 values, found 2");
        // A transductive rule without the evaluated split's outputs is an error, not τ = 0.
        let err = TauChoice::BiasIndependence
            .choose(&evidence)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`bias-independence` reads the evaluated split"),
            "{err}"
        );
    }

    #[test]
    fn the_shift_test_tells_a_copy_from_a_different_split() {
        let (pred, cf, labels, words) = biased_validation();
        let valid = Unlabeled {
            pred: &pred,
            cf_pred: &cf,
        };
        // The same outputs: χ² 0, every permutation reaches it, p = 1.
        let same = shift_test(&valid, &valid, 3).unwrap();
        assert_eq!((same.statistic, same.p_value), (0.0, 1.0));
        // 20 samples all in one cell against 20 in another: χ² = n = 40, and a permutation
        // reaches it with probability 2 / C(40, 20) ≈ 1.4e-11, so p = 1 / 1000.
        let one = rows(&[(1.0, 0.0); 20]);
        let other = rows(&[(-1.0, 0.0); 20]);
        let test = shift_test(
            &Unlabeled {
                pred: &one.0,
                cf_pred: &one.1,
            },
            &Unlabeled {
                pred: &other.0,
                cf_pred: &other.1,
            },
            3,
        )
        .unwrap();
        assert!((test.statistic - 40.0).abs() < 1e-9, "{test:?}");
        assert_eq!(test.p_value, 0.001);
        // The gated rule: no shift against itself, so validation's τ (0); against a split
        // that differs, bias independence's τ.
        let outputs = CfOutputs {
            pred: &pred,
            cf_pred: &cf,
            labels: &labels,
        };
        let evidence = TauEvidence {
            task: Task::Binary,
            validation: outputs,
            validation_bias_words: &words,
            evaluated: Some(valid),
        };
        let gated = TauChoice::ShiftGated.choose(&evidence).unwrap();
        assert_eq!(gated.tau, Tau::ZERO);
        // Against the 20 + 20 split above the test fires, and the τ is bias independence's.
        let shifted = Unlabeled {
            pred: &other.0,
            cf_pred: &other.1,
        };
        let reference_outputs = CfOutputs {
            pred: &one.0,
            cf_pred: &one.1,
            labels: &[2; 20],
        };
        let flags = [true; 20];
        let fired = TauChoice::ShiftGated
            .choose(&TauEvidence {
                task: Task::Binary,
                validation: reference_outputs,
                validation_bias_words: &flags,
                evaluated: Some(shifted),
            })
            .unwrap();
        assert_eq!(fired.tau, bias_independence_tau(&shifted, 3).unwrap());
        assert!(
            fired
                .detail
                .starts_with("shift: χ² 40.00, permutation p = 0.0010"),
            "{}",
            fired.detail
        );
        assert!(
            gated
                .detail
                .starts_with("no shift: χ² 0.00, permutation p = 1.0000"),
            "{}",
            gated.detail
        );
    }
}
