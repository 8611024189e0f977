//! NaiveAttention pooling (docs/method.md §5.6): one learned score per time step, softmax over all `L`
//! steps (padding included), weighted sum of the steps.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;

/// Configuration of a [`NaiveAttention`].
#[derive(Config, Debug)]
pub struct NaiveAttentionConfig {
    /// Width `D`.
    pub d_model: usize,
}

/// `score_t = w₂ᵀ tanh(W₁ z_t + b₁) + b₂`, `α = softmax_t(score)`, `g = Σ_t α_t z_t`.
#[derive(Module, Debug)]
pub struct NaiveAttention<B: Backend> {
    /// `Linear(D → D)` before the tanh (reference `attention.0`).
    pub hidden: Linear<B>,
    /// `Linear(D → 1)` giving the score (reference `attention.2`).
    pub score: Linear<B>,
}

impl NaiveAttentionConfig {
    /// Initialises a [`NaiveAttention`] (PyTorch-default Linear initialisation).
    pub fn init<B: Backend>(&self, device: &B::Device) -> NaiveAttention<B> {
        NaiveAttention {
            hidden: LinearConfig::new(self.d_model, self.d_model).init(device),
            score: LinearConfig::new(self.d_model, 1).init(device),
        }
    }
}

impl<B: Backend> NaiveAttention<B> {
    /// Pools a sequence into one vector.
    ///
    /// # Shapes
    /// - z: `[batch, L, D]`
    /// - output `g`: `[batch, D]`
    pub fn forward(&self, z: Tensor<B, 3>) -> Tensor<B, 2> {
        let [batch, _, d] = z.dims();
        let scores = self.score.forward(self.hidden.forward(z.clone()).tanh()); // [B, L, 1]
        let alpha = softmax(scores, 1); // [B, L, 1]
        (alpha * z).sum_dim(1).reshape([batch, d]) // [B, D]
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
    fn param_count_matches_reference() {
        let pool = NaiveAttentionConfig::new(32).init::<TB>(&Default::default());
        assert_eq!(pool.num_params(), 1089);
    }

    #[test]
    fn pools_with_softmax_of_scores() {
        let device = Default::default();
        let mut pool = NaiveAttentionConfig::new(2).init::<TB>(&device);
        // W₁ = 0, b₁ = (atanh 0.5, 0) ⇒ tanh(..) = (0.5, 0) at every step: equal scores.
        pool.hidden.weight = Param::from_tensor(Tensor::zeros([2, 2], &device));
        pool.hidden.bias = Some(Param::from_tensor(Tensor::from_floats(
            [0.5f32.atanh(), 0.0],
            &device,
        )));
        pool.score.weight = Param::from_tensor(Tensor::from_floats([[1.0], [0.0]], &device));
        pool.score.bias = Some(Param::from_tensor(Tensor::zeros([1], &device)));
        let z = Tensor::<TB, 3>::from_floats([[[1.0, 2.0], [3.0, 6.0]]], &device);
        // Equal scores ⇒ α = (½, ½) ⇒ g = mean = (2, 4).
        pool.forward(z.clone())
            .into_data()
            .assert_approx_eq::<f32>(&TensorData::from([[2.0f32, 4.0]]), Tolerance::default());

        // W₁ picks the first feature: tanh(z₀) = (tanh 1, tanh 3); scores s = those values.
        pool.hidden.weight =
            Param::from_tensor(Tensor::from_floats([[1.0, 0.0], [0.0, 0.0]], &device));
        pool.hidden.bias = Some(Param::from_tensor(Tensor::zeros([2], &device)));
        let (s0, s1) = (1f32.tanh(), 3f32.tanh());
        let a1 = (s1.exp()) / (s0.exp() + s1.exp());
        let a0 = 1.0 - a1;
        pool.forward(z).into_data().assert_approx_eq::<f32>(
            &TensorData::from([[a0 + 3.0 * a1, 2.0 * a0 + 6.0 * a1]]),
            Tolerance::default(),
        );
    }
}
