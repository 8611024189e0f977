//! The GRU recurrence over a whole sequence on plain `f32` slices (docs/method.md §5.4), one
//! sample per rayon task, forward and backward.
//!
//! The input projections `x_t W_i + b_i` of all steps come in precomputed (`[B, T, 3D]`,
//! gate columns `r | z | n`, with `b_hr` and `b_hz` already added), so a step is one
//! `h W_h` product and the gate arithmetic:
//! `r = σ(x̃_r + (h W_h)_r)`, `z = σ(x̃_z + (h W_h)_z)`, `n = tanh(x̃_n + r ⊙ ((h W_h)_n + b_hn))`,
//! `h' = (1 − z) ⊙ n + z ⊙ h`, from `h = 0`.
//!
//! The backward walks the steps in reverse with the gradient `δ` of the state leaving step `t`
//! (the output's gradient at `t` plus what step `t + 1` sends back), recomputing the step's gates
//! from the stored state `h` it started from:
//! `δn = δ ⊙ (1 − z) ⊙ (1 − n²)`, `δz = δ ⊙ (h − n) ⊙ z(1 − z)`,
//! `δr = δn ⊙ ĥ_n ⊙ r(1 − r)`, with `ĥ_n = (h W_h)_n + b_hn`.
//! The projected input's gradient is `[δr | δz | δn]`; the hidden product's is
//! `δa = [δr | δz | δn ⊙ r]`, so `∂b_hn += δn ⊙ r`, `∂W_h += hᵀ δa`, and the state before the
//! step gets `δ ⊙ z + δa W_hᵀ`.

use rayon::prelude::*;

/// Sizes of one fused GRU call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GruShape {
    /// Samples `B`.
    pub batch: usize,
    /// Steps `T`.
    pub steps: usize,
    /// Hidden width `D`.
    pub hidden: usize,
}

/// The parameters of the recurrence.
#[derive(Clone, Copy, Debug)]
pub struct GruWeights<'a> {
    /// `W_h`: `[D, 3D]` row-major (Burn's `[in, out]`), columns `r | z | n`.
    pub hidden: &'a [f32],
    /// `b_hn`: `[D]`.
    pub bias_hn: &'a [f32],
}

/// Every hidden state of the recurrence.
///
/// # Shapes
/// - projected: `[B, T, 3D]`; returns `[B, T, D]`
pub fn gru_forward(projected: &[f32], weights: GruWeights<'_>, shape: GruShape) -> Vec<f32> {
    let (t_len, d) = (shape.steps, shape.hidden);
    let mut states = vec![0.0f32; shape.batch * t_len * d];
    if t_len == 0 || d == 0 {
        return states;
    }
    states
        .par_chunks_mut(t_len * d)
        .zip(projected.par_chunks(t_len * 3 * d))
        .for_each(|(states, projected)| {
            let mut gates = Gates::new(d);
            let zeros = vec![0.0f32; d];
            for t in 0..t_len {
                let (before, rest) = states.split_at_mut(t * d);
                let previous = if t == 0 {
                    &zeros[..]
                } else {
                    &before[(t - 1) * d..]
                };
                gates.compute(previous, &projected[t * 3 * d..(t + 1) * 3 * d], weights);
                for (k, h) in rest[..d].iter_mut().enumerate() {
                    let n = gates.n[k];
                    *h = n + gates.z[k] * (previous[k] - n);
                }
            }
        });
    states
}

/// The gradients of [`gru_forward`]'s inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct GruGradients {
    /// `∂projected`: `[B, T, 3D]`.
    pub projected: Vec<f32>,
    /// `∂W_h`: `[D, 3D]`.
    pub hidden: Vec<f32>,
    /// `∂b_hn`: `[D]`.
    pub bias_hn: Vec<f32>,
}

/// The gradients of every input of [`gru_forward`], given the states it returned and the
/// gradient of those states. The per-sample parts of `∂W_h` and `∂b_hn` are summed in sample
/// order, so the result does not depend on the thread count.
///
/// # Shapes
/// - projected: `[B, T, 3D]`; states: `[B, T, D]`; grad: `[B, T, D]`
pub fn gru_backward(
    projected: &[f32],
    states: &[f32],
    grad: &[f32],
    weights: GruWeights<'_>,
    shape: GruShape,
) -> GruGradients {
    let (t_len, d) = (shape.steps, shape.hidden);
    let mut d_projected = vec![0.0f32; shape.batch * t_len * 3 * d];
    let mut d_hidden = vec![0.0f32; 3 * d * d];
    let mut d_bias_hn = vec![0.0f32; d];
    if t_len == 0 || d == 0 {
        return GruGradients {
            projected: d_projected,
            hidden: d_hidden,
            bias_hn: d_bias_hn,
        };
    }
    let parts: Vec<(Vec<f32>, Vec<f32>)> = d_projected
        .par_chunks_mut(t_len * 3 * d)
        .zip(projected.par_chunks(t_len * 3 * d))
        .zip(states.par_chunks(t_len * d))
        .zip(grad.par_chunks(t_len * d))
        .map(|(((d_projected, projected), states), grad)| {
            sample_backward(d_projected, projected, states, grad, weights)
        })
        .collect();
    for (hidden, bias_hn) in parts {
        add_into(&mut d_hidden, &hidden);
        add_into(&mut d_bias_hn, &bias_hn);
    }
    GruGradients {
        projected: d_projected,
        hidden: d_hidden,
        bias_hn: d_bias_hn,
    }
}

/// One sample's backward: fills its `∂projected` (`[T, 3D]`) and returns its parts of `∂W_h`
/// (`[D, 3D]`) and `∂b_hn` (`[D]`).
fn sample_backward(
    d_projected: &mut [f32],
    projected: &[f32],
    states: &[f32],
    grad: &[f32],
    weights: GruWeights<'_>,
) -> (Vec<f32>, Vec<f32>) {
    let d = weights.bias_hn.len();
    let t_len = states.len() / d;
    let mut d_hidden = vec![0.0f32; 3 * d * d];
    let mut d_bias_hn = vec![0.0f32; d];
    let mut gates = Gates::new(d);
    let zeros = vec![0.0f32; d];
    let mut carried = vec![0.0f32; d]; // δ sent back by step t + 1
    let mut d_hh = vec![0.0f32; 3 * d]; // δa
    for t in (0..t_len).rev() {
        let previous = match t {
            0 => &zeros[..],
            _ => &states[(t - 1) * d..t * d],
        };
        gates.compute(previous, &projected[t * 3 * d..(t + 1) * 3 * d], weights);
        let d_x = &mut d_projected[t * 3 * d..(t + 1) * 3 * d];
        for k in 0..d {
            let delta = grad[t * d + k] + carried[k];
            let (r, z, n) = (gates.r[k], gates.z[k], gates.n[k]);
            let d_n = delta * (1.0 - z) * (1.0 - n * n);
            let d_z = delta * (previous[k] - n) * z * (1.0 - z);
            let d_r = d_n * gates.hn[k] * r * (1.0 - r);
            d_x[k] = d_r;
            d_x[d + k] = d_z;
            d_x[2 * d + k] = d_n;
            d_hh[k] = d_r;
            d_hh[d + k] = d_z;
            d_hh[2 * d + k] = d_n * r;
            d_bias_hn[k] += d_n * r;
            carried[k] = delta * z;
        }
        for (k, &h) in previous.iter().enumerate() {
            let row = &weights.hidden[k * 3 * d..(k + 1) * 3 * d];
            carried[k] += row.iter().zip(&d_hh).map(|(w, g)| w * g).sum::<f32>();
            let d_row = &mut d_hidden[k * 3 * d..(k + 1) * 3 * d];
            d_row.iter_mut().zip(&d_hh).for_each(|(a, g)| *a += h * g);
        }
    }
    (d_hidden, d_bias_hn)
}

fn add_into(total: &mut [f32], part: &[f32]) {
    total.iter_mut().zip(part).for_each(|(a, b)| *a += b);
}

/// One step's gates `r`, `z`, `n` and `ĥ_n = (h W_h)_n + b_hn`, each `[D]`.
struct Gates {
    hh: Vec<f32>,
    r: Vec<f32>,
    z: Vec<f32>,
    n: Vec<f32>,
    hn: Vec<f32>,
}

impl Gates {
    fn new(d: usize) -> Self {
        Gates {
            hh: vec![0.0; 3 * d],
            r: vec![0.0; d],
            z: vec![0.0; d],
            n: vec![0.0; d],
            hn: vec![0.0; d],
        }
    }

    /// The gates after hidden state `h` with this step's projected input `x̃` (`[3D]`).
    fn compute(&mut self, h: &[f32], x: &[f32], weights: GruWeights<'_>) {
        let d = h.len();
        self.hh.fill(0.0);
        for (k, &h) in h.iter().enumerate() {
            let row = &weights.hidden[k * 3 * d..(k + 1) * 3 * d];
            self.hh.iter_mut().zip(row).for_each(|(a, w)| *a += h * w);
        }
        for k in 0..d {
            self.r[k] = sigmoid(x[k] + self.hh[k]);
            self.z[k] = sigmoid(x[d + k] + self.hh[d + k]);
            self.hn[k] = self.hh[2 * d + k] + weights.bias_hn[k];
            self.n[k] = (x[2 * d + k] + self.r[k] * self.hn[k]).tanh();
        }
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One sample, one hidden unit, two steps, worked by hand.
    #[test]
    fn two_steps_of_one_unit_by_hand() {
        // W_h = [w_r, w_z, w_n] = [0.5, -1, 2], b_hn = 0.25.
        let hidden = [0.5, -1.0, 2.0];
        let bias_hn = [0.25];
        let weights = GruWeights {
            hidden: &hidden,
            bias_hn: &bias_hn,
        };
        let projected = [0.1, 0.2, 0.3, -0.4, 0.5, -0.6];
        let shape = GruShape {
            batch: 1,
            steps: 2,
            hidden: 1,
        };
        let states = gru_forward(&projected, weights, shape);
        let s = |x: f64| 1.0 / (1.0 + (-x).exp());
        // Step 1 from h = 0: r = σ(0.1), z = σ(0.2), n = tanh(0.3 + r·0.25), h1 = (1 − z) n.
        let (r1, z1) = (s(0.1), s(0.2));
        let n1 = (0.3 + r1 * 0.25).tanh();
        let h1 = (1.0 - z1) * n1;
        // Step 2: hh = h1·[0.5, −1, 2].
        let (r2, z2) = (s(-0.4 + 0.5 * h1), s(0.5 - h1));
        let n2 = (-0.6 + r2 * (2.0 * h1 + 0.25)).tanh();
        let h2 = (1.0 - z2) * n2 + z2 * h1;
        assert!(
            (states[0] as f64 - h1).abs() < 1e-6,
            "{} vs {h1}",
            states[0]
        );
        assert!(
            (states[1] as f64 - h2).abs() < 1e-6,
            "{} vs {h2}",
            states[1]
        );
    }

    /// A gradient to check: its name, the input, the analytic gradient, the loss as a function
    /// of that input.
    type Check<'a> = (&'a str, &'a [f32], &'a [f32], &'a dyn Fn(&[f32]) -> f64);

    /// The backward against central differences of the forward, for two samples of two units
    /// over three steps under the loss `Σ c ⊙ states`.
    #[test]
    fn backward_matches_central_differences() {
        let shape = GruShape {
            batch: 2,
            steps: 3,
            hidden: 2,
        };
        let wave = |n: usize, f: f32| {
            (0..n)
                .map(|i| (f * (i as f32 + 1.0)).sin())
                .collect::<Vec<_>>()
        };
        let projected = wave(2 * 3 * 6, 0.7);
        let hidden = wave(2 * 6, 1.3);
        let bias_hn = wave(2, 2.1);
        let coefficients = wave(2 * 3 * 2, 0.4);
        let loss = |projected: &[f32], hidden: &[f32], bias_hn: &[f32]| -> f64 {
            let weights = GruWeights { hidden, bias_hn };
            let states = gru_forward(projected, weights, shape);
            states
                .iter()
                .zip(&coefficients)
                .map(|(h, c)| (h * c) as f64)
                .sum()
        };
        let weights = GruWeights {
            hidden: &hidden,
            bias_hn: &bias_hn,
        };
        let states = gru_forward(&projected, weights, shape);
        let grads = gru_backward(&projected, &states, &coefficients, weights, shape);
        let eps = 1e-2f32;
        let numeric = |input: &[f32], i: usize, at: &dyn Fn(&[f32]) -> f64| {
            let (mut up, mut down) = (input.to_vec(), input.to_vec());
            up[i] += eps;
            down[i] -= eps;
            (at(&up) - at(&down)) / (2.0 * eps as f64)
        };
        let checks: [Check<'_>; 3] = [
            ("∂projected", &projected, &grads.projected, &|x| {
                loss(x, &hidden, &bias_hn)
            }),
            ("∂W_h", &hidden, &grads.hidden, &|w| {
                loss(&projected, w, &bias_hn)
            }),
            ("∂b_hn", &bias_hn, &grads.bias_hn, &|b| {
                loss(&projected, &hidden, b)
            }),
        ];
        for (name, input, analytic, at) in checks {
            assert_eq!(input.len(), analytic.len(), "{name}: length");
            for (i, &g) in analytic.iter().enumerate() {
                let expected = numeric(input, i, at);
                assert!(
                    (g as f64 - expected).abs() < 1e-3,
                    "{name}[{i}]: {g} against the central difference {expected}"
                );
            }
        }
    }
}
