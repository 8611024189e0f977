//! Training MACI around any backbone, in memory (docs/method.md §13.1): the loop a user's own
//! Burn module gets without writing one.
//!
//! Each epoch draws the training missing view (§3.2), runs the single missing-view pass of
//! [`Maci::log_probs`] (NLL of the prediction, plus the backbone's auxiliary loss) and makes one
//! Adam update per batch; then it chooses τ on the validation split and keeps the weights of the
//! best validation headline (§6.4), stopping after `patience` epochs without improvement. The
//! settings come from a [`TrainConfig`]: `task`, `seed`, `train_rng`, `epochs`, `patience`,
//! `batch_size`, `[optim]` and `[maci]`; its data, model and loss tables are not read, and
//! nothing is written to disk. Deterministic for a seed on one backend.

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, BackendTypes};
use cider_data::batch::{Batch, Order, batch_indices};
use cider_data::dataset::{Dataset, Split};
use cider_data::missing::TrainMissing;
use cider_maci::counterfactual::Tau;
use cider_maci::full_model::Maci;
use cider_maci::inference::{Debiasing, Sweep, predict};
use cider_maci::prototypes::{Prototypes, TextFeatures};
use cider_model::backbone::Backbone;
use cider_model::batch_input::BatchView;
use cider_model::network::InputMasks;

use crate::early_stopping::EarlyStopping;
use crate::evaluate::{EvalData, ProtocolConfig, ProtocolResults, run_protocol};
use crate::maci_inputs::MaciInputs;
use crate::mssd::losses::nll;
use crate::mssd::read_loss;
use crate::optim::GroupedAdam;
use crate::train_config::TrainConfig;
use crate::trainer::{TrainError, epoch_seed};

/// One finished epoch of [`fit_backbone`].
#[derive(Debug, Clone, PartialEq)]
pub struct FitEpoch {
    /// 1-based.
    pub epoch: usize,
    /// Mean training loss per sample.
    pub train_loss: f64,
    /// The validation headline metric at the validation τ.
    pub value: f64,
    /// That τ (0 for the linear classifier).
    pub tau: f64,
    /// Whether this epoch is the best so far.
    pub improved: bool,
}

/// What [`fit_backbone`] returns: the best epoch's model and what evaluating it needs.
#[derive(Debug)]
pub struct Fitted<B: AutodiffBackend, M: AutodiffModule<B>> {
    /// The weights of the best validation epoch, on the inner (non-autodiff) backend.
    pub model: Maci<B::InnerBackend, M::InnerModule>,
    /// The best epoch (1-based).
    pub best_epoch: usize,
    /// Its validation headline value.
    pub best_value: f64,
    /// Its validation τ.
    pub tau: Tau,
    /// The training prototypes and prior (docs/method.md §7.2).
    pub prototypes: Prototypes,
    /// The bias-word ids of the training split (docs/method.md §4.1).
    pub bias_words: Vec<u32>,
    /// Every epoch, in order.
    pub history: Vec<FitEpoch>,
}

impl<B, M> Fitted<B, M>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    M::InnerModule: Backbone<B::InnerBackend>,
{
    /// Runs the evaluation protocol (docs/method.md §8.2) on `evaluated`, τ chosen on the
    /// validation split of `train_data` (the data it was trained on) by `protocol.tau`, with the
    /// test-time prototypes of `config.maci.test_prototypes`. A model with the linear head is
    /// evaluated without counterfactual debiasing (τ = 0), whatever `protocol.debiasing` says.
    ///
    /// # Errors
    /// Splits of another layout than the model's and protocol errors.
    pub fn evaluate(
        &self,
        config: &TrainConfig,
        train_data: &Dataset,
        evaluated: &Split,
        protocol: &ProtocolConfig,
        device: &<B::InnerBackend as BackendTypes>::Device,
    ) -> Result<ProtocolResults, TrainError> {
        let rule = &config.maci.test_prototypes;
        let task = config.task;
        let valid_prototypes = rule.build(
            &self.prototypes,
            &train_data.valid,
            task,
            TextFeatures::FromSplit,
        )?;
        let prototypes = rule.build(&self.prototypes, evaluated, task, TextFeatures::FromSplit)?;
        let data = EvalData {
            task,
            valid: &train_data.valid,
            evaluated,
            bias_words: &self.bias_words,
            valid_prototypes: &valid_prototypes,
            prototypes: &prototypes,
        };
        let plain;
        let protocol = match self.model.linear_head {
            Some(_) => {
                plain = ProtocolConfig {
                    debiasing: Debiasing::NoMaci,
                    ..protocol.clone()
                };
                &plain
            }
            None => protocol,
        };
        Ok(run_protocol(&self.model, &data, protocol, device, |_| {})?)
    }
}

/// Trains `model` on `data` with the settings of `config` (see the module documentation).
///
/// # Errors
/// An invalid configuration, a dataset without the precomputed text features the prototypes
/// need, model input errors, a non-finite loss, and metric errors (a validation split without
/// any non-neutral sample).
pub fn fit_backbone<B, M>(
    model: Maci<B, M>,
    config: &TrainConfig,
    data: &Dataset,
    device: &B::Device,
    mut on_epoch: impl FnMut(&FitEpoch),
) -> Result<Fitted<B, M>, TrainError>
where
    B: AutodiffBackend,
    M: Backbone<B> + AutodiffModule<B>,
    M::InnerModule: Backbone<B::InnerBackend>,
{
    config.validate("the training configuration")?;
    let maci = MaciInputs::new(config, data)?;
    let missing = TrainMissing::new(config.train_rng, config.seed);
    let mut optim: GroupedAdam<Maci<B, M>, B> = config.optim.init();
    let mut stopping = EarlyStopping::new(config.patience);
    let train = &data.train;
    let labels = train.labels(config.task);
    let source = model.network.text_source();
    let mut model = Some(model);
    let mut best = None;
    let mut history = Vec::new();
    for epoch in 1..=config.epochs {
        B::seed(device, epoch_seed(config.seed, epoch));
        let order = Order::Shuffled { seed: config.seed };
        let mut loss_sum = 0.0;
        for (number, indices) in batch_indices(train.n, config.batch_size, order, epoch as u64)
            .iter()
            .enumerate()
        {
            let view = missing.view(train, indices, epoch as u64)?;
            let batch = Batch::<B>::new(train, indices, &view, None, labels, device);
            let input = source.view_of(&batch, BatchView::Missing, &train.name)?;
            let confounders = maci.prototypes.confounders::<B>(indices.len(), device);
            let current = model.take().ok_or(TrainError::Poisoned)?;
            let (pred, out) = current.log_probs(input, &InputMasks::of(&batch), &confounders)?;
            let loss = match out.auxiliary_loss {
                Some(extra) => nll(pred, batch.labels) + extra,
                None => nll(pred, batch.labels),
            };
            let value = read_loss(loss.clone());
            if !value.is_finite() {
                return Err(TrainError::NonFiniteLoss {
                    epoch,
                    batch: number + 1,
                    loss: value,
                    lr: config.optim.lr,
                });
            }
            loss_sum += value * indices.len() as f64;
            let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &current);
            model = Some(optim.step(current, grads));
        }
        let trained = model.as_ref().ok_or(TrainError::Poisoned)?.valid();
        let set = &maci.valid;
        let out = predict(
            &trained,
            &data.valid,
            &set.view,
            set.cf_ids.as_deref(),
            &set.prototypes,
            config.batch_size,
            device,
        )?;
        let sweep = Sweep::new(config.task, &out, data.valid.labels(config.task))?;
        let tau = sweep.best_tau();
        let value = sweep.at(tau).headline().1;
        let improved = stopping.update(epoch, value);
        let record = FitEpoch {
            epoch,
            train_loss: loss_sum / train.n.max(1) as f64,
            value,
            tau: tau.value(),
            improved,
        };
        on_epoch(&record);
        history.push(record);
        if improved {
            best = Some((trained, epoch, value, tau));
        }
        if stopping.should_stop() {
            break;
        }
    }
    let (model, best_epoch, best_value, tau) = best.ok_or_else(|| TrainError::Unusable {
        source_name: data.source.clone(),
        message: "no epoch gave a finite validation metric".into(),
    })?;
    Ok(Fitted {
        model,
        best_epoch,
        best_value,
        tau,
        prototypes: maci.prototypes,
        bias_words: maci.bias_words,
        history,
    })
}

#[cfg(test)]
mod tests {
    use burn::backend::flex::FlexDevice;
    use burn::backend::{Autodiff, Flex};
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Tensor;
    use burn::tensor::backend::Backend;
    use cider_data::synth::{SynthConfig, Variant};
    use cider_maci::full_model::{Classifier, MaciConfig};
    use cider_model::ModelError;
    use cider_model::backbone::BackboneOutput;
    use cider_model::network::{TextInput, ViewInput};

    use super::*;
    use crate::train_config::DataConfig;

    type AB = Autodiff<Flex>;

    /// A user's backbone: the time means of the three modalities through one Linear.
    #[derive(Module, Debug)]
    struct MeanLinear<B: Backend> {
        linear: Linear<B>,
    }

    impl<B: Backend> Backbone<B> for MeanLinear<B> {
        fn representation_dim(&self) -> usize {
            self.linear.weight.dims()[1]
        }

        fn forward_view(
            &self,
            view: ViewInput<B>,
            _masks: &InputMasks<B>,
        ) -> Result<BackboneOutput<B>, ModelError> {
            let TextInput::Features(text) = view.text else {
                return Err(ModelError::Input {
                    what: "text".into(),
                    message: "features expected".into(),
                });
            };
            let mean = |x: Tensor<B, 3>| {
                let [b, _, d] = x.dims();
                x.mean_dim(1).reshape([b, d])
            };
            let joint = Tensor::cat(vec![mean(text), mean(view.audio), mean(view.vision)], 1);
            Ok(BackboneOutput::new(self.linear.forward(joint)))
        }
    }

    fn setting(classifier: Classifier) -> (TrainConfig, Dataset) {
        let mut config = TrainConfig {
            epochs: 2,
            batch_size: 16,
            data: DataConfig::Synthetic(SynthConfig {
                n_train: 48,
                n_valid: 24,
                n_test: 24,
                variant: Variant::Iid,
                ..SynthConfig::default()
            }),
            ..TrainConfig::default()
        };
        config.maci.classifier = classifier;
        let data = config.data.load().expect("synthetic data");
        (config, data)
    }

    fn fit(classifier: Classifier) -> (Fitted<AB, MeanLinear<AB>>, TrainConfig, Dataset) {
        let (config, data) = setting(classifier);
        let device = FlexDevice;
        AB::seed(&device, 7);
        let d = data.train.dims;
        let backbone = MeanLinear {
            linear: LinearConfig::new(d.d_l + d.d_a + d.d_v, 6).init(&device),
        };
        let model = MaciConfig::new(3, [d.d_l, d.d_a, d.d_v], 4)
            .with_classifier(classifier)
            .init::<AB, _>(backbone, &device)
            .expect("valid");
        let fitted = fit_backbone(model, &config, &data, &device, |_| {}).expect("trains");
        (fitted, config, data)
    }

    /// Two fits of one seed give the same epochs; the best epoch is the history's maximum; the
    /// protocol runs on the fitted model, and the linear head is evaluated at τ = 0.
    #[test]
    fn fit_is_deterministic_and_evaluates() {
        let _rng = crate::testkit::backend_rng();
        let (a, config, data) = fit(Classifier::Maci);
        let (b, _, _) = fit(Classifier::Maci);
        assert_eq!(a.history, b.history);
        assert_eq!(a.history.len(), 2);
        let best = a
            .history
            .iter()
            .map(|e| e.value)
            .fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(a.best_value, best);
        assert!(a.history.iter().all(|e| e.train_loss.is_finite()));
        let protocol = ProtocolConfig {
            rates: vec![0.0, 0.5],
            ..ProtocolConfig::default()
        };
        let results = a
            .evaluate(&config, &data, &data.test, &protocol, &FlexDevice)
            .expect("protocol");
        assert_eq!(results.points.len(), 2);
        assert_eq!(results.rule_taus.len(), 5);

        let (plain, config, data) = fit(Classifier::Linear);
        assert!(plain.history.iter().all(|e| e.tau == 0.0));
        let results = plain
            .evaluate(&config, &data, &data.test, &protocol, &FlexDevice)
            .expect("protocol");
        assert_eq!(results.tau.value(), 0.0);
        assert!(results.rule_taus.is_empty());
    }
}
