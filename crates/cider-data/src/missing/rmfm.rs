//! RMFM, random modality feature missing (docs/method.md §3.3), the paper's evaluation mode and
//! our default: every valid position of `[text; audio; vision]` is missing independently with
//! rate `p`. Also `RMFM_same`, its per-modality variant with rates `(p_t, p_a, p_v)` (the same
//! distribution at `(p, p, p)`, other draws, §11.5), and SMM, whose seven modality subsets are
//! `RMFM_same` rates in {0, 1}.

use super::view::{SplitMasks, fill_row, prefix, row, text_valid};
use crate::dataset::{Dims, Split};
use crate::mt19937::Mt19937;

/// The seven SMM subsets (docs/method.md §3.3): the name lists the *present* modalities, the rates are
/// the `RMFM_same` missing rates `(p_t, p_a, p_v)`, 0 for present and 1 for absent ones.
/// Order: T, A, V, TA, TV, AV, TAV.
pub fn smm_rates() -> [(&'static str, [f64; 3]); 7] {
    [
        ("T", [0.0, 1.0, 1.0]),
        ("A", [1.0, 0.0, 1.0]),
        ("V", [1.0, 1.0, 0.0]),
        ("TA", [0.0, 0.0, 1.0]),
        ("TV", [0.0, 1.0, 0.0]),
        ("AV", [1.0, 0.0, 0.0]),
        ("TAV", [0.0, 0.0, 0.0]),
    ]
}

/// RMFM masks of a whole split: one uniform per position of the `[N, T_l + T_a + T_v]` array,
/// row-major (for each sample its text, then audio, then vision positions); a position is
/// present iff `u > rate` and it is valid.
pub(super) fn rmfm(split: &Split, rate: f64, mt: &mut Mt19937, masks: &mut SplitMasks) {
    let Dims { t_l, t_a, t_v, .. } = split.dims;
    let mut keep = || mt.random_sample() > rate;
    for i in 0..split.n {
        fill_row(
            &mut masks.text[row(i, t_l)],
            text_valid(split, i),
            &mut keep,
        );
        fill_row(
            &mut masks.audio[row(i, t_a)],
            prefix(split.audio_len[i]),
            &mut keep,
        );
        fill_row(
            &mut masks.vision[row(i, t_v)],
            prefix(split.vision_len[i]),
            &mut keep,
        );
    }
}

/// `RMFM_same` masks of a whole split with missing rates `(p_t, p_a, p_v)`: the uniform arrays
/// `[N, T_l]`, `[N, T_a]`, `[N, T_v]`, drawn in that order.
pub(super) fn rmfm_same(
    split: &Split,
    [p_t, p_a, p_v]: [f64; 3],
    mt: &mut Mt19937,
    masks: &mut SplitMasks,
) {
    let Dims { t_l, t_a, t_v, .. } = split.dims;
    let n = split.n;
    let mut keep = |p: f64| mt.random_sample() > p;
    for i in 0..n {
        fill_row(
            &mut masks.text[row(i, t_l)],
            text_valid(split, i),
            &mut || keep(p_t),
        );
    }
    for i in 0..n {
        let valid = prefix(split.audio_len[i]);
        fill_row(&mut masks.audio[row(i, t_a)], valid, &mut || keep(p_a));
    }
    for i in 0..n {
        let valid = prefix(split.vision_len[i]);
        fill_row(&mut masks.vision[row(i, t_v)], valid, &mut || keep(p_v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::special;
    use crate::missing::testkit::{all, check_rules, toy_split, unaligned_split};
    use crate::missing::{DEFAULT_MISSING_SEED, EvalMissing, eval_view};

    /// A toy RMFM draw against NumPy, the reference's code written out:
    /// `inp = concat([text_mask, audio_mask, vision_mask], 1); np.random.seed(1111);
    /// m = (np.random.uniform(size=inp.shape) > [0.5]) * inp; m[i, 0] = m[i, len_i - 1] = 1`
    /// for text lengths [4, 5], audio lengths [3, 4], vision lengths [2, 0], T = (5, 4, 3).
    #[test]
    fn rmfm_matches_numpy_on_a_toy_split() {
        let split = toy_split([5, 4, 3], &[4, 5], &[3, 4], &[2, 0]);
        let v = eval_view(
            &split,
            EvalMissing::Rmfm { rate: 0.5 },
            DEFAULT_MISSING_SEED,
        )
        .unwrap();
        assert_eq!(v.text_missing, [1, 1, 0, 1, 0, 1, 0, 0, 0, 1]);
        assert_eq!(v.audio_missing, [0, 0, 1, 0, 1, 1, 0, 1]);
        assert_eq!(v.vision_missing, [1, 0, 0, 0, 0, 0]);
        // Token 2 of sample 0 is missing → [UNK]; padding stays 0.
        assert_eq!(
            v.text_m_ids[..5],
            [special::CLS, 1001, special::UNK, special::SEP, 0]
        );
        check_rules(&split, &all(&split), &v);
    }
    #[test]
    fn smm_subsets_keep_exactly_the_named_modalities() {
        let split = unaligned_split();
        let subsets = smm_rates();
        assert_eq!(subsets.len(), 7);
        for (name, rates) in subsets {
            let v = eval_view(&split, EvalMissing::RmfmSame { rates }, 1111).unwrap();
            let text_kept: usize = v.text_missing.iter().map(|&m| usize::from(m)).sum();
            let text_full: usize = split.text_len.iter().sum();
            assert_eq!(text_kept == text_full, name.contains('T'), "{name}");
            assert_eq!(text_kept == 2 * split.n, !name.contains('T'), "{name}");
            assert_eq!(
                v.audio_missing == split.audio_mask(),
                name.contains('A'),
                "{name}"
            );
            assert_eq!(
                v.vision_missing == split.vision_mask(),
                name.contains('V'),
                "{name}"
            );
        }
    }
}
