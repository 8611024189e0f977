//! The golden check of the MSSD training step: runs one [`mssd_step`](crate::mssd) on the batch
//! saved by the reference PyTorch harness (`testdata/torch-golden/<config>/`) and compares
//! - the losses with `golden.json`'s `train_step.losses`;
//! - `g1 = ∇L_1(θ0)` with `grads_pass1.safetensors`;
//! - `g1 + ∇L_2(θ1)` with `grads_pass2_accumulated.safetensors`;
//! - `θ2` with `model_after_step.safetensors`.
//!
//! The reference files use the reference `state_dict` key names and layouts. They are mapped
//! onto our parameters with the weight importer itself: each file is loaded, as if it held
//! weights, into a second model of the same configuration whose parameters start as NaN, so a
//! parameter the file has no tensor for (no gradient in that pass: e.g. the decoders in pass 1,
//! WSAM with aligned input) stays all-NaN. Both models are then walked parameter by parameter
//! in the same order. Entries are named by our module path (e.g.
//! `network.gru_l.reset_gate.input_transform.weight`).
//!
//! # Tolerance
//! A tensor passes when `max |ours − ref| ≤ tol · max |ref| + floor`:
//! - gradients: `floor = f32::EPSILON · G`, `G` the largest reference gradient of the file.
//!   Several gradients are zero in exact arithmetic because a softmax ignores a constant shift
//!   of its inputs: the key biases of every attention (BERT, WSAM and MCT `in_proj` key part)
//!   and the score bias of the pooling. Both implementations return f32 rounding noise there
//!   (≈ 1e-12 … 1e-8 against `G ≈ 0.5`), so those tensors are only required to be noise too.
//! - weights after the step: `floor = 0`, but an element whose reference gradient lies below
//!   the floor in either pass is left out of the tolerance: Adam divides the first moment by
//!   `sqrt(v̂) + 1e-8`, which turns a noise gradient into an update of up to ±lr with a random
//!   sign. Such elements are instead required, on both sides, to have moved by at most Adam's
//!   bound over two steps, `|θ2 − θ0| ≤` [`ADAM_TWO_STEP_BOUND`] `· lr` (counted in
//!   [`TensorComparison::noise_driven`](report::TensorComparison::noise_driven)).
//! - losses: `|ours − ref| ≤ tol · |ref|`.
//!
//! The pieces: [`report`] (what the check returns), `folder` (reading the golden folder),
//! `params` (walking parameters by module path), `compare` (the comparisons above).

use std::path::Path;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use cider_maci::full_model::Cider;
use cider_maci::golden::{golden_config, golden_weights};
use cider_model::ModelError;
use serde_json::Value;

use crate::mssd::{MssdConfig, mssd_step_with_gradients};
use crate::optim::CiderAdamConfig;

mod compare;
mod folder;
pub mod mult;
mod params;
pub mod report;

use compare::{NoiseDriven, compare_gradients, compare_losses, compare_weights};
use folder::{Hyper, config_error, load_as_model, read_batch, recon_loss};
use params::{gradient_values, param_values};
use report::StepCheckReport;

/// The tolerance of the step check, relative to each tensor's largest absolute value.
pub const STEP_TOLERANCE: f64 = 1e-4;

/// The most an element can move in two Adam steps, in units of its learning rate: one step moves
/// it by `lr · |m̂| / (sqrt(v̂) + ε)`, at most `lr` at `t = 1` and
/// `lr · sqrt((0.09²/0.000999 + 0.1²/0.001) · 0.001999) / 0.19 ≈ 1.0014 lr` at `t = 2`
/// (Cauchy–Schwarz over the two gradients); rounded up.
pub const ADAM_TWO_STEP_BOUND: f64 = 2.01;

/// The training-step files of a golden folder, in report order.
const STEP_FILES: [&str; 3] = ["grads_pass1", "grads_pass2_accumulated", "model_after_step"];

/// Runs the MSSD step golden check on `dir`.
///
/// Builds and imports the model as the forward golden check does (from `weights` when given:
/// a `.safetensors` file or a PyTorch `.pt` / `.pth` whole module or state dict; else
/// `DIR/model.safetensors`), takes the optimiser and loss
/// hyper-parameters from `golden.json` (`lr`, `lr_bert`, `weight_decay_bert`,
/// `joint_rep_weight`, `attn_weight`, `recon_weight`, `recon_loss`), runs one step on the saved
/// batch (`input_*.npy`, missing masks, `input_labels_<task>.npy`) and compares.
///
/// # Errors
/// [`ModelError`] for missing or malformed files and weights that do not fit. Numeric
/// differences are not errors: they are in the report.
pub fn check_training_step<B: AutodiffBackend>(
    dir: &Path,
    weights: Option<&Path>,
    device: &B::Device,
) -> Result<StepCheckReport, ModelError> {
    let golden_path = dir.join("golden.json");
    let source = golden_path.display().to_string();
    let text = std::fs::read_to_string(&golden_path).map_err(|source| ModelError::Io {
        path: golden_path.clone(),
        source,
    })?;
    let golden: Value = serde_json::from_str(&text).map_err(|e| ModelError::Config {
        source_name: source.clone(),
        message: format!("not valid JSON: {e}"),
    })?;
    let config = golden_config(&golden, &source)?;
    let hp = Hyper {
        values: golden
            .get("hyper_parameters")
            .ok_or_else(|| config_error(&source, "missing object `hyper_parameters`"))?,
        source: &source,
    };
    let adam = CiderAdamConfig {
        lr: hp.number("lr")?,
        lr_bert: hp.number("lr_bert")?,
        wd_bert: hp.number("weight_decay_bert")?,
        ..CiderAdamConfig::default()
    };
    let mssd = MssdConfig {
        lambda_rep: hp.number("joint_rep_weight")?,
        lambda_attn: hp.number("attn_weight")?,
        lambda_rec: hp.number("recon_weight")?,
        recon: recon_loss(&hp)?,
        ..MssdConfig::default()
    };
    let task = hp.text("task")?;

    let model = config
        .init::<B>(device)?
        .load_reference(&golden_weights(dir, weights), device)?;
    let theta0 = param_values(&model);
    let batch = read_batch::<B>(dir, task, device)?;
    let mut optimizer = adam.init::<B, Cider<B>>();
    let (model, losses, gradients) = mssd_step_with_gradients(model, &mut optimizer, batch, &mssd)?;
    let accumulated = gradients
        .accumulated
        .as_ref()
        .ok_or_else(|| config_error(&source, "the MSSD step kept no accumulated gradients"))?;

    let reference = |name: &str| dir.join(format!("{name}.safetensors"));
    let [pass1_name, accumulated_name, after_name] = STEP_FILES;
    let reference_pass1 = param_values(&load_as_model::<B::InnerBackend>(
        &config,
        &reference(pass1_name),
        device,
    )?);
    let reference_accumulated = param_values(&load_as_model::<B::InnerBackend>(
        &config,
        &reference(accumulated_name),
        device,
    )?);
    let reference_after = param_values(
        &config
            .init::<B::InnerBackend>(device)?
            .load_reference(&reference(after_name), device)?,
    );
    let ours_pass1 = gradient_values(&model, &gradients.pass1);
    let ours_accumulated = gradient_values(&model, accumulated);
    let pass1 = compare_gradients(pass1_name, &ours_pass1, &reference_pass1);
    let accumulated =
        compare_gradients(accumulated_name, &ours_accumulated, &reference_accumulated);
    let noise = NoiseDriven {
        passes: [
            (&ours_pass1, &reference_pass1, pass1.noise_floor),
            (
                &ours_accumulated,
                &reference_accumulated,
                accumulated.noise_floor,
            ),
        ],
        theta0: &theta0,
        adam: &adam,
    };
    let after = compare_weights(
        after_name,
        &param_values(&model.valid()),
        &reference_after,
        &noise,
    );

    Ok(StepCheckReport {
        dir: dir.display().to_string(),
        config: golden
            .get("config")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        losses: compare_losses(&losses, &golden, &source)?,
        files: vec![pass1, accumulated, after],
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use burn::backend::flex::FlexDevice;
    use burn::backend::{Autodiff, Flex};

    use super::*;

    fn golden_dir(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/torch-golden")
            .join(name)
    }

    /// Every loss, gradient and weight of the reference step within [`STEP_TOLERANCE`].
    ///
    /// Runs on a thread with a 64 MiB stack: the unoptimised (test-profile) `Module::map` of the
    /// whole model inside the optimiser step needs more than a test thread's 2 MiB.
    fn assert_step(name: &'static str) {
        let report = std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || {
                check_training_step::<Autodiff<Flex>>(&golden_dir(name), None, &FlexDevice)
            })
            .expect("spawn")
            .join()
            .expect("no panic")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for file in &report.files {
            let worst = file.worst(STEP_TOLERANCE).expect("tensors compared");
            let noise: usize = file.tensors.iter().map(|t| t.noise_driven).sum();
            eprintln!(
                "{name} {}: {} tensors, floor {:.2e}, {noise} noise-driven elements, worst {} \
                 (max abs {:.2e}, scale {:.2e}, {:.0}% of the allowance)",
                file.name,
                file.tensors.len(),
                file.noise_floor,
                worst.param,
                worst.max_abs_error,
                worst.scale,
                100.0 * worst.usage(STEP_TOLERANCE, file.noise_floor)
            );
        }
        // Every parameter has a reference tensor after the step; pass 1 has no gradient for
        // the decoders (and, aligned, WSAM).
        assert_eq!(report.files[2].tensors.len(), 200);
        assert_eq!(report.losses.len(), 9);
        let failures = report.failures(STEP_TOLERANCE);
        assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
    }

    #[test]
    fn golden_step_mosi_unaligned_small() {
        let _rng = crate::testkit::backend_rng();
        assert_step("mosi-unaligned-small");
    }

    #[test]
    fn golden_step_mosi_aligned_small() {
        let _rng = crate::testkit::backend_rng();
        assert_step("mosi-aligned-small");
    }
}
