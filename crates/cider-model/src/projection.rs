//! The two projections of CIDer: the per-time-step temporal projections (docs/method.md §5.2) and the
//! residual projection that forms the joint representation `r` (docs/method.md §5.7).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;

use crate::kernels;

/// Configuration of a [`TemporalProjection`].
#[derive(Config, Debug)]
pub struct TemporalProjectionConfig {
    /// Input feature size (`d_l`, `d_a` or `d_v`).
    pub d_input: usize,
    /// Output width `D`.
    pub d_model: usize,
}

/// The reference's `Conv1d(d, D, kernel_size=1, bias=False)`: the same bias-free linear map
/// applied at every time step, `P = X Wᵀ`.
///
/// The weight is stored as `[d_input, D]`; the reference stores `[D, d_input, 1]`.
#[derive(Module, Debug)]
pub struct TemporalProjection<B: Backend> {
    /// Bias-free linear map `d → D`, initialised `U(±1/sqrt(d))` like the reference Conv1d.
    pub linear: Linear<B>,
}

impl TemporalProjectionConfig {
    /// Initialises a [`TemporalProjection`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> TemporalProjection<B> {
        TemporalProjection {
            linear: LinearConfig::new(self.d_input, self.d_model)
                .with_bias(false)
                .init(device),
        }
    }
}

impl<B: Backend> TemporalProjection<B> {
    /// Projects every time step.
    ///
    /// # Shapes
    /// - input: `[batch, T, d_input]`
    /// - output: `[batch, T, D]`
    pub fn forward(&self, input: Tensor<B, 3>) -> Tensor<B, 3> {
        self.linear.forward(input) // [B, T, D]
    }
}

/// Configuration of a [`ResidualProjection`].
#[derive(Config, Debug)]
pub struct ResidualProjectionConfig {
    /// Width of `h = [g_l ; g_a ; g_v]`, i.e. `3D`.
    pub d_joint: usize,
    /// `out_dropout`, applied after the ReLU.
    #[config(default = 0.3)]
    pub dropout: f64,
}

/// The projection residual of docs/method.md §5.7:
/// `r = h + proj2(Dropout(ReLU(proj1(h))))` with `proj1, proj2: Linear(3D → 3D)`.
#[derive(Module, Debug)]
pub struct ResidualProjection<B: Backend> {
    /// `proj1: Linear(3D → 3D)`.
    pub proj1: Linear<B>,
    /// `proj2: Linear(3D → 3D)`.
    pub proj2: Linear<B>,
    /// Dropout with `p = out_dropout`.
    pub dropout: Dropout,
}

impl ResidualProjectionConfig {
    /// Initialises a [`ResidualProjection`] (PyTorch-default Linear initialisation).
    pub fn init<B: Backend>(&self, device: &B::Device) -> ResidualProjection<B> {
        ResidualProjection {
            proj1: LinearConfig::new(self.d_joint, self.d_joint).init(device),
            proj2: LinearConfig::new(self.d_joint, self.d_joint).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
        }
    }
}

impl<B: Backend> ResidualProjection<B> {
    /// Computes the joint representation `r` from `h`.
    ///
    /// # Shapes
    /// - h: `[batch, 3D]`
    /// - output `r`: `[batch, 3D]`
    pub fn forward(&self, h: Tensor<B, 2>) -> Tensor<B, 2> {
        let x = relu(self.proj1.forward(h.clone())); // [B, 3D]
        let x = self.proj2.forward(kernels::dropout(x, &self.dropout)); // [B, 3D]
        h + x // [B, 3D]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::module::Param;
    use burn::tensor::{TensorData, Tolerance};

    type TB = Flex;

    #[test]
    fn temporal_projection_has_no_bias_and_default_range() {
        let device = Default::default();
        let proj = TemporalProjectionConfig::new(20, 32).init::<TB>(&device);
        assert!(proj.linear.bias.is_none());
        assert_eq!(proj.num_params(), 640);
        let k = 1.0 / 20f32.sqrt();
        proj.linear.weight.to_data().assert_within_range(-k..k);
    }

    #[test]
    fn temporal_projection_maps_each_step() {
        let device = Default::default();
        let mut proj = TemporalProjectionConfig::new(2, 3).init::<TB>(&device);
        // W (stored [d_in, D]) = [[1, 0, 2], [0, 1, -1]].
        proj.linear.weight = Param::from_tensor(Tensor::from_floats(
            [[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]],
            &device,
        ));
        let x = Tensor::<TB, 3>::from_floats([[[1.0, 2.0], [3.0, -1.0]]], &device);
        let y = proj.forward(x);
        y.into_data().assert_approx_eq::<f32>(
            &TensorData::from([[[1.0f32, 2.0, 0.0], [3.0, -1.0, 7.0]]]),
            Tolerance::default(),
        );
    }

    #[test]
    fn residual_projection_adds_mlp_to_input() {
        let device = Default::default();
        let mut res = ResidualProjectionConfig::new(2).init::<TB>(&device);
        // proj1 = identity with bias (-1, 0); proj2 = 2·identity, bias 0.5.
        res.proj1.weight =
            Param::from_tensor(Tensor::from_floats([[1.0, 0.0], [0.0, 1.0]], &device));
        res.proj1.bias = Some(Param::from_tensor(Tensor::from_floats(
            [-1.0, 0.0],
            &device,
        )));
        res.proj2.weight =
            Param::from_tensor(Tensor::from_floats([[2.0, 0.0], [0.0, 2.0]], &device));
        res.proj2.bias = Some(Param::from_tensor(Tensor::from_floats([0.5, 0.5], &device)));
        let h = Tensor::<TB, 2>::from_floats([[3.0, -2.0]], &device);
        // relu(h + (-1, 0)) = (2, 0); proj2 → (4.5, 0.5); r = h + that = (7.5, -1.5).
        res.forward(h)
            .into_data()
            .assert_approx_eq::<f32>(&TensorData::from([[7.5f32, -1.5]]), Tolerance::default());
    }
}
