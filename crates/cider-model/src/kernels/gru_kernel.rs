//! The GRU recurrence over a whole sequence on plain `f32` slices (docs/method.md §5.4), one
//! sample per rayon task (the forward pass; training differentiates the composition).
//!
//! The input projections `x_t W_i + b_i` of all steps come in precomputed (`[B, T, 3D]`,
//! gate columns `r | z | n`, with `b_hr` and `b_hz` already added), so a step is one
//! `h W_h` product and the gate arithmetic:
//! `r = σ(x̃_r + (h W_h)_r)`, `z = σ(x̃_z + (h W_h)_z)`, `n = tanh(x̃_n + r ⊙ ((h W_h)_n + b_hn))`,
//! `h' = (1 − z) ⊙ n + z ⊙ h`, from `h = 0`.

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
}
