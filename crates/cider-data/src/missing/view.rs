//! The missing view of a set of samples and the rules every missing mode keeps
//! (docs/method.md §3.1): masks are bytes, 1 = present ("kept"), 0 = missing or padding, and
//! always inside the input masks; a missing token becomes `[UNK]` (100), a missing frame becomes
//! all zeros, and `[CLS]` (position 0) and `[SEP]` (position `text_len − 1`) are never missing.
//! Also the checks and row helpers shared by the evaluation and training draws.

use std::ops::Range;

use crate::dataset::{Dims, Split, special};
use crate::error::DataError;

/// Missing masks and the missing-view inputs of `n` samples (docs/method.md §3.1). Row `r` of every
/// array belongs to the `r`-th requested sample.
#[derive(Debug, Clone, PartialEq)]
pub struct MissingView {
    /// Number of rows `N`.
    pub n: usize,
    /// Layout of the split the view was made from.
    pub dims: Dims,
    /// Text missing mask (1 = present), `[N, T_l]`.
    pub text_missing: Vec<u8>,
    /// Audio missing mask, `[N, T_a]`.
    pub audio_missing: Vec<u8>,
    /// Vision missing mask, `[N, T_v]`.
    pub vision_missing: Vec<u8>,
    /// Token ids with missing tokens replaced by `[UNK]`, `[N, T_l]`
    /// (`ids_m = miss·ids + 100·(inmask − miss)`).
    pub text_m_ids: Vec<u32>,
    /// Audio with missing frames zeroed, `[N, T_a, d_a]`.
    pub audio_m: Vec<f32>,
    /// Vision with missing frames zeroed, `[N, T_v, d_v]`.
    pub vision_m: Vec<f32>,
}

impl MissingView {
    /// Applies the missing masks of samples `indices` (one mask row per index, in order):
    /// `[UNK]` for missing tokens, zeros for missing (and padded) frames. The masks must lie
    /// inside the input masks; callers guarantee it.
    pub(super) fn build(
        split: &Split,
        indices: &[usize],
        text_missing: Vec<u8>,
        audio_missing: Vec<u8>,
        vision_missing: Vec<u8>,
    ) -> Self {
        let Dims {
            t_l,
            t_a,
            t_v,
            d_a,
            d_v,
            ..
        } = split.dims;
        let n = indices.len();
        let mut text_m_ids = Vec::with_capacity(n * t_l);
        for (r, &i) in indices.iter().enumerate() {
            let ids = &split.text_ids[i * t_l..(i + 1) * t_l];
            let inmask = &split.text_mask[i * t_l..(i + 1) * t_l];
            let miss = &text_missing[r * t_l..(r + 1) * t_l];
            text_m_ids.extend((0..t_l).map(|j| {
                if inmask[j] != 0 && miss[j] == 0 {
                    special::UNK
                } else {
                    ids[j]
                }
            }));
        }
        let audio_m = zero_missing_frames(&split.audio, indices, &audio_missing, t_a, d_a);
        let vision_m = zero_missing_frames(&split.vision, indices, &vision_missing, t_v, d_v);
        Self {
            n,
            dims: split.dims,
            text_missing,
            audio_missing,
            vision_missing,
            text_m_ids,
            audio_m,
            vision_m,
        }
    }

    /// The view of a whole split under missing masks chosen by the caller (1 = present):
    /// `[N, T_l]`, `[N, T_a]`, `[N, T_v]`. Each mask is intersected with the split's input
    /// masks (real tokens, and the first `audio_len` / `vision_len` frames), so padding stays
    /// absent whatever the caller's mask says there; `[CLS]` and `[SEP]` stay present, as in
    /// every evaluation mode.
    ///
    /// # Errors
    /// [`DataError::Invalid`] for a split whose arrays disagree with its layout (as
    /// [`eval_view`](crate::missing::eval_view)), and for a mask whose length is not `N·T` or
    /// that holds a value other than 0 and 1.
    pub fn from_masks(
        split: &Split,
        text_missing: &[u8],
        audio_missing: &[u8],
        vision_missing: &[u8],
    ) -> Result<Self, DataError> {
        check_split(split)?;
        let Dims { t_l, t_a, t_v, .. } = split.dims;
        let n = split.n;
        let check = |name: &str, mask: &[u8], t: usize| {
            if Some(mask.len()) != n.checked_mul(t) {
                return Err(DataError::Invalid {
                    what: format!("{name} missing mask"),
                    message: format!("{} values do not fill [{n}, {t}]", mask.len()),
                });
            }
            match mask.iter().position(|&m| m > 1) {
                Some(i) => Err(DataError::Invalid {
                    what: format!("{name} missing mask"),
                    message: format!("value {} at index {i}: expected 0 or 1", mask[i]),
                }),
                None => Ok(()),
            }
        };
        check("text", text_missing, t_l)?;
        check("audio", audio_missing, t_a)?;
        check("vision", vision_missing, t_v)?;
        let within_lengths = |mask: &[u8], lens: &[usize], t: usize| -> Vec<u8> {
            mask.iter()
                .enumerate()
                .map(|(k, &m)| u8::from(m == 1 && k % t < lens[k / t]))
                .collect()
        };
        let mut text: Vec<u8> = text_missing
            .iter()
            .zip(&split.text_mask)
            .map(|(&m, &inmask)| u8::from(m == 1 && inmask != 0))
            .collect();
        for (row, inmask) in text
            .chunks_exact_mut(t_l)
            .zip(split.text_mask.chunks_exact(t_l))
        {
            force_cls_sep(row, inmask);
        }
        let audio = within_lengths(audio_missing, &split.audio_len, t_a);
        let vision = within_lengths(vision_missing, &split.vision_len, t_v);
        let indices: Vec<usize> = (0..n).collect();
        Ok(Self::build(split, &indices, text, audio, vision))
    }

    /// The view restricted to `rows` (e.g. one evaluation batch), in that order.
    pub fn rows(&self, rows: &[usize]) -> Result<MissingView, DataError> {
        if let Some(&bad) = rows.iter().find(|&&r| r >= self.n) {
            return Err(DataError::Invalid {
                what: "missing-view row".into(),
                message: format!("row {bad} is out of range for a view of {} rows", self.n),
            });
        }
        let Dims {
            t_l,
            t_a,
            t_v,
            d_a,
            d_v,
            ..
        } = self.dims;
        Ok(MissingView {
            n: rows.len(),
            dims: self.dims,
            text_missing: gather(&self.text_missing, t_l, rows),
            audio_missing: gather(&self.audio_missing, t_a, rows),
            vision_missing: gather(&self.vision_missing, t_v, rows),
            text_m_ids: gather(&self.text_m_ids, t_l, rows),
            audio_m: gather(&self.audio_m, t_a * d_a, rows),
            vision_m: gather(&self.vision_m, t_v * d_v, rows),
        })
    }
}

/// Rows `rows` of a row-major array with rows of `width` elements.
fn gather<T: Copy>(values: &[T], width: usize, rows: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(rows.len() * width);
    for &r in rows {
        out.extend_from_slice(&values[r * width..(r + 1) * width]);
    }
    out
}

/// Frames `[T, d]` of samples `indices`, zeroed where the missing mask (row per index) is 0.
fn zero_missing_frames(
    frames: &[f32],
    indices: &[usize],
    missing: &[u8],
    t: usize,
    d: usize,
) -> Vec<f32> {
    let mut out = vec![0.0f32; indices.len() * t * d];
    for (r, &i) in indices.iter().enumerate() {
        for j in 0..t {
            if missing[r * t + j] != 0 {
                let src = (i * t + j) * d;
                let dst = (r * t + j) * d;
                out[dst..dst + d].copy_from_slice(&frames[src..src + d]);
            }
        }
    }
    out
}

/// Checks that every array of the split has the size its dims announce, that lengths fit, and
/// that every text has at least `[CLS]` and `[SEP]`, so that mask generation cannot panic.
pub(super) fn check_split(split: &Split) -> Result<(), DataError> {
    let Dims {
        t_l,
        t_a,
        t_v,
        d_a,
        d_v,
        ..
    } = split.dims;
    let n = split.n;
    let invalid = |message: String| DataError::Invalid {
        what: format!("split `{}` for missing-modality simulation", split.name),
        message,
    };
    let sizes = [
        ("text_ids", split.text_ids.len(), n.checked_mul(t_l)),
        ("text_mask", split.text_mask.len(), n.checked_mul(t_l)),
        (
            "audio",
            split.audio.len(),
            n.checked_mul(t_a).and_then(|x| x.checked_mul(d_a)),
        ),
        (
            "vision",
            split.vision.len(),
            n.checked_mul(t_v).and_then(|x| x.checked_mul(d_v)),
        ),
        ("text_len", split.text_len.len(), Some(n)),
        ("audio_len", split.audio_len.len(), Some(n)),
        ("vision_len", split.vision_len.len(), Some(n)),
    ];
    for (key, len, expected) in sizes {
        if Some(len) != expected {
            return Err(invalid(format!(
                "`{key}` holds {len} values, expected {expected:?} for {n} samples and dims {:?}",
                split.dims
            )));
        }
    }
    for i in 0..n {
        if split.audio_len[i] > t_a || split.vision_len[i] > t_v {
            return Err(invalid(format!(
                "sample {i}: audio/vision lengths {}/{} exceed T_a = {t_a} / T_v = {t_v}",
                split.audio_len[i], split.vision_len[i]
            )));
        }
        let len = text_input_len(&split.text_mask[i * t_l..(i + 1) * t_l]);
        if len < 2 {
            return Err(invalid(format!(
                "sample {i}: text length {len}, expected at least [CLS] and [SEP]"
            )));
        }
    }
    Ok(())
}

/// Checks that every index names a sample of the split.
pub(super) fn check_indices(split: &Split, indices: &[usize]) -> Result<(), DataError> {
    match indices.iter().find(|&&i| i >= split.n) {
        Some(bad) => Err(DataError::Invalid {
            what: format!("sample index into split `{}`", split.name),
            message: format!("{bad} is out of range for {} samples", split.n),
        }),
        None => Ok(()),
    }
}

/// The text length used to place `[SEP]`: the index of the first 0 of the input mask, or `T_l`
/// when there is none (docs/method.md §2.3; equals `text_len` for prefix masks).
pub(super) fn text_input_len(text_mask: &[u8]) -> usize {
    text_mask
        .iter()
        .position(|&m| m == 0)
        .unwrap_or(text_mask.len())
}

/// Forces `[CLS]` (position 0) and `[SEP]` (position `text_len − 1`) present in one text
/// missing-mask row. Both lie inside the input mask (checked by [`check_split`]).
pub(super) fn force_cls_sep(text_missing: &mut [u8], text_mask: &[u8]) {
    let len = text_input_len(text_mask);
    text_missing[0] = 1;
    text_missing[len - 1] = 1;
}

/// Fills one mask row: `keep()` is called once for every position (valid or not, so that the
/// draws stay aligned with the reference's full arrays), and a position is present iff it was
/// kept and is valid.
pub(super) fn fill_row(
    out: &mut [u8],
    valid: impl Fn(usize) -> bool,
    keep: &mut impl FnMut() -> bool,
) {
    for (j, o) in out.iter_mut().enumerate() {
        let k = keep();
        *o = u8::from(k && valid(j));
    }
}

/// Row `i` of a row-major array with rows of `t` elements.
pub(super) fn row(i: usize, t: usize) -> Range<usize> {
    i * t..(i + 1) * t
}

/// Validity of the text positions of sample `i`: its input mask.
pub(super) fn text_valid(split: &Split, i: usize) -> impl Fn(usize) -> bool + '_ {
    let mask = &split.text_mask[row(i, split.dims.t_l)];
    move |j: usize| mask[j] != 0
}

/// Validity of the frames of a sample with `len` valid frames: the first `len`.
pub(super) fn prefix(len: usize) -> impl Fn(usize) -> bool {
    move |j: usize| j < len
}

/// The missing masks of a whole split while a mode draws them (1 = present): `[N, T_l]`,
/// `[N, T_a]`, `[N, T_v]`.
pub(super) struct SplitMasks {
    pub(super) text: Vec<u8>,
    pub(super) audio: Vec<u8>,
    pub(super) vision: Vec<u8>,
}

impl SplitMasks {
    /// Every position of every sample of `split` missing.
    pub(super) fn absent(split: &Split) -> Self {
        let Dims { t_l, t_a, t_v, .. } = split.dims;
        let n = split.n;
        SplitMasks {
            text: vec![0u8; n * t_l],
            audio: vec![0u8; n * t_a],
            vision: vec![0u8; n * t_v],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::missing::testkit::{all, check_rules, toy_split, unaligned_split};
    use crate::missing::{EvalMissing, eval_view};

    /// Caller masks are cut to the input masks, `[CLS]`/`[SEP]` stay present, and a mask of the
    /// wrong length or with a value other than 0/1 is refused.
    #[test]
    fn caller_masks_keep_the_rules_and_bad_masks_are_refused() {
        let split = toy_split([5, 4, 3], &[4, 5], &[3, 4], &[2, 0]);
        let v = MissingView::from_masks(
            &split,
            &[0, 0, 1, 0, 1, 1, 0, 0, 0, 0],
            &[1, 1, 1, 1, 0, 1, 0, 1],
            &[1, 0, 1, 1, 1, 1],
        )
        .unwrap();
        // Text: CLS (0) and SEP (len − 1) forced present; position 4 of sample 0 is padding.
        assert_eq!(v.text_missing, [1, 0, 1, 1, 0, 1, 0, 0, 0, 1]);
        // Audio: sample 0 has 3 frames, so its 4th is padding.
        assert_eq!(v.audio_missing, [1, 1, 1, 0, 0, 1, 0, 1]);
        // Vision: sample 0 has 2 frames, sample 1 none.
        assert_eq!(v.vision_missing, [1, 0, 0, 0, 0, 0]);
        assert_eq!(
            v.text_m_ids[..5],
            [special::CLS, special::UNK, 1002, special::SEP, 0]
        );
        check_rules(&split, &all(&split), &v);

        let ones = |len: usize| vec![1u8; len];
        let short = MissingView::from_masks(&split, &ones(9), &ones(8), &ones(6)).unwrap_err();
        assert!(short.to_string().contains("text missing mask"), "{short}");
        assert!(short.to_string().contains("[2, 5]"), "{short}");
        let mut two = ones(8);
        two[3] = 2;
        let bad = MissingView::from_masks(&split, &ones(10), &two, &ones(6)).unwrap_err();
        assert!(
            bad.to_string().contains("audio missing mask") && bad.to_string().contains("index 3"),
            "{bad}"
        );
    }
    #[test]
    fn rows_selects_view_rows() {
        let split = unaligned_split();
        let v = eval_view(&split, EvalMissing::Rmfm { rate: 0.4 }, 1111).unwrap();
        let sub = v.rows(&[5, 2]).unwrap();
        let Dims { t_l, t_v, d_v, .. } = split.dims;
        assert_eq!(sub.n, 2);
        assert_eq!(sub.text_m_ids[..t_l], v.text_m_ids[5 * t_l..6 * t_l]);
        assert_eq!(
            sub.vision_m[t_v * d_v..],
            v.vision_m[2 * t_v * d_v..3 * t_v * d_v]
        );
        check_rules(&split, &[5, 2], &sub);
    }

    #[test]
    fn a_row_out_of_range_is_a_typed_error() {
        let split = unaligned_split();
        assert!(matches!(
            eval_view(&split, EvalMissing::Rmfm { rate: 0.2 }, 1111)
                .unwrap()
                .rows(&[40]),
            Err(DataError::Invalid { .. })
        ));
    }
}
