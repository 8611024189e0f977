//! The WSAM's masked attention on plain `f32` slices (docs/method.md §5.3), forward and
//! backward, one sample per rayon task: `C_i = r_i Σ_j P_ij v_j` with
//! `P_i = softmax_j(q_i · k_j + b_j)`, `b_j` the column bias (`0` for an allowed frame, `f32::MIN`
//! for a blocked one, whose probability is then exactly `0`) and `r_i ∈ {0, 1}` the row factor.
//!
//! The backward recomputes a row's probabilities instead of storing `[B, T_l, T_x]`. With
//! `g = ∂ℓ/∂C_i`, `dp_j = g · v_j` and `δ = Σ_j P_ij dp_j`: `∂s_ij = r_i P_ij (dp_j − δ)`,
//! `∂q_i = Σ_j ∂s_ij k_j`, `∂k_j += ∂s_ij q_i`, `∂v_j += r_i P_ij g`. The loops run over the
//! `T_x` columns with keys and values transposed to `[D, T_x]`, compiled for SSE2 and AVX2 as
//! the MCA kernel's are.

use rayon::prelude::*;

use super::mca_kernel::{exp_nonpositive, lane_dot, lane_max, lane_sum};

/// Sizes of one masked-attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    /// Samples `B`.
    pub batch: usize,
    /// Query rows `T_l`.
    pub queries: usize,
    /// Key and value rows `T_x`.
    pub keys: usize,
    /// Width `D`.
    pub width: usize,
}

/// The inputs of one call, row-major.
#[derive(Clone, Copy, Debug)]
pub struct AttentionInputs<'a> {
    /// `q` `[B, T_l, D]` (already scaled).
    pub q: &'a [f32],
    /// `k` `[B, T_x, D]`.
    pub k: &'a [f32],
    /// `v` `[B, T_x, D]`.
    pub v: &'a [f32],
    /// Column bias `[B, T_x]`.
    pub column_bias: &'a [f32],
    /// Row factor `[B, T_l]`.
    pub rows: &'a [f32],
    /// Their sizes.
    pub shape: AttentionShape,
}

/// `[∂q ; ∂k ; ∂v]` of [`masked_attention_backward`], each in its input's shape.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionGrads {
    /// `∂q` `[B, T_l, D]`.
    pub q: Vec<f32>,
    /// `∂k` `[B, T_x, D]`.
    pub k: Vec<f32>,
    /// `∂v` `[B, T_x, D]`.
    pub v: Vec<f32>,
}

/// `C` `[B, T_l, D]`.
pub fn masked_attention(inputs: AttentionInputs<'_>) -> Vec<f32> {
    let AttentionShape { queries, width, .. } = inputs.shape;
    let per_sample: Vec<Vec<f32>> = (0..inputs.shape.batch)
        .into_par_iter()
        .map(|b| dispatch(inputs, b, None).0)
        .collect();
    let mut out = Vec::with_capacity(inputs.shape.batch * queries * width);
    per_sample.iter().for_each(|c| out.extend_from_slice(c));
    out
}

/// The gradients of a loss whose gradient with respect to [`masked_attention`]'s output is
/// `grad` `[B, T_l, D]`.
pub fn masked_attention_backward(inputs: AttentionInputs<'_>, grad: &[f32]) -> AttentionGrads {
    let AttentionShape {
        batch, keys, width, ..
    } = inputs.shape;
    let per_sample: Vec<(Vec<f32>, Vec<f32>)> = (0..batch)
        .into_par_iter()
        .map(|b| dispatch(inputs, b, Some(grad)))
        .collect();
    let mut grads = AttentionGrads {
        q: Vec::with_capacity(grad.len()),
        k: vec![0.0; batch * keys * width],
        v: vec![0.0; batch * keys * width],
    };
    for (b, (dq, dkv)) in per_sample.iter().enumerate() {
        grads.q.extend_from_slice(dq);
        let (dk, dv) = dkv.split_at(width * keys);
        for (to, transposed) in [(&mut grads.k, dk), (&mut grads.v, dv)] {
            let sample = &mut to[b * keys * width..(b + 1) * keys * width];
            for c in 0..width {
                for j in 0..keys {
                    sample[j * width + c] = transposed[c * keys + j];
                }
            }
        }
    }
    grads
}

/// Sample `b`'s forward (`(C_b, [])`) or, given the output gradient, backward
/// (`(∂q_b, [∂kᵀ_b ; ∂vᵀ_b])`).
fn dispatch(inputs: AttentionInputs<'_>, b: usize, grad: Option<&[f32]>) -> (Vec<f32>, Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the running CPU has AVX2, checked just above.
        return unsafe { sample_avx2(inputs, b, grad) };
    }
    sample_body(inputs, b, grad)
}

/// [`sample_body`] compiled for AVX2; the same operations in the same order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sample_avx2(
    inputs: AttentionInputs<'_>,
    b: usize,
    grad: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
    sample_body(inputs, b, grad)
}

#[inline(always)]
fn sample_body(
    inputs: AttentionInputs<'_>,
    b: usize,
    grad: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let AttentionShape {
        queries: t_l,
        keys: t_x,
        width: d,
        ..
    } = inputs.shape;
    let kt = transposed(&inputs.k[b * t_x * d..(b + 1) * t_x * d], t_x, d);
    let vt = transposed(&inputs.v[b * t_x * d..(b + 1) * t_x * d], t_x, d);
    let bias = &inputs.column_bias[b * t_x..(b + 1) * t_x];
    let rows = &inputs.rows[b * t_l..(b + 1) * t_l];
    let q = &inputs.q[b * t_l * d..(b + 1) * t_l * d];
    let mut p = vec![0.0f32; t_x];
    let mut first = vec![0.0f32; t_l * d];
    let Some(grad) = grad else {
        for (i, (out, q)) in first.chunks_exact_mut(d).zip(q.chunks_exact(d)).enumerate() {
            if rows[i] == 0.0 {
                continue;
            }
            row_probs(q, &kt, bias, &mut p);
            for (c, o) in out.iter_mut().enumerate() {
                *o = rows[i] * lane_dot(&p, &vt[c * t_x..(c + 1) * t_x]);
            }
        }
        return (first, Vec::new());
    };
    let grad = &grad[b * t_l * d..(b + 1) * t_l * d];
    let mut kv = vec![0.0f32; 2 * d * t_x];
    let (dkt, dvt) = kv.split_at_mut(d * t_x);
    let mut dp = vec![0.0f32; t_x];
    for (i, (dq, q)) in first.chunks_exact_mut(d).zip(q.chunks_exact(d)).enumerate() {
        let r = rows[i];
        if r == 0.0 {
            continue;
        }
        let g = &grad[i * d..(i + 1) * d];
        row_probs(q, &kt, bias, &mut p);
        dp.fill(0.0);
        for (c, &g) in g.iter().enumerate() {
            let v = &vt[c * t_x..(c + 1) * t_x];
            for (x, &v) in dp.iter_mut().zip(v) {
                *x += g * v;
            }
            let dv = &mut dvt[c * t_x..(c + 1) * t_x];
            for (acc, &p) in dv.iter_mut().zip(&p) {
                *acc += (r * p) * g;
            }
        }
        let delta = lane_dot(&p, &dp);
        for (x, &p) in dp.iter_mut().zip(&p) {
            *x = r * p * (*x - delta);
        }
        let ds = &dp;
        for (c, (dq, &q)) in dq.iter_mut().zip(q).enumerate() {
            *dq = lane_dot(ds, &kt[c * t_x..(c + 1) * t_x]);
            let dk = &mut dkt[c * t_x..(c + 1) * t_x];
            for (acc, &x) in dk.iter_mut().zip(ds) {
                *acc += x * q;
            }
        }
    }
    (first, kv)
}

/// `P_i = softmax_j(q_i · k_j + b_j)` into `p` (`[T_x]`), from `kᵀ` `[D, T_x]`; a column more
/// than 87 below the row's maximum gets exactly `0`, as `exp` underflows in the composition.
#[inline(always)]
fn row_probs(q: &[f32], kt: &[f32], bias: &[f32], p: &mut [f32]) {
    let t_x = p.len();
    p.fill(0.0);
    for (c, &q) in q.iter().enumerate() {
        for (s, &k) in p.iter_mut().zip(&kt[c * t_x..(c + 1) * t_x]) {
            *s += q * k;
        }
    }
    for (s, &b) in p.iter_mut().zip(bias) {
        *s += b;
    }
    let m = lane_max(p);
    for s in p.iter_mut() {
        let x = *s - m;
        *s = if x < -87.0 { 0.0 } else { exp_nonpositive(x) };
    }
    let inverse = 1.0 / lane_sum(p);
    p.iter_mut().for_each(|s| *s *= inverse);
}

/// `x` `[rows, cols]` as `[cols, rows]`.
#[inline(always)]
fn transposed(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    for (r, row) in x.chunks_exact(cols).enumerate() {
        for (c, &value) in row.iter().enumerate() {
            out[c * rows + r] = value;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One sample, two queries, two keys, width one, worked by hand: the first row sees both
    /// keys, the second is a cleared row; the second key is blocked for nobody.
    #[test]
    fn one_sample_by_hand() {
        // s_0 = (1·1, 1·ln 3) → P_0 = (1/4, 3/4); C_0 = 1/4·2 + 3/4·6 = 5.
        let shape = AttentionShape {
            batch: 1,
            queries: 2,
            keys: 2,
            width: 1,
        };
        let inputs = AttentionInputs {
            q: &[1.0, 7.0],
            k: &[1.0, 1.0 + 3f32.ln()],
            v: &[2.0, 6.0],
            column_bias: &[0.0, 0.0],
            rows: &[1.0, 0.0],
            shape,
        };
        let c = masked_attention(inputs);
        assert!((c[0] - 5.0).abs() < 1e-5 && c[1] == 0.0, "{c:?}");
        // g = 1: dp = v = (2, 6), δ = 5, ∂s = (1/4·(−3), 3/4·1) = (−3/4, 3/4);
        // ∂q_0 = −3/4·1 + 3/4·(1 + ln 3) = 3/4 ln 3; ∂k = ∂s·q_0; ∂v = P_0.
        let grads = masked_attention_backward(inputs, &[1.0, 1.0]);
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
        assert!(close(&grads.q, &[0.75 * 3f32.ln(), 0.0]), "{:?}", grads.q);
        assert!(close(&grads.k, &[-0.75, 0.75]), "{:?}", grads.k);
        assert!(close(&grads.v, &[0.25, 0.75]), "{:?}", grads.v);
        // Blocking the second key moves all of row 0 onto the first.
        let blocked = AttentionInputs {
            column_bias: &[0.0, f32::MIN],
            ..inputs
        };
        assert_eq!(masked_attention(blocked), vec![2.0, 0.0]);
    }

    /// The AVX2 build gives the portable build's outputs and gradients to the bit.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_samples_match_the_portable_samples_exactly() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let shape = AttentionShape {
            batch: 2,
            queries: 5,
            keys: 11,
            width: 3,
        };
        let wave = |n: usize, f: f32| (0..n).map(|i| (f * i as f32).sin()).collect::<Vec<_>>();
        let (q, k, v) = (wave(30, 0.37), wave(66, 0.91), wave(66, 0.53));
        let mut column_bias = vec![0.0; 22];
        column_bias[3] = f32::MIN;
        let rows = [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0];
        let grad = wave(30, 0.77);
        let inputs = AttentionInputs {
            q: &q,
            k: &k,
            v: &v,
            column_bias: &column_bias,
            rows: &rows,
            shape,
        };
        for b in 0..2 {
            for g in [None, Some(grad.as_slice())] {
                // SAFETY: AVX2 was detected above.
                let fast = unsafe { sample_avx2(inputs, b, g) };
                assert_eq!(fast, sample_body(inputs, b, g), "sample {b}");
            }
        }
    }
}
