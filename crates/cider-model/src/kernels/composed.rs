//! The MCA attention core, the GRU recurrence, the attention-map loss and the WSAM's masked
//! attention as compositions of Burn tensor ops: what every backend runs (and differentiates) when no fused kernel applies, and
//! the definition the fused kernels are tested against.

use burn::nn::Dropout;
use burn::tensor::Tensor;
use burn::tensor::activation::{log_softmax, sigmoid, softmax};
use burn::tensor::backend::Backend;

use super::AttentionTensors;
use crate::mct::{BRANCHES, LAV, SUMMARY_BRANCHES};

/// The MCA branch features, composed ([`super::mca_branches`] says what they are).
///
/// All seven branches share one score matrix `S = q kᵀ`, and each branch's softmax runs over
/// a union of whole column blocks. So the scores are exponentiated once per column block,
/// `E_j = exp(S_{·j} − m_j)` with `m_j` the row maximum inside block `j`, and
/// `Y_j = E_j V_j` is multiplied once per block. A branch `U` then only rescales those block
/// products per row: with `M_U = max_{j∈U} m_j`, `a_{Uj} = exp(m_j − M_U)` and
/// `Z_U = Σ_{j∈U} a_{Uj} Σ_t E_j[·, t]`, `softmax_U(S) V = Σ_{j∈U} a_{Uj} Y_j / Z_U`. No
/// `[B, H, 3L, 3L]` tensor is built per branch. (The maxima only shift the exponent; they carry
/// no gradient.) Each branch is evaluated on every row; a row block keeps the four branches
/// containing its modality.
///
/// With attention dropout active (training, `p > 0`), the `LAV` branch's probabilities are
/// formed explicitly so that dropout can act on them.
///
/// # Shapes
/// - qkv: `[batch, 3L, 3D]`; returns `[3, batch·L, 4D]`
pub fn mca_branches<B: Backend>(
    qkv: Tensor<B, 3>,
    heads: usize,
    dropout: &Dropout,
) -> Tensor<B, 3> {
    let [batch, n, width] = qkv.dims();
    let d = width / 3;
    let (hd, l) = (d / heads, n / 3);
    let rows = batch * heads * n;
    let split_heads = |i: usize| split_head(qkv.clone(), i, heads);
    let q = split_heads(0).mul_scalar((hd as f64).powf(-0.5)); // [B, H, 3L, hd]
    let k = split_heads(1); // [B, H, 3L, hd]
    let v = split_heads(2); // [B, H, 3L, hd]
    let scores = q.matmul(k.swap_dims(2, 3)); // [B, H, 3L, 3L]

    let blocks = scores.reshape([batch, heads, n, 3, l]); // [B, H, 3L, 3 (j), L]
    let block_max = blocks.clone().detach().max_dim(4); // [B, H, 3L, 3, 1]
    let exp = (blocks - block_max.clone()).exp(); // [B, H, 3L, 3, L]
    let (products, sums) = block_products(exp.clone(), v.clone()); // [R, 3, hd], [R, 3]
    let column = |x: Tensor<B, 2>, j: usize| x.narrow(1, j, 1); // [R, 1]
    let maxima = block_max.reshape([rows, 3]); // [R, 3]

    let dropout_active = dropout.prob > 0.0 && B::ad_enabled(&exp.device());
    let outputs: Vec<Tensor<B, 2>> = BRANCHES
        .iter()
        .enumerate()
        .map(|(u, members)| {
            let js: Vec<usize> = (0..3).filter(|&j| members[j]).collect();
            // a_{Uj} = exp(m_j − M_U) (no gradient) and Z_U = Σ_j a_{Uj} Σ_t E_j.
            let shifts: Vec<Tensor<B, 2>> = match js.as_slice() {
                [_] => Vec::new(),
                _ => {
                    let branch_max = js
                        .iter()
                        .map(|&j| column(maxima.clone(), j))
                        .reduce(Tensor::max_pair)
                        .expect("a branch has a member"); // [R, 1]
                    js.iter()
                        .map(|&j| (column(maxima.clone(), j) - branch_max.clone()).exp())
                        .collect()
                }
            };
            let scaled = |x: Tensor<B, 2>, i: usize| match shifts.get(i) {
                Some(a) => x * a.clone(),
                None => x,
            };
            let norm = js
                .iter()
                .enumerate()
                .map(|(i, &j)| scaled(column(sums.clone(), j), i))
                .reduce(|a, b| a + b)
                .expect("a branch has a member"); // [R, 1]
            if u == LAV && dropout_active {
                let weights = (0..3)
                    .map(|j| match js.iter().position(|&m| m == j) {
                        Some(i) => scaled(Tensor::ones([rows, 1], &exp.device()), i),
                        None => Tensor::zeros([rows, 1], &exp.device()),
                    })
                    .collect();
                let weights = (Tensor::cat(weights, 1) / norm).reshape([batch, heads, n, 3, 1]);
                let probs = dropout.forward((exp.clone() * weights).reshape([batch, heads, n, n]));
                return probs.matmul(v.clone()).reshape([rows, hd]); // [R, hd]
            }
            js.iter()
                .enumerate()
                .map(|(i, &j)| {
                    let y = products.clone().narrow(1, j, 1).reshape([rows, hd]); // [R, hd]
                    scaled(y, i)
                })
                .reduce(|a, b| a + b)
                .expect("a branch has a member")
                / norm // [R, hd]
        })
        .collect();

    // Row block i keeps O_U for its four subsets: [3 (i), B·L, 4D], features kD + h·hd + c.
    let per_block: Vec<Tensor<B, 3>> = SUMMARY_BRANCHES
        .iter()
        .enumerate()
        .map(|(i, slots)| {
            let parts = slots
                .iter()
                .map(|&u| {
                    outputs[u]
                        .clone()
                        .reshape([batch, heads, 3, l, hd])
                        .narrow(2, i, 1) // [B, H, 1, L, hd]
                })
                .collect();
            Tensor::stack::<6>(parts, 0) // [4, B, H, 1, L, hd]
                .permute([1, 3, 4, 0, 2, 5]) // [B, 1, L, 4, H, hd]
                .reshape([1, batch * l, 4 * d])
        })
        .collect();
    Tensor::cat(per_block, 0) // [3, B·L, 4D]
}

/// The raw attention scores `q kᵀ / √hd` of every head, before any mask or softmax.
///
/// # Shapes
/// - qkv: `[batch, 3L, 3D]`; returns `[batch·H, 3L, 3L]`, flat index `b·H + h`
pub fn raw_scores<B: Backend>(qkv: Tensor<B, 3>, heads: usize) -> Tensor<B, 3> {
    let [batch, n, width] = qkv.dims();
    let hd = width / 3 / heads;
    let q = split_head(qkv.clone(), 0, heads).mul_scalar((hd as f64).powf(-0.5)); // [B, H, 3L, hd]
    let k = split_head(qkv, 1, heads); // [B, H, 3L, hd]
    q.matmul(k.swap_dims(2, 3)).reshape([batch * heads, n, n])
}

/// Part `i` (0 q, 1 k, 2 v) of the packed projection, split into heads.
///
/// # Shapes
/// - qkv: `[batch, 3L, 3D]`; returns `[batch, H, 3L, hd]`
fn split_head<B: Backend>(qkv: Tensor<B, 3>, i: usize, heads: usize) -> Tensor<B, 4> {
    let [batch, n, width] = qkv.dims();
    let d = width / 3;
    qkv.slice([0..batch, 0..n, i * d..(i + 1) * d]) // [B, 3L, D]
        .reshape([batch, n, heads, d / heads])
        .swap_dims(1, 2)
}

/// The per-column-block products of the MCA: `Y_j = E_j V_j` and the row sums `Σ_t E_j`, for
/// every row `R = (b, h, r)`. The products come from one matmul of `E` with `V` laid out
/// block-diagonally, `V'[j·L + t] = [0 … V_j[t] … 0]`; the sums from a reduction of `E` over
/// each block.
///
/// The sums are not appended to `V'` as indicator columns and sliced back out of the matmul
/// output: on wgpu (Burn 0.21, CubeCL 0.10, fusion on) a narrow of a narrow of that fused
/// matmul's output read the wrong columns (docs/performance.md, "Backends").
///
/// # Shapes
/// - exp `E`: `[B, H, 3L, 3 (j), L]`
/// - v: `[B, H, 3L, hd]`
/// - returns `Y` `[B·H·3L, 3 (j), hd]` and the sums `[B·H·3L, 3 (j)]`
fn block_products<B: Backend>(exp: Tensor<B, 5>, v: Tensor<B, 4>) -> (Tensor<B, 3>, Tensor<B, 2>) {
    let [batch, heads, n, _, l] = exp.dims();
    let hd = v.dims()[3];
    let rows = batch * heads * n;
    let device = exp.device();
    let v_blocks = v.reshape([batch, heads, 3, l, hd]); // [B, H, 3, L, hd]
    let zeros = |width: usize| Tensor::<B, 5>::zeros([batch, heads, 1, l, width], &device);
    let diagonal_rows = (0..3)
        .map(|j| {
            let parts = [
                zeros(j * hd),
                v_blocks.clone().narrow(2, j, 1), // [B, H, 1, L, hd]
                zeros((2 - j) * hd),
            ];
            let parts = parts.into_iter().filter(|p| p.dims()[4] > 0).collect();
            Tensor::cat(parts, 4) // [B, H, 1, L, 3hd]
        })
        .collect();
    let v_diagonal = Tensor::cat(diagonal_rows, 2).reshape([batch, heads, n, 3 * hd]);
    let sums = exp.clone().sum_dim(4).reshape([rows, 3]); // [R, 3]
    let products = exp
        .reshape([batch, heads, n, n])
        .matmul(v_diagonal)
        .reshape([rows, 3, hd]); // [R, 3, hd]
    (products, sums)
}

/// The GRU recurrence, composed: one hidden matmul `[B, D] × [D, 3D]` per step
/// ([`super::gru_scan`] says what it computes).
///
/// # Shapes
/// - projected: `[batch, T, 3D]`; hidden: `[D, 3D]`; bias_hn: `[D]`; returns `[batch, T, D]`
pub fn gru_scan<B: Backend>(
    projected: Tensor<B, 3>,
    hidden: Tensor<B, 2>,
    bias_hn: Tensor<B, 1>,
) -> Tensor<B, 3> {
    let [batch, steps, _] = projected.dims();
    let d = bias_hn.dims()[0];
    let device = projected.device();
    let b_hn = bias_hn.reshape([1, d]); // [1, D]
    // The backward of a slice writes a gradient as large as the sliced tensor, so slicing the
    // T steps straight out of `projected` would cost O(T²) in the backward pass; slicing
    // chunks of about √T steps first, then the steps of each chunk, costs O(T^1.5).
    let chunk = (steps as f64).sqrt().ceil() as usize;
    let inputs = (0..steps).step_by(chunk.max(1)).flat_map(|start| {
        let len = chunk.min(steps - start);
        let block = projected.clone().narrow(1, start, len); // [B, len, 3D]
        (0..len).map(move |t| block.clone().narrow(1, t, 1).reshape([batch, 3 * d])) // [B, 3D]
    });
    let mut h = Tensor::<B, 2>::zeros([batch, d], &device); // [B, D]
    let mut states = Vec::with_capacity(steps);
    for x_t in inputs {
        let h_t = h.clone().matmul(hidden.clone()); // [B, 3D]
        let rz = sigmoid(
            x_t.clone().slice([0..batch, 0..2 * d]) + h_t.clone().slice([0..batch, 0..2 * d]),
        ); // [B, 2D]
        let r = rz.clone().slice([0..batch, 0..d]); // [B, D]
        let z = rz.slice([0..batch, d..2 * d]); // [B, D]
        let n = (x_t.slice([0..batch, 2 * d..3 * d])
            + r * (h_t.slice([0..batch, 2 * d..3 * d]) + b_hn.clone()))
        .tanh(); // [B, D]
        h = n.clone() + z * (h - n); // (1 − z) ⊙ n + z ⊙ h, [B, D]
        states.push(h.clone());
    }
    if states.is_empty() {
        return Tensor::zeros([batch, 0, d], &device);
    }
    Tensor::stack(states, 1) // [B, T, D]
}

/// The attention-map loss, composed ([`super::attention_kl`] says what it computes).
///
/// # Shapes
/// - student, teacher: `[R, rows, cols]`; returns `[1]`
pub fn attention_kl<B: Backend>(student: Tensor<B, 3>, teacher: Tensor<B, 3>) -> Tensor<B, 1> {
    let [slices, _, _] = student.dims();
    let log_p = log_softmax(teacher.detach(), 2); // [R, rows, cols]
    let log_q = log_softmax(student, 2); // [R, rows, cols]
    let p = log_p.clone().exp();
    (p * (log_p - log_q)).sum().div_scalar(slices as f64)
}

/// The WSAM's masked attention, composed ([`super::masked_attention`] says what it computes).
///
/// # Shapes
/// - returns `[batch, T_l, D]`
pub fn masked_attention<B: Backend>(inputs: AttentionTensors<B>) -> Tensor<B, 3> {
    let AttentionTensors {
        q,
        k,
        v,
        column_bias,
        rows,
    } = inputs;
    masked_probabilities(q, k, column_bias, rows).matmul(v)
}

/// `softmax(q kᵀ + b) ⊙ r` `[batch, T_l, T_x]`, the probabilities of [`masked_attention`]
/// (the shapes of [`AttentionTensors`]).
pub fn masked_probabilities<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    column_bias: Tensor<B, 3>,
    rows: Tensor<B, 3>,
) -> Tensor<B, 3> {
    softmax(q.matmul(k.swap_dims(1, 2)) + column_bias, 2) * rows
}
