//! Every module of the network computes the same numbers on wgpu as on flex, forward and
//! backward, on random inputs and weights.
//!
//! Built only with both backends (`cargo test --features wgpu --test backends`); on a machine
//! without a GPU, wgpu runs on Mesa's software Vulkan driver (`mesa-vulkan-drivers`). The
//! weights and inputs come from a counter-based generator, not from a backend's RNG, so both
//! backends see identical values. The loss of each case is `Σ_i ⟨output_i, probe_i⟩` with fixed
//! probes, so every output element reaches every gradient.
//!
//! Tolerance: `1e-4 · max(1, max |flex|)` per tensor, the golden check's absolute tolerance
//! scaled to the tensor's size: two f32 backends that sum in different orders differ by a few
//! ulps of the largest value, and a wrong kernel differs by far more.
#![cfg(all(feature = "flex", feature = "wgpu"))]

use burn::backend::{Autodiff, Flex, Wgpu};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::GruConfig;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use cider_maci::mcm::{ConfounderNorm, McmConfig};
use cider_model::decoder::DecodersConfig;
use cider_model::mct::{McaConfig, MctConfig};
use cider_model::network::gru_sequence;
use cider_model::pooling::NaiveAttentionConfig;
use cider_model::projection::ResidualProjectionConfig;
use cider_model::wsam::WsamConfig;

type OnFlex = Autodiff<Flex>;
type OnWgpu = Autodiff<Wgpu>;

/// `len` values uniform in `[−scale, scale)`, a pure function of `(seed, index)` (SplitMix64).
fn uniform(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    (0..len as u64)
        .map(|i| {
            let mut z = seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(i.wrapping_mul(0xBF58_476D_1CE4_E5B9));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let unit = (z >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
            (2.0 * unit - 1.0) * scale
        })
        .collect()
}

/// Replaces every float parameter with generator values: a weight `[fan_in, ...]` with
/// `U(±1/√fan_in)`, a vector with `U(±0.5)`, the `k`-th parameter visited with seed `k`.
struct FillParams {
    next_seed: u64,
}

impl<B: AutodiffBackend> ModuleMapper<B> for FillParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let shape = tensor.shape();
        let scale = match D {
            1 => 0.5,
            _ => 1.0 / (shape.dims::<D>()[0] as f32).sqrt(),
        };
        self.next_seed += 1;
        let values = uniform(shape.num_elements(), self.next_seed, scale);
        let filled = Tensor::from_data(TensorData::new(values, shape), &tensor.device());
        Param::from_mapped_value(id, filled.require_grad(), mapper)
    }
}

fn filled<B: AutodiffBackend, M: Module<B>>(module: M) -> M {
    module.map(&mut FillParams { next_seed: 0 })
}

/// A tracked input leaf of `len` values `U(±1)`; cases reshape it as they need.
fn leaf<B: AutodiffBackend>(len: usize, seed: u64, device: &B::Device) -> Tensor<B, 1> {
    Tensor::<B, 1>::from_data(TensorData::new(uniform(len, seed, 1.0), [len]), device)
        .require_grad()
}

fn constant<B: AutodiffBackend, const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn to_vec<B: burn::tensor::backend::Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 data")
}

/// Outputs, parameter gradients (in visiting order) and input gradients of one case.
struct Outcome {
    tensors: Vec<(String, Vec<f32>)>,
}

struct CollectGrads<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    out: &'a mut Vec<(String, Vec<f32>)>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for CollectGrads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let name = format!("grad of parameter #{}", self.out.len());
        let grad = param.val().grad(self.grads).map(to_vec).unwrap_or_default();
        self.out.push((name, grad));
    }
}

/// Runs the backward pass of `Σ_i ⟨output_i, probe_i⟩` and gathers everything to compare.
fn outcome<B: AutodiffBackend, M: Module<B>>(
    module: &M,
    leaves: &[Tensor<B, 1>],
    outputs: Vec<Tensor<B, 1>>,
) -> Outcome {
    let mut tensors: Vec<(String, Vec<f32>)> = outputs
        .iter()
        .enumerate()
        .map(|(i, o)| (format!("output #{i}"), to_vec(o.clone().detach())))
        .collect();
    let device = outputs[0].device();
    let loss = outputs
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            let len = o.dims()[0];
            let probe = Tensor::<B, 1>::from_data(
                TensorData::new(uniform(len, 1000 + i as u64, 1.0), [len]),
                &device,
            );
            (o * probe).sum()
        })
        .reduce(|a, b| a + b)
        .expect("a case has an output");
    let grads = loss.backward();
    let mut params = Vec::new();
    module.visit(&mut CollectGrads::<B> {
        grads: &grads,
        out: &mut params,
    });
    tensors.extend(params);
    for (i, x) in leaves.iter().enumerate() {
        let grad = x.grad(&grads).map(to_vec).unwrap_or_default();
        tensors.push((format!("grad of input #{i}"), grad));
    }
    Outcome { tensors }
}

fn assert_same(case: &str, flex: Outcome, wgpu: Outcome) {
    assert_eq!(
        flex.tensors.len(),
        wgpu.tensors.len(),
        "{case}: tensor count"
    );
    for ((name, a), (_, b)) in flex.tensors.iter().zip(&wgpu.tensors) {
        assert_eq!(a.len(), b.len(), "{case}: {name}: length");
        assert!(
            !a.is_empty(),
            "{case}: {name}: no values (no gradient reached it)"
        );
        let scale = a.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let (worst, at) = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .enumerate()
            .fold((0.0f32, 0), |(w, at), (i, e)| {
                if e > w || e.is_nan() { (e, i) } else { (w, at) }
            });
        assert!(
            worst <= 1e-4 * scale,
            "{case}: {name}: largest difference {worst:e} at {at} (flex {}, wgpu {}, scale {scale})",
            a[at],
            b[at]
        );
    }
}

fn wsam_case<B: AutodiffBackend>(device: &B::Device) -> Outcome {
    let (batch, t_l, t_x, d) = (2, 6, 9, 8);
    let wsam = filled(WsamConfig::new(d).init::<B>(device));
    let query = leaf::<B>(batch * t_l * d, 1, device);
    let key_value = leaf::<B>(batch * t_x * d, 2, device);
    let text_mask = constant::<B, 2>(
        vec![1., 1., 1., 1., 1., 0., 1., 1., 1., 1., 1., 1.],
        [batch, t_l],
        device,
    );
    let mut frames = vec![1.0; batch * t_x];
    frames[6..t_x].fill(0.0);
    let x_mask = constant::<B, 2>(frames, [batch, t_x], device);
    let text_len = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![5i64, 6], [2]), device);
    let (out, probs) = wsam.forward_with_weights(
        query.clone().reshape([batch, t_l, d]),
        key_value.clone().reshape([batch, t_x, d]),
        text_mask,
        x_mask,
        text_len,
    );
    outcome(
        &wsam,
        &[query, key_value],
        vec![out.flatten(0, 2), probs.flatten(0, 2)],
    )
}

fn gru_case<B: AutodiffBackend>(device: &B::Device) -> Outcome {
    let (batch, steps, d) = (3, 11, 8);
    let gru = filled(GruConfig::new(d, d, true).init::<B>(device));
    let x = leaf::<B>(batch * steps * d, 3, device);
    let states = gru_sequence(&gru, x.clone().reshape([batch, steps, d]));
    outcome(&gru, &[x], vec![states.flatten(0, 2)])
}

/// The MCA alone at a given size: `[batch, 3L, D]` with `heads` heads.
fn mca_case<B: AutodiffBackend>([batch, l, d, heads]: [usize; 4], device: &B::Device) -> Outcome {
    let mca = filled(McaConfig::new(d, heads).init::<B>(device));
    let x = leaf::<B>(batch * 3 * l * d, 4, device);
    let (out, scores) = mca.forward_with_scores(x.clone().reshape([batch, 3 * l, d]), true);
    let scores = scores.expect("scores were asked for");
    outcome(&mca, &[x], vec![out.flatten(0, 2), scores.flatten(0, 2)])
}

fn mct_case<B: AutodiffBackend>(device: &B::Device) -> Outcome {
    let (batch, l, d) = (2, 5, 16);
    let mct = filled(
        MctConfig::new(d, 4, 2)
            .with_relu_dropout(0.0)
            .with_res_dropout(0.0)
            .with_embed_dropout(0.0)
            .with_max_positions(64)
            .init::<B>(device),
    );
    let inputs: Vec<Tensor<B, 1>> = (0..3)
        .map(|i| leaf::<B>(batch * l * d, 5 + i, device))
        .collect();
    let seq = |i: usize| inputs[i].clone().reshape([batch, l, d]);
    let out = mct.forward(seq(0), seq(1), seq(2));
    outcome(
        &mct,
        &inputs,
        vec![
            out.text.flatten(0, 2),
            out.audio.flatten(0, 2),
            out.vision.flatten(0, 2),
            out.scores.flatten(0, 2),
        ],
    )
}

fn pooling_case<B: AutodiffBackend>(device: &B::Device) -> Outcome {
    let (batch, l, d) = (3, 7, 8);
    let pool = filled(NaiveAttentionConfig::new(d).init::<B>(device));
    let z = leaf::<B>(batch * l * d, 8, device);
    let g = pool.forward(z.clone().reshape([batch, l, d]));
    outcome(&pool, &[z], vec![g.flatten(0, 1)])
}

fn residual_case<B: AutodiffBackend>(device: &B::Device) -> Outcome {
    let (batch, joint) = (3, 24);
    let residual = filled(
        ResidualProjectionConfig::new(joint)
            .with_dropout(0.0)
            .init::<B>(device),
    );
    let h = leaf::<B>(batch * joint, 9, device);
    let r = residual.forward(h.clone().reshape([batch, joint]));
    outcome(&residual, &[h], vec![r.flatten(0, 1)])
}

fn decoders_case<B: AutodiffBackend>(device: &B::Device) -> Outcome {
    let (batch, l, d) = (2, 5, 8);
    let decoders = filled(
        DecodersConfig {
            d_model: d,
            t_l: l,
            t_a: 7,
            t_v: 6,
            d_l: 10,
            d_a: 3,
            d_v: 4,
        }
        .init::<B>(device),
    );
    let inputs: Vec<Tensor<B, 1>> = (0..3)
        .map(|i| leaf::<B>(batch * l * d, 10 + i, device))
        .collect();
    let seq = |i: usize| inputs[i].clone().reshape([batch, l, d]);
    let recon = decoders.forward(seq(0), seq(1), seq(2));
    outcome(
        &decoders,
        &inputs,
        vec![
            recon.text.flatten(0, 2),
            recon.audio.flatten(0, 2),
            recon.vision.flatten(0, 2),
        ],
    )
}

fn mcm_case<B: AutodiffBackend>(norm: ConfounderNorm, device: &B::Device) -> Outcome {
    let (batch, d, classes) = (4, 8, 3);
    let (d_l, d_a, d_v) = (10, 5, 6);
    let mcm = filled(
        McmConfig::new(d, d_l, d_a, d_v, classes)
            .with_confounder_norm(norm)
            .init::<B>(device),
    );
    let joint = leaf::<B>(batch * 3 * d, 13, device);
    let feats = leaf::<B>(classes * batch * (d_l + d_a + d_v), 14, device);
    let priors: Vec<f32> = (0..batch)
        .flat_map(|b| {
            let raw = [1.0 + b as f32, 2.0, 0.5 + b as f32];
            let total: f32 = raw.iter().sum();
            raw.map(|p| p / total)
        })
        .collect();
    let log_p = mcm.forward(
        joint.clone().reshape([batch, 3 * d]),
        feats.clone().reshape([classes, batch, d_l + d_a + d_v]),
        constant::<B, 2>(priors, [batch, classes], device),
    );
    outcome(&mcm, &[joint, feats], vec![log_p.flatten(0, 1)])
}

fn mca_small_case<B: AutodiffBackend>(device: &B::Device) -> Outcome {
    mca_case::<B>([2, 3, 8, 2], device)
}

/// The golden folders' size: batch 4, `L` 16, `D` 32, 8 heads.
fn mca_golden_size_case<B: AutodiffBackend>(device: &B::Device) -> Outcome {
    mca_case::<B>([4, 16, 32, 8], device)
}

fn mcm_plain_case<B: AutodiffBackend>(device: &B::Device) -> Outcome {
    mcm_case::<B>(ConfounderNorm::None, device)
}

fn mcm_layer_norm_case<B: AutodiffBackend>(device: &B::Device) -> Outcome {
    mcm_case::<B>(ConfounderNorm::LayerNorm, device)
}

macro_rules! same_on_both {
    ($($name:ident: $case:ident,)*) => {$(
        #[test]
        fn $name() {
            let flex = $case::<OnFlex>(&Default::default());
            let wgpu = $case::<OnWgpu>(&Default::default());
            assert_same(stringify!($name), flex, wgpu);
        }
    )*};
}

same_on_both! {
    wsam: wsam_case,
    gru: gru_case,
    mca_small: mca_small_case,
    mca_golden_size: mca_golden_size_case,
    mct: mct_case,
    pooling: pooling_case,
    residual_projection: residual_case,
    decoders: decoders_case,
    mcm: mcm_plain_case,
    mcm_layer_norm: mcm_layer_norm_case,
}
