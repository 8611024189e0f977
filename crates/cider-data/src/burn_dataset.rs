//! Burn-native data (docs/method.md §2.6): a split as a Burn [`Dataset`] of samples and a
//! [`Batcher`] that turns samples into the crate's [`Batch`]es, so that a split can be fed to
//! Burn's `DataLoader`.
//!
//! An item ([`SplitSample`]) is one sample: its split, shared, and its index in it. The batcher
//! holds a [`MissingView`] of the whole split (row `i` = sample `i`, e.g. from
//! [`eval_view`](crate::missing::eval_view)) and, for evaluation, the counterfactual ids of the
//! whole split; it picks the rows of the samples it is given by their indices, so a batch equals
//! the one [`Batch::new`] builds for the same indices, whatever the loader's order or workers.
//!
//! ```
//! use burn::data::dataloader::DataLoaderBuilder;
//! use cider_data::batch::Batch;
//! use cider_data::burn_dataset::{SplitBatcher, SplitDataset};
//! use cider_data::dataset::Task;
//! use cider_data::missing::{DEFAULT_MISSING_SEED, EvalMissing, eval_view};
//! use cider_data::synth::{SynthConfig, generate};
//!
//! type B = burn::backend::Flex;
//!
//! let small = SynthConfig { n_train: 12, n_valid: 4, n_test: 10, ..SynthConfig::default() };
//! let data = generate(&small)?;
//! // The test split under RMFM at rate 0.3, in file order, four samples per batch.
//! let test = SplitDataset::new(data.test);
//! let view = eval_view(test.split(), EvalMissing::Rmfm { rate: 0.3 }, DEFAULT_MISSING_SEED)?;
//! let batcher = SplitBatcher::new(&test, view, Task::Binary)?;
//! let loader = DataLoaderBuilder::<B, _, Batch<B>>::new(batcher)
//!     .batch_size(4)
//!     .build(test);
//! let sizes: Vec<usize> = loader.iter().map(|batch| batch.len()).collect();
//! assert_eq!(sizes, [4, 4, 2]);
//! # Ok::<(), cider_data::DataError>(())
//! ```

use std::fmt;
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::tensor::backend::Backend;

use crate::batch::{Batch, gather_rows};
use crate::dataset::{Split, Task};
use crate::error::DataError;
use crate::missing::MissingView;

/// One sample of a split, the item of a [`SplitDataset`]: the split (shared, not copied) and
/// the sample's index in it, which names its rows in every array of the split and of a
/// whole-split [`MissingView`].
#[derive(Clone)]
pub struct SplitSample {
    /// The split the sample belongs to.
    pub split: Arc<Split>,
    /// Index of the sample in its split.
    pub index: usize,
}

impl fmt::Debug for SplitSample {
    /// The split's name and the index, not the split's arrays.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SplitSample")
            .field("split", &self.split.name)
            .field("index", &self.index)
            .finish()
    }
}

/// A split as a Burn dataset: item `i` is sample `i`, in file order.
#[derive(Debug, Clone)]
pub struct SplitDataset {
    split: Arc<Split>,
}

impl SplitDataset {
    /// The dataset of the samples of `split`.
    pub fn new(split: impl Into<Arc<Split>>) -> Self {
        Self {
            split: split.into(),
        }
    }

    /// The split whose samples this dataset yields.
    pub fn split(&self) -> &Split {
        &self.split
    }
}

impl Dataset<SplitSample> for SplitDataset {
    fn get(&self, index: usize) -> Option<SplitSample> {
        (index < self.split.n).then(|| SplitSample {
            split: Arc::clone(&self.split),
            index,
        })
    }

    fn len(&self) -> usize {
        self.split.n
    }
}

/// Builds the [`Batch`] of the samples a Burn data loader hands it: their complete inputs, the
/// rows of a whole-split [`MissingView`], the task's labels and, when given, the rows of the
/// whole split's counterfactual ids.
#[derive(Debug, Clone)]
pub struct SplitBatcher {
    split: Arc<Split>,
    view: MissingView,
    cf_ids: Option<Vec<u32>>,
    task: Task,
}

impl SplitBatcher {
    /// A batcher for the samples of `dataset`, with `view` the missing view of its whole split
    /// (row `i` = sample `i`) and `task` choosing the labels.
    ///
    /// # Errors
    /// [`DataError::Invalid`] when `view` does not have one row per sample of the split, or was
    /// made for another layout.
    pub fn new(dataset: &SplitDataset, view: MissingView, task: Task) -> Result<Self, DataError> {
        let split = &dataset.split;
        if view.n != split.n || view.dims != split.dims {
            return Err(DataError::Invalid {
                what: format!("missing view for split `{}`", split.name),
                message: format!(
                    "a view of {} rows with dims {:?}, expected {} rows with dims {:?}",
                    view.n, view.dims, split.n, split.dims
                ),
            });
        }
        Ok(Self {
            split: Arc::clone(split),
            view,
            cf_ids: None,
            task,
        })
    }

    /// Also puts counterfactual text ids (docs/method.md §4.2) in every batch: `cf_ids` are
    /// those of the whole split, `[N, T_l]` (e.g.
    /// [`counterfactual_ids`](crate::bias::counterfactual_ids) of the view's `text_m_ids`).
    ///
    /// # Errors
    /// [`DataError::Invalid`] when `cf_ids` does not hold `N · T_l` ids.
    pub fn with_counterfactual_ids(mut self, cf_ids: Vec<u32>) -> Result<Self, DataError> {
        let expected = self.split.n * self.split.dims.t_l;
        if cf_ids.len() != expected {
            return Err(DataError::Invalid {
                what: format!("counterfactual ids for split `{}`", self.split.name),
                message: format!(
                    "{} ids do not fill [{}, {}]",
                    cf_ids.len(),
                    self.split.n,
                    self.split.dims.t_l
                ),
            });
        }
        self.cf_ids = Some(cf_ids);
        Ok(self)
    }
}

impl<B: Backend> Batcher<B, SplitSample, Batch<B>> for SplitBatcher {
    /// The batch of `items`, in their order.
    ///
    /// # Panics
    /// If an item comes from another split than the batcher's (a dataset other than the one the
    /// batcher was made for).
    fn batch(&self, items: Vec<SplitSample>, device: &B::Device) -> Batch<B> {
        let indices: Vec<usize> = items
            .iter()
            .map(|item| {
                assert!(
                    Arc::ptr_eq(&item.split, &self.split),
                    "sample {} of split `{}` given to the batcher of split `{}`",
                    item.index,
                    item.split.name,
                    self.split.name
                );
                item.index
            })
            .collect();
        let rows = self
            .view
            .rows(&indices)
            .expect("the indices of the split's own samples are rows of its view");
        let cf_ids = self
            .cf_ids
            .as_ref()
            .map(|cf| gather_rows(cf, self.split.dims.t_l, &indices));
        Batch::new(
            &self.split,
            &indices,
            &rows,
            cf_ids.as_deref(),
            self.split.labels(self.task),
            device,
        )
    }
}

#[cfg(test)]
mod tests {
    use burn::data::dataloader::DataLoaderBuilder;

    use super::*;
    use crate::batch::{Order, batch_indices};
    use crate::bias::{BiasRule, bias_words, counterfactual_ids};
    use crate::missing::{DEFAULT_MISSING_SEED, EvalMissing, eval_view};
    use crate::synth::{Layout, SynthConfig, generate};

    type B = burn::backend::Flex;

    /// A small unaligned synthetic dataset with precomputed text features; its test split has
    /// 10 samples (batches of 4, 4 and 2).
    fn data() -> crate::dataset::Dataset {
        generate(&SynthConfig {
            layout: Layout::MosiUnaligned,
            n_train: 40,
            n_valid: 4,
            n_test: 10,
            text_features: true,
            ..SynthConfig::default()
        })
        .unwrap()
    }

    /// Every field of two batches, tensors compared by value.
    fn assert_same_batch(got: &Batch<B>, want: &Batch<B>) {
        assert_eq!(got.indices, want.indices);
        let ints =
            |b: &Batch<B>| [&b.text_ids, &b.text_m_ids, &b.text_segment].map(|t| t.to_data());
        assert_eq!(ints(got), ints(want));
        let masks = |b: &Batch<B>| {
            [
                &b.text_mask,
                &b.audio_mask,
                &b.vision_mask,
                &b.text_missing,
                &b.audio_missing,
                &b.vision_missing,
            ]
            .map(|t| t.to_data())
        };
        assert_eq!(masks(got), masks(want));
        let frames =
            |b: &Batch<B>| [&b.audio, &b.audio_m, &b.vision, &b.vision_m].map(|t| t.to_data());
        assert_eq!(frames(got), frames(want));
        assert_eq!(got.text_len.to_data(), want.text_len.to_data());
        assert_eq!(got.labels.to_data(), want.labels.to_data());
        assert_eq!(got.score.to_data(), want.score.to_data());
        let cf = |b: &Batch<B>| b.text_cf_ids.as_ref().map(|t| t.to_data());
        assert_eq!(cf(got), cf(want));
        let text = |b: &Batch<B>| b.text_features.as_ref().map(|t| t.to_data());
        assert_eq!(text(got), text(want));
    }

    /// Burn's data loader (file order, batches of 4, one worker) yields exactly the batches of
    /// the crate's own path: `batch_indices(.., Order::Sequential, ..)`, the view's rows and
    /// [`Batch::new`], counterfactual ids and text features included.
    #[test]
    fn burn_loader_batches_equal_the_crate_batches() {
        let data = data();
        let bias = bias_words(&data.train, Task::Binary, 2, BiasRule::Clean).unwrap();
        let dataset = SplitDataset::new(data.test.clone());
        let split = dataset.split().clone();
        let view = eval_view(
            &split,
            EvalMissing::Rmfm { rate: 0.4 },
            DEFAULT_MISSING_SEED,
        )
        .unwrap();
        let cf = counterfactual_ids(&view.text_m_ids, &bias);
        let batcher = SplitBatcher::new(&dataset, view.clone(), Task::Binary)
            .unwrap()
            .with_counterfactual_ids(cf.clone())
            .unwrap();
        let loader = DataLoaderBuilder::<B, _, Batch<B>>::new(batcher)
            .batch_size(4)
            .num_workers(1)
            .build(dataset);
        let got: Vec<Batch<B>> = loader.iter().collect();

        let device = Default::default();
        let want: Vec<Batch<B>> = batch_indices(split.n, 4, Order::Sequential, 0)
            .iter()
            .map(|indices| {
                let rows = view.rows(indices).unwrap();
                let cf_rows = gather_rows(&cf, split.dims.t_l, indices);
                Batch::new(
                    &split,
                    indices,
                    &rows,
                    Some(&cf_rows),
                    split.labels(Task::Binary),
                    &device,
                )
            })
            .collect();
        assert_eq!(want.iter().map(Batch::len).collect::<Vec<_>>(), [4, 4, 2]);
        assert_eq!(got.len(), want.len());
        for (got, want) in got.iter().zip(&want) {
            assert_same_batch(got, want);
        }
    }

    #[test]
    fn the_dataset_has_one_item_per_sample() {
        let data = data();
        for split in data.splits() {
            let dataset = SplitDataset::new(split.clone());
            assert_eq!(dataset.len(), split.n);
            let indices: Vec<usize> = dataset.iter().map(|item| item.index).collect();
            assert_eq!(indices, (0..split.n).collect::<Vec<_>>());
            assert!(dataset.get(split.n).is_none());
            let loader = DataLoaderBuilder::<B, _, Batch<B>>::new(
                SplitBatcher::new(
                    &dataset,
                    eval_view(split, EvalMissing::Rmfm { rate: 0.0 }, 0).unwrap(),
                    Task::Seven,
                )
                .unwrap(),
            )
            .batch_size(4)
            .build(dataset);
            assert_eq!(loader.num_items(), split.n);
        }
    }

    #[test]
    fn mismatched_views_and_ids_are_typed_errors() {
        let data = data();
        let dataset = SplitDataset::new(data.test.clone());
        let other = eval_view(&data.valid, EvalMissing::Rmfm { rate: 0.0 }, 0).unwrap();
        assert!(matches!(
            SplitBatcher::new(&dataset, other, Task::Binary),
            Err(DataError::Invalid { .. })
        ));
        let view = eval_view(&data.test, EvalMissing::Rmfm { rate: 0.0 }, 0).unwrap();
        let batcher = SplitBatcher::new(&dataset, view, Task::Binary).unwrap();
        assert!(matches!(
            batcher.with_counterfactual_ids(vec![0; 3]),
            Err(DataError::Invalid { .. })
        ));
    }
}
