//! Training-time missingness (docs/method.md §3.2, always the RMFM-like draw whatever the
//! evaluation mode): every valid position of every modality is kept with probability ½, freshly
//! for every fetch, yet reproducible from `(seed, epoch, sample index)`, so batching and
//! shuffling never change a sample's mask. [`TrainRng`] chooses how the bits are drawn.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use super::view::{MissingView, check_indices, check_split, fill_row, force_cls_sep};
use crate::dataset::{Dims, Split};
use crate::error::DataError;
use crate::mt19937::Mt19937;

/// Which random-number path draws the training masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainRng {
    /// The reference's draws (docs/method.md §3.2) from NumPy's legacy MT19937: a rate `r_j ~ U(0,1)`
    /// for every position of `[T_l + T_a + T_v]`, then `u_j ~ U(0,1)`, keep iff `u_j > r_j`.
    /// The generator is seeded per fetch as `np.random.seed([seed_lo, seed_hi, epoch_lo,
    /// epoch_hi, index_lo, index_hi])` (32-bit words), so results can be checked with NumPy;
    /// the reference's own global stream depends on its data-loader order and cannot be
    /// replayed. Same distribution as [`TrainRng::Fast`] up to ties `u_j = r_j`, but slower
    /// (each fetch seeds a fresh MT19937).
    NumpyParity,
    /// One ChaCha8 bit per position: keep iff the bit is 1 (exactly ½). Key from
    /// `(seed, epoch)`, stream = sample index.
    Fast,
}

/// Training-time missingness (docs/method.md §3.2): i.i.d. Bernoulli(½) keep of every valid position of
/// all three modalities, `[CLS]`/`[SEP]` always kept. A sample's mask depends only on
/// `(seed, epoch, sample index)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainMissing {
    /// Random-number path.
    pub rng: TrainRng,
    /// Run seed.
    pub seed: u64,
}

impl TrainMissing {
    /// A training-mask generator for one run.
    pub fn new(rng: TrainRng, seed: u64) -> Self {
        Self { rng, seed }
    }

    /// Fresh masks and missing view of samples `indices` (row `r` ↔ `indices[r]`) for one
    /// fetch in epoch `epoch`.
    pub fn view(
        &self,
        split: &Split,
        indices: &[usize],
        epoch: u64,
    ) -> Result<MissingView, DataError> {
        check_split(split)?;
        check_indices(split, indices)?;
        let Dims { t_l, t_a, t_v, .. } = split.dims;
        let b = indices.len();
        let mut text = vec![0u8; b * t_l];
        let mut audio = vec![0u8; b * t_a];
        let mut vision = vec![0u8; b * t_v];
        let mut rates = match self.rng {
            TrainRng::NumpyParity => vec![0.0f64; t_l + t_a + t_v],
            TrainRng::Fast => Vec::new(),
        };
        for (r, &i) in indices.iter().enumerate() {
            let rows = SampleRows {
                text: &mut text[r * t_l..(r + 1) * t_l],
                audio: &mut audio[r * t_a..(r + 1) * t_a],
                vision: &mut vision[r * t_v..(r + 1) * t_v],
            };
            match self.rng {
                TrainRng::NumpyParity => {
                    let mut mt = Mt19937::from_key(&numpy_key(self.seed, epoch, i as u64))?;
                    mt.fill_uniform(&mut rates);
                    let mut j = 0;
                    rows.fill(split, i, &mut || {
                        let kept = mt.random_sample() > rates[j];
                        j += 1;
                        kept
                    });
                }
                TrainRng::Fast => {
                    let mut rng = ChaCha8Rng::from_seed(chacha_key(self.seed, epoch));
                    rng.set_stream(i as u64);
                    let (mut bits, mut left) = (0u64, 0u32);
                    rows.fill(split, i, &mut || {
                        if left == 0 {
                            bits = rng.next_u64();
                            left = 64;
                        }
                        let kept = bits & 1 == 1;
                        bits >>= 1;
                        left -= 1;
                        kept
                    });
                }
            }
        }
        Ok(MissingView::build(split, indices, text, audio, vision))
    }
}

/// The three mask rows of one sample in a batch.
struct SampleRows<'a> {
    text: &'a mut [u8],
    audio: &'a mut [u8],
    vision: &'a mut [u8],
}

impl SampleRows<'_> {
    /// Fills the rows of sample `i` from one keep decision per position of the concatenated
    /// `[text; audio; vision]` axis, then forces `[CLS]`/`[SEP]` present.
    fn fill(self, split: &Split, i: usize, keep: &mut impl FnMut() -> bool) {
        let Dims { t_l, .. } = split.dims;
        let text_mask = &split.text_mask[i * t_l..(i + 1) * t_l];
        let (audio_len, vision_len) = (split.audio_len[i], split.vision_len[i]);
        fill_row(self.text, |j| text_mask[j] != 0, keep);
        fill_row(self.audio, |j| j < audio_len, keep);
        fill_row(self.vision, |j| j < vision_len, keep);
        force_cls_sep(self.text, text_mask);
    }
}

/// `[seed_lo, seed_hi, epoch_lo, epoch_hi, index_lo, index_hi]`, the NumPy array seed of one
/// fetch for [`TrainRng::NumpyParity`].
fn numpy_key(seed: u64, epoch: u64, index: u64) -> [u32; 6] {
    let words = |x: u64| [x as u32, (x >> 32) as u32];
    let [s0, s1] = words(seed);
    let [e0, e1] = words(epoch);
    let [i0, i1] = words(index);
    [s0, s1, e0, e1, i0, i1]
}

/// ChaCha8 key of one epoch for [`TrainRng::Fast`]: seed and epoch little-endian, then a fixed
/// tag so that these keys differ from the other seeded generators of the project.
fn chacha_key(seed: u64, epoch: u64) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&epoch.to_le_bytes());
    key[16..].copy_from_slice(b"cider-rmfm-train");
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::missing::testkit::{check_rules, toy_split, unaligned_split};

    /// The NumPy-parity training path against NumPy: for text mask [1,1,1,1,0], audio length
    /// 3 of 4, vision length 2 of 3, seed 7, epoch 2, index 1:
    /// `np.random.seed([7, 0, 2, 0, 1, 0]); r = np.random.rand(1, 12);
    /// u = np.random.uniform(size=(1, 12)); k = ((u > r) * inmask)[0]; k[0] = k[3] = 1`.
    #[test]
    fn numpy_parity_training_masks_match_numpy() {
        let split = toy_split([5, 4, 3], &[5, 4], &[4, 3], &[3, 2]);
        let v = TrainMissing::new(TrainRng::NumpyParity, 7)
            .view(&split, &[1], 2)
            .unwrap();
        assert_eq!(v.text_missing, [1, 0, 1, 1, 0]);
        assert_eq!(v.audio_missing, [0, 1, 0, 0]);
        assert_eq!(v.vision_missing, [0, 1, 0]);
        check_rules(&split, &[1], &v);
    }

    #[test]
    fn training_masks_keep_half_and_follow_the_rules() {
        let split = unaligned_split();
        let indices: Vec<usize> = (0..split.n).collect();
        for rng in [TrainRng::Fast, TrainRng::NumpyParity] {
            let masker = TrainMissing::new(rng, 42);
            let (mut kept, mut valid) = (0usize, 0usize);
            for epoch in 0..50 {
                let v = masker.view(&split, &indices, epoch).unwrap();
                check_rules(&split, &indices, &v);
                for i in 0..split.n {
                    let t_l = split.dims.t_l;
                    let len = split.text_len[i];
                    // Positions other than [CLS]/[SEP], which are forced.
                    kept += v.text_missing[i * t_l + 1..i * t_l + len - 1]
                        .iter()
                        .map(|&m| usize::from(m))
                        .sum::<usize>();
                    valid += len - 2;
                }
                kept += v
                    .audio_missing
                    .iter()
                    .chain(&v.vision_missing)
                    .map(|&m| usize::from(m))
                    .sum::<usize>();
                valid += split
                    .audio_len
                    .iter()
                    .chain(&split.vision_len)
                    .sum::<usize>();
            }
            // ~25,000 Bernoulli(½) draws: standard deviation of the fraction ≈ 0.003.
            let fraction = kept as f64 / valid as f64;
            assert!((fraction - 0.5).abs() < 0.015, "{rng:?}: {fraction}");
        }
    }

    #[test]
    fn training_masks_depend_only_on_seed_epoch_and_index() {
        let split = unaligned_split();
        for rng in [TrainRng::Fast, TrainRng::NumpyParity] {
            let masker = TrainMissing::new(rng, 9);
            let batch = masker.view(&split, &[3, 17, 8], 4).unwrap();
            let alone = masker.view(&split, &[17], 4).unwrap();
            assert_eq!(
                batch.rows(&[1]).unwrap(),
                alone,
                "{rng:?}: batch order changed a mask"
            );
            assert_eq!(masker.view(&split, &[3, 17, 8], 4).unwrap(), batch);
            let next_epoch = masker.view(&split, &[3, 17, 8], 5).unwrap();
            assert_ne!(next_epoch.audio_missing, batch.audio_missing, "{rng:?}");
            let other_seed = TrainMissing::new(rng, 10)
                .view(&split, &[3, 17, 8], 4)
                .unwrap();
            assert_ne!(other_seed.audio_missing, batch.audio_missing, "{rng:?}");
        }
    }

    #[test]
    fn an_index_out_of_range_is_a_typed_error() {
        let split = unaligned_split();
        let train = TrainMissing::new(TrainRng::Fast, 0);
        assert!(matches!(
            train.view(&split, &[40], 0),
            Err(DataError::Invalid { .. })
        ));
    }
}
