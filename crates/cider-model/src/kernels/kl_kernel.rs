//! The MSSD attention-map loss on plain `f32` slices (docs/method.md §6.2), one block of rows per
//! rayon task: `KL = (1/R) Σ_rows Σ_j p_j (log p_j − log q_j)` with `p = softmax(s)` of the
//! teacher's scores and `q = softmax(s_m)` of the student's, over the last axis.
//!
//! Per row it takes both maxima `m`, the shifted exponentials `e_j = exp(s_j − m)` and their
//! sums `z` (two exponentials per column), then in one pass `p_j = e_j / z_p`,
//! `q_j = e_q,j / z_q`, the row's loss `Σ_j p_j ((s_j − s_m,j) − (λ_p − λ_q))` with
//! `λ = m + ln z` (`log p_j − log q_j` without a logarithm per column) and the student's
//! gradient `∂KL/∂s_m,j = (q_j − p_j) / R` (the teacher is detached), so the backward only
//! scales that gradient by the loss's own. The row loops are compiled for SSE2 and AVX2 as the
//! MCA kernel's are.

use rayon::prelude::*;

use super::mca_kernel::{exp_nonpositive, lane_max, lane_sum};

/// Rows per rayon task.
const ROWS_PER_TASK: usize = 64;

/// The loss and the student's gradient of [`attention_kl`].
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionKl {
    /// `KL`: rows summed in `f64`, in row order.
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
    let loss = blocks(student, teacher, Some(&mut grad), slices, cols);
    AttentionKl { loss, grad }
}

/// The loss of [`attention_kl`] alone, for a student that needs no gradient: the same
/// arithmetic in the same order, so the same value to the bit.
///
/// # Shapes
/// - student, teacher: `[R · rows · cols]`
pub fn attention_kl_loss(student: &[f32], teacher: &[f32], slices: usize, cols: usize) -> f64 {
    blocks(student, teacher, None, slices, cols)
}

/// The loss over all rows, one rayon task per [`ROWS_PER_TASK`] rows, writing the gradient into
/// `grad` when given.
fn blocks(
    student: &[f32],
    teacher: &[f32],
    grad: Option<&mut [f32]>,
    slices: usize,
    cols: usize,
) -> f64 {
    if cols == 0 || slices == 0 {
        return 0.0;
    }
    let inverse = 1.0 / slices as f32;
    let chunk = ROWS_PER_TASK * cols;
    let task = |(s_m, s): (&[f32], &[f32]), grad: Option<&mut [f32]>| {
        let mut e_p = vec![0.0f32; cols];
        let mut discarded = Vec::new();
        let out = match grad {
            Some(grad) => grad,
            None => {
                discarded.resize(s_m.len(), 0.0);
                &mut discarded[..]
            }
        };
        block_loss(RowBlock {
            s_m,
            s,
            out,
            e_p: &mut e_p,
            cols,
            inverse,
        })
    };
    let pairs = student.par_chunks(chunk).zip(teacher.par_chunks(chunk));
    let parts: Vec<f64> = match grad {
        Some(grad) => pairs
            .zip(grad.par_chunks_mut(chunk))
            .map(|(pair, grad)| task(pair, Some(grad)))
            .collect(),
        None => pairs.map(|pair| task(pair, None)).collect(),
    };
    parts.iter().sum::<f64>() / slices as f64
}

/// One block of rows: the student's and the teacher's scores and where their gradient goes,
/// each `[rows · cols]`, and scratch `e_p` of `cols`.
struct RowBlock<'a> {
    s_m: &'a [f32],
    s: &'a [f32],
    out: &'a mut [f32],
    e_p: &'a mut [f32],
    cols: usize,
    inverse: f32,
}

/// The rows of one block: returns the sum of their losses and leaves each row's
/// `(q − p) · inverse` in `out`.
fn block_loss(block: RowBlock<'_>) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the running CPU has AVX2, checked just above.
        return unsafe { block_loss_avx2(block) };
    }
    block_loss_body(block)
}

/// [`block_loss_body`] compiled for AVX2; the same operations in the same order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn block_loss_avx2(block: RowBlock<'_>) -> f64 {
    block_loss_body(block)
}

#[inline(always)]
fn block_loss_body(block: RowBlock<'_>) -> f64 {
    let RowBlock {
        s_m,
        s,
        out,
        e_p,
        cols,
        inverse,
    } = block;
    out.chunks_exact_mut(cols)
        .zip(s_m.chunks_exact(cols))
        .zip(s.chunks_exact(cols))
        .map(|((out, s_m), s)| row_kl(s_m, s, out, e_p, inverse))
        .sum()
}

/// One row: returns `Σ_j p_j (log p_j − log q_j)` and leaves `(q_j − p_j) · inverse` in
/// `out`; `e_p` is scratch (it ends holding `p`).
#[inline(always)]
fn row_kl(s_m: &[f32], s: &[f32], out: &mut [f32], e_p: &mut [f32], inverse: f32) -> f64 {
    let (m_q, m_p) = (lane_max(s_m), lane_max(s));
    for ((e_q, e_p), (&s_m, &s)) in out.iter_mut().zip(e_p.iter_mut()).zip(s_m.iter().zip(s)) {
        *e_q = exp_nonpositive(s_m - m_q);
        *e_p = exp_nonpositive(s - m_p);
    }
    let (z_q, z_p) = (lane_sum(out), lane_sum(e_p));
    let shift = (m_p + z_p.ln()) - (m_q + z_q.ln());
    let (inv_q, inv_p) = (1.0 / z_q, 1.0 / z_p);
    for (g, p) in out.iter_mut().zip(e_p.iter_mut()) {
        *p *= inv_p;
        *g = (*g * inv_q - *p) * inverse;
    }
    let mut lanes = [0.0f32; 8];
    let mut chunks = e_p
        .chunks_exact(8)
        .zip(s.chunks_exact(8))
        .zip(s_m.chunks_exact(8));
    for ((p, s), s_m) in &mut chunks {
        for (lane, ((p, s), s_m)) in lanes.iter_mut().zip(p.iter().zip(s).zip(s_m)) {
            *lane += p * ((s - s_m) - shift);
        }
    }
    let (cols, tail) = (s.len(), s.len() - s.len() % 8);
    let rest: f32 = (tail..cols)
        .map(|j| e_p[j] * ((s[j] - s_m[j]) - shift))
        .sum();
    f64::from(lanes.iter().sum::<f32>() + rest)
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

    /// The AVX2 build of the row loops gives the portable build's loss and gradient to the bit
    /// (19 columns: two full lanes of eight and a tail).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_rows_match_the_portable_rows_exactly() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let (rows, cols) = (5, 19);
        let wave = |f: f32| {
            (0..rows * cols)
                .map(|i| 3.0 * (f * i as f32).sin())
                .collect::<Vec<_>>()
        };
        let (s_m, s) = (wave(0.37), wave(0.91));
        let run = |avx2: bool| {
            let (mut out, mut e_p) = (vec![0.0f32; rows * cols], vec![0.0f32; cols]);
            let block = RowBlock {
                s_m: &s_m,
                s: &s,
                out: &mut out,
                e_p: &mut e_p,
                cols,
                inverse: 0.5,
            };
            let loss = match avx2 {
                // SAFETY: AVX2 was detected above.
                true => unsafe { block_loss_avx2(block) },
                false => block_loss_body(block),
            };
            (loss, out)
        };
        assert_eq!(run(true), run(false));
    }
}
