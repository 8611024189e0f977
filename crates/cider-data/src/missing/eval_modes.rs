//! The evaluation missing modes other than RMFM (docs/method.md §3.3): RMM drops whole
//! modalities per sample; TMFM and STMFM (aligned data only) drop time steps, at random or as
//! one contiguous block, with one mask shared by the three modalities.

use super::view::{SplitMasks, fill_row, prefix, row, text_input_len, text_valid};
use crate::dataset::{Dims, Split};
use crate::error::DataError;
use crate::mt19937::Mt19937;

/// RMM masks of a whole split: one `[N, 3]` uniform array, row-major; modality `m` of sample `i`
/// stays (its valid positions present) iff its uniform is `> rate`.
pub(super) fn rmm(split: &Split, rate: f64, mt: &mut Mt19937, masks: &mut SplitMasks) {
    let Dims { t_l, t_a, t_v, .. } = split.dims;
    for i in 0..split.n {
        let [keep_t, keep_a, keep_v] = [(); 3].map(|()| mt.random_sample() > rate);
        fill_row(
            &mut masks.text[row(i, t_l)],
            text_valid(split, i),
            &mut || keep_t,
        );
        fill_row(
            &mut masks.audio[row(i, t_a)],
            prefix(split.audio_len[i]),
            &mut || keep_a,
        );
        fill_row(
            &mut masks.vision[row(i, t_v)],
            prefix(split.vision_len[i]),
            &mut || keep_v,
        );
    }
}

/// TMFM text masks of a whole split: one `[N, T_l]` uniform array over the text mask; the audio
/// and vision masks come from [`share_text_mask`].
pub(super) fn tmfm(split: &Split, rate: f64, mt: &mut Mt19937, masks: &mut SplitMasks) {
    let t_l = split.dims.t_l;
    let mut keep = || mt.random_sample() > rate;
    for i in 0..split.n {
        fill_row(
            &mut masks.text[row(i, t_l)],
            text_valid(split, i),
            &mut keep,
        );
    }
}

/// STMFM text masks of a whole split: per sample one block of
/// `round_half_even((text_len − 2)·rate)` steps, starting at the legacy `randint(1, text_len −
/// block)`, is missing; the audio and vision masks come from [`share_text_mask`].
pub(super) fn stmfm(
    split: &Split,
    rate: f64,
    mt: &mut Mt19937,
    masks: &mut SplitMasks,
) -> Result<(), DataError> {
    let t_l = split.dims.t_l;
    for i in 0..split.n {
        let out = &mut masks.text[row(i, t_l)];
        let mask = &split.text_mask[row(i, t_l)];
        let len = text_input_len(mask);
        let block = ((len - 2) as f64 * rate).round_ties_even() as usize;
        let start = mt.randint(1, (len - block) as i64)? as usize;
        for (j, o) in out.iter_mut().enumerate() {
            *o = u8::from(mask[j] != 0 && !(start..start + block).contains(&j));
        }
    }
    Ok(())
}

/// TMFM and STMFM: copies each sample's final text mask (`[CLS]`/`[SEP]` already forced) to its
/// audio and vision masks, within their valid frames (aligned data: same time axis and lengths).
pub(super) fn share_text_mask(split: &Split, masks: &mut SplitMasks) {
    let Dims { t_l, t_a, t_v, .. } = split.dims;
    for i in 0..split.n {
        let shared = &masks.text[row(i, t_l)];
        for (out, len) in [
            (&mut masks.audio[row(i, t_a)], split.audio_len[i]),
            (&mut masks.vision[row(i, t_v)], split.vision_len[i]),
        ] {
            let mut steps = shared.iter();
            fill_row(out, prefix(len), &mut || steps.next() == Some(&1));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::dataset::{Dims, Split};
    use crate::missing::testkit::{aligned_split, all, check_rules, toy_split, unaligned_split};
    use crate::missing::{DEFAULT_MISSING_SEED, EvalMissing, eval_view};

    #[test]
    fn rmm_drops_whole_modalities_and_tmfm_shares_one_mask() {
        let split = unaligned_split();
        let v = eval_view(&split, EvalMissing::Rmm { rate: 0.5 }, 3).unwrap();
        let Dims { t_l, t_a, .. } = split.dims;
        let mut dropped = [0; 2];
        for i in 0..split.n {
            let text = &v.text_missing[i * t_l..(i + 1) * t_l];
            let kept: usize = text.iter().map(|&m| usize::from(m)).sum();
            assert!(kept == 2 || text == &split.text_mask[i * t_l..(i + 1) * t_l]);
            dropped[0] += usize::from(kept == 2 && split.text_len[i] > 2);
            let audio = &v.audio_missing[i * t_a..(i + 1) * t_a];
            let full = Split::prefix_mask(split.audio_len[i], t_a);
            assert!(audio.iter().all(|&m| m == 0) || audio == full.as_slice());
            dropped[1] += usize::from(audio.iter().all(|&m| m == 0) && split.audio_len[i] > 0);
        }
        assert!(dropped.iter().all(|&d| d > 5 && d < 35), "{dropped:?}");

        let aligned = aligned_split();
        let v = eval_view(&aligned, EvalMissing::Tmfm { rate: 0.4 }, 3).unwrap();
        assert_eq!(v.text_missing, v.audio_missing);
        assert_eq!(v.text_missing, v.vision_missing);
    }

    /// STMFM block lengths use round-half-even: `(7 − 2)·0.5 = 2.5 → 2`, `(5 − 2)·0.5 = 1.5
    /// → 2`, `(4 − 2)·0.5 = 1`, and a 2-token text loses nothing. The block is contiguous, lies
    /// strictly between [CLS] and [SEP], and is shared by the three modalities.
    #[test]
    fn stmfm_blocks_round_half_even() {
        let lens = [7, 5, 4, 2, 10];
        let split = toy_split([10, 10, 10], &lens, &lens, &lens);
        let v = eval_view(
            &split,
            EvalMissing::Stmfm { rate: 0.5 },
            DEFAULT_MISSING_SEED,
        )
        .unwrap();
        check_rules(&split, &all(&split), &v);
        for (i, (&len, block)) in lens.iter().zip([2, 2, 1, 0, 4]).enumerate() {
            let row = &v.text_missing[i * 10..(i + 1) * 10];
            let missing: Vec<usize> = (0..len).filter(|&j| row[j] == 0).collect();
            assert_eq!(missing.len(), block, "sample {i}");
            if let (Some(&a), Some(&b)) = (missing.first(), missing.last()) {
                assert_eq!(b - a + 1, block, "block must be contiguous");
                assert!(a >= 1 && b < len - 1);
            }
        }
        assert_eq!(v.text_missing, v.audio_missing);
        assert_eq!(v.text_missing, v.vision_missing);
    }
}
