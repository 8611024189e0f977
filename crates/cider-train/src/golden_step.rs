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
//! Errors are measured relative to each reference tensor's largest absolute value:
//! `max |ours − ref| / max |ref|` (absolute when the reference tensor is all zero).

use std::path::Path;

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use cider_causal::golden::{float_input, golden_config};
use cider_causal::model::{Cider, CiderConfig, Confounders};
use cider_data::npy;
use cider_model::ModelError;
use cider_model::import::{is_bert_key, load_reference_network, load_reference_text_encoder};
use cider_model::losses::ReconLoss;
use cider_model::model::{InputMasks, TextInput, ViewInput};
use cider_model::weights::{WeightFile, WeightLoader};
use serde::Serialize;
use serde_json::Value;

use crate::mssd::{MissingMasks, MssdBatch, MssdConfig, StepLosses, mssd_step_with_gradients};
use crate::optim::CiderAdamConfig;

/// The tolerance of the step check, relative to each tensor's largest absolute value.
pub const STEP_TOLERANCE: f64 = 1e-4;

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
    /// `max |ours − ref|` (NaN if either side has a NaN).
    pub max_abs_error: f64,
    /// `max |ref|`.
    pub scale: f64,
    /// `max_abs_error / scale` (`max_abs_error` when `scale` is 0).
    pub relative_error: f64,
}

/// One reference file against our tensors.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileComparison {
    /// The file name without `.safetensors`.
    pub name: String,
    /// Every parameter both sides have.
    pub tensors: Vec<TensorComparison>,
    /// Parameters the reference has a tensor for and we do not (no gradient on our side).
    pub missing: Vec<String>,
    /// Parameters we have a gradient for and the reference does not.
    pub unexpected: Vec<String>,
}

impl FileComparison {
    /// The tensor with the largest relative error (NaN counts as largest).
    pub fn worst(&self) -> Option<&TensorComparison> {
        self.tensors.iter().reduce(|a, b| {
            if a.relative_error.is_nan() || a.relative_error >= b.relative_error {
                a
            } else {
                b
            }
        })
    }
}

/// The result of [`check_training_step`].
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
                    .filter(|t| !within(t.relative_error))
                    .map(|t| {
                        format!(
                            "{}: {} relative error {:e} (max abs {:e}, scale {:e})",
                            file.name, t.param, t.relative_error, t.max_abs_error, t.scale
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

/// The training-step files of a golden folder, in report order.
const STEP_FILES: [&str; 3] = [
    "grads_pass1",
    "grads_pass2_accumulated",
    "model_after_step",
];

/// Runs the MSSD step golden check on `dir`.
///
/// Builds and imports the model as the forward golden check does, takes the optimiser and loss
/// hyper-parameters from `golden.json` (`lr`, `lr_bert`, `weight_decay_bert`,
/// `joint_rep_weight`, `attn_weight`, `recon_weight`, `recon_loss`), runs one step on the saved
/// batch (`input_*.npy`, missing masks, `input_labels_<task>.npy`) and compares.
///
/// # Errors
/// [`ModelError`] for missing or malformed files and weights that do not fit. Numeric
/// differences are not errors: they are in the report.
pub fn check_training_step<B: AutodiffBackend>(
    dir: &Path,
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
    let adam = CiderAdamConfig::new()
        .with_lr(hp.number("lr")?)
        .with_lr_bert(hp.number("lr_bert")?)
        .with_weight_decay_bert(hp.number("weight_decay_bert")? as f32);
    let mssd = MssdConfig::new()
        .with_joint_rep_weight(hp.number("joint_rep_weight")?)
        .with_attn_weight(hp.number("attn_weight")?)
        .with_recon_weight(hp.number("recon_weight")?)
        .with_recon_loss(recon_loss(&hp)?);
    let task = hp.text("task")?;

    let model = config
        .init::<B>(device)?
        .load_reference(&dir.join("model.safetensors"), device)?;
    let batch = read_batch::<B>(dir, task, device)?;
    let mut optimizer = adam.init::<B, Cider<B>>();
    let (model, losses, gradients) =
        mssd_step_with_gradients(model, &mut optimizer, batch, &mssd)?;

    let reference = |name: &str| dir.join(format!("{name}.safetensors"));
    let [pass1_name, accumulated_name, after_name] = STEP_FILES;
    let mut files = Vec::with_capacity(STEP_FILES.len());
    let pass1 = gradient_values(&model, &gradients.pass1);
    let file = load_as_model::<B::InnerBackend>(&config, &reference(pass1_name), device)?;
    files.push(compare(pass1_name, &pass1, &param_values(&file)));
    if let Some(accumulated) = &gradients.accumulated {
        let ours = gradient_values(&model, accumulated);
        let file = load_as_model::<B::InnerBackend>(&config, &reference(accumulated_name), device)?;
        files.push(compare(accumulated_name, &ours, &param_values(&file)));
    }
    let after = config
        .init::<B::InnerBackend>(device)?
        .load_reference(&reference(after_name), device)?;
    files.push(compare(
        after_name,
        &param_values(&model.valid()),
        &param_values(&after),
    ));

    Ok(StepCheckReport {
        dir: dir.display().to_string(),
        config: golden
            .get("config")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        losses: compare_losses(&losses, &golden, &source)?,
        files,
    })
}

fn config_error(source: &str, message: &str) -> ModelError {
    ModelError::Config {
        source_name: source.to_string(),
        message: message.to_string(),
    }
}

/// `golden.json`'s `hyper_parameters`.
struct Hyper<'a> {
    values: &'a Value,
    source: &'a str,
}

impl Hyper<'_> {
    fn number(&self, key: &str) -> Result<f64, ModelError> {
        self.values.get(key).and_then(Value::as_f64).ok_or_else(|| {
            config_error(
                self.source,
                &format!("`hyper_parameters.{key}`: expected a number"),
            )
        })
    }

    fn text(&self, key: &str) -> Result<&str, ModelError> {
        self.values.get(key).and_then(Value::as_str).ok_or_else(|| {
            config_error(
                self.source,
                &format!("`hyper_parameters.{key}`: expected a string"),
            )
        })
    }
}

/// The reference's `--recon_loss` (a `torch.nn` loss class name).
fn recon_loss(hp: &Hyper<'_>) -> Result<ReconLoss, ModelError> {
    match hp.text("recon_loss")? {
        "SmoothL1Loss" => Ok(ReconLoss::SmoothL1),
        "L1Loss" => Ok(ReconLoss::L1),
        "MSELoss" => Ok(ReconLoss::Mse),
        other => Err(config_error(
            hp.source,
            &format!(
                "`hyper_parameters.recon_loss`: expected SmoothL1Loss, L1Loss or MSELoss, got \
                 {other:?}"
            ),
        )),
    }
}

/// The saved training batch.
fn read_batch<B: Backend>(
    dir: &Path,
    task: &str,
    device: &B::Device,
) -> Result<MssdBatch<B>, ModelError> {
    let input = |file: &str| float_input::<B, 3>(dir, file, device);
    let mask = |file: &str| float_input::<B, 2>(dir, file, device);
    let view = |text: &str, audio: &str, vision: &str| -> Result<ViewInput<B>, ModelError> {
        Ok(ViewInput {
            text: TextInput::from_bert_rows(input(text)?),
            audio: input(audio)?,
            vision: input(vision)?,
        })
    };
    Ok(MssdBatch {
        complete: view("input_text.npy", "input_audio.npy", "input_vision.npy")?,
        missing: view("input_text_m.npy", "input_audio_m.npy", "input_vision_m.npy")?,
        masks: InputMasks {
            text: mask("input_text_mask.npy")?,
            audio: mask("input_audio_mask.npy")?,
            vision: mask("input_vision_mask.npy")?,
            text_len: int_vector(dir, "input_text_lengths.npy", device)?,
        },
        missing_masks: MissingMasks {
            text: mask("input_text_missing_mask.npy")?,
            audio: mask("input_audio_missing_mask.npy")?,
            vision: mask("input_vision_missing_mask.npy")?,
        },
        labels: int_vector(dir, &format!("input_labels_{task}.npy"), device)?,
        confounders: Confounders {
            feats: input("input_cls_feats.npy")?,
            probs: mask("input_cls_probs.npy")?,
        },
    })
}

/// Reads a 1-D integer-valued `.npy` (lengths, labels).
fn int_vector<B: Backend>(
    dir: &Path,
    file: &str,
    device: &B::Device,
) -> Result<Tensor<B, 1, Int>, ModelError> {
    let array = npy::from_path(dir.join(file))?;
    match array.to_f64() {
        Some(values) if array.shape().len() == 1 && values.iter().all(|v| v.fract() == 0.0) => {
            let n = values.len();
            let ints: Vec<i64> = values.into_iter().map(|v| v as i64).collect();
            Ok(Tensor::from_data(TensorData::new(ints, [n]), device))
        }
        _ => Err(ModelError::Input {
            what: file.to_string(),
            message: format!(
                "expected a 1-D integer array, got {} of shape {:?}",
                array.dtype().name(),
                array.shape()
            ),
        }),
    }
}

/// A model of `config` holding the tensors of a reference-named file (e.g. gradients);
/// parameters the file has no tensor for are all-NaN.
///
/// # Errors
/// [`ModelError::Weights`] for unexpected or mis-shaped keys, or missing BERT keys.
fn load_as_model<B: Backend>(
    config: &CiderConfig,
    path: &Path,
    device: &B::Device,
) -> Result<Cider<B>, ModelError> {
    let file = WeightFile::read_safetensors(path)?;
    let template = config.init::<B>(device)?.map(&mut NanFill);
    let linear_head = template.linear_head;
    let mut loader = WeightLoader::new(&file, "", device);
    let network = load_reference_network(template.network, &mut loader);
    let mcm = cider_causal::mcm::load_reference_mcm(template.mcm, &mut loader);
    match loader.finish(is_bert_key) {
        Ok(()) => {}
        // Keys without a tensor leave their parameters NaN: "no reference tensor".
        Err(ModelError::Weights {
            unexpected,
            misshaped,
            ..
        }) if unexpected.is_empty() && misshaped.is_empty() => {}
        Err(e) => return Err(e),
    }
    let network = load_reference_text_encoder(network, &file, device)?;
    Ok(Cider {
        network,
        mcm,
        linear_head,
    })
}

/// Sets every float parameter to NaN.
struct NanFill;

impl<B: Backend> ModuleMapper<B> for NanFill {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.full_like(f32::NAN), mapper)
    }
}

/// One parameter's path, shape and values (`None`: no tensor for it).
struct Named {
    path: String,
    shape: Vec<usize>,
    values: Option<Vec<f32>>,
}

fn tensor_values(data: TensorData) -> Vec<f32> {
    data.convert::<f32>()
        .into_vec::<f32>()
        .unwrap_or_default()
}

/// Every float parameter of `module`, in visit order; all-NaN parameters have no values.
fn param_values<B: Backend, M: Module<B>>(module: &M) -> Vec<Named> {
    let mut collector = ValueCollector {
        path: Vec::new(),
        out: Vec::new(),
    };
    module.visit(&mut collector);
    collector.out
}

struct ValueCollector {
    path: Vec<String>,
    out: Vec<Named>,
}

impl<B: Backend> ModuleVisitor<B> for ValueCollector {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let values = tensor_values(param.val().into_data());
        let present = !values.iter().all(|v| v.is_nan());
        self.out.push(Named {
            path: self.path.join("."),
            shape: param.shape().to_vec(),
            values: present.then_some(values),
        });
    }
}

/// Our gradient of every float parameter of `module`, in visit order.
fn gradient_values<B: AutodiffBackend, M: Module<B>>(
    module: &M,
    grads: &GradientsParams,
) -> Vec<Named> {
    let mut collector = GradientCollector {
        path: Vec::new(),
        grads,
        out: Vec::new(),
    };
    module.visit(&mut collector);
    collector.out
}

struct GradientCollector<'a> {
    path: Vec<String>,
    grads: &'a GradientsParams,
    out: Vec<Named>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradientCollector<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let grad = self.grads.get::<B::InnerBackend, D>(param.id);
        self.out.push(Named {
            path: self.path.join("."),
            shape: param.shape().to_vec(),
            values: grad.map(|g| tensor_values(g.into_data())),
        });
    }
}

/// Compares two parameter lists of the same module structure.
fn compare(name: &str, ours: &[Named], reference: &[Named]) -> FileComparison {
    let mut out = FileComparison {
        name: name.to_string(),
        tensors: Vec::new(),
        missing: Vec::new(),
        unexpected: Vec::new(),
    };
    for (a, b) in ours.iter().zip(reference) {
        match (&a.values, &b.values) {
            (Some(x), Some(y)) => out.tensors.push(compare_tensor(&a.path, &a.shape, x, y)),
            (None, Some(_)) => out.missing.push(a.path.clone()),
            (Some(_), None) => out.unexpected.push(a.path.clone()),
            (None, None) => {}
        }
    }
    out
}

fn compare_tensor(path: &str, shape: &[usize], ours: &[f32], reference: &[f32]) -> TensorComparison {
    let nan_max = |m: f64, e: f64| if m.is_nan() || e.is_nan() { f64::NAN } else { m.max(e) };
    let max_abs_error = ours
        .iter()
        .zip(reference)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
        .fold(0.0, nan_max);
    let scale = reference
        .iter()
        .map(|&b| f64::from(b).abs())
        .fold(0.0, nan_max);
    TensorComparison {
        param: path.to_string(),
        shape: shape.to_vec(),
        max_abs_error,
        scale,
        relative_error: relative(max_abs_error, scale),
    }
}

fn relative(error: f64, scale: f64) -> f64 {
    if scale > 0.0 { error / scale } else { error }
}

/// Our losses against `train_step.losses`.
fn compare_losses(
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
            config_error(source, &format!("`train_step.losses.{name}`: expected a number"))
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

    fn assert_step(name: &str) {
        let report = check_training_step::<Autodiff<Flex>>(&golden_dir(name), &FlexDevice)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for file in &report.files {
            let worst = file.worst().expect("tensors compared");
            eprintln!(
                "{name} {}: {} tensors, worst {} relative {:e}",
                file.name,
                file.tensors.len(),
                worst.param,
                worst.relative_error
            );
        }
        let failures = report.failures(STEP_TOLERANCE);
        assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
    }

    #[test]
    fn golden_step_mosi_unaligned_small() {
        assert_step("mosi-unaligned-small");
    }

    #[test]
    fn golden_step_mosi_aligned_small() {
        assert_step("mosi-aligned-small");
    }
}
