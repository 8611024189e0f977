//! The robustness protocol (docs/method.md §8.2, §11.3).
//!
//! The model's passes over a split are MACI inference ([`cider_maci::inference`]);
//! [`run_protocol`] evaluates a split at every missing rate of a grid (or at the seven SMM
//!   subsets): seed-1111 evaluation masks per point, factual and counterfactual passes, the
//!   metrics of `s_τ = ℓ − τ·ℓ_cf` for every τ. Two kinds of figures are reported side by side:
//!   [`TauSelection::Validation`] (one τ, chosen at rate 0 by [`ProtocolConfig::tau`]'s rule
//!   without the evaluated split's labels, then fixed) and [`TauSelection::Oracle`] (every
//!   metric maximised over τ per point, the reference's numbers). AUILC (trapezoid) of every
//!   metric under both.
//!
//! Everything is deterministic: masks come from the seeded MT19937 of `cider-data`, batches are
//! in file order, and a non-autodiff backend runs without dropout (eval mode). Give an
//! autodiff-trained model as `model.valid()`.

use std::path::PathBuf;

use burn::tensor::backend::Backend;
use cider_data::DataError;
use cider_data::bias::{bias_word_flags, counterfactual_ids};
use cider_data::dataset::{Split, Task};
use cider_data::excerpt::excerpt;
use cider_data::missing::{DEFAULT_MISSING_SEED, EvalMissing, check_mode, eval_view, smm_rates};
use cider_data::missing_mode::EvalMode;
use cider_maci::MaciError;
use cider_maci::counterfactual::{CfOutputs, Tau, TauSelection};
use cider_maci::full_model::Maci;
use cider_maci::inference::{Debiasing, EVAL_BATCH_SIZE, Sweep, predict};
use cider_maci::metrics::{self, Metric, Metrics};
use cider_maci::prototypes::Prototypes;
use cider_maci::tau_rules::{NAMED_RULES, TauChoice, TauDecision, TauEvidence, Unlabeled};
use cider_model::ModelError;
use cider_model::backbone::Backbone;

/// Most points a rate grid may have (a guard against `0:1:1e-9`).
pub const MAX_RATES: usize = 1001;

/// Everything that can go wrong while evaluating, writing or reading results, or plotting.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Reading or masking a dataset.
    #[error(transparent)]
    Data(#[from] DataError),

    /// Metrics, τ sweeps, prototypes.
    #[error(transparent)]
    Maci(#[from] MaciError),

    /// The model refused its inputs.
    #[error(transparent)]
    Model(#[from] ModelError),

    /// An argument that cannot be used (rates, batch size, mode, labels).
    #[error("invalid {what}: {message}")]
    Invalid {
        /// The input involved.
        what: String,
        /// What is wrong, and what was expected.
        message: String,
    },

    /// A file that cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A results file whose content is not what we write.
    #[error("{file}: key `{key}`: expected {expected}")]
    Format {
        /// The file involved.
        file: String,
        /// The key involved (a dotted path for configuration keys).
        key: String,
        /// What was expected.
        expected: String,
    },
}

impl EvalError {
    pub(crate) fn invalid(what: &str, message: impl Into<String>) -> Self {
        EvalError::Invalid {
            what: what.to_string(),
            message: message.into(),
        }
    }
}

/// The default rate grid `0.0, 0.1, …, 1.0` (11 values, each exactly `k/10`).
pub fn default_rates() -> Vec<f64> {
    (0..=10).map(|k| f64::from(k) / 10.0).collect()
}

/// Parses a rate grid: `start:end:step` (inclusive of `end` up to rounding, e.g. `0:1:0.1`)
/// or a comma list (`0,0.3,0.7`). Rates must lie in [0, 1] and increase strictly; grid points
/// are rounded to 12 decimals so that `0:1:0.1` gives exactly `0.3`, not `0.30000000000000004`.
pub fn parse_rates(spec: &str) -> Result<Vec<f64>, EvalError> {
    let bad = |message: String| EvalError::invalid(&format!("rates `{}`", excerpt(spec)), message);
    let number = |text: &str| {
        text.trim()
            .parse::<f64>()
            .map_err(|_| bad(format!("`{}` is not a number", excerpt(text.trim()))))
    };
    let rates = if spec.contains(':') {
        let parts: Vec<&str> = spec.split(':').collect();
        let [start, end, step] = parts[..] else {
            return Err(bad("expected start:end:step".into()));
        };
        let (start, end, step) = (number(start)?, number(end)?, number(step)?);
        if !(step > 0.0 && step.is_finite()) {
            return Err(bad(format!("step {step} must be a positive number")));
        }
        if !(start.is_finite() && end.is_finite() && end >= start) {
            return Err(bad(format!("end {end} must not be below start {start}")));
        }
        // Points k = 0..=K with start + k·step ≤ end (1e-9 slack for decimal steps).
        let count = ((end - start) / step + 1e-9).floor() + 1.0;
        if count > MAX_RATES as f64 {
            return Err(bad(format!(
                "{count} points, more than the limit of {MAX_RATES}"
            )));
        }
        (0..count as usize)
            .map(|k| round12(start + k as f64 * step))
            .collect()
    } else {
        let rates = spec
            .split(',')
            .map(number)
            .collect::<Result<Vec<f64>, _>>()?;
        if rates.len() > MAX_RATES {
            return Err(bad(format!(
                "{} rates, more than the limit of {MAX_RATES}",
                rates.len()
            )));
        }
        rates
    };
    check_rates(&rates).map_err(|e| match e {
        EvalError::Invalid { message, .. } => bad(message),
        other => other,
    })?;
    Ok(rates)
}

/// Rounds to 12 decimals (removes the drift of `k·0.1`).
fn round12(x: f64) -> f64 {
    (x * 1e12).round() / 1e12
}

/// At least one rate, each in [0, 1], strictly increasing.
fn check_rates(rates: &[f64]) -> Result<(), EvalError> {
    let bad = |message: String| EvalError::invalid("rates", message);
    if rates.is_empty() {
        return Err(bad("no rate given".into()));
    }
    if let Some(r) = rates.iter().find(|r| !(0.0..=1.0).contains(*r)) {
        return Err(bad(format!("{r} is not a missing rate in [0, 1]")));
    }
    if let Some(w) = rates.windows(2).find(|w| w[1] <= w[0]) {
        return Err(bad(format!(
            "rates must increase strictly, but {} follows {}",
            w[1], w[0]
        )));
    }
    Ok(())
}

/// The splits and class information one protocol run needs.
#[derive(Debug, Clone, Copy)]
pub struct EvalData<'a> {
    /// Which labels and metrics (binary: 3 classes, seven: 7).
    pub task: Task,
    /// The validation split, where τ is chosen.
    pub valid: &'a Split,
    /// The evaluated split (normally test).
    pub evaluated: &'a Split,
    /// Bias-word ids of the training split (docs/method.md §4.1), for the counterfactual text.
    pub bias_words: &'a [u32],
    /// Test-time prototypes and priors of the validation split (docs/method.md §7.2).
    pub valid_prototypes: &'a Prototypes,
    /// Test-time prototypes and priors of the evaluated split.
    pub prototypes: &'a Prototypes,
}

/// The settings of one protocol run (docs/method.md §8.2).
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolConfig {
    /// Missing mode.
    pub mode: EvalMode,
    /// Missing rates, strictly increasing in [0, 1]; unused by [`EvalMode::Smm`].
    pub rates: Vec<f64>,
    /// MACI or the plain prediction.
    pub debiasing: Debiasing,
    /// How τ is chosen (docs/method.md §7.5). Without MACI's counterfactual pass every rule
    /// gives τ = 0, and a fixed τ above 0 is an error.
    pub tau: TauChoice,
    /// Seed of the evaluation masks (the reference's 1111).
    pub seed: u32,
    /// Samples per batch, in file order (the reference's 128).
    pub batch_size: usize,
}

impl Default for ProtocolConfig {
    /// RMFM over `0.0, 0.1, …, 1.0`, MACI with τ by the shift-gated rule, seed 1111, batches
    /// of 128.
    fn default() -> Self {
        Self {
            mode: EvalMode::Rmfm,
            rates: default_rates(),
            debiasing: Debiasing::Maci,
            tau: TauChoice::default(),
            seed: DEFAULT_MISSING_SEED,
            batch_size: EVAL_BATCH_SIZE,
        }
    }
}

/// Where on the protocol a result lies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Point {
    /// A missing rate `p` of the grid.
    Rate(f64),
    /// An SMM subset, named by its present modalities (`T`, `AV`, `TAV`, …).
    Subset(&'static str),
}

impl Point {
    /// `"0.3"` (`"0.0"`, `"1.0"` at the ends) or `"TA"`.
    pub fn label(&self) -> String {
        match self {
            Point::Rate(p) => format!("{p:?}"),
            Point::Subset(name) => (*name).to_string(),
        }
    }
}

/// The metrics at one point of the protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct PointResult {
    /// The rate or SMM subset.
    pub point: Point,
    /// Metrics of `s_τ` at the chosen τ.
    pub metrics: Metrics,
    /// Every metric maximised over τ on this point's own labels.
    pub oracle: Metrics,
    /// The headline metric at every τ of the grid, τ increasing (one value, τ = 0, without
    /// MACI's counterfactual pass).
    pub headline_per_tau: Vec<f64>,
}

/// The outcome of [`run_protocol`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolResults {
    /// The task of the metrics.
    pub task: Task,
    /// The settings it ran with.
    pub config: ProtocolConfig,
    /// The τ of [`ProtocolConfig::tau`]'s rule (0 under [`Debiasing::NoMaci`]).
    pub tau: Tau,
    /// How the rule reached it (the EM prior, the shift test; empty for most rules).
    pub tau_detail: String,
    /// The τ every named rule ([`NAMED_RULES`]) picks for this split, in that order (empty
    /// without MACI's counterfactual pass).
    pub rule_taus: Vec<(TauChoice, Tau)>,
    /// The validation split's metrics at the chosen τ.
    pub validation: Metrics,
    /// One result per rate (in order) or per SMM subset (T, A, V, TA, TV, AV, TAV).
    pub points: Vec<PointResult>,
}

impl ProtocolResults {
    /// The missing rates of the points (empty for SMM).
    pub fn rates(&self) -> Vec<f64> {
        self.points
            .iter()
            .filter_map(|p| match p.point {
                Point::Rate(r) => Some(r),
                Point::Subset(_) => None,
            })
            .collect()
    }

    /// One metric at every point under a τ rule; `None` for a metric of another task.
    pub fn series(&self, metric: Metric, rule: TauSelection) -> Option<Vec<f64>> {
        self.points
            .iter()
            .map(|p| match rule {
                TauSelection::Validation => p.metrics.get(metric),
                TauSelection::Oracle => p.oracle.get(metric),
            })
            .collect()
    }

    /// AUILC (docs/method.md §8.2) of a metric under a τ rule: the trapezoid area under its curve over
    /// the rates. `None` for SMM, a single rate, or a metric of another task.
    pub fn auilc(&self, metric: Metric, rule: TauSelection) -> Option<f64> {
        let rates = self.rates();
        if rates.len() < 2 || rates.len() != self.points.len() {
            return None;
        }
        metrics::auilc(&rates, &self.series(metric, rule)?).ok()
    }
}

/// Runs the evaluation protocol of docs/method.md §8.2 on `data.evaluated`.
///
/// 1. τ: under [`Debiasing::Maci`], the validation and the evaluated splits at rate 0
///    (complete data, seed `config.seed`) go through the factual and counterfactual passes,
///    and `config.tau`'s rule picks τ from them without the evaluated split's labels
///    (docs/method.md §7.5; by default `shift-gated`). Every named rule's τ is recorded.
/// 2. Per point (rate of the grid, or SMM subset): the evaluation view of the evaluated split
///    (seeded afresh, so masks are nested across rates), counterfactual ids from
///    `data.bias_words`, both passes, and the τ sweep: the metrics at the fixed τ and the
///    per-metric oracle. `on_point` sees each result as soon as it is ready.
///
/// # Errors
/// Invalid rates or batch size, TMFM/STMFM on unaligned data, size mismatches, model input
/// errors, metric errors (e.g. a binary split without non-neutral sample), and a fixed τ above
/// 0 without MACI's counterfactual pass.
pub fn run_protocol<B: Backend, M: Backbone<B>>(
    model: &Maci<B, M>,
    data: &EvalData<'_>,
    config: &ProtocolConfig,
    device: &B::Device,
    mut on_point: impl FnMut(&PointResult),
) -> Result<ProtocolResults, EvalError> {
    let points: Vec<(Point, EvalMissing)> = match config.mode {
        EvalMode::Smm => smm_rates()
            .into_iter()
            .map(|(name, rates)| (Point::Subset(name), EvalMissing::RmfmSame { rates }))
            .collect(),
        mode => {
            check_rates(&config.rates)?;
            config
                .rates
                .iter()
                .filter_map(|&p| mode.at_rate(p).map(|m| (Point::Rate(p), m)))
                .collect()
        }
    };
    let maci = config.debiasing == Debiasing::Maci;
    let outputs = |split: &Split, missing: EvalMissing, prototypes: &Prototypes| {
        let view = eval_view(split, missing, config.seed)?;
        let cf_ids = maci.then(|| counterfactual_ids(&view.text_m_ids, data.bias_words));
        let out = predict(
            model,
            split,
            &view,
            cf_ids.as_deref(),
            prototypes,
            config.batch_size,
            device,
        )?;
        Ok::<_, EvalError>((out, view))
    };
    let complete = EvalMissing::Rmfm { rate: 0.0 };
    for (_, missing) in &points {
        check_mode(data.evaluated, *missing)?;
    }

    // τ from the splits at rate 0 (complete data in every mode).
    let (valid_out, valid_view) = outputs(data.valid, complete, data.valid_prototypes)?;
    let valid = Sweep::new(data.task, &valid_out, data.valid.labels(data.task))?;
    // The evaluated split at rate 0, kept for the point at rate 0 if the grid has one.
    let mut evaluated_at_zero = None;
    let (decision, rule_taus) = match &valid_out.cf_pred {
        Some(cf_pred) => {
            let (evaluated, _) = outputs(data.evaluated, complete, data.prototypes)?;
            let evaluated = evaluated_at_zero.insert(evaluated);
            let words =
                bias_word_flags(&valid_view.text_m_ids, data.valid.dims.t_l, data.bias_words);
            let evidence = TauEvidence {
                task: data.task,
                validation: CfOutputs {
                    pred: &valid_out.pred,
                    cf_pred,
                    labels: data.valid.labels(data.task),
                },
                validation_bias_words: &words,
                evaluated: evaluated.cf_pred.as_deref().map(|cf_pred| Unlabeled {
                    pred: &evaluated.pred,
                    cf_pred,
                }),
            };
            let rule_taus = NAMED_RULES
                .iter()
                .map(|&rule| Ok((rule, rule.choose(&evidence)?.tau)))
                .collect::<Result<Vec<_>, MaciError>>()?;
            (config.tau.choose(&evidence)?, rule_taus)
        }
        None => match config.tau {
            TauChoice::Fixed(tau) if tau != Tau::ZERO => {
                return Err(EvalError::invalid(
                    "τ",
                    format!(
                        "{}: a counterfactual τ needs MACI's counterfactual pass, and this \
                         evaluation has none (no-maci debiasing or a linear head); use τ 0",
                        tau.value()
                    ),
                ));
            }
            _ => (
                TauDecision {
                    tau: Tau::ZERO,
                    detail: "no counterfactual pass: τ = 0".into(),
                },
                Vec::new(),
            ),
        },
    };
    let tau = decision.tau;
    let validation = valid.at(tau).clone();

    let mut results = Vec::with_capacity(points.len());
    for (point, missing) in points {
        let out = match evaluated_at_zero.take() {
            Some(out) if missing == complete => out,
            kept => {
                evaluated_at_zero = kept;
                outputs(data.evaluated, missing, data.prototypes)?.0
            }
        };
        let sweep = Sweep::new(data.task, &out, data.evaluated.labels(data.task))?;
        let result = PointResult {
            point,
            metrics: sweep.at(tau).clone(),
            oracle: sweep.oracle(),
            headline_per_tau: sweep.headline_per_tau(),
        };
        on_point(&result);
        results.push(result);
    }
    Ok(ProtocolResults {
        task: data.task,
        config: config.clone(),
        tau,
        tau_detail: decision.detail,
        rule_taus,
        validation,
        points: results,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use burn::backend::Flex;
    use burn::tensor::Tensor;
    use burn::tensor::TensorData;
    use cider_data::batch::Batch;
    use cider_data::bias::{BiasRule, bias_words};
    use cider_data::dataset::Dataset;
    use cider_data::missing::MissingView;
    use cider_data::synth::{Layout, SynthConfig, generate};
    use cider_maci::counterfactual::{CfOutputs, TauSweep};
    use cider_maci::full_model::{Cider, CiderConfig};
    use cider_maci::inference::Predictions;
    use cider_maci::prototypes::TextFeatures;
    use cider_model::bert::BertConfig;
    use cider_model::network::InputMasks;
    use cider_model::network::{TextInput, ViewInput};
    use cider_model::network_config::{Alignment, NetworkConfig, NetworkOptions, PositionalMode};

    use super::*;

    pub(crate) type TB = Flex;

    /// A synthetic MOSI-aligned dataset with precomputed text, a tiny random model reading
    /// those features, the training bias words and the clean test-time prototypes.
    pub(crate) struct Fixture {
        pub data: Dataset,
        pub model: Cider<TB>,
        pub bias: Vec<u32>,
        pub prototypes: Prototypes,
    }

    impl Fixture {
        pub(crate) fn new(positional: PositionalMode) -> Self {
            let data = generate(&SynthConfig {
                layout: Layout::MosiAligned,
                n_train: 60,
                n_valid: 12,
                n_test: 16,
                text_features: true,
                ..SynthConfig::default()
            })
            .unwrap();
            let d = data.dims;
            let network =
                NetworkConfig::new(d.d_l, d.d_a, d.d_v, d.t_l, d.t_a, d.t_v, Alignment::Aligned)
                    .with_options(NetworkOptions {
                        embed_dim: 8,
                        num_heads: 2,
                        multimodal_layers: 1,
                        positional,
                        ..NetworkOptions::default()
                    });
            let model = {
                let _rng = crate::testkit::backend_rng();
                CiderConfig::new(network, 3)
                    .init::<TB>(&Default::default())
                    .unwrap()
            };
            let bias = bias_words(&data.train, Task::Binary, 100, BiasRule::Parity).unwrap();
            let prototypes =
                Prototypes::from_split(&data.train, Task::Binary, TextFeatures::FromSplit)
                    .unwrap()
                    .collapsed();
            Self {
                data,
                model,
                bias,
                prototypes,
            }
        }

        pub(crate) fn eval_data(&self) -> EvalData<'_> {
            EvalData {
                task: Task::Binary,
                valid: &self.data.valid,
                evaluated: &self.data.test,
                bias_words: &self.bias,
                valid_prototypes: &self.prototypes,
                prototypes: &self.prototypes,
            }
        }

        fn protocol(&self, config: &ProtocolConfig) -> Result<ProtocolResults, EvalError> {
            run_protocol(
                &self.model,
                &self.eval_data(),
                config,
                &Default::default(),
                |_| {},
            )
        }

        pub(crate) fn run(&self, config: &ProtocolConfig) -> ProtocolResults {
            self.protocol(config).unwrap()
        }

        /// The error message of a protocol run that must fail.
        pub(crate) fn run_error(&self, config: &ProtocolConfig) -> String {
            self.protocol(config).unwrap_err().to_string()
        }

        /// `(view, cf_ids)` of a split at an RMFM rate with the reference seed.
        fn view(&self, split: &Split, rate: f64) -> (MissingView, Vec<u32>) {
            let view = eval_view(split, EvalMissing::Rmfm { rate }, DEFAULT_MISSING_SEED).unwrap();
            let cf = counterfactual_ids(&view.text_m_ids, &self.bias);
            (view, cf)
        }

        fn predict(&self, split: &Split, rate: f64, batch_size: usize) -> Predictions {
            let (view, cf) = self.view(split, rate);
            predict(
                &self.model,
                split,
                &view,
                Some(&cf),
                &self.prototypes,
                batch_size,
                &Default::default(),
            )
            .unwrap()
        }
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn rate_strings_parse_to_exact_grids() {
        assert_eq!(parse_rates("0:1:0.1").unwrap(), default_rates());
        assert_eq!(default_rates()[3], 0.3);
        assert_eq!(parse_rates("0.2:0.5:0.1").unwrap(), [0.2, 0.3, 0.4, 0.5]);
        assert_eq!(parse_rates("0:1:0.3").unwrap(), [0.0, 0.3, 0.6, 0.9]);
        assert_eq!(parse_rates(" 0, 0.5 ,1").unwrap(), [0.0, 0.5, 1.0]);
        assert_eq!(parse_rates("0.7").unwrap(), [0.7]);
        for (bad, needle) in [
            ("0:1.5:0.1", "1.5"),
            ("1.2", "[0, 1]"),
            ("0,abc", "`abc` is not a number"),
            ("0:1:0", "step"),
            ("0:1:-0.1", "step"),
            ("1:0:0.1", "below start"),
            ("0.5,0.2", "increase strictly"),
            ("0:1", "start:end:step"),
            ("0:1:1e-9", "limit"),
            ("", "not a number"),
        ] {
            let message = parse_rates(bad).unwrap_err().to_string();
            assert!(message.contains(needle), "{bad:?}: {message}");
            assert!(message.contains(&format!("`{bad}`")), "{message}");
        }
    }

    #[test]
    fn a_long_rate_list_is_not_echoed_whole() {
        let spec: Vec<String> = (0..=2000)
            .map(|k| format!("{:.6}", k as f64 / 2000.0))
            .collect();
        let spec = spec.join(",");
        assert!(spec.len() > 14_000);
        let message = parse_rates(&spec).unwrap_err().to_string();
        assert_eq!(
            message,
            format!(
                "invalid rates `{}… ({} characters)`: 2001 rates, more than the limit of {MAX_RATES}",
                &spec[..40],
                spec.len()
            )
        );
    }

    /// The rows of one batch from `predict` equal a direct `Cider::test` call whose text
    /// features were masked by hand from the split arrays.
    #[test]
    fn predict_equals_a_hand_built_test_pass() {
        let f = Fixture::new(PositionalMode::BatchIndex);
        let split = &f.data.test;
        let rate = 0.4;
        let out = f.predict(split, rate, 4);
        assert_eq!(out.classes, 3);
        assert_eq!(out.pred.len(), split.n * 3);
        let cf_pred = out.cf_pred.clone().unwrap();
        assert_eq!(cf_pred.len(), split.n * 3);
        for row in out.pred.chunks(3) {
            let total: f32 = row.iter().map(|l| l.exp()).sum();
            assert!((total - 1.0).abs() < 1e-5, "log-probabilities: {row:?}");
        }

        // Second batch: samples 4..8.
        let (view, cf) = f.view(split, rate);
        let indices: Vec<usize> = (4..8).collect();
        let d = split.dims;
        let features = split.text_features.as_ref().unwrap();
        let mut factual = Vec::new();
        let mut counterfactual = Vec::new();
        for &i in &indices {
            for j in 0..d.t_l {
                let row = &features[(i * d.t_l + j) * d.d_l..(i * d.t_l + j + 1) * d.d_l];
                let kept = view.text_missing[i * d.t_l + j] == 1;
                let cf_kept = cf[i * d.t_l + j] == split.text_ids[i * d.t_l + j];
                factual.extend(row.iter().map(|&x| if kept { x } else { 0.0 }));
                counterfactual.extend(row.iter().map(|&x| if cf_kept { x } else { 0.0 }));
            }
        }
        let device = Default::default();
        let rows = view.rows(&indices).unwrap();
        let batch = Batch::<TB>::new(split, &indices, &rows, None, &split.label3, &device);
        let text = |v: Vec<f32>| {
            TextInput::Features(Tensor::from_data(
                TensorData::new(v, [4, d.t_l, d.d_l]),
                &device,
            ))
        };
        let masks = InputMasks {
            text: batch.text_mask.clone(),
            audio: batch.audio_mask.clone(),
            vision: batch.vision_mask.clone(),
            text_len: batch.text_len.clone(),
        };
        let test = f
            .model
            .test(
                ViewInput {
                    text: text(factual),
                    audio: batch.audio_m.clone(),
                    vision: batch.vision_m.clone(),
                },
                text(counterfactual),
                &masks,
                &f.prototypes.confounders(4, &device),
            )
            .unwrap();
        let want = test.factual.pred.into_data().to_vec::<f32>().unwrap();
        let want_cf = test
            .counterfactual
            .pred
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert!(max_diff(&out.pred[12..24], &want) < 1e-6);
        assert!(max_diff(&cf_pred[12..24], &want_cf) < 1e-6);
        assert!(
            max_diff(&want, &want_cf) > 1e-6,
            "the counterfactual text changes the prediction"
        );
    }

    /// With the corrected time-indexed positions a sample's output does not depend on its
    /// batch; with the reference's batch-indexed positions it does (docs/method.md §11.1).
    #[test]
    fn batch_size_matters_only_with_batch_indexed_positions() {
        let f = Fixture::new(PositionalMode::TimeIndex);
        let a = f.predict(&f.data.test, 0.3, 5);
        let b = f.predict(&f.data.test, 0.3, EVAL_BATCH_SIZE);
        assert!(max_diff(&a.pred, &b.pred) < 1e-5);
        assert!(max_diff(&a.cf_pred.unwrap(), &b.cf_pred.unwrap()) < 1e-5);

        let f = Fixture::new(PositionalMode::BatchIndex);
        let a = f.predict(&f.data.test, 0.3, 5);
        let b = f.predict(&f.data.test, 0.3, EVAL_BATCH_SIZE);
        assert!(max_diff(&a.pred[..15], &b.pred[..15]) < 1e-5, "first batch");
        assert!(
            max_diff(&a.pred[15..], &b.pred[15..]) > 1e-6,
            "later batches"
        );
    }

    #[test]
    fn bert_models_read_masked_and_counterfactual_ids() {
        let _rng = crate::testkit::backend_rng();
        let data = generate(&SynthConfig {
            layout: Layout::MosiUnaligned,
            n_train: 40,
            n_valid: 4,
            n_test: 6,
            ..SynthConfig::default()
        })
        .unwrap();
        let d = data.dims;
        let bert = BertConfig::new(30_522, 16, 1, 2, 32, 64);
        let network =
            NetworkConfig::new(16, d.d_a, d.d_v, d.t_l, d.t_a, d.t_v, Alignment::Unaligned)
                .with_options(NetworkOptions {
                    embed_dim: 8,
                    num_heads: 2,
                    multimodal_layers: 1,
                    ..NetworkOptions::default()
                })
                .with_bert_encoder(bert);
        let device = Default::default();
        let model = CiderConfig::new(network, 3).init::<TB>(&device).unwrap();
        let prototypes =
            Prototypes::new(vec![vec![0.1; 16 + d.d_a + d.d_v]; 3], vec![1.0 / 3.0; 3]).unwrap();
        let bias = bias_words(&data.train, Task::Binary, 100, BiasRule::Parity).unwrap();
        let split = &data.test;
        let view = eval_view(split, EvalMissing::Rmfm { rate: 0.5 }, 1111).unwrap();
        let cf = counterfactual_ids(&view.text_m_ids, &bias);
        let out = predict(&model, split, &view, Some(&cf), &prototypes, 128, &device).unwrap();

        // The same pass by hand with the ids as token tensors.
        let all: Vec<usize> = (0..split.n).collect();
        let batch = Batch::<TB>::new(split, &all, &view, Some(&cf), &split.label3, &device);
        let ids = |v: &[u32]| {
            let v: Vec<i64> = v.iter().map(|&x| i64::from(x)).collect();
            Tensor::from_data(TensorData::new(v, [split.n, d.t_l]), &device)
        };
        let tokens = |v: &[u32]| TextInput::Tokens {
            ids: ids(v),
            attention_mask: batch.text_mask.clone(),
            token_types: batch.text_segment.clone(),
        };
        let masks = InputMasks {
            text: batch.text_mask.clone(),
            audio: batch.audio_mask.clone(),
            vision: batch.vision_mask.clone(),
            text_len: batch.text_len.clone(),
        };
        let test = model
            .test(
                ViewInput {
                    text: tokens(&view.text_m_ids),
                    audio: batch.audio_m.clone(),
                    vision: batch.vision_m.clone(),
                },
                tokens(&cf),
                &masks,
                &prototypes.confounders(split.n, &device),
            )
            .unwrap();
        assert!(
            max_diff(
                &out.pred,
                &test.factual.pred.into_data().to_vec::<f32>().unwrap()
            ) < 1e-6
        );
        let cf_pred = out.cf_pred.unwrap();
        assert!(
            max_diff(
                &cf_pred,
                &test
                    .counterfactual
                    .pred
                    .into_data()
                    .to_vec::<f32>()
                    .unwrap()
            ) < 1e-6
        );
        assert!(max_diff(&out.pred, &cf_pred) > 1e-6);
    }

    #[test]
    fn predict_rejects_mismatched_inputs() {
        let f = Fixture::new(PositionalMode::BatchIndex);
        let (view, cf) = f.view(&f.data.test, 0.0);
        let device = Default::default();
        let run = |split: &Split, cf: &[u32], batch: usize| {
            predict(
                &f.model,
                split,
                &view,
                Some(cf),
                &f.prototypes,
                batch,
                &device,
            )
            .unwrap_err()
            .to_string()
        };
        assert!(run(&f.data.valid, &cf, 128).contains("missing view"));
        assert!(run(&f.data.test, &cf[1..], 128).contains("counterfactual ids"));
        assert!(run(&f.data.test, &cf, 0).contains("batch size"));
        let mut no_text = f.data.test.clone();
        no_text.text_features = None;
        assert!(run(&no_text, &cf, 128).contains("no `text` array"));
    }

    /// AUILC by the closed form of docs/method.md §8.2 for 11 evenly spaced rates:
    /// `0.1·(Σ m − (m_0 + m_10)/2)`.
    fn closed_form_auilc(values: &[f64]) -> f64 {
        0.1 * (values.iter().sum::<f64>() - (values[0] + values[10]) / 2.0)
    }

    #[test]
    fn protocol_reports_every_rate_with_trapezoid_auilc() {
        let f = Fixture::new(PositionalMode::BatchIndex);
        let mut seen = Vec::new();
        let results = run_protocol(
            &f.model,
            &f.eval_data(),
            &ProtocolConfig::default(),
            &Default::default(),
            |p| seen.push(p.point),
        )
        .unwrap();
        assert_eq!(results.rates(), default_rates());
        assert_eq!(
            seen,
            default_rates()
                .into_iter()
                .map(Point::Rate)
                .collect::<Vec<_>>()
        );
        for &metric in Metric::for_task(Task::Binary) {
            for rule in [TauSelection::Validation, TauSelection::Oracle] {
                let series = results.series(metric, rule).unwrap();
                assert_eq!(series.len(), 11);
                let area = results.auilc(metric, rule).unwrap();
                assert!(
                    (area - closed_form_auilc(&series)).abs() < 1e-12,
                    "{metric} {rule:?}"
                );
            }
            for p in &results.points {
                let (fixed, best) = (p.metrics.get(metric), p.oracle.get(metric));
                assert!(fixed <= best, "the oracle maximises over τ: {metric}");
            }
        }
        assert_eq!(results.series(Metric::Acc7, TauSelection::Validation), None);
        assert_eq!(results.auilc(Metric::Acc7, TauSelection::Oracle), None);
    }

    #[test]
    fn tau_is_chosen_on_the_validation_split_and_fixed() {
        let f = Fixture::new(PositionalMode::BatchIndex);
        let config = ProtocolConfig {
            rates: vec![0.0, 0.6],
            tau: TauChoice::Validation,
            ..ProtocolConfig::default()
        };
        let results = f.run(&config);

        let labels = f.data.valid.labels(Task::Binary);
        let valid = f.predict(&f.data.valid, 0.0, EVAL_BATCH_SIZE);
        let outputs = CfOutputs {
            pred: &valid.pred,
            cf_pred: valid.cf_pred.as_ref().unwrap(),
            labels,
        };
        let sweep = TauSweep::new(Task::Binary, &outputs).unwrap();
        assert_eq!(results.tau, sweep.best_tau());
        assert_eq!(&results.validation, sweep.at(results.tau));

        // At each test rate: the metrics at that τ, and the oracle, from the test labels.
        let labels = f.data.test.labels(Task::Binary);
        for p in &results.points {
            let Point::Rate(rate) = p.point else {
                panic!("rate points")
            };
            let test = f.predict(&f.data.test, rate, EVAL_BATCH_SIZE);
            let outputs = CfOutputs {
                pred: &test.pred,
                cf_pred: test.cf_pred.as_ref().unwrap(),
                labels,
            };
            let sweep = TauSweep::new(Task::Binary, &outputs).unwrap();
            assert_eq!(&p.metrics, sweep.at(results.tau));
            assert_eq!(p.oracle, sweep.oracle());
        }

        // Evaluating another split does not move τ; evaluating the validation split itself
        // at rate 0 gives the oracle's headline (τ was chosen there).
        let data = EvalData {
            evaluated: &f.data.valid,
            ..f.eval_data()
        };
        let own = run_protocol(&f.model, &data, &config, &Default::default(), |_| {}).unwrap();
        assert_eq!(own.tau, results.tau);
        assert_eq!(
            own.points[0].metrics.headline(),
            own.points[0].oracle.headline()
        );
    }

    #[test]
    fn a_subset_of_the_grid_gives_the_same_points() {
        let f = Fixture::new(PositionalMode::BatchIndex);
        let full = f.run(&ProtocolConfig::default());
        let part = f.run(&ProtocolConfig {
            rates: vec![0.0, 0.5, 1.0],
            ..ProtocolConfig::default()
        });
        assert_eq!(part.tau, full.tau);
        for (p, k) in part.points.iter().zip([0, 5, 10]) {
            assert_eq!(p, &full.points[k]);
        }
    }

    #[test]
    fn every_rule_reads_the_rate_zero_outputs_and_its_tau_is_fixed() {
        let f = Fixture::new(PositionalMode::BatchIndex);
        let rates = vec![0.0, 0.6];
        let valid = f.predict(&f.data.valid, 0.0, EVAL_BATCH_SIZE);
        let test = f.predict(&f.data.test, 0.0, EVAL_BATCH_SIZE);
        let words = bias_word_flags(&f.data.valid.text_ids, f.data.valid.dims.t_l, &f.bias);
        let evidence = TauEvidence {
            task: Task::Binary,
            validation: CfOutputs {
                pred: &valid.pred,
                cf_pred: valid.cf_pred.as_ref().unwrap(),
                labels: f.data.valid.labels(Task::Binary),
            },
            validation_bias_words: &words,
            evaluated: Some(Unlabeled {
                pred: &test.pred,
                cf_pred: test.cf_pred.as_ref().unwrap(),
            }),
        };
        let mut rules = NAMED_RULES.to_vec();
        rules.push(TauChoice::Fixed(Tau::from_index(7).unwrap()));
        for rule in rules {
            let results = f.run(&ProtocolConfig {
                rates: rates.clone(),
                tau: rule,
                ..ProtocolConfig::default()
            });
            let want = rule.choose(&evidence).unwrap();
            assert_eq!(
                (results.tau, &results.tau_detail),
                (want.tau, &want.detail),
                "{rule}"
            );
            // Every named rule's τ is recorded, whichever rule ran.
            let named: Vec<(TauChoice, Tau)> = NAMED_RULES
                .iter()
                .map(|&r| (r, r.choose(&evidence).unwrap().tau))
                .collect();
            assert_eq!(results.rule_taus, named, "{rule}");
            for (p, rate) in results.points.iter().zip(&rates) {
                let out = f.predict(&f.data.test, *rate, EVAL_BATCH_SIZE);
                let sweep =
                    Sweep::new(Task::Binary, &out, f.data.test.labels(Task::Binary)).unwrap();
                assert_eq!(&p.metrics, sweep.at(results.tau), "{rule} at {rate}");
                assert_eq!(p.headline_per_tau, sweep.headline_per_tau());
                assert_eq!(p.headline_per_tau.len(), 31);
            }
        }
        // Without MACI's counterfactual pass a rule gives τ = 0, and a fixed τ > 0 is refused.
        let plain = ProtocolConfig {
            rates,
            debiasing: Debiasing::NoMaci,
            tau: TauChoice::PriorMatching,
            ..ProtocolConfig::default()
        };
        let results = f.run(&plain);
        assert_eq!(results.tau, Tau::ZERO);
        assert_eq!(results.tau_detail, "no counterfactual pass: τ = 0");
        assert!(results.rule_taus.is_empty());
        let config = ProtocolConfig {
            tau: TauChoice::Fixed(Tau::from_index(7).unwrap()),
            ..plain
        };
        let message = f.run_error(&config);
        assert!(
            message.contains("0.7: a counterfactual τ needs MACI's counterfactual pass"),
            "{message}"
        );
    }

    #[test]
    fn no_maci_is_the_plain_prediction_at_tau_zero() {
        let f = Fixture::new(PositionalMode::BatchIndex);
        let results = f.run(&ProtocolConfig {
            rates: vec![0.2, 0.8],
            debiasing: Debiasing::NoMaci,
            ..ProtocolConfig::default()
        });
        assert_eq!(results.tau, Tau::ZERO);
        for (p, rate) in results.points.iter().zip([0.2, 0.8]) {
            assert_eq!(p.metrics, p.oracle);
            let plain = f.predict(&f.data.test, rate, EVAL_BATCH_SIZE);
            let want =
                metrics::evaluate(Task::Binary, &plain.pred, f.data.test.labels(Task::Binary))
                    .unwrap();
            assert_eq!(p.metrics, want);
        }
    }

    #[test]
    fn smm_reports_seven_subsets_and_no_auilc() {
        let f = Fixture::new(PositionalMode::BatchIndex);
        let smm = f.run(&ProtocolConfig {
            mode: EvalMode::Smm,
            ..ProtocolConfig::default()
        });
        let names: Vec<String> = smm.points.iter().map(|p| p.point.label()).collect();
        assert_eq!(names, ["T", "A", "V", "TA", "TV", "AV", "TAV"]);
        assert!(smm.rates().is_empty());
        assert_eq!(smm.auilc(Metric::Non0Acc2, TauSelection::Validation), None);
        // All three modalities present = complete data = RMFM at rate 0.
        let rmfm = f.run(&ProtocolConfig {
            rates: vec![0.0],
            ..ProtocolConfig::default()
        });
        assert_eq!(smm.tau, rmfm.tau);
        assert_eq!(smm.points[6].metrics, rmfm.points[0].metrics);
        assert_eq!(smm.points[6].oracle, rmfm.points[0].oracle);
        assert_eq!(rmfm.auilc(Metric::Non0Acc2, TauSelection::Oracle), None);
    }

    #[test]
    fn invalid_protocol_settings_are_errors() {
        let f = Fixture::new(PositionalMode::BatchIndex);
        let run = |config: ProtocolConfig| f.run_error(&config);
        let message = run(ProtocolConfig {
            rates: vec![0.5, 0.1],
            ..ProtocolConfig::default()
        });
        assert!(message.contains("increase strictly"), "{message}");
        let message = run(ProtocolConfig {
            rates: vec![],
            ..ProtocolConfig::default()
        });
        assert!(message.contains("no rate"), "{message}");
        let message = run(ProtocolConfig {
            batch_size: 0,
            ..ProtocolConfig::default()
        });
        assert!(message.contains("batch size"), "{message}");

        // TMFM needs aligned data: the (aligned) validation pass runs, the unaligned split fails.
        let unaligned = generate(&SynthConfig {
            layout: Layout::MosiUnaligned,
            n_train: 4,
            n_valid: 4,
            n_test: 4,
            ..SynthConfig::default()
        })
        .unwrap();
        let data = EvalData {
            evaluated: &unaligned.test,
            ..f.eval_data()
        };
        let config = ProtocolConfig {
            mode: EvalMode::Tmfm,
            ..ProtocolConfig::default()
        };
        let message = run_protocol(&f.model, &data, &config, &Default::default(), |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("TMFM") && message.contains("unaligned"),
            "{message}"
        );
    }
}
