//! Reconstruction decoders of the missing view (docs/method.md §5.9): they map the MCT output segments
//! back to the raw input shapes and serve only the reconstruction loss.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;

/// Configuration of a [`SequenceDecoder`].
#[derive(Config, Debug)]
pub struct SequenceDecoderConfig {
    /// Width `D`.
    pub d_model: usize,
    /// Input length `L = T_l`.
    pub segment_len: usize,
    /// Target length `T_a` or `T_v`.
    pub target_len: usize,
    /// Target feature size `d_a` or `d_v`.
    pub d_output: usize,
}

/// Audio / vision decoder: `Linear(L → T)` over the time axis, ReLU, then `Linear(D → d)`.
#[derive(Module, Debug)]
pub struct SequenceDecoder<B: Backend> {
    /// `Linear(L → T)` applied along time (reference `recon_*.0`).
    pub time: Linear<B>,
    /// `Linear(D → d)` applied per step (reference `recon_*.1`).
    pub feature: Linear<B>,
}

impl SequenceDecoderConfig {
    /// Initialises a [`SequenceDecoder`] (PyTorch-default Linear initialisation).
    pub fn init<B: Backend>(&self, device: &B::Device) -> SequenceDecoder<B> {
        SequenceDecoder {
            time: LinearConfig::new(self.segment_len, self.target_len).init(device),
            feature: LinearConfig::new(self.d_model, self.d_output).init(device),
        }
    }
}

impl<B: Backend> SequenceDecoder<B> {
    /// # Shapes
    /// - z: `[batch, L, D]`
    /// - output: `[batch, T, d]`
    pub fn forward(&self, z: Tensor<B, 3>) -> Tensor<B, 3> {
        let stretched = relu(self.time.forward(z.swap_dims(1, 2))); // [B, D, T]
        self.feature.forward(stretched.swap_dims(1, 2)) // [B, T, d]
    }
}

/// Configuration of the three [`Decoders`].
#[derive(Config, Debug)]
pub struct DecodersConfig {
    /// Width `D`.
    pub d_model: usize,
    /// `L = T_l`.
    pub t_l: usize,
    /// `T_a`.
    pub t_a: usize,
    /// `T_v`.
    pub t_v: usize,
    /// `d_l`.
    pub d_l: usize,
    /// `d_a`.
    pub d_a: usize,
    /// `d_v`.
    pub d_v: usize,
}

/// The text, audio and vision reconstruction decoders.
#[derive(Module, Debug)]
pub struct Decoders<B: Backend> {
    /// Text: `Linear(D → d_l)` per step.
    pub text: Linear<B>,
    /// Audio: `L → T_a`, `D → d_a`.
    pub audio: SequenceDecoder<B>,
    /// Vision: `L → T_v`, `D → d_v`.
    pub vision: SequenceDecoder<B>,
}

/// Reconstructed inputs of the missing view.
#[derive(Debug, Clone)]
pub struct Reconstruction<B: Backend> {
    /// `[batch, T_l, d_l]`, compared with the complete view's BERT output.
    pub text: Tensor<B, 3>,
    /// `[batch, T_a, d_a]`.
    pub audio: Tensor<B, 3>,
    /// `[batch, T_v, d_v]`.
    pub vision: Tensor<B, 3>,
}

impl DecodersConfig {
    /// Initialises the [`Decoders`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> Decoders<B> {
        let seq = |target_len, d_output| {
            SequenceDecoderConfig::new(self.d_model, self.t_l, target_len, d_output).init(device)
        };
        Decoders {
            text: LinearConfig::new(self.d_model, self.d_l).init(device),
            audio: seq(self.t_a, self.d_a),
            vision: seq(self.t_v, self.d_v),
        }
    }
}

impl<B: Backend> Decoders<B> {
    /// # Shapes
    /// - z_l, z_a, z_v: `[batch, L, D]` (MCT output segments)
    /// - output: see [`Reconstruction`]
    pub fn forward(
        &self,
        z_l: Tensor<B, 3>,
        z_a: Tensor<B, 3>,
        z_v: Tensor<B, 3>,
    ) -> Reconstruction<B> {
        Reconstruction {
            text: self.text.forward(z_l),     // [B, T_l, d_l]
            audio: self.audio.forward(z_a),   // [B, T_a, d_a]
            vision: self.vision.forward(z_v), // [B, T_v, d_v]
        }
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
    fn param_counts_match_spec_mosi_unaligned() {
        let dec = DecodersConfig::new(32, 50, 375, 500, 768, 5, 20).init::<TB>(&Default::default());
        assert_eq!(dec.text.num_params(), 25_344);
        assert_eq!(dec.audio.num_params(), 19_290);
        assert_eq!(dec.vision.num_params(), 26_160);
    }

    #[test]
    fn sequence_decoder_maps_time_then_features() {
        let device = Default::default();
        let mut dec = SequenceDecoderConfig::new(1, 2, 3, 1).init::<TB>(&device);
        // time: T[t'] = z[0] - z[1] + b with W [L=2, T=3] = [[1, 1, 0], [-1, 0, 1]], b = 0.
        dec.time.weight = Param::from_tensor(Tensor::from_floats(
            [[1.0, 1.0, 0.0], [-1.0, 0.0, 1.0]],
            &device,
        ));
        dec.time.bias = Some(Param::from_tensor(Tensor::zeros([3], &device)));
        dec.feature.weight = Param::from_tensor(Tensor::from_floats([[2.0]], &device));
        dec.feature.bias = Some(Param::from_tensor(Tensor::from_floats([1.0], &device)));
        // z = (1, 3) along time: time map → (1-3, 1, 3) = (-2, 1, 3); relu → (0, 1, 3);
        // feature → 2x + 1 = (1, 3, 7).
        let z = Tensor::<TB, 3>::from_floats([[[1.0], [3.0]]], &device);
        dec.forward(z).into_data().assert_approx_eq::<f32>(
            &TensorData::from([[[1.0f32], [3.0], [7.0]]]),
            Tolerance::default(),
        );
    }
}
