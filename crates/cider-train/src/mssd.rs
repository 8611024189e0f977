//! MSSD, Model-Specific Self-Distillation: the training step of docs/method.md §6.1.
//!
//! ```text
//! out   = model_θ0(complete view)                      L_1 = NLL(pred, y)
//! g1    = ∇L_1(θ0);  θ1 = Adam(θ0, g1)
//! out_m = model_θ1(missing view)
//! L_2   = NLL_m + λ_rep·L_rep + λ_attn·KL_attn + λ_rec·(R_t + R_a + R_v)
//! g2    = ∇L_2(θ1);  θ2 = Adam(θ1, g1 + g2)           (gradients accumulate, docs/method.md §11.6)
//! ```
//!
//! The teacher quantities (`joint_rep`, `attn`, the text encoder output `text_for_recon`) come
//! from the complete pass at θ0 and carry no gradient. Reconstruction targets are
//! `text_for_recon` and the complete raw audio / vision; the mask is `inmask − missmask`.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor};
use cider_maci::full_model::{Cider, CompleteOutput, Confounders, MissingOutput};
use cider_model::ModelError;

use cider_model::network::{InputMasks, TextInput, ViewInput};
use serde::{Deserialize, Serialize};

use crate::optim::GroupedAdam;

pub mod losses;

use losses::{
    ReconLoss, attention_kl, joint_rep_loss, masked_reconstruction, nll, reconstruction_mask,
};

/// Whether the missing view is distilled from the complete view (ablation switch); written
/// `mssd` or `none` in configuration files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distillation {
    /// The two-pass MSSD step of docs/method.md §6.1 (the reference).
    Mssd,
    /// Ablation: one pass on the missing (RMFM-masked) view with the task loss only, and one
    /// optimiser step; no complete-view pass and no distillation losses.
    None,
}

/// Loss weights and switches of the MSSD step (docs/method.md §6.2; defaults from §9.3), the
/// `[loss]` table of a training configuration. Every key is optional and an unknown key is an
/// error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MssdConfig {
    /// `mssd` or `none` (ablation: one missing-view pass with the task loss only).
    pub distillation: Distillation,
    /// `λ_rep`, weight of the joint-representation loss (0.5; reference `--joint_rep_weight`).
    pub lambda_rep: f64,
    /// `λ_attn`, weight of the attention-map KL (0.1; reference `--attn_weight`).
    pub lambda_attn: f64,
    /// `λ_rec`, weight of the reconstruction losses (0.6; reference `--recon_weight`).
    pub lambda_rec: f64,
    /// The element-wise reconstruction loss `ℓ` (Huber with β = 1).
    pub recon: ReconLoss,
}

impl Default for MssdConfig {
    fn default() -> Self {
        Self {
            distillation: Distillation::Mssd,
            lambda_rep: 0.5,
            lambda_attn: 0.1,
            lambda_rec: 0.6,
            recon: ReconLoss::SmoothL1,
        }
    }
}

/// The missing masks of the missing view (1 = kept, ⊆ the input masks).
#[derive(Debug, Clone)]
pub struct MissingMasks<B: Backend> {
    /// `[batch, T_l]` (`[CLS]` / `[SEP]` always kept).
    pub text: Tensor<B, 2>,
    /// `[batch, T_a]`.
    pub audio: Tensor<B, 2>,
    /// `[batch, T_v]`.
    pub vision: Tensor<B, 2>,
}

/// One training batch in the form the step takes.
#[derive(Debug, Clone)]
pub struct MssdBatch<B: Backend> {
    /// The complete view (`text`, `audio`, `vision`); its audio / vision are the
    /// reconstruction targets.
    pub complete: ViewInput<B>,
    /// The missing view (`text_m`, `audio_m`, `vision_m`), same shapes as `complete`.
    pub missing: ViewInput<B>,
    /// The original input masks and `text_len` (used by both passes).
    pub masks: InputMasks<B>,
    /// The missing masks of `missing`.
    pub missing_masks: MissingMasks<B>,
    /// Task labels `y` `[batch]`, each in `0..C`.
    pub labels: Tensor<B, 1, Int>,
    /// Class prototypes and prior of the MCM.
    pub confounders: Confounders<B>,
}

/// The missing-view losses of an MSSD step (values at θ1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DistillationLosses {
    /// `NLL_m = NLL(pred_m, y)`.
    pub task_m: f64,
    /// `L_rep = 1 − mean cos(r_m, r)`.
    pub joint_rep: f64,
    /// `KL_attn`.
    pub attn: f64,
    /// `R_t`.
    pub recon_text: f64,
    /// `R_a`.
    pub recon_audio: f64,
    /// `R_v`.
    pub recon_vision: f64,
    /// `L_2 = NLL_m + λ_rep·L_rep + λ_attn·KL_attn + λ_rec·(R_t + R_a + R_v)`.
    pub combined: f64,
}

impl DistillationLosses {
    /// `R_t + R_a + R_v`.
    pub fn recon(&self) -> f64 {
        self.recon_text + self.recon_audio + self.recon_vision
    }
}

/// The losses of one step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepLosses {
    /// `L_1 = NLL(pred, y)` of the complete pass at θ0; with [`Distillation::None`], the task
    /// loss of the single missing-view pass.
    pub task: f64,
    /// The missing-view losses; `None` with [`Distillation::None`].
    pub distillation: Option<DistillationLosses>,
}

impl StepLosses {
    /// The loss the reference logs per batch (its epoch loss is the mean): `L_2`, or the task
    /// loss without distillation.
    pub fn logged(&self) -> f64 {
        self.distillation.map_or(self.task, |d| d.combined)
    }
}

/// The gradients a step applied, for checks against the reference.
#[derive(Debug)]
pub struct StepGradients {
    /// `g1 = ∇L_1(θ0)` (with [`Distillation::None`], the only gradients).
    pub pass1: GradientsParams,
    /// `g1 + ∇L_2(θ1)`, the gradients of the second optimiser step; `None` without
    /// distillation.
    pub accumulated: Option<GradientsParams>,
}

/// One training step (docs/method.md §6.1): two Adam updates with MSSD, one without distillation.
///
/// Returns the updated model and the losses. Dropout is active (autodiff backend).
///
/// # Errors
/// [`ModelError::Input`] when the batch does not fit the model (shapes, labels outside
/// `0..C`, a missing view shaped unlike the complete view). The check runs before any update;
/// the model is consumed either way.
pub fn mssd_step<B: AutodiffBackend>(
    model: Cider<B>,
    optimizer: &mut GroupedAdam<Cider<B>, B>,
    batch: MssdBatch<B>,
    config: &MssdConfig,
) -> Result<(Cider<B>, StepLosses), ModelError> {
    run_step(model, optimizer, batch, config, None)
}

/// [`mssd_step`], also returning the gradients of its optimiser steps.
///
/// # Errors
/// As [`mssd_step`].
pub fn mssd_step_with_gradients<B: AutodiffBackend>(
    model: Cider<B>,
    optimizer: &mut GroupedAdam<Cider<B>, B>,
    batch: MssdBatch<B>,
    config: &MssdConfig,
) -> Result<(Cider<B>, StepLosses, StepGradients), ModelError> {
    let mut gradients = StepGradients {
        pass1: GradientsParams::new(),
        accumulated: None,
    };
    let (model, losses) = run_step(model, optimizer, batch, config, Some(&mut gradients))?;
    Ok((model, losses, gradients))
}

/// The step's losses without any update (validation loss, docs/method.md §6.4): both passes at the same
/// parameters, or the single missing-view pass without distillation.
///
/// # Errors
/// As [`mssd_step`].
pub fn evaluate_losses<B: Backend>(
    model: &Cider<B>,
    batch: MssdBatch<B>,
    config: &MssdConfig,
) -> Result<StepLosses, ModelError> {
    check_batch(model, &batch)?;
    match config.distillation {
        Distillation::None => {
            let task = single_pass_loss(model, batch)?;
            Ok(StepLosses {
                task: read_losses([task])[0],
                distillation: None,
            })
        }
        Distillation::Mssd => {
            model.network.cider(MSSD_NEEDS)?;
            let targets = Targets::of(&batch);
            let complete = model.complete(batch.complete, &batch.masks, &batch.confounders)?;
            let task = nll(complete.view.pred.clone(), batch.labels.clone());
            let teacher = Teacher::of(complete);
            let student = model.missing(batch.missing, &batch.masks, &batch.confounders)?;
            let terms = distillation_terms(&teacher, student, &targets, batch.labels, config);
            Ok(losses_of(task, &terms))
        }
    }
}

/// The step; `trace` receives copies of the applied gradients.
fn run_step<B: AutodiffBackend>(
    model: Cider<B>,
    optimizer: &mut GroupedAdam<Cider<B>, B>,
    batch: MssdBatch<B>,
    config: &MssdConfig,
    trace: Option<&mut StepGradients>,
) -> Result<(Cider<B>, StepLosses), ModelError> {
    check_batch(&model, &batch)?;
    if config.distillation == Distillation::None {
        let task = single_pass_loss(&model, batch)?;
        let value = read_losses([task.clone()])[0];
        let grads = GradientsParams::from_grads(task.backward(), &model);
        if let Some(trace) = trace {
            trace.pass1 = copy_gradients(&model, &grads);
        }
        let model = optimizer.step(model, grads);
        let losses = StepLosses {
            task: value,
            distillation: None,
        };
        return Ok((model, losses));
    }

    model.network.cider(MSSD_NEEDS)?;
    // Pass 1: complete view at θ0.
    let targets = Targets::of(&batch);
    let complete = model.complete(batch.complete, &batch.masks, &batch.confounders)?;
    let task = nll(complete.view.pred.clone(), batch.labels.clone());
    let teacher = Teacher::of(complete);
    let g1 = GradientsParams::from_grads(task.clone().backward(), &model);
    let g1_kept = copy_gradients(&model, &g1);
    let mut trace = trace;
    if let Some(trace) = trace.as_deref_mut() {
        trace.pass1 = copy_gradients(&model, &g1);
    }
    let model = optimizer.step(model, g1); // θ0 → θ1

    // Pass 2: missing view at θ1, distilled from the θ0 teacher.
    let student = model.missing(batch.missing, &batch.masks, &batch.confounders)?;
    let terms = distillation_terms(&teacher, student, &targets, batch.labels, config);
    let losses = losses_of(task, &terms);
    let g2 = GradientsParams::from_grads(terms.combined.backward(), &model);
    let mut accumulator = GradientsAccumulator::<Cider<B>>::new();
    accumulator.accumulate(&model, g1_kept);
    accumulator.accumulate(&model, g2);
    let accumulated = accumulator.grads(); // g1 + g2
    if let Some(trace) = trace {
        trace.accumulated = Some(copy_gradients(&model, &accumulated));
    }
    let model = optimizer.step(model, accumulated); // θ1 → θ2
    Ok((model, losses))
}

/// What a MulT model is told when asked for MSSD.
const MSSD_NEEDS: &str = "loss.distillation = \"mssd\"";

/// The task loss of the single missing-view pass (plus the backbone's own auxiliary loss, if
/// it has one): the step without distillation, for any backbone.
fn single_pass_loss<B: Backend>(
    model: &Cider<B>,
    batch: MssdBatch<B>,
) -> Result<Tensor<B, 1>, ModelError> {
    let (pred, out) = model.log_probs(batch.missing, &batch.masks, &batch.confounders)?;
    let task = nll(pred, batch.labels);
    Ok(match out.auxiliary_loss {
        Some(extra) => task + extra,
        None => task,
    })
}

/// The stop-gradient quantities of the complete pass.
struct Teacher<B: Backend> {
    /// `r` `[batch, 3D]`.
    joint_rep: Tensor<B, 2>,
    /// `S` `[batch·H, 3L, 3L]`.
    attn: Tensor<B, 3>,
    /// The text encoder output `[batch, T_l, d_l]`.
    text: Tensor<B, 3>,
}

impl<B: Backend> Teacher<B> {
    fn of(complete: CompleteOutput<B>) -> Self {
        Self {
            joint_rep: complete.view.joint_rep.detach(),
            attn: complete.view.attn.detach(),
            text: complete.text_for_recon.detach(),
        }
    }
}

/// The raw audio / vision targets and the reconstruction masks `M = inmask − missmask`.
struct Targets<B: Backend> {
    /// Complete audio `[batch, T_a, d_a]`.
    audio: Tensor<B, 3>,
    /// Complete vision `[batch, T_v, d_v]`.
    vision: Tensor<B, 3>,
    /// `M_t` `[batch, T_l]`.
    text_mask: Tensor<B, 2>,
    /// `M_a` `[batch, T_a]`.
    audio_mask: Tensor<B, 2>,
    /// `M_v` `[batch, T_v]`.
    vision_mask: Tensor<B, 2>,
}

impl<B: Backend> Targets<B> {
    fn of(batch: &MssdBatch<B>) -> Self {
        let m = &batch.missing_masks;
        Self {
            audio: batch.complete.audio.clone(),
            vision: batch.complete.vision.clone(),
            text_mask: reconstruction_mask(batch.masks.text.clone(), m.text.clone()),
            audio_mask: reconstruction_mask(batch.masks.audio.clone(), m.audio.clone()),
            vision_mask: reconstruction_mask(batch.masks.vision.clone(), m.vision.clone()),
        }
    }
}

/// The missing-view loss terms, each `[1]`.
struct DistillationTerms<B: Backend> {
    task_m: Tensor<B, 1>,
    joint_rep: Tensor<B, 1>,
    attn: Tensor<B, 1>,
    recon_text: Tensor<B, 1>,
    recon_audio: Tensor<B, 1>,
    recon_vision: Tensor<B, 1>,
    /// `L_2`.
    combined: Tensor<B, 1>,
}

fn distillation_terms<B: Backend>(
    teacher: &Teacher<B>,
    student: MissingOutput<B>,
    targets: &Targets<B>,
    labels: Tensor<B, 1, Int>,
    config: &MssdConfig,
) -> DistillationTerms<B> {
    let recon = |pred, target: &Tensor<B, 3>, mask: &Tensor<B, 2>| {
        masked_reconstruction(pred, target.clone(), mask.clone(), config.recon)
    };
    let task_m = nll(student.view.pred, labels);
    let joint_rep = joint_rep_loss(student.view.joint_rep, teacher.joint_rep.clone());
    let attn = attention_kl(student.view.attn, teacher.attn.clone());
    let recon_text = recon(student.recon.text, &teacher.text, &targets.text_mask);
    let recon_audio = recon(student.recon.audio, &targets.audio, &targets.audio_mask);
    let recon_vision = recon(student.recon.vision, &targets.vision, &targets.vision_mask);
    let combined = task_m.clone()
        + joint_rep.clone().mul_scalar(config.lambda_rep)
        + attn.clone().mul_scalar(config.lambda_attn)
        + (recon_text.clone() + recon_audio.clone() + recon_vision.clone())
            .mul_scalar(config.lambda_rec);
    DistillationTerms {
        task_m,
        joint_rep,
        attn,
        recon_text,
        recon_audio,
        recon_vision,
        combined,
    }
}

/// Reads `L_1` and the terms (one device read).
fn losses_of<B: Backend>(task: Tensor<B, 1>, t: &DistillationTerms<B>) -> StepLosses {
    let [
        task,
        task_m,
        joint_rep,
        attn,
        recon_text,
        recon_audio,
        recon_vision,
        combined,
    ] = read_losses([
        task,
        t.task_m.clone(),
        t.joint_rep.clone(),
        t.attn.clone(),
        t.recon_text.clone(),
        t.recon_audio.clone(),
        t.recon_vision.clone(),
        t.combined.clone(),
    ]);
    StepLosses {
        task,
        distillation: Some(DistillationLosses {
            task_m,
            joint_rep,
            attn,
            recon_text,
            recon_audio,
            recon_vision,
            combined,
        }),
    }
}

/// The values of `N` scalar losses, read from the device at once (without autodiff tracking).
/// The value of a one-element loss `[1]` (NaN if it cannot be read).
pub(crate) fn read_loss<B: Backend>(loss: Tensor<B, 1>) -> f64 {
    read_losses([loss])[0]
}

fn read_losses<B: Backend, const N: usize>(losses: [Tensor<B, 1>; N]) -> [f64; N] {
    let values = Tensor::cat(losses.into_iter().map(Tensor::detach).collect(), 0)
        .into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .unwrap_or_default();
    std::array::from_fn(|i| values.get(i).copied().unwrap_or(f64::NAN))
}

/// Checks what the network's own input check does not: the missing view and masks shaped like
/// the complete ones, and labels `[batch]` in `0..C`.
fn check_batch<B: Backend>(model: &Cider<B>, batch: &MssdBatch<B>) -> Result<(), ModelError> {
    let fail = |what: &str, message: String| {
        Err(ModelError::Input {
            what: what.into(),
            message,
        })
    };
    let (c, m) = (&batch.complete, &batch.missing);
    let text_dims = |t: &TextInput<B>| match t {
        TextInput::Tokens { ids, .. } => ("token ids", ids.dims().to_vec()),
        TextInput::Features(x) => ("features", x.dims().to_vec()),
    };
    if text_dims(&c.text) != text_dims(&m.text) {
        return fail(
            "text_m",
            format!(
                "expected the complete text's form {:?}, got {:?}",
                text_dims(&c.text),
                text_dims(&m.text)
            ),
        );
    }
    for (what, complete, missing) in [
        ("audio_m", c.audio.dims(), m.audio.dims()),
        ("vision_m", c.vision.dims(), m.vision.dims()),
    ] {
        if complete != missing {
            return fail(
                what,
                format!("expected shape {complete:?}, got {missing:?}"),
            );
        }
    }
    let mm = &batch.missing_masks;
    for (what, input, missing) in [
        ("text missing mask", batch.masks.text.dims(), mm.text.dims()),
        (
            "audio missing mask",
            batch.masks.audio.dims(),
            mm.audio.dims(),
        ),
        (
            "vision missing mask",
            batch.masks.vision.dims(),
            mm.vision.dims(),
        ),
    ] {
        if input != missing {
            return fail(what, format!("expected shape {input:?}, got {missing:?}"));
        }
    }
    let size = c.audio.dims()[0];
    if batch.labels.dims() != [size] {
        return fail(
            "labels",
            format!("expected shape [{size}], got {:?}", batch.labels.dims()),
        );
    }
    let classes = model.mcm.heads.len() as i64;
    let labels = batch
        .labels
        .to_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .unwrap_or_default();
    if let Some(bad) = labels.iter().find(|&&y| !(0..classes).contains(&y)) {
        return fail("labels", format!("label {bad} outside 0..{classes}"));
    }
    Ok(())
}

/// A copy of `grads` (the optimiser consumes its gradients; pass 1's are needed again).
pub fn copy_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> GradientsParams {
    let mut copier = GradientCopier {
        source: grads,
        copy: GradientsParams::new(),
    };
    module.visit(&mut copier);
    copier.copy
}

struct GradientCopier<'a> {
    source: &'a GradientsParams,
    copy: GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradientCopier<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.source.get::<B::InnerBackend, D>(param.id) {
            self.copy.register::<B::InnerBackend, D>(param.id, grad);
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::flex::FlexDevice;
    use burn::backend::{Autodiff, Flex};
    use burn::module::Module;
    use burn::tensor::TensorData;
    use cider_maci::full_model::CiderConfig;
    use cider_model::network_config::{Alignment, NetworkConfig, NetworkOptions};

    use super::*;
    use crate::optim::{CiderAdamConfig, GroupedAdamRecord};

    type AB = Autodiff<Flex>;

    /// Runs `f` on a thread with a 64 MiB stack: the unoptimised `Module::map` of the whole
    /// model inside the optimiser step needs more than a test thread's 2 MiB.
    fn with_big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(f)
            .expect("spawn")
            .join()
            .expect("no panic")
    }

    /// `B = 2`, `T_l = 4`, `T_a = 6`, `T_v = 5`, `d = 6 / 3 / 2`, `D = 8`, `H = 2`, `C = 3`,
    /// no dropout, precomputed text.
    fn model<B: Backend<Device = FlexDevice>>() -> Cider<B> {
        let network = NetworkConfig::new(6, 3, 2, 4, 6, 5, Alignment::Unaligned).with_options(
            NetworkOptions {
                embed_dim: 8,
                num_heads: 2,
                multimodal_layers: 1,
                out_dropout: 0.0,
                embed_dropout: 0.0,
                relu_dropout: 0.0,
                res_dropout: 0.0,
                ..NetworkOptions::default()
            },
        );
        CiderConfig::new(network, 3)
            .init(&FlexDevice)
            .expect("valid config")
    }

    /// A fixed batch (no global RNG: tests run in parallel).
    fn batch<B: Backend<Device = FlexDevice>>() -> MssdBatch<B> {
        let device = FlexDevice;
        let mask = |rows: [[f32; 6]; 2], len: usize| {
            let values: Vec<f32> = rows.iter().flat_map(|r| r[..len].to_vec()).collect();
            Tensor::<B, 2>::from_data(TensorData::new(values, [2, len]), &device)
        };
        let features = |shape: [usize; 3], phase: f32| {
            let n = shape.iter().product::<usize>();
            let values: Vec<f32> = (0..n).map(|i| (i as f32 * 0.7 + phase).sin()).collect();
            Tensor::<B, 3>::from_data(TensorData::new(values, shape), &device)
        };
        // Input masks: sample 1 is shorter; missing masks drop some valid positions.
        let text_in = mask([[1., 1., 1., 1., 0., 0.], [1., 1., 1., 0., 0., 0.]], 4);
        let text_kept = mask([[1., 0., 1., 1., 0., 0.], [1., 0., 1., 0., 0., 0.]], 4);
        let audio_in = mask([[1., 1., 1., 1., 1., 1.], [1., 1., 1., 1., 0., 0.]], 6);
        let audio_kept = mask([[1., 0., 0., 1., 1., 0.], [0., 1., 1., 0., 0., 0.]], 6);
        let vision_in = mask([[1., 1., 1., 1., 1., 0.], [1., 1., 0., 0., 0., 0.]], 5);
        let vision_kept = mask([[0., 1., 1., 0., 1., 0.], [1., 0., 0., 0., 0., 0.]], 5);
        let text = features([2, 4, 6], 0.0);
        let audio = features([2, 6, 3], 1.0);
        let vision = features([2, 5, 2], 2.0);
        let keep = |x: &Tensor<B, 3>, m: &Tensor<B, 2>| {
            let [b, t, _] = x.dims();
            x.clone() * m.clone().reshape([b, t, 1])
        };
        MssdBatch {
            missing: ViewInput {
                text: TextInput::Features(keep(&text, &text_kept)),
                audio: keep(&audio, &audio_kept),
                vision: keep(&vision, &vision_kept),
            },
            complete: ViewInput {
                text: TextInput::Features(text),
                audio,
                vision,
            },
            masks: InputMasks {
                text: text_in,
                audio: audio_in,
                vision: vision_in,
                text_len: Tensor::from_ints([4, 3], &device),
            },
            missing_masks: MissingMasks {
                text: text_kept,
                audio: audio_kept,
                vision: vision_kept,
            },
            labels: Tensor::from_ints([2, 0], &device),
            confounders: Confounders {
                feats: features([3, 2, 11], 3.0),
                probs: Tensor::from_floats([[0.2, 0.3, 0.5], [0.2, 0.3, 0.5]], &device),
            },
        }
    }

    /// Adam's step count `t` of every parameter after a step (`None`: never stepped), by path.
    fn adam_times(
        model: &Cider<AB>,
        record: &GroupedAdamRecord<Cider<AB>, AB>,
    ) -> Vec<(String, Option<usize>)> {
        struct Times<'a> {
            record: &'a GroupedAdamRecord<Cider<AB>, AB>,
            path: Vec<String>,
            out: Vec<(String, Option<usize>)>,
        }
        impl ModuleVisitor<AB> for Times<'_> {
            fn enter_module(&mut self, name: &str, _: &str) {
                self.path.push(name.to_string());
            }
            fn exit_module(&mut self, _: &str, _: &str) {
                self.path.pop();
            }
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
                let time = self
                    .record
                    .iter()
                    .find_map(|group| group.get(&param.id))
                    .map(|r| r.clone().into_state::<D>().momentum.time);
                self.out.push((self.path.join("."), time));
            }
        }
        let mut times = Times {
            record,
            path: Vec::new(),
            out: Vec::new(),
        };
        model.visit(&mut times);
        times.out
    }

    /// docs/method.md §12 test 10: MSSD steps Adam twice; the decoders, which have no gradient in the
    /// complete pass, only once. Without distillation: one step, decoders untouched. The
    /// losses add up to `L_2` with the configured weights.
    #[test]
    fn mssd_takes_two_adam_steps_and_the_ablation_one() {
        let _rng = crate::testkit::backend_rng();
        with_big_stack(|| {
            let config = MssdConfig {
                lambda_rep: 0.5,
                lambda_attn: 0.1,
                lambda_rec: 0.6,
                ..MssdConfig::default()
            };
            let mut optimizer = CiderAdamConfig::default().init::<AB, Cider<AB>>();
            let (trained, losses) =
                mssd_step(model(), &mut optimizer, batch(), &config).expect("valid batch");
            let times = adam_times(&trained, &optimizer.to_record());
            assert!(times.len() > 50, "{times:?}");
            for (path, time) in &times {
                let want = if path.starts_with("network.Cider.decoders.") {
                    1
                } else {
                    2
                };
                assert_eq!(*time, Some(want), "{path}");
            }
            let d = losses.distillation.expect("MSSD losses");
            let combined = d.task_m + 0.5 * d.joint_rep + 0.1 * d.attn + 0.6 * d.recon();
            assert!((d.combined - combined).abs() < 1e-5, "{d:?}");
            assert!(d.recon_text > 0.0 && d.recon_audio > 0.0 && d.recon_vision > 0.0);
            assert_eq!(losses.logged(), d.combined);

            let ablation = MssdConfig {
                distillation: Distillation::None,
                ..config.clone()
            };
            let mut optimizer = CiderAdamConfig::default().init::<AB, Cider<AB>>();
            let (trained, losses) =
                mssd_step(model(), &mut optimizer, batch(), &ablation).expect("valid batch");
            assert!(losses.distillation.is_none());
            for (path, time) in adam_times(&trained, &optimizer.to_record()) {
                let want = (!path.starts_with("network.Cider.decoders.")).then_some(1);
                assert_eq!(time, want, "{path}");
            }
        });
    }

    /// `L_1` is computed at θ0, `NLL_m` at θ1, and the ablation's loss is the missing view's
    /// NLL at θ0: checked against [`evaluate_losses`] on the untrained model (no dropout).
    #[test]
    fn step_losses_are_taken_at_the_right_parameters() {
        let _rng = crate::testkit::backend_rng();
        with_big_stack(|| {
            let mssd = MssdConfig::default();
            let ablation = MssdConfig {
                distillation: Distillation::None,
                ..MssdConfig::default()
            };
            let theta0 = model::<AB>();
            let at_theta0 = evaluate_losses(&theta0, batch(), &mssd).expect("valid");
            let ablation_at_theta0 = evaluate_losses(&theta0, batch(), &ablation).expect("valid");
            let task_m_at_theta0 = at_theta0.distillation.expect("MSSD").task_m;
            assert!((ablation_at_theta0.task - task_m_at_theta0).abs() < 1e-6);

            let mut optimizer = CiderAdamConfig::default().init::<AB, Cider<AB>>();
            let (_, losses) =
                mssd_step(theta0.clone(), &mut optimizer, batch(), &mssd).expect("valid batch");
            assert!((losses.task - at_theta0.task).abs() < 1e-6);
            let task_m = losses.distillation.expect("MSSD").task_m;
            assert!(
                (task_m - task_m_at_theta0).abs() > 1e-5,
                "{task_m} {task_m_at_theta0}"
            );

            let mut optimizer = CiderAdamConfig::default().init::<AB, Cider<AB>>();
            let (_, losses) =
                mssd_step(theta0, &mut optimizer, batch(), &ablation).expect("valid batch");
            assert!((losses.task - ablation_at_theta0.task).abs() < 1e-6);
        });
    }

    #[test]
    fn bad_batches_are_typed_errors() {
        let _rng = crate::testkit::backend_rng();
        with_big_stack(|| {
            let what = |batch: MssdBatch<AB>| {
                let mut optimizer = CiderAdamConfig::default().init::<AB, Cider<AB>>();
                match mssd_step(model(), &mut optimizer, batch, &MssdConfig::default()) {
                    Err(ModelError::Input { what, .. }) => what,
                    Err(other) => panic!("expected an input error, got {other}"),
                    Ok(_) => panic!("expected an input error"),
                }
            };
            let mut b = batch();
            b.labels = Tensor::from_ints([3, 0], &FlexDevice);
            assert_eq!(what(b), "labels");
            let mut b = batch();
            b.labels = Tensor::from_ints([1, 0, 2], &FlexDevice);
            assert_eq!(what(b), "labels");
            let mut b = batch();
            b.missing.audio = Tensor::zeros([2, 5, 3], &FlexDevice);
            assert_eq!(what(b), "audio_m");
            let mut b = batch();
            b.missing_masks.vision = Tensor::zeros([2, 4], &FlexDevice);
            assert_eq!(what(b), "vision missing mask");
            let mut b = batch();
            b.masks.text_len = Tensor::from_ints([4], &FlexDevice);
            assert_eq!(what(b), "text_len");
        });
    }

    /// A MulT model (docs/method.md §13.1): MSSD is refused with the key to change, and the
    /// single missing-view step trains it (every MulT parameter takes one Adam step).
    #[test]
    fn mult_refuses_mssd_and_takes_the_single_pass() {
        let _rng = crate::testkit::backend_rng();
        with_big_stack(|| {
            let options = NetworkOptions {
                backbone: cider_model::backbone::BackboneKind::Mult,
                mult: cider_model::mult::MultOptions {
                    width: 4,
                    num_heads: 2,
                    levels: 1,
                    kernels: [1, 1, 1],
                    ..Default::default()
                },
                ..NetworkOptions::default()
            };
            let network =
                NetworkConfig::new(6, 3, 2, 4, 6, 5, Alignment::Unaligned).with_options(options);
            let model: Cider<AB> = CiderConfig::new(network, 3)
                .init(&FlexDevice)
                .expect("valid");
            let mut optimizer = CiderAdamConfig::default().init::<AB, Cider<AB>>();
            let mssd = MssdConfig::default();
            match mssd_step(model.clone(), &mut optimizer, batch(), &mssd) {
                Err(ModelError::Config { message, .. }) => {
                    assert!(message.contains("loss.distillation"), "{message}");
                    assert!(message.contains("model.backbone = \"cider\""), "{message}");
                }
                other => panic!(
                    "expected a configuration error, got {:?}",
                    other.map(|r| r.1)
                ),
            }
            let single = MssdConfig {
                distillation: Distillation::None,
                ..mssd
            };
            let (trained, losses) =
                mssd_step(model, &mut optimizer, batch(), &single).expect("valid batch");
            assert!(losses.task.is_finite() && losses.distillation.is_none());
            let times = adam_times(&trained, &optimizer.to_record());
            let stepped = times.iter().filter(|(_, t)| *t == Some(1)).count();
            assert!(
                times
                    .iter()
                    .filter(|(p, _)| p.starts_with("network.Mult."))
                    .all(|(_, t)| *t == Some(1)),
                "{times:?}"
            );
            assert!(stepped > 40, "{stepped}");
        });
    }
}
