//! CIDer's optimiser (docs/method.md §6.3, §12): `torch.optim.Adam` (β = 0.9 / 0.999, ε = 1e-8, coupled L2
//! weight decay, i.e. `g ← g + λ·θ` before the moments) over three parameter groups:
//!
//! | group | parameters | lr | weight decay |
//! |---|---|---|---|
//! | [`ParamGroup::BertDecay`] | BERT weights (embeddings, Linear weights) | `lr_bert` 5e-5 | 1e-3 |
//! | [`ParamGroup::BertNoDecay`] | BERT biases and LayerNorm γ / β | `lr_bert` 5e-5 | 0 |
//! | [`ParamGroup::Rest`] | everything outside the BERT | `lr` 1e-3 | 0 |
//!
//! Burn 0.21 has no parameter groups, so [`GroupedAdam`] keeps one Burn Adam per group and, at
//! each step, splits the gradients by group (a visitor over the module's parameter paths) and
//! steps each group with its own gradients only: a parameter without a gradient in the given
//! set is left untouched, so each step moves only its own group. Each parameter's Adam state
//! (moments and its own step count `t`) lives in its group's optimiser; the three states
//! together are the record saved with checkpoints ([`GroupedAdamRecord`]).

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{Adam, AdamConfig, GradientsParams, Optimizer};
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One of the three parameter groups of docs/method.md §6.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamGroup {
    /// BERT parameters whose reference name contains neither "bias" nor "LayerNorm": embedding
    /// tables and Linear weights (`lr_bert`, weight decay `wd_bert`).
    BertDecay,
    /// BERT biases and LayerNorm weights / biases (`lr_bert`, no weight decay).
    BertNoDecay,
    /// Every parameter outside the BERT (`lr`, no weight decay).
    Rest,
}

impl ParamGroup {
    /// All groups, in the order of [`GroupedAdamRecord`].
    pub const ALL: [ParamGroup; 3] = [Self::BertDecay, Self::BertNoDecay, Self::Rest];

    fn index(self) -> usize {
        match self {
            Self::BertDecay => 0,
            Self::BertNoDecay => 1,
            Self::Rest => 2,
        }
    }
}

/// Assigns a parameter to its group from its module path (field names from the root module,
/// ending with the parameter's own field name, e.g. `["network", "proj_l", "linear", "weight"]`).
pub type Grouping = fn(&[String]) -> ParamGroup;

/// The grouping of `cider_maci::full_model::Cider`: the BERT is the backbone's `text_encoder`
/// (`network.text_encoder`, or below the backbone's variant name); inside it, biases (`…bias`)
/// and LayerNorms (`…layer_norm.{gamma,beta}`) are not decayed.
pub fn cider_param_group(path: &[String]) -> ParamGroup {
    let in_bert = path.first().is_some_and(|p| p == "network")
        && path.iter().take(3).skip(1).any(|p| p == "text_encoder")
        && path.len() > 2;
    if !in_bert {
        ParamGroup::Rest
    } else if path.last().is_some_and(|name| name == "bias")
        || path.iter().any(|name| name == "layer_norm")
    {
        ParamGroup::BertNoDecay
    } else {
        ParamGroup::BertDecay
    }
}

/// Hyper-parameters of the CIDer optimiser (docs/method.md §6.3, §9.1 defaults), the `[optim]`
/// table of a training configuration. Every key is optional and an unknown key is an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CiderAdamConfig {
    /// Learning rate of every non-BERT parameter (1e-3; reference `--lr`).
    pub lr: f64,
    /// Learning rate of the BERT (5e-5; reference `--lr_bert`).
    pub lr_bert: f64,
    /// Coupled L2 weight decay of [`ParamGroup::BertDecay`] (1e-3; reference
    /// `--weight_decay_bert`).
    pub wd_bert: f64,
    /// Adam β₁ (0.9).
    pub beta_1: f64,
    /// Adam β₂ (0.999).
    pub beta_2: f64,
    /// Adam ε (1e-8, PyTorch's default; Burn's own default is 1e-5).
    pub epsilon: f64,
}

impl Default for CiderAdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            lr_bert: 5e-5,
            wd_bert: 1e-3,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
        }
    }
}

/// The Adam optimiser of one group, over the whole module `M`.
type GroupAdam<M, B> = OptimizerAdaptor<Adam, M, B>;

/// The serialisable state of a [`GroupedAdam`] over module `M`: per group (in
/// [`ParamGroup::ALL`] order) the Adam state of each parameter, by parameter id.
pub type GroupedAdamRecord<M, B> = [<GroupAdam<M, B> as Optimizer<M, B>>::Record; 3];

/// Adam with the three parameter groups of docs/method.md §6.3.
#[derive(Clone)]
pub struct GroupedAdam<M: AutodiffModule<B>, B: AutodiffBackend> {
    /// One optimiser per group, in [`ParamGroup::ALL`] order.
    optimizers: [GroupAdam<M, B>; 3],
    /// Learning rate per group, in [`ParamGroup::ALL`] order.
    learning_rates: [f64; 3],
    grouping: Grouping,
}

impl CiderAdamConfig {
    /// The optimiser for a `Cider` model ([`cider_param_group`]).
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(&self) -> GroupedAdam<M, B> {
        self.init_with_grouping(cider_param_group)
    }

    /// The optimiser for any module, with its own [`Grouping`].
    pub fn init_with_grouping<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        grouping: Grouping,
    ) -> GroupedAdam<M, B> {
        let adam = |decay: Option<f32>| {
            AdamConfig::new()
                .with_beta_1(self.beta_1 as f32)
                .with_beta_2(self.beta_2 as f32)
                .with_epsilon(self.epsilon as f32)
                .with_weight_decay(decay.map(WeightDecayConfig::new))
                .init::<B, M>()
        };
        GroupedAdam {
            optimizers: [adam(Some(self.wd_bert as f32)), adam(None), adam(None)],
            learning_rates: [self.lr_bert, self.lr_bert, self.lr],
            grouping,
        }
    }
}

impl<M: AutodiffModule<B>, B: AutodiffBackend> GroupedAdam<M, B> {
    /// One Adam update of every parameter that has a gradient in `grads`, each with its
    /// group's learning rate and weight decay. Parameters without a gradient are unchanged
    /// (and their state is not advanced), as with PyTorch's `grad is None`.
    pub fn step(&mut self, module: M, grads: GradientsParams) -> M {
        let mut splitter = GroupSplitter::new(grads, self.grouping);
        module.visit(&mut splitter);
        let mut module = module;
        for ((optimizer, lr), grads) in self
            .optimizers
            .iter_mut()
            .zip(self.learning_rates)
            .zip(splitter.groups)
        {
            if !grads.is_empty() {
                module = optimizer.step(lr, module, grads);
            }
        }
        module
    }

    /// The learning rate of `group`.
    pub fn learning_rate(&self, group: ParamGroup) -> f64 {
        self.learning_rates[group.index()]
    }

    /// The group of every parameter of `module`, by parameter id.
    pub fn groups_of(&self, module: &M) -> HashMap<ParamId, ParamGroup> {
        let mut collector = GroupCollector {
            path: Vec::new(),
            grouping: self.grouping,
            groups: HashMap::new(),
        };
        module.visit(&mut collector);
        collector.groups
    }

    /// The optimiser state, for checkpoints.
    pub fn to_record(&self) -> GroupedAdamRecord<M, B> {
        self.optimizers.each_ref().map(Optimizer::to_record)
    }

    /// Restores a state saved with [`GroupedAdam::to_record`] (parameter ids must be those of
    /// the module saved with it).
    pub fn load_record(self, record: GroupedAdamRecord<M, B>) -> Self {
        let [a, b, c] = self.optimizers;
        let [ra, rb, rc] = record;
        Self {
            optimizers: [a.load_record(ra), b.load_record(rb), c.load_record(rc)],
            ..self
        }
    }
}

/// Moves each gradient into its group's [`GradientsParams`], tracking the module path.
struct GroupSplitter {
    path: Vec<String>,
    grouping: Grouping,
    source: GradientsParams,
    groups: [GradientsParams; 3],
}

impl GroupSplitter {
    fn new(source: GradientsParams, grouping: Grouping) -> Self {
        Self {
            path: Vec::new(),
            grouping,
            source,
            groups: Default::default(),
        }
    }
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GroupSplitter {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.source.remove::<B::InnerBackend, D>(param.id) {
            let group = (self.grouping)(&self.path);
            self.groups[group.index()].register::<B::InnerBackend, D>(param.id, grad);
        }
    }
}

/// Records the group of every float parameter.
struct GroupCollector {
    path: Vec<String>,
    grouping: Grouping,
    groups: HashMap<ParamId, ParamGroup>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GroupCollector {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.groups.insert(param.id, (self.grouping)(&self.path));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use burn::backend::flex::FlexDevice;
    use burn::backend::{Autodiff, Flex};
    use burn::module::Module;
    use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
    use burn::tensor::backend::Backend;
    use cider_maci::full_model::{Cider, CiderConfig};
    use cider_model::bert::BertConfig;
    use cider_model::network_config::{Alignment, NetworkConfig, NetworkOptions};
    use cider_model::weights::WeightFile;

    use super::*;

    type AB = Autodiff<Flex>;

    /// One parameter vector per group.
    #[derive(Module, Debug)]
    struct Toy<B: Backend> {
        decayed: Param<Tensor<B, 1>>,
        plain: Param<Tensor<B, 1>>,
        rest: Param<Tensor<B, 1>>,
    }

    fn toy_group(path: &[String]) -> ParamGroup {
        match path.first().map(String::as_str) {
            Some("decayed") => ParamGroup::BertDecay,
            Some("plain") => ParamGroup::BertNoDecay,
            _ => ParamGroup::Rest,
        }
    }

    const W0: [f32; 4] = [1.0, -2.0, 0.5, 0.25];
    /// Constant loss gradients `c` (loss = Σ c·w); the zero makes the decay term the whole
    /// gradient of its element, and 1e-6 is a gradient where ε = 1e-8 (not Burn's 1e-5)
    /// matters.
    const C: [f32; 4] = [0.3, 0.0, -1.5, 1e-6];

    fn toy() -> Toy<AB> {
        let device = FlexDevice;
        let p = || Param::from_tensor(Tensor::from_floats(W0, &device));
        Toy {
            decayed: p(),
            plain: p(),
            rest: p(),
        }
    }

    /// `∇ Σ_p c·p` for the parameters selected by `which`.
    fn grads(toy: &Toy<AB>, which: [bool; 3]) -> GradientsParams {
        let c = Tensor::<AB, 1>::from_floats(C, &FlexDevice);
        let params = [&toy.decayed, &toy.plain, &toy.rest];
        let loss = params
            .into_iter()
            .zip(which)
            .filter(|(_, on)| *on)
            .map(|(p, _)| (p.val() * c.clone()).sum())
            .reduce(|a, b| a + b)
            .expect("at least one parameter");
        GradientsParams::from_grads(loss.backward(), toy)
    }

    fn values(p: &Param<Tensor<AB, 1>>) -> Vec<f32> {
        p.val().into_data().to_vec().expect("f32")
    }

    /// PyTorch's Adam written out in f64: `g ← c + λθ`, `m ← β₁m + (1−β₁)g`,
    /// `v ← β₂v + (1−β₂)g²`, `θ ← θ − lr · (m / (1−β₁ᵗ)) / (sqrt(v / (1−β₂ᵗ)) + ε)`.
    fn reference_adam(w0: f32, c: f32, lr: f64, decay: f64, steps: i32) -> f64 {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        let (mut w, mut m, mut v) = (f64::from(w0), 0.0, 0.0);
        for t in 1..=steps {
            let g = f64::from(c) + decay * w;
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            let m_hat = m / (1.0 - b1.powi(t));
            let v_hat = v / (1.0 - b2.powi(t));
            w -= lr * m_hat / (v_hat.sqrt() + eps);
        }
        w
    }

    fn config() -> CiderAdamConfig {
        CiderAdamConfig {
            lr: 0.1,
            lr_bert: 0.01,
            wd_bert: 0.1,
            ..CiderAdamConfig::default()
        }
    }

    fn assert_params(got: &[f32], want: impl Fn(f32, f32) -> f64, what: &str) {
        for ((&g, &w0), &c) in got.iter().zip(&W0).zip(&C) {
            let want = want(w0, c);
            assert!(
                (f64::from(g) - want).abs() < 2e-6,
                "{what}: got {g}, want {want}"
            );
        }
    }

    /// Two steps of each group against the hand-written PyTorch update: coupled decay (the
    /// zero-gradient element moves by ≈ lr, not by lr·λ·θ as decoupled AdamW would), the
    /// group learning rates, and bias correction at t = 2.
    #[test]
    fn two_steps_match_pytorch_adam_with_coupled_decay() {
        let mut optim = config().init_with_grouping::<AB, Toy<AB>>(toy_group);
        let mut model = toy();
        for _ in 0..2 {
            let g = grads(&model, [true; 3]);
            model = optim.step(model, g);
        }
        assert_params(
            &values(&model.decayed),
            |w, c| reference_adam(w, c, 0.01, 0.1, 2),
            "decayed",
        );
        assert_params(
            &values(&model.plain),
            |w, c| reference_adam(w, c, 0.01, 0.0, 2),
            "plain",
        );
        assert_params(
            &values(&model.rest),
            |w, c| reference_adam(w, c, 0.1, 0.0, 2),
            "rest",
        );
        // Coupled: θ = −2 with c = 0 moves by ≈ 2·lr_bert = 0.02 towards 0 (decoupled AdamW
        // would move it by 2·lr_bert·λ·|θ| = 0.004).
        let moved = f64::from(values(&model.decayed)[1]) + 2.0;
        assert!((moved - 0.02).abs() < 1e-4, "{moved}");
    }

    /// A step whose gradients cover only the `rest` group leaves the other groups (even the
    /// decayed one) untouched and without state, like PyTorch's `grad is None`.
    #[test]
    fn parameters_without_gradient_are_untouched() {
        let mut optim = config().init_with_grouping::<AB, Toy<AB>>(toy_group);
        let model = toy();
        let g = grads(&model, [false, false, true]);
        let model = optim.step(model, g);
        assert_eq!(values(&model.decayed), W0);
        assert_eq!(values(&model.plain), W0);
        assert_params(
            &values(&model.rest),
            |w, c| reference_adam(w, c, 0.1, 0.0, 1),
            "rest",
        );
        let record = optim.to_record();
        assert_eq!(record.each_ref().map(|r| r.len()), [0, 0, 1]);
    }

    /// Saving the state after one step and resuming from the bytes gives the same second
    /// step as carrying on (moments and per-parameter step counts survive).
    #[test]
    fn record_round_trip_resumes_identically() {
        let mut optim = config().init_with_grouping::<AB, Toy<AB>>(toy_group);
        let model = toy();
        let g = grads(&model, [true; 3]);
        let model = optim.step(model, g);

        let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::new();
        let bytes = Recorder::<AB>::record(&recorder, optim.to_record(), ()).expect("save");
        let record: GroupedAdamRecord<Toy<AB>, AB> =
            recorder.load(bytes, &FlexDevice).expect("load");
        let mut resumed = config()
            .init_with_grouping::<AB, Toy<AB>>(toy_group)
            .load_record(record);

        let g = grads(&model, [true; 3]);
        let carried_on = optim.step(model.clone(), g);
        let g = grads(&model, [true; 3]);
        let resumed_model = resumed.step(model, g);
        for (a, b) in [
            (&carried_on.decayed, &resumed_model.decayed),
            (&carried_on.plain, &resumed_model.plain),
            (&carried_on.rest, &resumed_model.rest),
        ] {
            assert_eq!(values(a), values(b));
        }
        assert_params(
            &values(&resumed_model.decayed),
            |w, c| reference_adam(w, c, 0.01, 0.1, 2),
            "decayed",
        );
    }

    /// Numbers of scalars in each group of a `Cider` with the golden tiny BERT equal those of
    /// the reference rule applied to the reference `state_dict` names: BERT keys (pooler
    /// excluded) containing "bias" or "LayerNorm" are not decayed.
    #[test]
    fn cider_groups_follow_the_reference_names() {
        let _rng = crate::testkit::backend_rng();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/torch-golden/mosi-unaligned-small");
        let golden: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("golden.json")).expect("golden.json"),
        )
        .expect("json");
        let bert = BertConfig::from_json_str(&golden["bert"].to_string(), "bert").expect("bert");
        let network = NetworkConfig::new(64, 5, 20, 16, 40, 48, Alignment::Unaligned)
            .with_options(NetworkOptions {
                multimodal_layers: 2,
                ..NetworkOptions::default()
            })
            .with_bert_encoder(bert);
        let model: Cider<AB> = CiderConfig::new(network, 3)
            .init(&FlexDevice)
            .expect("valid");

        let optim = CiderAdamConfig::default().init::<AB, Cider<AB>>();
        let groups = optim.groups_of(&model);
        let mut ours = [0usize; 3];
        let mut sizes = ParamSizes(HashMap::new());
        model.visit(&mut sizes);
        for (id, group) in groups {
            ours[group.index()] += sizes.0[&id];
        }

        let file = WeightFile::read_safetensors(&dir.join("model.safetensors")).expect("weights");
        let mut reference = [0usize; 3];
        for key in file.keys() {
            let numel: usize = file.shape(&key).expect("shape").iter().product();
            let group = match key.strip_prefix("text_model.model.") {
                Some(rest) if rest.starts_with("pooler.") => continue,
                Some(rest) if rest.contains("bias") || rest.contains("LayerNorm") => 1,
                Some(_) => 0,
                None if key.ends_with("embed_positions.pe") || key.ends_with(".version") => {
                    continue;
                }
                None => 2,
            };
            reference[group] += numel;
        }
        assert_eq!(ours, reference);
        assert!(ours.iter().all(|&n| n > 0), "{ours:?}");
        assert_eq!(optim.learning_rate(ParamGroup::BertNoDecay), 5e-5);
        assert_eq!(optim.learning_rate(ParamGroup::Rest), 1e-3);
    }

    /// Number of scalars of each float parameter.
    struct ParamSizes(HashMap<ParamId, usize>);

    impl<B: Backend> ModuleVisitor<B> for ParamSizes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.insert(param.id, param.shape().num_elements());
        }
    }
}
