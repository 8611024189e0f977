//! Batches of Burn tensors (docs/method.md §2.6) and seeded shuffling.
//!
//! A batch holds, for the samples it was built from, the complete inputs, the missing-view
//! inputs of a [`MissingView`] and, for evaluation, the counterfactual text ids. Masks are 0/1
//! floats (1 = present).

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::dataset::{Dims, Split};
use crate::missing::MissingView;

/// The samples of one batch, on a device. `B` is the batch size below.
#[derive(Debug, Clone)]
pub struct Batch<B: Backend> {
    /// Indices of the samples in their split, in batch order.
    pub indices: Vec<usize>,
    /// Complete token ids `[B, T_l]`.
    pub text_ids: Tensor<B, 2, Int>,
    /// Token ids after simulated missingness (missing → `[UNK]`) `[B, T_l]`.
    pub text_m_ids: Tensor<B, 2, Int>,
    /// Counterfactual token ids (docs/method.md §4.2) `[B, T_l]`, for evaluation batches.
    pub text_cf_ids: Option<Tensor<B, 2, Int>>,
    /// Token-type ids `[B, T_l]`.
    pub text_segment: Tensor<B, 2, Int>,
    /// Text input (attention) mask `[B, T_l]`.
    pub text_mask: Tensor<B, 2>,
    /// Complete audio `[B, T_a, d_a]`.
    pub audio: Tensor<B, 3>,
    /// Audio with missing frames zeroed `[B, T_a, d_a]`.
    pub audio_m: Tensor<B, 3>,
    /// Audio input mask `[B, T_a]`.
    pub audio_mask: Tensor<B, 2>,
    /// Complete vision `[B, T_v, d_v]`.
    pub vision: Tensor<B, 3>,
    /// Vision with missing frames zeroed `[B, T_v, d_v]`.
    pub vision_m: Tensor<B, 3>,
    /// Vision input mask `[B, T_v]`.
    pub vision_mask: Tensor<B, 2>,
    /// Text missing mask (1 = kept) `[B, T_l]`.
    pub text_missing: Tensor<B, 2>,
    /// Audio missing mask `[B, T_a]`.
    pub audio_missing: Tensor<B, 2>,
    /// Vision missing mask `[B, T_v]`.
    pub vision_missing: Tensor<B, 2>,
    /// Real text lengths `[B]`.
    pub text_len: Tensor<B, 1, Int>,
    /// Task labels (3-way or 7-way) `[B]`.
    pub labels: Tensor<B, 1, Int>,
    /// Sentiment scores `[B]`.
    pub score: Tensor<B, 1>,
    /// Precomputed text features `[B, T_l, d_l]`, when the split has them.
    pub text_features: Option<Tensor<B, 3>>,
}

/// Copies rows `indices` of a `[N, row]` array into a `[indices.len(), row]` array.
pub fn gather_rows<T: Copy>(data: &[T], row: usize, indices: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(indices.len() * row);
    for &i in indices {
        out.extend_from_slice(&data[i * row..(i + 1) * row]);
    }
    out
}

fn float<B: Backend, const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn int<B: Backend, const D: usize>(
    values: Vec<i64>,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D, Int> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn ids<B: Backend>(values: &[u32], b: usize, t: usize, device: &B::Device) -> Tensor<B, 2, Int> {
    int(
        values.iter().map(|&x| i64::from(x)).collect(),
        [b, t],
        device,
    )
}

fn mask<B: Backend>(values: &[u8], b: usize, t: usize, device: &B::Device) -> Tensor<B, 2> {
    float(
        values.iter().map(|&x| f32::from(x)).collect(),
        [b, t],
        device,
    )
}

impl<B: Backend> Batch<B> {
    /// Builds the batch of samples `indices` of `split`.
    ///
    /// `view` holds the missing-view rows of exactly these samples, in the same order (row `r`
    /// belongs to `indices[r]`); `cf_ids` are the counterfactual ids `[indices.len(), T_l]`.
    /// `labels` are the task labels of the whole split (`Split::labels`).
    pub fn new(
        split: &Split,
        indices: &[usize],
        view: &MissingView,
        cf_ids: Option<&[u32]>,
        labels: &[u8],
        device: &B::Device,
    ) -> Self {
        let Dims {
            d_l,
            t_l,
            t_a,
            t_v,
            d_a,
            d_v,
        } = split.dims;
        let b = indices.len();
        let text_len = indices.iter().map(|&i| split.text_len[i] as i64).collect();
        Self {
            indices: indices.to_vec(),
            text_ids: ids(&gather_rows(&split.text_ids, t_l, indices), b, t_l, device),
            text_m_ids: ids(&view.text_m_ids, b, t_l, device),
            text_cf_ids: cf_ids.map(|cf| ids(cf, b, t_l, device)),
            text_segment: int(
                gather_rows(&split.text_segment, t_l, indices)
                    .into_iter()
                    .map(i64::from)
                    .collect(),
                [b, t_l],
                device,
            ),
            text_mask: mask(&gather_rows(&split.text_mask, t_l, indices), b, t_l, device),
            audio: float(
                gather_rows(&split.audio, t_a * d_a, indices),
                [b, t_a, d_a],
                device,
            ),
            audio_m: float(view.audio_m.clone(), [b, t_a, d_a], device),
            audio_mask: mask(&rows_prefix(&split.audio_len, indices, t_a), b, t_a, device),
            vision: float(
                gather_rows(&split.vision, t_v * d_v, indices),
                [b, t_v, d_v],
                device,
            ),
            vision_m: float(view.vision_m.clone(), [b, t_v, d_v], device),
            vision_mask: mask(
                &rows_prefix(&split.vision_len, indices, t_v),
                b,
                t_v,
                device,
            ),
            text_missing: mask(&view.text_missing, b, t_l, device),
            audio_missing: mask(&view.audio_missing, b, t_a, device),
            vision_missing: mask(&view.vision_missing, b, t_v, device),
            text_len: int(text_len, [b], device),
            labels: int(
                indices.iter().map(|&i| i64::from(labels[i])).collect(),
                [b],
                device,
            ),
            score: float(
                indices.iter().map(|&i| split.score[i]).collect(),
                [b],
                device,
            ),
            text_features: split
                .text_features
                .as_ref()
                .map(|t| float(gather_rows(t, t_l * d_l, indices), [b, t_l, d_l], device)),
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True for a batch without samples.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// Prefix masks `[indices.len(), t]` from per-sample lengths.
fn rows_prefix(lengths: &[usize], indices: &[usize], t: usize) -> Vec<u8> {
    indices
        .iter()
        .flat_map(|&i| Split::prefix_mask(lengths[i], t))
        .collect()
}

/// How a split is cut into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// File order (evaluation; matters for the reference's batch-indexed positions, docs/method.md §11.1).
    Sequential,
    /// A fresh permutation per epoch, from `(seed, epoch)`.
    Shuffled {
        /// The training seed.
        seed: u64,
    },
}

/// The sample indices of each batch of an epoch: `ceil(n / batch_size)` batches, the last one
/// partial (kept, as the reference does).
pub fn batch_indices(n: usize, batch_size: usize, order: Order, epoch: u64) -> Vec<Vec<usize>> {
    let mut all: Vec<usize> = (0..n).collect();
    if let Order::Shuffled { seed } = order {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        all.shuffle(&mut rng);
    }
    all.chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_sample_once_and_keep_the_last_partial_batch() {
        let batches = batch_indices(10, 4, Order::Sequential, 0);
        assert_eq!(
            batches,
            vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]
        );
        let shuffled = batch_indices(10, 4, Order::Shuffled { seed: 7 }, 0);
        let mut flat: Vec<usize> = shuffled.concat();
        assert_ne!(
            flat,
            (0..10).collect::<Vec<_>>(),
            "a seeded shuffle of 10 items moves some"
        );
        flat.sort_unstable();
        assert_eq!(flat, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn shuffling_is_deterministic_per_seed_and_epoch() {
        let a = batch_indices(50, 8, Order::Shuffled { seed: 1 }, 3);
        assert_eq!(a, batch_indices(50, 8, Order::Shuffled { seed: 1 }, 3));
        assert_ne!(a, batch_indices(50, 8, Order::Shuffled { seed: 1 }, 4));
        assert_ne!(a, batch_indices(50, 8, Order::Shuffled { seed: 2 }, 3));
    }

    #[test]
    fn a_batch_carries_the_named_samples_and_their_missing_view() {
        use crate::missing::{EvalMissing, eval_view};
        use crate::synth::{Layout, SynthConfig, generate};
        type B = burn::backend::Flex;
        let config = SynthConfig {
            layout: Layout::MosiUnaligned,
            n_train: 12,
            n_valid: 6,
            n_test: 6,
            ..SynthConfig::default()
        };
        let data = generate(&config).unwrap();
        let split = &data.test;
        let view = eval_view(split, EvalMissing::Rmfm { rate: 0.5 }, 1111).unwrap();
        let indices = [4, 1];
        let rows = view.rows(&indices).unwrap();
        let device = Default::default();
        let batch = Batch::<B>::new(split, &indices, &rows, None, &split.label3, &device);
        let Dims { t_l, t_a, d_a, .. } = split.dims;
        assert_eq!(batch.audio_m.dims(), [2, t_a, d_a]);
        assert_eq!(batch.text_ids.dims(), [2, t_l]);
        let ids: Vec<i64> = batch.text_ids.to_data().iter().collect();
        assert_eq!(
            ids[..t_l],
            split.text_ids[4 * t_l..5 * t_l]
                .iter()
                .map(|&x| i64::from(x))
                .collect::<Vec<_>>()
        );
        let labels: Vec<i64> = batch.labels.to_data().iter().collect();
        assert_eq!(
            labels,
            vec![i64::from(split.label3[4]), i64::from(split.label3[1])]
        );
        let audio_mask: Vec<f32> = batch.audio_mask.to_data().iter().collect();
        let valid: f32 = audio_mask[..t_a].iter().sum();
        assert_eq!(valid as usize, split.audio_len[4]);
        let text_m: Vec<i64> = batch.text_m_ids.to_data().iter().collect();
        let missing: Vec<f32> = batch.text_missing.to_data().iter().collect();
        for j in 0..split.text_len[4] {
            let expected = if missing[j] == 1.0 { ids[j] } else { 100 };
            assert_eq!(text_m[j], expected, "token {j}: kept or [UNK]");
        }
    }

    #[test]
    fn gather_rows_copies_the_named_rows_in_order() {
        let data = [0, 1, 2, 3, 4, 5];
        assert_eq!(gather_rows(&data, 2, &[2, 0]), vec![4, 5, 0, 1]);
    }
}
