//! The MSSD losses (docs/method.md §6.2): the task loss and the three self-distillation terms that pull
//! the missing view (student) towards the complete view (teacher, always stop-gradient).
//!
//! | term | formula |
//! |---|---|
//! | task | `NLL(pred, y) = −mean_b pred[b, y_b]` |
//! | high level | `L_rep = 1 − mean_b cos(r_m[b], r[b])` |
//! | mid level | `KL_attn = (1/(B·H)) Σ P (log P − log Q)`, `P = softmax(S)`, `log Q = log_softmax(S_m)` |
//! | low level | `R = Σ ℓ(X̂·M, X·M) / (d · ΣM + 1e-6)`, `M = inmask − missmask` |

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use cider_model::kernels;
use serde::{Deserialize, Serialize};

/// ε of the cosine similarity: each norm is clamped to at least ε (PyTorch's
/// `cosine_similarity(x, y, eps=1e-8) = x·y / (max(‖x‖, ε) · max(‖y‖, ε))`).
pub const COSINE_EPS: f64 = 1e-8;

/// Added to the reconstruction denominator `d · ΣM` so that an empty mask gives `R = 0`.
pub const RECON_EPS: f64 = 1e-6;

/// The element-wise reconstruction loss `ℓ` of `R` (reference `--recon_loss`); written
/// `smooth-l1`, `l1` or `mse` in configuration files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReconLoss {
    /// Huber with β = 1: `0.5 e²` if `|e| < 1`, else `|e| − 0.5` (the reference default and the
    /// only value its scripts use; `MssdConfig`'s default).
    SmoothL1,
    /// `|e|`.
    L1,
    /// `e²`.
    Mse,
}

impl ReconLoss {
    /// `ℓ(e)` element-wise.
    pub fn elementwise<B: Backend, const D: usize>(&self, e: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::SmoothL1 => {
                let abs = e.clone().abs();
                let quadratic = e.square().mul_scalar(0.5);
                let linear = abs.clone().sub_scalar(0.5);
                quadratic.mask_where(abs.greater_equal_elem(1.0), linear)
            }
            Self::L1 => e.abs(),
            Self::Mse => e.square(),
        }
    }
}

/// The task loss `NLL(pred, y) = −mean_b pred[b, y_b]` on log-probabilities.
///
/// # Shapes
/// - log_probs: `[batch, C]` (the MCM's `log p(y|x)`)
/// - labels: `[batch]`, each in `0..C` (the caller checks the range)
/// - output: `[1]`
pub fn nll<B: Backend>(log_probs: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let [batch, _] = log_probs.dims();
    log_probs
        .gather(1, labels.reshape([batch, 1])) // [B, 1]
        .mean()
        .neg()
}

/// The joint-representation loss `L_rep = 1 − mean_b cos(r_m[b], r[b])` with
/// [`COSINE_EPS`]; the teacher `r` is detached here.
///
/// # Shapes
/// - student `r_m`, teacher `r`: `[batch, 3D]`
/// - output: `[1]`
pub fn joint_rep_loss<B: Backend>(student: Tensor<B, 2>, teacher: Tensor<B, 2>) -> Tensor<B, 1> {
    let unit = |x: Tensor<B, 2>| {
        // max(‖x‖, ε) = sqrt(max(‖x‖², ε²)); no infinite gradient at x = 0.
        let norm = x
            .clone()
            .square()
            .sum_dim(1)
            .clamp_min(COSINE_EPS * COSINE_EPS)
            .sqrt(); // [B, 1]
        x / norm // [B, 3D]
    };
    let cos = (unit(student) * unit(teacher.detach())).sum_dim(1); // [B, 1]
    cos.mean().neg().add_scalar(1.0)
}

/// The attention-map loss `KL_attn = (1/(B·H)) Σ_{n,i,j} P (log P − log Q)` with
/// `P = softmax_j(S)` (teacher, detached here) and `log Q = log_softmax_j(S_m)`: PyTorch's
/// `kl_div(log Q, P, reduction="batchmean")`. No padding mask (docs/method.md §11.7).
///
/// # Shapes
/// - student `S_m`, teacher `S`: raw scores `[batch·H, 3L, 3L]`
/// - output: `[1]`
///
/// A fused kernel on `Flex` / `Autodiff<Flex>` ([`kernels::attention_kl`]).
pub fn attention_kl<B: Backend>(student: Tensor<B, 3>, teacher: Tensor<B, 3>) -> Tensor<B, 1> {
    kernels::attention_kl(student, teacher)
}

/// The reconstruction mask `M = inmask − missmask`: 1 exactly where a valid position was
/// dropped by the simulated missingness.
///
/// # Shapes
/// - input_mask, missing_mask: `[batch, T]` (0/1, missing ⊆ input)
/// - output: `[batch, T]`
pub fn reconstruction_mask<B: Backend>(
    input_mask: Tensor<B, 2>,
    missing_mask: Tensor<B, 2>,
) -> Tensor<B, 2> {
    input_mask - missing_mask
}

/// The masked reconstruction loss `R = Σ_{b,t,f} ℓ(X̂·M, X·M) / (d · Σ_{b,t} M + 1e-6)`.
///
/// # Shapes
/// - prediction `X̂`, target `X`: `[batch, T, d]`
/// - mask `M`: `[batch, T]` (see [`reconstruction_mask`])
/// - output: `[1]`
pub fn masked_reconstruction<B: Backend>(
    prediction: Tensor<B, 3>,
    target: Tensor<B, 3>,
    mask: Tensor<B, 2>,
    loss: ReconLoss,
) -> Tensor<B, 1> {
    let [batch, t, d] = prediction.dims();
    let mask = mask.reshape([batch, t, 1]); // [B, T, 1]
    let error = prediction * mask.clone() - target * mask.clone(); // [B, T, d]
    let denominator = mask.sum().mul_scalar(d as f64).add_scalar(RECON_EPS);
    loss.elementwise(error).sum() / denominator
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn::backend::Flex;
    use burn::backend::flex::FlexDevice;
    use burn::prelude::ToElement;
    use burn::tensor::{TensorData, Tolerance};

    type TB = Flex;
    type AB = Autodiff<Flex>;

    fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
        f64::from(t.into_scalar().to_f32())
    }

    fn assert_close(got: f64, want: f64, tol: f64) {
        assert!((got - want).abs() <= tol, "got {got}, want {want}");
    }

    #[test]
    fn nll_picks_the_label_log_probability() {
        let device = FlexDevice;
        let log_probs = Tensor::<AB, 2>::from_floats(
            [
                [0.2f32.ln(), 0.5f32.ln(), 0.3f32.ln()],
                [0.1f32.ln(), 0.1f32.ln(), 0.8f32.ln()],
            ],
            &device,
        )
        .require_grad();
        let labels = Tensor::<AB, 1, Int>::from_ints([1, 2], &device);
        let loss = nll(log_probs.clone(), labels);
        // −(ln 0.5 + ln 0.8) / 2
        assert_close(scalar(loss.clone()), 0.458_145_4, 1e-6);
        // ∂/∂pred[b, c] = −1/B at the label, 0 elsewhere.
        let grads = loss.backward();
        log_probs
            .grad(&grads)
            .expect("grad")
            .into_data()
            .assert_approx_eq::<f32>(
                &TensorData::from([[0.0, -0.5, 0.0], [0.0, 0.0, -0.5]]),
                Tolerance::absolute(1e-7),
            );
    }

    #[test]
    fn joint_rep_loss_is_one_minus_mean_cosine() {
        let device = FlexDevice;
        // cos = 0 (orthogonal), 1 (parallel, different length), 0 (zero student: no NaN).
        let student = Tensor::<AB, 2>::from_floats([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], &device)
            .require_grad();
        let teacher = Tensor::<AB, 2>::from_floats([[0.0, 1.0], [2.0, 2.0], [1.0, 0.0]], &device)
            .require_grad();
        let loss = joint_rep_loss(student.clone(), teacher.clone());
        assert_close(scalar(loss.clone()), 1.0 - 1.0 / 3.0, 1e-6);
        let grads = loss.backward();
        // ∂(1 − mean cos)/∂x = −(1/B)(ŷ − (x̂·ŷ) x̂)/‖x‖; at x = 0 the norm is ε: −(1/B) y/ε.
        let g = student.grad(&grads).expect("student grad");
        let values: Vec<f32> = g.into_data().to_vec().expect("f32");
        assert_close(f64::from(values[0]), 0.0, 1e-7);
        assert_close(f64::from(values[1]), -1.0 / 3.0, 1e-6);
        assert_close(f64::from(values[2]), 0.0, 1e-7);
        assert_close(f64::from(values[3]), 0.0, 1e-7);
        assert_close(f64::from(values[4]) * 1e-8, -1.0 / 3.0, 1e-6);
        assert_close(f64::from(values[5]), 0.0, 1e-7);
        assert!(teacher.grad(&grads).is_none(), "the teacher is detached");
    }

    #[test]
    fn attention_kl_is_batchmean_over_rows() {
        let device = FlexDevice;
        // Row 0: P = (1/4, 3/4), Q = (1/2, 1/2): KL = ¼ ln ½ + ¾ ln 3/2. Row 1: P = Q: 0.
        let teacher = Tensor::<AB, 3>::from_floats([[[0.0, 3f32.ln()]], [[1.0, 2.0]]], &device);
        let student =
            Tensor::<AB, 3>::from_floats([[[0.0, 0.0]], [[5.0, 6.0]]], &device).require_grad();
        let loss = attention_kl(student.clone(), teacher);
        let row0 = 0.25 * 0.5f64.ln() + 0.75 * 1.5f64.ln();
        assert_close(scalar(loss.clone()), row0 / 2.0, 1e-6);
        // ∂/∂S_m = (Q − P) / (B·H).
        let grads = loss.backward();
        student
            .grad(&grads)
            .expect("grad")
            .into_data()
            .assert_approx_eq::<f32>(
                &TensorData::from([[[0.125, -0.125]], [[0.0, 0.0]]]),
                Tolerance::absolute(1e-6),
            );
    }

    #[test]
    fn reconstruction_counts_only_dropped_positions() {
        let device = FlexDevice;
        // T = 3, d = 2; position 2 is kept (not reconstructed) despite its large error.
        let prediction =
            Tensor::<TB, 3>::from_floats([[[0.5, 2.0], [-3.0, 0.0], [9.0, 9.0]]], &device);
        let target = Tensor::<TB, 3>::zeros([1, 3, 2], &device);
        let mask = reconstruction_mask(
            Tensor::<TB, 2>::from_floats([[1.0, 1.0, 1.0]], &device),
            Tensor::<TB, 2>::from_floats([[0.0, 0.0, 1.0]], &device),
        );
        let denominator = 2.0 * 2.0 + 1e-6;
        let cases = [
            // 0.125 + (2 − 0.5) + (3 − 0.5) + 0
            (ReconLoss::SmoothL1, 4.125),
            (ReconLoss::L1, 0.5 + 2.0 + 3.0),
            (ReconLoss::Mse, 0.25 + 4.0 + 9.0),
        ];
        for (kind, sum) in cases {
            let r = masked_reconstruction(prediction.clone(), target.clone(), mask.clone(), kind);
            assert_close(scalar(r), sum / denominator, 1e-6);
        }
        let nothing_dropped = masked_reconstruction(
            prediction,
            target,
            Tensor::zeros([1, 3], &device),
            ReconLoss::SmoothL1,
        );
        assert_eq!(scalar(nothing_dropped), 0.0);
    }

    #[test]
    fn smooth_l1_gradient_is_clipped_error() {
        let device = FlexDevice;
        let e =
            Tensor::<AB, 1>::from_floats([-2.5, -0.5, 0.0, 0.25, 1.0, 4.0], &device).require_grad();
        let loss = ReconLoss::SmoothL1.elementwise(e.clone());
        loss.clone().into_data().assert_approx_eq::<f32>(
            &TensorData::from([2.0, 0.125, 0.0, 0.03125, 0.5, 3.5]),
            Tolerance::absolute(1e-7),
        );
        let grads = loss.sum().backward();
        e.grad(&grads)
            .expect("grad")
            .into_data()
            .assert_approx_eq::<f32>(
                &TensorData::from([-1.0, -0.5, 0.0, 0.25, 1.0, 1.0]),
                Tolerance::absolute(1e-7),
            );
    }
}
