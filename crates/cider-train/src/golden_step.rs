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
//!   [`TensorComparison::noise_driven`]).
//! - losses: `|ours − ref| ≤ tol · |ref|`.

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
use crate::optim::{CiderAdamConfig, ParamGroup, cider_param_group};

/// The tolerance of the step check, relative to each tensor's largest absolute value.
pub const STEP_TOLERANCE: f64 = 1e-4;

/// The most an element can move in two Adam steps, in units of its learning rate: one step moves
/// it by `lr · |m̂| / (sqrt(v̂) + ε)`, at most `lr` at `t = 1` and
/// `lr · sqrt((0.09²/0.000999 + 0.1²/0.001) · 0.001999) / 0.19 ≈ 1.0014 lr` at `t = 2`
/// (Cauchy–Schwarz over the two gradients); rounded up.
pub const ADAM_TWO_STEP_BOUND: f64 = 2.01;

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
    /// Noise-driven elements that moved further than [`ADAM_TWO_STEP_BOUND`] `· lr` from θ0 on
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

/// The training-step files of a golden folder, in report order.
const STEP_FILES: [&str; 3] = ["grads_pass1", "grads_pass2_accumulated", "model_after_step"];

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
        missing: view(
            "input_text_m.npy",
            "input_audio_m.npy",
            "input_vision_m.npy",
        )?,
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
    /// Field names from the root module.
    path: Vec<String>,
    shape: Vec<usize>,
    values: Option<Vec<f32>>,
}

fn tensor_values(data: TensorData) -> Vec<f32> {
    data.convert::<f32>().into_vec::<f32>().unwrap_or_default()
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
            path: self.path.clone(),
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
            path: self.path.clone(),
            shape: param.shape().to_vec(),
            values: grad.map(|g| tensor_values(g.into_data())),
        });
    }
}

/// Compares our gradients with the reference's (same module structure, same order).
fn compare_gradients(name: &str, ours: &[Named], reference: &[Named]) -> FileComparison {
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
struct NoiseDriven<'a> {
    /// Per pass: our gradients, the reference gradients and the pass's noise floor.
    passes: [(&'a [Named], &'a [Named], f64); 2],
    /// Our parameters before the step (equal to the reference's, both imported).
    theta0: &'a [Named],
    /// The optimiser, for each group's learning rate and weight decay.
    adam: &'a CiderAdamConfig,
}

impl NoiseDriven<'_> {
    /// `(lr, weight decay)` of parameter `i`.
    fn hyper(&self, i: usize) -> (f64, f64) {
        match cider_param_group(&self.theta0[i].path) {
            ParamGroup::BertDecay => (self.adam.lr_bert, f64::from(self.adam.weight_decay_bert)),
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
fn compare_weights(
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
            .spawn(move || check_training_step::<Autodiff<Flex>>(&golden_dir(name), &FlexDevice))
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
        assert_step("mosi-unaligned-small");
    }

    #[test]
    fn golden_step_mosi_aligned_small() {
        assert_step("mosi-aligned-small");
    }
}
