//! What the MSSD-step golden check returns (docs/method.md §12, parity test 11): each loss,
//! gradient tensor and weight tensor against the reference, and the verdict at a tolerance
//! (the rule is in the [parent module](super)'s documentation).

use serde::Serialize;

/// One scalar loss against the reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LossComparison {
    /// The reference name (`loss_task`, `combined_loss`, …).
    pub name: String,
    /// Our value.
    pub ours: f64,
    /// The reference value.
    pub reference: f64,
    /// `|ours − reference| / |reference|` (absolute when the reference is 0; NaN if ours is).
    pub relative_error: f64,
}

/// One parameter tensor against the reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorComparison {
    /// Our module path.
    pub param: String,
    /// Our shape.
    pub shape: Vec<usize>,
    /// `max |ours − ref|` over the compared elements (NaN if either side has a NaN).
    pub max_abs_error: f64,
    /// `max |ref|`.
    pub scale: f64,
    /// `max_abs_error / scale` (`max_abs_error` when `scale` is 0).
    pub relative_error: f64,
    /// Weights after the step: elements left out of the tolerance because their Adam update
    /// is driven by gradient noise (see the module documentation).
    pub noise_driven: usize,
    /// Noise-driven elements that moved further than
    /// [`ADAM_TWO_STEP_BOUND`](super::ADAM_TWO_STEP_BOUND) `· lr` from θ0 on
    /// our side or the reference's.
    pub beyond_adam_bound: usize,
}

impl TensorComparison {
    /// `max_abs_error ≤ tol · scale + floor` and no noise-driven element beyond Adam's bound.
    pub fn passes(&self, tol: f64, floor: f64) -> bool {
        self.usage(tol, floor) <= 1.0 && self.beyond_adam_bound == 0
    }

    /// `max_abs_error / (tol · scale + floor)`: the share of the allowance used (0 for an
    /// exact match, NaN stays NaN; passing needs ≤ 1).
    pub fn usage(&self, tol: f64, floor: f64) -> f64 {
        if self.max_abs_error == 0.0 {
            0.0
        } else {
            self.max_abs_error / (tol * self.scale + floor)
        }
    }
}

/// One reference file against our tensors.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileComparison {
    /// The file name without `.safetensors`.
    pub name: String,
    /// The absolute floor of the tolerance: `f32::EPSILON ·` the largest reference gradient
    /// for gradient files, 0 for weights.
    pub noise_floor: f64,
    /// Every parameter both sides have.
    pub tensors: Vec<TensorComparison>,
    /// Parameters the reference has a tensor for and we do not (no gradient on our side).
    pub missing: Vec<String>,
    /// Parameters we have a gradient for and the reference does not.
    pub unexpected: Vec<String>,
}

impl FileComparison {
    /// The tensor that uses the largest share of its allowance at `tol` (NaN counts as
    /// largest).
    pub fn worst(&self, tol: f64) -> Option<&TensorComparison> {
        let usage = |t: &TensorComparison| t.usage(tol, self.noise_floor);
        self.tensors.iter().reduce(|a, b| {
            if usage(a).is_nan() || usage(a) >= usage(b) {
                a
            } else {
                b
            }
        })
    }
}

/// The result of [`check_training_step`](super::check_training_step).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepCheckReport {
    /// The golden folder.
    pub dir: String,
    /// The configuration name from `golden.json`.
    pub config: String,
    /// Our losses against `train_step.losses`.
    pub losses: Vec<LossComparison>,
    /// `grads_pass1`, `grads_pass2_accumulated`, `model_after_step`.
    pub files: Vec<FileComparison>,
}

impl StepCheckReport {
    /// Whether everything is within `tol` (relative) and no parameter is missing or extra.
    pub fn passes(&self, tol: f64) -> bool {
        self.failures(tol).is_empty()
    }

    /// One line per failure at `tol`.
    pub fn failures(&self, tol: f64) -> Vec<String> {
        let within = |e: f64| e <= tol; // false for NaN
        let mut out: Vec<String> = self
            .losses
            .iter()
            .filter(|l| !within(l.relative_error))
            .map(|l| {
                format!(
                    "{}: {} vs reference {} (relative error {:e})",
                    l.name, l.ours, l.reference, l.relative_error
                )
            })
            .collect();
        for file in &self.files {
            out.extend(
                file.tensors
                    .iter()
                    .filter(|t| !t.passes(tol, file.noise_floor))
                    .map(|t| {
                        format!(
                            "{}: {} relative error {:e} (max abs {:e}, scale {:e}, floor {:e}); \
                             {} of {} noise-driven elements beyond Adam's bound",
                            file.name,
                            t.param,
                            t.relative_error,
                            t.max_abs_error,
                            t.scale,
                            file.noise_floor,
                            t.beyond_adam_bound,
                            t.noise_driven
                        )
                    }),
            );
            out.extend(
                file.missing
                    .iter()
                    .map(|p| format!("{}: {p} has a reference tensor but none of ours", file.name)),
            );
            out.extend(
                file.unexpected
                    .iter()
                    .map(|p| format!("{}: {p} has our gradient but no reference one", file.name)),
            );
        }
        out
    }
}
