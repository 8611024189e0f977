//! The training loop (docs/method.md §6.3, §6.4; §11.1-3 and 15).
//!
//! Per epoch `e = 1, 2, …`:
//! 1. the backend's random stream is re-seeded from `(seed, e)`, the training split is shuffled
//!    from `(seed, e)` and cut into batches of `B` (last one partial), and every sample gets
//!    fresh RMFM training masks from `(seed, e, index)` ([`TrainMissing`]); so an epoch depends
//!    only on the weights, the optimiser state and `(seed, e)`, which makes resuming exact;
//! 2. each batch goes through the MSSD step ([`mssd_step`]) with the training confounders
//!    (train prototypes `z_i` and the training class prior);
//! 3. the selection split (validation by default) is evaluated at missing rate 0 with MACI:
//!    factual and counterfactual passes (bias words from the training split), test-time
//!    confounders, and the headline metric (`Non0_acc_2` / `Acc_7`) at τ chosen on the
//!    validation split;
//! 4. early stopping: the patience counter is reset on a strict improvement and decremented
//!    otherwise; training stops when it reaches 0 or after `epochs` epochs;
//! 5. `best/` is replaced when the metric improved, then `checkpoint/`, then `metrics.csv` and
//!    `metrics.json` (see [`crate::checkpoint`] for the layout and crash safety).
//!
//! With the precomputed text encoder, a missing token's feature row is zeroed (the feature
//! analogue of the reference's `[UNK]` substitution), as in [`cider_maci::inference::predict`].

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use cider_data::batch::{Batch, Order, batch_indices};
use cider_data::dataset::{Dataset, Split};
use cider_data::missing::TrainMissing;
use cider_data::splitmix::{GOLDEN_GAMMA, mix64};
use cider_maci::MaciError;
use cider_maci::counterfactual::{Tau, TauSelection};
use cider_maci::full_model::{Cider, CiderConfig, Confounders};
use cider_maci::inference::{Predictions, Sweep, predict};
use cider_maci::metrics::Metric;
use cider_maci::prototypes::Prototypes;
use cider_model::batch_input::{BatchView, check_bert_text};
use cider_model::hf::HfBertFolder;
use cider_model::memory_estimate::check_memory;
use cider_model::network::{InputMasks, TextEncoder};
use cider_model::network_config::TextSource;

use crate::checkpoint::{
    self, BEST_DIR, CHECKPOINT_DIR, MODEL_CONFIG, MODEL_RECORD, OPTIM_RECORD, STATE_FILE,
};
use crate::early_stopping::EarlyStopping;
use crate::epoch_record::{CSV_HEADER, EpochRecord};
use crate::maci_inputs::{EvalSet, MaciInputs};
use crate::mssd::{MissingMasks, MssdBatch, MssdConfig, StepLosses, mssd_step};
use crate::optim::GroupedAdam;
use crate::run_dir::{MACI_FILE, METRICS_CSV, METRICS_JSON, check_run_dir, start_run_dir};
use crate::run_files::check_trainer_state;
use crate::run_state::{BestInfo, MaciState, TrainerState};
use crate::train_config::TrainConfig;
pub use crate::train_error::TrainError;

/// What [`Trainer::run`] reports while it works, in this order for every epoch: each
/// training batch, then the start of the selection split's evaluation, then the finished epoch.
#[derive(Debug, Clone, Copy)]
pub enum TrainProgress<'a> {
    /// Training batch `batch` of `batches` (1-based) of epoch `epoch` of at most `epochs`
    /// finished with the logged loss `loss` (docs/method.md §6.2).
    Batch {
        /// 1-based epoch.
        epoch: usize,
        /// The most epochs the run trains.
        epochs: usize,
        /// 1-based batch within the epoch.
        batch: usize,
        /// Batches per epoch.
        batches: usize,
        /// The batch's logged loss.
        loss: f64,
    },
    /// Epoch `epoch` is trained; the selection split is being evaluated.
    Evaluating {
        /// 1-based epoch.
        epoch: usize,
    },
    /// Epoch finished and written to the run directory.
    Epoch(&'a EpochRecord),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Epochs finished.
    pub epochs: usize,
    /// Whether patience ran out before `epochs`.
    pub stopped_early: bool,
    /// The best epoch's record.
    pub best: Option<EpochRecord>,
}

/// A training run: data, model, optimiser and state. See the module docs for one epoch.
pub struct Trainer<B: AutodiffBackend> {
    config: TrainConfig,
    device: B::Device,
    data: Dataset,
    model_config: CiderConfig,
    /// `None` only after a failed step.
    model: Option<Cider<B>>,
    optim: GroupedAdam<Cider<B>, B>,
    step: MssdConfig,
    missing: TrainMissing,
    maci: MaciInputs,
    state: TrainerState,
}

/// The backend seed of epoch `e` (SplitMix64 of `seed` and `e`): dropout masks depend only on
/// `(seed, e)`. Epoch 0 seeds the initialisation.
pub fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    mix64(seed ^ (epoch as u64).wrapping_mul(GOLDEN_GAMMA))
}

/// The model for `data`: sizes from the data, text encoder from the configuration (a BERT's
/// architecture from its folder's `config.json`). The prototypes must fit the MCM's
/// `d_l + d_a + d_v`.
fn model_config(
    config: &TrainConfig,
    data: &Dataset,
    prototypes: &Prototypes,
) -> Result<CiderConfig, TrainError> {
    let bert = match (config.model.text_encoder, &config.model.bert_dir) {
        (TextSource::Bert, Some(dir)) => Some(HfBertFolder::open(dir)?.config),
        _ => None,
    };
    let model_config = config.cider_config(data.dims, data.aligned, bert);
    let d_l = model_config.network.d_l;
    if prototypes.feature_len() != d_l + data.dims.d_a + data.dims.d_v {
        return Err(TrainError::Unusable {
            source_name: data.source.clone(),
            message: format!(
                "the prototypes have {} features (text {} + audio {} + vision {}), but the \
                 text encoder gives d_l = {d_l}",
                prototypes.feature_len(),
                data.dims.d_l,
                data.dims.d_a,
                data.dims.d_v,
            ),
        });
    }
    model_config.network.validate()?;
    check_memory(
        &model_config.network,
        model_config.num_classes,
        config.batch_size,
        &format!("the configuration of {}", config.out_dir.display()),
    )?;
    if let Some(bert) = &model_config.network.bert {
        for split in data.splits() {
            check_bert_text(split, &data.source, bert)?;
        }
    }
    Ok(model_config)
}

impl<B: AutodiffBackend> Trainer<B> {
    /// Prepares a run in `config.out_dir`: a fresh one, or with `resume` the continuation of
    /// the run whose checkpoint is there (same configuration up to `out_dir`, `epochs`,
    /// `patience`; the new `patience` applies from the next reset).
    ///
    /// # Errors
    /// A fresh run over an existing checkpoint, `resume` without one, a configuration that
    /// differs from the checkpoint's, unreadable data or BERT folder, data without the `text`
    /// features the prototypes need, and unreadable checkpoints.
    pub fn open(config: TrainConfig, device: B::Device, resume: bool) -> Result<Self, TrainError> {
        check_run_dir(&config, resume)?;
        let data = config.data.load()?;
        let maci = MaciInputs::new(&config, &data)?;
        let model_config = model_config(&config, &data, &maci.prototypes)?;

        B::seed(&device, epoch_seed(config.seed, 0));
        let mut model = model_config.init::<B>(&device)?;
        let mut optim = config.optim.init::<B, Cider<B>>();
        let run_dir = &config.out_dir;
        let state = if resume {
            let dir = run_dir.join(CHECKPOINT_DIR);
            let saved: serde_json::Value = checkpoint::read_json(&dir.join(MODEL_CONFIG))?;
            if serde_json::to_value(&model_config).ok().as_ref() != Some(&saved) {
                return Err(TrainError::RunDir {
                    dir: run_dir.clone(),
                    message: format!(
                        "{CHECKPOINT_DIR}/{MODEL_CONFIG} describes another model than this \
                         configuration and data give (was the data changed?)"
                    ),
                });
            }
            let against = "this configuration and data";
            model = checkpoint::load_module_record(model, &dir, MODEL_RECORD, against, &device)?;
            let against = format!("{CHECKPOINT_DIR}/{MODEL_RECORD}.mpk");
            let record = checkpoint::load_optimizer_record::<B, _, _>(
                &model,
                &dir,
                OPTIM_RECORD,
                &against,
                &device,
            )?;
            optim = optim.load_record(record);
            let state_path = dir.join(STATE_FILE);
            let mut state: TrainerState = checkpoint::read_json(&state_path)?;
            check_trainer_state(&state, &state_path)?;
            state.stopping.patience = config.patience;
            state
        } else {
            let bert = config.model.text_encoder == TextSource::Bert;
            if let Some(dir) = config.model.bert_dir.as_deref().filter(|_| bert) {
                let pretrained = HfBertFolder::open(dir)?.load_bert::<B>(&device)?;
                model.network = model
                    .network
                    .with_text_encoder(TextEncoder::Bert(pretrained));
            }
            checkpoint::materialize(&model);
            start_run_dir(&config)?;
            TrainerState {
                epoch: 0,
                stopping: EarlyStopping::new(config.patience),
                history: Vec::new(),
            }
        };
        let trainer = Self {
            missing: TrainMissing::new(config.train_rng, config.seed),
            step: config.effective_step(),
            config,
            device,
            data,
            model_config,
            model: Some(model),
            optim,
            maci,
            state,
        };
        trainer.write_metrics()?;
        Ok(trainer)
    }
    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.config.out_dir
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Finished epochs, early-stopping counter and history.
    pub fn state(&self) -> &TrainerState {
        &self.state
    }

    /// The current model (`None` after a failed step).
    pub fn model(&self) -> Option<&Cider<B>> {
        self.model.as_ref()
    }

    /// True when `epochs` epochs are done or the patience ran out.
    pub fn is_finished(&self) -> bool {
        self.state.epoch >= self.config.epochs || self.state.stopping.should_stop()
    }

    /// Trains until [`Trainer::is_finished`], telling `on_progress` about every batch and
    /// every finished epoch ([`TrainProgress`]); `|_| {}` trains silently.
    ///
    /// # Errors
    /// As [`Trainer::run_epoch`].
    pub fn run(
        &mut self,
        mut on_progress: impl FnMut(TrainProgress<'_>),
    ) -> Result<TrainSummary, TrainError> {
        while !self.is_finished() {
            let record = self.run_epoch(&mut on_progress)?;
            on_progress(TrainProgress::Epoch(&record));
        }
        let best = self.state.stopping.best_epoch.and_then(|epoch| {
            self.state
                .history
                .iter()
                .find(|r| r.epoch == epoch)
                .cloned()
        });
        Ok(TrainSummary {
            run_dir: self.config.out_dir.clone(),
            epochs: self.state.epoch,
            stopped_early: self.state.stopping.should_stop()
                && self.state.epoch < self.config.epochs,
            best,
        })
    }

    /// Trains one epoch, evaluates the selection split, updates early stopping and writes
    /// `best/` (if improved), `checkpoint/` and the metrics files.
    ///
    /// # Errors
    /// Model input errors (the trainer is then unusable), metric errors (e.g. a split without
    /// any non-neutral sample) and write failures.
    pub fn run_epoch(
        &mut self,
        on_progress: &mut dyn FnMut(TrainProgress<'_>),
    ) -> Result<EpochRecord, TrainError> {
        let epoch = self.state.epoch + 1;
        let (losses, train_seconds) = self.train_epoch(epoch, on_progress)?;
        on_progress(TrainProgress::Evaluating { epoch });
        let model = self.model.as_ref().ok_or(TrainError::Poisoned)?;
        let started = Instant::now();
        let (metric, value, tau) = match self.selection_metric(&model.valid()) {
            Err(TrainError::Maci(MaciError::NonFinite { what, value, .. })) => {
                return Err(TrainError::NonFinitePrediction {
                    epoch,
                    what,
                    value,
                    lr: self.config.optim.lr,
                });
            }
            other => other?,
        };
        let eval_seconds = started.elapsed().as_secs_f64();
        let improved = self.state.stopping.update(epoch, value);
        let best_epoch = self.state.stopping.best_epoch.unwrap_or(epoch);
        let split = self
            .maci
            .test
            .as_ref()
            .unwrap_or(&self.maci.valid)
            .name
            .clone();
        let n = self.data.train.n as f64;
        let record = EpochRecord {
            epoch,
            train_loss: losses.logged,
            task_loss: losses.task,
            task_m_loss: losses.distillation.map(|d| d[0]),
            joint_rep_loss: losses.distillation.map(|d| d[1]),
            attn_loss: losses.distillation.map(|d| d[2]),
            recon_text: losses.distillation.map(|d| d[3]),
            recon_audio: losses.distillation.map(|d| d[4]),
            recon_vision: losses.distillation.map(|d| d[5]),
            split: split.clone(),
            metric: metric.name().to_string(),
            value,
            tau: tau.value(),
            improved,
            best_epoch,
            train_seconds,
            eval_seconds,
            samples_per_second: n / train_seconds.max(1e-9),
        };
        self.state.epoch = epoch;
        self.state.history.push(record.clone());
        if improved {
            self.write_best(&BestInfo {
                epoch,
                split,
                metric: record.metric.clone(),
                value,
                tau: record.tau,
            })?;
        }
        self.write_checkpoint()?;
        self.write_metrics()?;
        Ok(record)
    }

    /// The training steps of one epoch: per-sample mean losses and seconds.
    fn train_epoch(
        &mut self,
        epoch: usize,
        on_progress: &mut dyn FnMut(TrainProgress<'_>),
    ) -> Result<(EpochLosses, f64), TrainError> {
        B::seed(&self.device, epoch_seed(self.config.seed, epoch));
        let train = &self.data.train;
        let labels = train.labels(self.config.task);
        let order = Order::Shuffled {
            seed: self.config.seed,
        };
        let batches = batch_indices(train.n, self.config.batch_size, order, epoch as u64);
        let started = Instant::now();
        let mut sums = EpochLosses::default();
        for (batch_number, indices) in batches.iter().enumerate() {
            let view = self.missing.view(train, indices, epoch as u64)?;
            let batch = Batch::<B>::new(train, indices, &view, None, labels, &self.device);
            let confounders = self
                .maci
                .prototypes
                .confounders::<B>(indices.len(), &self.device);
            let model = self.model.take().ok_or(TrainError::Poisoned)?;
            let batch = mssd_batch(batch, model.text_encoder(), confounders, &train.name)?;
            let (model, losses) = mssd_step(model, &mut self.optim, batch, &self.step)?;
            self.model = Some(model);
            if !losses.logged().is_finite() {
                return Err(TrainError::NonFiniteLoss {
                    epoch,
                    batch: batch_number + 1,
                    loss: losses.logged(),
                    lr: self.config.optim.lr,
                });
            }
            sums.add(&losses, indices.len());
            on_progress(TrainProgress::Batch {
                epoch,
                epochs: self.config.epochs,
                batch: batch_number + 1,
                batches: batches.len(),
                loss: losses.logged(),
            });
        }
        Ok((sums.mean(train.n), started.elapsed().as_secs_f64()))
    }

    /// The headline metric of the selection split and its τ (docs/method.md §6.4, §11.2-3):
    /// τ from the validation split's sweep (0 for the linear classifier); on the validation
    /// split the value is the metric at that τ; with
    /// [`Selection::TestLeak`](crate::train_config::Selection::TestLeak) it is the test
    /// split's metric at that τ, or its per-metric maximum over τ with
    /// [`TauSelection::Oracle`].
    fn selection_metric(
        &self,
        model: &Cider<B::InnerBackend>,
    ) -> Result<(Metric, f64, Tau), TrainError> {
        let task = self.config.task;
        let headline = Metric::headline(task);
        let valid = self.sweep(model, &self.maci.valid, &self.data.valid)?;
        let tau = valid.best_tau();
        let Some(test) = &self.maci.test else {
            return Ok((headline, valid.at(tau).headline().1, tau));
        };
        let test_sweep = self.sweep(model, test, &self.data.test)?;
        let value = match self.config.maci.tau_selection {
            TauSelection::Validation => test_sweep.at(tau).headline().1,
            TauSelection::Oracle => test_sweep.oracle().headline().1,
        };
        Ok((headline, value, tau))
    }

    /// Predictions of one split and their metrics over τ.
    fn sweep(
        &self,
        model: &Cider<B::InnerBackend>,
        set: &EvalSet,
        split: &Split,
    ) -> Result<Sweep, TrainError> {
        let out: Predictions = predict(
            model,
            split,
            &set.view,
            set.cf_ids.as_deref(),
            &set.prototypes,
            self.config.batch_size,
            &self.device,
        )?;
        let task = self.config.task;
        Ok(Sweep::new(task, &out, split.labels(task))?)
    }

    /// Replaces `best/` with the current model, its selection record and the MACI state.
    fn write_best(&self, info: &BestInfo) -> Result<(), TrainError> {
        let model = self.model.as_ref().ok_or(TrainError::Poisoned)?;
        let maci = MaciState {
            bias_words: self.maci.bias_words.clone(),
            prototypes: self.maci.prototypes.per_class.clone(),
            priors: self.maci.prototypes.priors.clone(),
        };
        checkpoint::replace_dir(&self.config.out_dir.join(BEST_DIR), |dir| {
            checkpoint::save_model(model, &self.model_config, dir)?;
            checkpoint::write_json_atomically(&dir.join(STATE_FILE), info)?;
            checkpoint::write_json_atomically(&dir.join(MACI_FILE), &maci)
        })?;
        Ok(())
    }

    /// Replaces `checkpoint/` with the model, the optimiser state and the trainer state.
    fn write_checkpoint(&self) -> Result<(), TrainError> {
        let model = self.model.as_ref().ok_or(TrainError::Poisoned)?;
        checkpoint::replace_dir(&self.config.out_dir.join(CHECKPOINT_DIR), |dir| {
            checkpoint::save_model(model, &self.model_config, dir)?;
            checkpoint::save_record::<B, _>(self.optim.to_record(), dir, OPTIM_RECORD)?;
            checkpoint::write_json_atomically(&dir.join(STATE_FILE), &self.state)
        })?;
        Ok(())
    }

    /// Rewrites `metrics.csv` and `metrics.json` from the history.
    fn write_metrics(&self) -> Result<(), TrainError> {
        let dir = &self.config.out_dir;
        let mut csv = format!("{CSV_HEADER}\n");
        for record in &self.state.history {
            csv.push_str(&record.csv_row());
            csv.push('\n');
        }
        checkpoint::write_file_atomically(&dir.join(METRICS_CSV), |f| f.write_all(csv.as_bytes()))?;
        checkpoint::write_json_atomically(&dir.join(METRICS_JSON), &self.state.history)?;
        Ok(())
    }
}

/// Per-sample sums (while training) or means (after [`EpochLosses::mean`]) of the step losses.
#[derive(Debug, Clone, Copy, Default)]
struct EpochLosses {
    /// `L_2` (or the task loss without distillation).
    logged: f64,
    /// `L_1`.
    task: f64,
    /// `NLL_m, L_rep, KL_attn, R_t, R_a, R_v` (MSSD only).
    distillation: Option<[f64; 6]>,
}

impl EpochLosses {
    fn add(&mut self, losses: &StepLosses, samples: usize) {
        let w = samples as f64;
        self.logged += w * losses.logged();
        self.task += w * losses.task;
        if let Some(d) = losses.distillation {
            let terms = [
                d.task_m,
                d.joint_rep,
                d.attn,
                d.recon_text,
                d.recon_audio,
                d.recon_vision,
            ];
            let sums = self.distillation.get_or_insert([0.0; 6]);
            for (s, t) in sums.iter_mut().zip(terms) {
                *s += w * t;
            }
        }
    }

    fn mean(self, n: usize) -> Self {
        let n = n.max(1) as f64;
        Self {
            logged: self.logged / n,
            task: self.task / n,
            distillation: self.distillation.map(|d| d.map(|s| s / n)),
        }
    }
}

/// A training [`Batch`] in the form of the MSSD step (the text as `encoder` takes it).
fn mssd_batch<B: Backend>(
    batch: Batch<B>,
    encoder: &TextEncoder<B>,
    confounders: Confounders<B>,
    split: &str,
) -> Result<MssdBatch<B>, TrainError> {
    Ok(MssdBatch {
        complete: encoder.view_of(&batch, BatchView::Complete, split)?,
        missing: encoder.view_of(&batch, BatchView::Missing, split)?,
        masks: InputMasks::of(&batch),
        missing_masks: MissingMasks {
            text: batch.text_missing,
            audio: batch.audio_missing,
            vision: batch.vision_missing,
        },
        labels: batch.labels,
        confounders,
    })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use burn::backend::{Autodiff, Flex};
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::tensor::Tensor;
    use cider_data::synth::{Layout, Variant};

    use super::*;
    use crate::train_config::{DataConfig, Selection};
    use cider_data::synth::SynthConfig;
    use cider_maci::full_model::Classifier;
    use cider_maci::prototypes::TextFeatures;
    use cider_model::network::{PrecomputedText, TextInput};

    type AB = Autodiff<Flex>;

    /// A fresh, empty temporary directory per call (removed by the test on success).
    fn scratch(name: &str) -> PathBuf {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cider-trainer-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// A small synthetic run: MOSI aligned, 48 / 24 / 24 samples, D 8, one MCT layer.
    fn tiny(out_dir: &Path, epochs: usize) -> TrainConfig {
        let mut c = TrainConfig {
            out_dir: out_dir.to_path_buf(),
            epochs,
            batch_size: 16,
            data: DataConfig::Synthetic(SynthConfig {
                layout: Layout::MosiAligned,
                variant: Variant::Iid,
                n_train: 48,
                n_valid: 24,
                n_test: 24,
                ..SynthConfig::default()
            }),
            ..TrainConfig::default()
        };
        c.model.embed_dim = 8;
        c.model.multimodal_layers = 1;
        c.model.num_heads = 2;
        c
    }

    /// Every float parameter's values, in visiting order.
    fn weights<B: Backend, M: Module<B>>(module: &M) -> Vec<Vec<f32>> {
        struct Collect(Vec<Vec<f32>>);
        impl<B: Backend> ModuleVisitor<B> for Collect {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                let values = param.val().into_data().convert::<f32>().into_vec::<f32>();
                self.0.push(values.unwrap_or_default());
            }
        }
        let mut collect = Collect(Vec::new());
        module.visit(&mut collect);
        collect.0
    }

    fn copy_dir(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let target = to.join(path.file_name().unwrap());
            if path.is_dir() {
                copy_dir(&path, &target);
            } else {
                fs::copy(&path, &target).unwrap();
            }
        }
    }

    /// Everything of a record but its timings.
    fn untimed(r: &EpochRecord) -> EpochRecord {
        EpochRecord {
            train_seconds: 0.0,
            eval_seconds: 0.0,
            samples_per_second: 0.0,
            ..r.clone()
        }
    }

    /// Three epochs straight and "one epoch, kill, resume to three" give bit-identical weights
    /// and identical records. Dropout is off here: the backend's random stream is global to the
    /// process and other tests may draw from it concurrently (the trainer re-seeds it per
    /// epoch, which makes single-process runs with dropout resumable too).
    #[test]
    fn resuming_gives_the_uninterrupted_result() {
        let _rng = crate::testkit::backend_rng();
        let straight = scratch("straight");
        let resumed = scratch("resumed");
        let mut config = tiny(&straight, 3);
        config.model.out_dropout = 0.0;
        config.model.embed_dropout = 0.0;
        config.model.relu_dropout = 0.0;
        config.model.res_dropout = 0.0;
        let device = Default::default();

        let mut a = Trainer::<AB>::open(config.clone(), device, false).unwrap();
        a.run_epoch(&mut |_| {}).unwrap();
        // The run is "killed" here: its directory is all that survives.
        copy_dir(&straight, &resumed);
        let summary_a = a.run(|_| {}).unwrap();
        assert_eq!(summary_a.epochs, 3);

        let resumed_config = TrainConfig {
            out_dir: resumed.clone(),
            ..config.clone()
        };
        let mut b = Trainer::<AB>::open(resumed_config.clone(), device, true).unwrap();
        assert_eq!(b.state().epoch, 1);
        let summary_b = b.run(|_| {}).unwrap();
        assert_eq!(summary_b.epochs, 3);

        let wa = weights(a.model().unwrap());
        let wb = weights(b.model().unwrap());
        assert_eq!(wa.len(), wb.len());
        assert!(
            wa == wb,
            "resumed weights differ from the uninterrupted run"
        );
        let ha: Vec<_> = a.state().history.iter().map(untimed).collect();
        let hb: Vec<_> = b.state().history.iter().map(untimed).collect();
        assert_eq!(ha, hb);
        let best = |dir: &Path| checkpoint::read_json::<BestInfo>(&dir.join("best/state.json"));
        assert_eq!(best(&straight).unwrap(), best(&resumed).unwrap());

        // The checkpoint holds the final model exactly.
        let (_, saved) =
            checkpoint::load_model::<Flex>(&straight.join(CHECKPOINT_DIR), &device).unwrap();
        assert!(weights(&saved) == wa);

        // A fresh run over a checkpoint, a resume without one, and a resume with another
        // configuration are refused.
        let again = Trainer::<AB>::open(config.clone(), device, false)
            .err()
            .unwrap();
        assert!(again.to_string().contains("already holds a run"), "{again}");
        let nothing = Trainer::<AB>::open(tiny(&scratch("none"), 3), device, true)
            .err()
            .unwrap();
        assert!(
            nothing.to_string().contains("no checkpoint to resume from"),
            "{nothing}"
        );
        let mut other = resumed_config;
        other.model.num_heads = 4;
        let mismatch = Trainer::<AB>::open(other, device, true)
            .err()
            .unwrap()
            .to_string();
        assert!(
            mismatch.contains("another configuration: `model.num_heads` is 2 there but 4 here"),
            "{mismatch}"
        );
        fs::remove_dir_all(&straight).unwrap();
        fs::remove_dir_all(&resumed).unwrap();
    }

    /// On easy synthetic data (strong signals, no label or language bias) a few epochs lower
    /// the training loss and lift the validation metric well above the ½ of guessing one
    /// polar class; every epoch leaves its row in `metrics.csv` / `metrics.json` and the best
    /// epoch's model in `best/`.
    #[test]
    fn a_few_epochs_learn_the_easy_synthetic_task() {
        let _rng = crate::testkit::backend_rng();
        let dir = scratch("learn");
        let mut config = tiny(&dir, 5);
        if let DataConfig::Synthetic(s) = &mut config.data {
            s.text_strength = 3.0;
            s.audio_strength = 6.0;
            s.vision_strength = 6.0;
            s.label_bias = 0.0;
            s.language_bias = 0.0;
            s.n_train = 96;
            s.n_valid = 48;
        }
        config.optim.lr = 3e-3;
        let (batches, epochs) = (96usize.div_ceil(config.batch_size), config.epochs);
        let device = Default::default();
        let mut trainer = Trainer::<AB>::open(config, device, false).unwrap();
        let mut seen = Vec::new();
        let summary = trainer
            .run(|p| {
                seen.push(match p {
                    TrainProgress::Batch {
                        epoch,
                        epochs: of,
                        batch,
                        batches: n,
                        loss,
                    } => {
                        assert!(loss.is_finite() && of == epochs && n == batches);
                        format!("{epoch}.{batch}")
                    }
                    TrainProgress::Evaluating { epoch } => format!("{epoch} eval"),
                    TrainProgress::Epoch(r) => format!("{} done", r.epoch),
                })
            })
            .unwrap();
        let history = &trainer.state().history;
        let expected: Vec<String> = (1..=history.len())
            .flat_map(|e| {
                (1..=batches)
                    .map(move |b| format!("{e}.{b}"))
                    .chain([format!("{e} eval"), format!("{e} done")])
            })
            .collect();
        assert_eq!(seen, expected);
        let (first, last) = (&history[0], &history[history.len() - 1]);
        assert!(
            last.train_loss < first.train_loss,
            "{} → {}",
            first.train_loss,
            last.train_loss
        );
        let best = summary.best.unwrap();
        assert_eq!(best.metric, "Non0_acc_2");
        assert!(
            best.value > 0.75,
            "best validation Non0_acc_2 {}",
            best.value
        );
        assert!(
            history
                .iter()
                .all(|r| r.task_m_loss.is_some() && r.split == "valid")
        );

        let csv = fs::read_to_string(dir.join(METRICS_CSV)).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines.len(), history.len() + 1);
        assert!(
            lines[1].starts_with(&format!("1,{},", first.train_loss)),
            "{}",
            lines[1]
        );
        let json: Vec<EpochRecord> = checkpoint::read_json(&dir.join(METRICS_JSON)).unwrap();
        assert_eq!(&json, history);
        let info: BestInfo = checkpoint::read_json(&dir.join("best/state.json")).unwrap();
        assert_eq!((info.epoch, info.value), (best.epoch, best.value));
        let maci: MaciState = checkpoint::read_json(&dir.join("best").join(MACI_FILE)).unwrap();
        assert_eq!(maci.priors.len(), 3);
        assert!(!maci.bias_words.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The ablations run: the linear classifier (τ = 0, no counterfactual pass), no
    /// distillation (no distillation losses), test-based selection.
    #[test]
    fn ablations_and_test_selection_run() {
        let _rng = crate::testkit::backend_rng();
        let dir = scratch("ablation");
        let mut config = tiny(&dir, 1);
        config.maci.classifier = Classifier::Linear;
        config.loss.distillation = crate::mssd::Distillation::None;
        config.selection = Selection::TestLeak;
        let mut trainer = Trainer::<AB>::open(config, Default::default(), false).unwrap();
        let record = trainer.run_epoch(&mut |_| {}).unwrap();
        assert_eq!((record.split.as_str(), record.tau), ("test", 0.0));
        assert_eq!(record.task_m_loss, None);
        assert_eq!(record.train_loss, record.task_loss);
        assert!(trainer.is_finished());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Precomputed text: the missing view zeroes exactly the rows of missing tokens.
    #[test]
    fn the_missing_view_zeroes_missing_token_features() {
        let _rng = crate::testkit::backend_rng();
        let config = tiny(Path::new("unused"), 1);
        let data = config.data.load().unwrap();
        let train = &data.train;
        let indices = [3, 0, 7];
        let view = TrainMissing::new(config.train_rng, 5)
            .view(train, &indices, 2)
            .unwrap();
        let device = Default::default();
        let batch = Batch::<Flex>::new(train, &indices, &view, None, &train.label3, &device);
        let features = batch.text_features.clone().unwrap();
        let prototypes =
            Prototypes::from_split(train, config.task, TextFeatures::FromSplit).unwrap();
        let conf = prototypes.confounders::<Flex>(3, &device);
        assert_eq!(conf.feats.dims(), [3, 3, 768 + 5 + 20]);
        let encoder = TextEncoder::Precomputed(PrecomputedText);
        let out = mssd_batch(batch, &encoder, conf, "train").unwrap();
        let TextInput::Features(missing) = out.missing.text else {
            panic!("features")
        };
        let (full, masked) = (
            features.into_data().into_vec::<f32>().unwrap(),
            missing.into_data().into_vec::<f32>().unwrap(),
        );
        let d_l = train.dims.d_l;
        for (row, &kept) in view.text_missing.iter().enumerate() {
            let span = row * d_l..(row + 1) * d_l;
            let want: Vec<f32> = full[span.clone()]
                .iter()
                .map(|&x| x * f32::from(kept))
                .collect();
            assert_eq!(masked[span], want[..], "token row {row}, kept {kept}");
        }
        assert!(view.text_missing.contains(&0) && view.text_missing.contains(&1));
    }

    /// A learning rate that makes the weights diverge stops training with the epoch, the batch,
    /// the loss and the key to change.
    #[test]
    fn a_diverging_run_names_the_step_and_the_learning_rate() {
        let _rng = crate::testkit::backend_rng();
        let dir = scratch("diverge");
        let mut config = tiny(&dir, 2);
        config.optim.lr = 1e30;
        let mut trainer = Trainer::<AB>::open(config, Default::default(), false).unwrap();
        let error = trainer.run(|_| {}).unwrap_err();
        assert!(
            matches!(
                error,
                TrainError::NonFiniteLoss { epoch: 1, .. }
                    | TrainError::NonFinitePrediction { epoch: 1, .. }
            ),
            "{error}"
        );
        let message = error.to_string();
        assert!(
            message.starts_with("training diverged: ")
                && message.ends_with("try a smaller learning rate (`optim.lr` = 1e30)"),
            "{message}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A model too large for the memory limit is refused before anything is allocated.
    #[test]
    fn a_huge_width_is_refused_with_the_estimate() {
        let _rng = crate::testkit::backend_rng();
        let dir = scratch("huge");
        let mut config = tiny(&dir, 1);
        config.model.embed_dim = 65536;
        let error = Trainer::<AB>::open(config, Default::default(), false)
            .err()
            .unwrap();
        let message = error.to_string();
        assert!(
            message.contains(": `model.embed_dim`: the model would need about ")
                && message.ends_with("GiB (set CIDER_MAX_MEMORY_GIB to raise it)"),
            "{message}"
        );
        assert!(!dir.exists(), "nothing was written");
    }

    /// `--resume` refuses a checkpoint whose weights, Adam state or trainer state belong to
    /// another model or were damaged, naming the file and the parameter or key.
    #[test]
    fn resuming_refuses_foreign_or_damaged_checkpoint_files() {
        let _rng = crate::testkit::backend_rng();
        let dir = scratch("foreign");
        let other = scratch("foreign-other");
        let config = tiny(&dir, 3);
        let mut wide = tiny(&other, 1);
        wide.model.embed_dim = 16;
        let device = Default::default();
        Trainer::<AB>::open(config.clone(), device, false)
            .unwrap()
            .run_epoch(&mut |_| {})
            .unwrap();
        Trainer::<AB>::open(wide, device, false)
            .unwrap()
            .run_epoch(&mut |_| {})
            .unwrap();
        let ckpt = dir.join(CHECKPOINT_DIR);
        let resume_error = || {
            Trainer::<AB>::open(config.clone(), device, true)
                .err()
                .unwrap()
                .to_string()
        };
        let swap = |name: &str| {
            let keep = fs::read(ckpt.join(name)).unwrap();
            fs::copy(other.join(CHECKPOINT_DIR).join(name), ckpt.join(name)).unwrap();
            let message = resume_error();
            fs::write(ckpt.join(name), keep).unwrap();
            message
        };

        let message = swap("model.mpk");
        let file = ckpt.join("model.mpk");
        assert!(
            message.starts_with(&format!(
                "{}: weights of another model than this configuration and data: `network.",
                file.display()
            )) && message.contains("has shape [")
                && message.contains("in the file, the configuration expects ["),
            "{message}"
        );

        let message = swap("optim.mpk");
        let file = ckpt.join("optim.mpk");
        assert!(
            message.starts_with(&format!(
                "{}: optimiser state of another model than checkpoint/model.mpk: ",
                file.display()
            )) && (message.contains("which the model does not have")
                || message.contains("have shape [")),
            "{message}"
        );

        let state_path = ckpt.join(STATE_FILE);
        let keep = fs::read_to_string(&state_path).unwrap();
        let mut state: serde_json::Value = serde_json::from_str(&keep).unwrap();
        state["history"] = serde_json::json!([]);
        fs::write(&state_path, state.to_string()).unwrap();
        assert_eq!(
            resume_error(),
            format!(
                "{}: `history` has 0 records, expected one per finished epoch (`epoch` = 1)",
                state_path.display()
            )
        );
        fs::write(&state_path, keep).unwrap();

        let bytes = fs::read(&file).unwrap();
        fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
        let message = resume_error();
        assert!(
            message.starts_with(&format!(
                "{}: cannot read the record: not a complete Burn record (truncated or corrupt \
                 file): ",
                file.display()
            )) && !message.contains("0.14"),
            "{message}"
        );
        fs::write(&file, bytes).unwrap();
        Trainer::<AB>::open(config, device, true).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(&other).unwrap();
    }

    /// Token ids outside the BERT's vocabulary and texts longer than its position table are
    /// refused when the data meets the text encoder, naming the file, split, sample and field.
    #[test]
    fn bert_text_that_does_not_fit_the_bert_is_refused_before_training() {
        let _rng = crate::testkit::backend_rng();
        let dir = scratch("bert-ids");
        fs::create_dir_all(&dir).unwrap();
        let bert_dir = dir.join("bert");
        fs::create_dir_all(&bert_dir).unwrap();
        // Only the architecture is read before the data is checked.
        let bert_config = |max_positions: usize| {
            format!(
                r#"{{"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 1,
                "num_attention_heads": 12, "intermediate_size": 32,
                "max_position_embeddings": {max_positions}}}"#
            )
        };
        fs::write(bert_dir.join("config.json"), bert_config(512)).unwrap();
        fs::write(bert_dir.join("model.safetensors"), b"unused").unwrap();
        let mut data = cider_data::synth::generate(&SynthConfig {
            n_train: 48,
            n_valid: 24,
            n_test: 24,
            text_features: true,
            ..SynthConfig::default()
        })
        .unwrap();
        let t_l = data.dims.t_l;
        data.valid.text_ids[5 * t_l + 2] = 9_999_999;
        let sample = data.valid.id[5].clone();
        let pickle = dir.join("ids.pkl");
        cider_data::pickle_write::to_path(&data.to_pyvalue().unwrap(), &pickle).unwrap();
        let mut config = tiny(&dir.join("run"), 1);
        config.data = DataConfig::File(crate::train_config::FileData {
            path: pickle.clone(),
        });
        config.model.text_encoder = TextSource::Bert;
        config.model.bert_dir = Some(bert_dir.clone());
        let open = |config: TrainConfig| {
            Trainer::<AB>::open(config, Default::default(), false)
                .err()
                .unwrap()
                .to_string()
        };
        assert_eq!(
            open(config.clone()),
            format!(
                "{}: split `valid`: sample 5 ({sample}), `text_bert` position 2: token id \
                 9999999 is not below the BERT's vocab_size = 30522",
                pickle.display()
            )
        );
        fs::write(bert_dir.join("config.json"), bert_config(t_l - 1)).unwrap();
        assert_eq!(
            open(config),
            format!(
                "{}: split `train`: `text_bert` has T_l = {t_l} tokens per sample, above the \
                 BERT's max_position_embeddings = {}",
                pickle.display(),
                t_l - 1
            )
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn epoch_seeds_differ_per_epoch_and_seed() {
        let seeds: Vec<u64> = (0..4).map(|e| epoch_seed(1111, e)).collect();
        let mut unique = seeds.clone();
        unique.dedup();
        assert_eq!(unique.len(), 4);
        assert_ne!(epoch_seed(1, 1), epoch_seed(2, 1));
        assert_eq!(epoch_seed(1111, 3), seeds[3]);
    }
}
