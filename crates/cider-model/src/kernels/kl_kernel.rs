//! The MSSD attention-map loss on plain `f32` slices (docs/method.md §6.2), one block of rows per
//! rayon task: `KL = (1/R) Σ_rows Σ_j p_j (log p_j − log q_j)` with `p = softmax(s)` of the
//! teacher's scores and `q = softmax(s_m)` of the student's, over the last axis.
//!
//! Per row it takes both maxima, both log-sum-exps `λ = m + ln Σ_j exp(s_j − m)`, and then in
//! one pass `log p_j = s_j − λ_p`, `log q_j = s_m,j − λ_q`, the row's loss and the student's
//! gradient `∂KL/∂s_m,j = (q_j − p_j) / R` (the teacher is detached), so the backward only
//! scales that gradient by the loss's own.

use rayon::prelude::*;

use super::mca_kernel::{exp_nonpositive, lane_max};

/// Rows per rayon task.
const ROWS_PER_TASK: usize = 64;

/// The loss and the student's gradient of [`attention_kl`].
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionKl {
    /// `KL`, summed in row order in `f64`.
    pub loss: f64,
    /// `∂KL/∂s_m`: the student's shape.
    pub grad: Vec<f32>,
}

/// The attention-map loss of `student` against `teacher`, both `[R, rows, cols]` row-major,
/// softmax over `cols`, averaged over the `R` leading slices (`batchmean`), with the student's
/// gradient.
///
/// # Shapes
/// - student, teacher: `[R · rows · cols]`; grad: the same
pub fn attention_kl(student: &[f32], teacher: &[f32], slices: usize, cols: usize) -> AttentionKl {
    let mut grad = vec![0.0f32; student.len()];
    if cols == 0 || slices == 0 {
        return AttentionKl { loss: 0.0, grad };
    }
    let inverse = 1.0 / slices as f32;
    let chunk = ROWS_PER_TASK * cols;
    let parts: Vec<f64> = grad
        .par_chunks_mut(chunk)
        .zip(student.par_chunks(chunk))
        .zip(teacher.par_chunks(chunk))
        .map(|((grad, student), teacher)| {
            grad.chunks_exact_mut(cols)
                .zip(student.chunks_exact(cols))
                .zip(teacher.chunks_exact(cols))
                .map(|((grad, s_m), s)| row_kl(s_m, s, |j, p, q| grad[j] = (q - p) * inverse))
                .sum()
        })
        .collect();
    AttentionKl {
        loss: parts.iter().sum::<f64>() / slices as f64,
        grad,
    }
}

/// The loss of [`attention_kl`] alone, for a student that needs no gradient: the same blocks
/// summed in the same order, so the same value to the bit.
///
/// # Shapes
/// - student, teacher: `[R · rows · cols]`
pub fn attention_kl_loss(student: &[f32], teacher: &[f32], slices: usize, cols: usize) -> f64 {
    if cols == 0 || slices == 0 {
        return 0.0;
    }
    let chunk = ROWS_PER_TASK * cols;
    let parts: Vec<f64> = student
        .par_chunks(chunk)
        .zip(teacher.par_chunks(chunk))
        .map(|(student, teacher)| {
            student
                .chunks_exact(cols)
                .zip(teacher.chunks_exact(cols))
                .map(|(s_m, s)| row_kl(s_m, s, |_, _, _| {}))
                .sum()
        })
        .collect();
    parts.iter().sum::<f64>() / slices as f64
}

/// One row: returns `Σ_j p_j (log p_j − log q_j)` and hands each column's `(j, p_j, q_j)` to
/// `each`.
fn row_kl(student: &[f32], teacher: &[f32], mut each: impl FnMut(usize, f32, f32)) -> f64 {
    let (lse_q, lse_p) = (log_sum_exp(student), log_sum_exp(teacher));
    let mut total = 0.0f64;
    for (j, (&s_m, &s)) in student.iter().zip(teacher).enumerate() {
        let (log_p, log_q) = (s - lse_p, s_m - lse_q);
        let (p, q) = (exp_nonpositive(log_p), exp_nonpositive(log_q));
        each(j, p, q);
        total += f64::from(p * (log_p - log_q));
    }
    total
}

/// `m + ln Σ_j exp(x_j − m)`, `m = max_j x_j`.
fn log_sum_exp(x: &[f32]) -> f32 {
    let m = lane_max(x);
    let sum: f32 = x.iter().map(|&v| exp_nonpositive(v - m)).sum();
    m + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two slices of one row of two columns, worked by hand (as the composed loss's test).
    #[test]
    fn two_rows_by_hand() {
        // Row 0: P = (1/4, 3/4), Q = (1/2, 1/2). Row 1: P = Q.
        let teacher = [0.0, 3f32.ln(), 1.0, 2.0];
        let student = [0.0, 0.0, 5.0, 6.0];
        let out = attention_kl(&student, &teacher, 2, 2);
        let row0 = 0.25 * 0.5f64.ln() + 0.75 * 1.5f64.ln();
        assert!((out.loss - row0 / 2.0).abs() < 1e-6, "{}", out.loss);
        // (Q − P) / 2 = (1/8, −1/8), then 0.
        let expected = [0.125, -0.125, 0.0, 0.0];
        for (g, e) in out.grad.iter().zip(expected) {
            assert!((g - e).abs() < 1e-6, "{:?}", out.grad);
        }
        assert_eq!(attention_kl_loss(&student, &teacher, 2, 2), out.loss);
    }
}
