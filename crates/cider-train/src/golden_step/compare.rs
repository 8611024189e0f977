//! The comparisons of the MSSD-step golden check (docs/method.md §12, parity test 11): losses,
//! gradients and weights after the step against the reference, with the tolerance rule and
//! the noise-driven elements described in the [parent module](super)'s documentation.

use serde_json::Value;

use cider_model::ModelError;

use super::ADAM_TWO_STEP_BOUND;
use super::folder::config_error;
use super::params::Named;
use super::report::{FileComparison, LossComparison, TensorComparison};
use crate::mssd::StepLosses;
use crate::optim::{CiderAdamConfig, ParamGroup, cider_param_group};

/// Compares our gradients with the reference's (same module structure, same order).
pub(super) fn compare_gradients(name: &str, ours: &[Named], reference: &[Named]) -> FileComparison {
    let largest = reference
        .iter()
        .filter_map(|r| r.values.as_ref())
        .flatten()
        .fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
    let mut out = FileComparison {
        name: name.to_string(),
        noise_floor: f64::from(f32::EPSILON) * largest,
        tensors: Vec::new(),
        missing: Vec::new(),
        unexpected: Vec::new(),
    };
    for (a, b) in ours.iter().zip(reference) {
        match (&a.values, &b.values) {
            (Some(x), Some(y)) => out.tensors.push(compare_tensor(a, x, y, |_| false)),
            (None, Some(_)) => out.missing.push(a.path.join(".")),
            (Some(_), None) => out.unexpected.push(a.path.join(".")),
            (None, None) => {}
        }
    }
    out
}

/// What decides which after-step elements are noise-driven, and their bound.
pub(super) struct NoiseDriven<'a> {
    /// Per pass: our gradients, the reference gradients and the pass's noise floor.
    pub(super) passes: [(&'a [Named], &'a [Named], f64); 2],
    /// Our parameters before the step (equal to the reference's, both imported).
    pub(super) theta0: &'a [Named],
    /// The optimiser, for each group's learning rate and weight decay.
    pub(super) adam: &'a CiderAdamConfig,
}

impl NoiseDriven<'_> {
    /// `(lr, weight decay)` of parameter `i`.
    fn hyper(&self, i: usize) -> (f64, f64) {
        match cider_param_group(&self.theta0[i].path) {
            ParamGroup::BertDecay => (self.adam.lr_bert, f64::from(self.adam.wd_bert as f32)),
            ParamGroup::BertNoDecay => (self.adam.lr_bert, 0.0),
            ParamGroup::Rest => (self.adam.lr, 0.0),
        }
    }

    /// Whether element `e` of parameter `i` had, on either side and in either pass, a non-zero
    /// gradient whose Adam input `g + λ·θ0` lies below the pass's noise floor. (Exact zeros,
    /// e.g. unused embedding rows, are deterministic.)
    fn is_noise(&self, i: usize, e: usize) -> bool {
        let (_, decay) = self.hyper(i);
        let theta = self.theta0[i]
            .values
            .as_ref()
            .map_or(0.0, |t| f64::from(t[e]));
        self.passes.iter().any(|(ours, reference, floor)| {
            [&ours[i], &reference[i]].into_iter().any(|grads| {
                grads.values.as_ref().is_some_and(|g| {
                    let g = f64::from(g[e]);
                    g != 0.0 && (g + decay * theta).abs() <= *floor
                })
            })
        })
    }
}

/// Compares our weights after the step with the reference's.
pub(super) fn compare_weights(
    name: &str,
    ours: &[Named],
    reference: &[Named],
    noise: &NoiseDriven<'_>,
) -> FileComparison {
    let mut out = FileComparison {
        name: name.to_string(),
        noise_floor: 0.0,
        tensors: Vec::new(),
        missing: Vec::new(),
        unexpected: Vec::new(),
    };
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        let (Some(x), Some(y)) = (&a.values, &b.values) else {
            out.missing.push(a.path.join("."));
            continue;
        };
        let mut comparison = compare_tensor(a, x, y, |e| noise.is_noise(i, e));
        if let Some(theta0) = &noise.theta0[i].values {
            let bound = ADAM_TWO_STEP_BOUND * noise.hyper(i).0;
            comparison.beyond_adam_bound = (0..x.len())
                .filter(|&e| noise.is_noise(i, e))
                .filter(|&e| {
                    let start = f64::from(theta0[e]);
                    (f64::from(x[e]) - start).abs() > bound
                        || (f64::from(y[e]) - start).abs() > bound
                })
                .count();
        }
        out.tensors.push(comparison);
    }
    out
}

/// Compares one tensor, leaving out the elements `skip` selects (counted as noise-driven).
fn compare_tensor(
    param: &Named,
    ours: &[f32],
    reference: &[f32],
    skip: impl Fn(usize) -> bool,
) -> TensorComparison {
    let nan_max = |m: f64, e: f64| {
        if m.is_nan() || e.is_nan() {
            f64::NAN
        } else {
            m.max(e)
        }
    };
    let mut noise_driven = 0;
    let mut max_abs_error = 0.0;
    for (e, (&a, &b)) in ours.iter().zip(reference).enumerate() {
        if skip(e) {
            noise_driven += 1;
        } else {
            max_abs_error = nan_max(max_abs_error, (f64::from(a) - f64::from(b)).abs());
        }
    }
    let scale = reference
        .iter()
        .map(|&b| f64::from(b).abs())
        .fold(0.0, nan_max);
    TensorComparison {
        param: param.path.join("."),
        shape: param.shape.clone(),
        max_abs_error,
        scale,
        relative_error: relative(max_abs_error, scale),
        noise_driven,
        beyond_adam_bound: 0,
    }
}

fn relative(error: f64, scale: f64) -> f64 {
    if scale > 0.0 { error / scale } else { error }
}

/// Our losses against `train_step.losses`.
pub(super) fn compare_losses(
    losses: &StepLosses,
    golden: &Value,
    source: &str,
) -> Result<Vec<LossComparison>, ModelError> {
    let d = losses
        .distillation
        .ok_or_else(|| config_error(source, "the MSSD step computed no distillation losses"))?;
    let expected = golden
        .pointer("/train_step/losses")
        .ok_or_else(|| config_error(source, "missing object `train_step.losses`"))?;
    [
        ("loss_task", losses.task),
        ("loss_task_m", d.task_m),
        ("loss_joint_rep", d.joint_rep),
        ("loss_attn", d.attn),
        ("loss_recon_text", d.recon_text),
        ("loss_recon_audio", d.recon_audio),
        ("loss_recon_vision", d.recon_vision),
        ("loss_recon", d.recon()),
        ("combined_loss", d.combined),
    ]
    .into_iter()
    .map(|(name, ours)| {
        let reference = expected.get(name).and_then(Value::as_f64).ok_or_else(|| {
            config_error(
                source,
                &format!("`train_step.losses.{name}`: expected a number"),
            )
        })?;
        let error = (ours - reference).abs();
        Ok(LossComparison {
            name: name.to_string(),
            ours,
            reference,
            relative_error: if error.is_nan() {
                f64::NAN
            } else {
                relative(error, reference.abs())
            },
        })
    })
    .collect()
}
