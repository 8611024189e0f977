//! Helpers of the missing-modality tests: hand-built toy splits and the rules of
//! docs/method.md §3.1 that every view must keep.

use super::view::MissingView;
use crate::dataset::{Dims, Split, special};

/// A hand-built split: `n` samples, text lengths `text_len` (prefix masks, ids
/// `[CLS] 1000+i*10+j … [SEP]`), audio/vision lengths, `d_a = 2`, `d_v = 1`, frames
/// `x[i, t, k] = 1 + i·100 + t·10 + k` (never zero, so zeroing is visible).
pub(super) fn toy_split(
    t: [usize; 3],
    text_len: &[usize],
    audio_len: &[usize],
    vision_len: &[usize],
) -> Split {
    let [t_l, t_a, t_v] = t;
    let (d_a, d_v) = (2, 1);
    let n = text_len.len();
    let mut text_ids = Vec::new();
    let mut text_mask = Vec::new();
    for (i, &len) in text_len.iter().enumerate() {
        for j in 0..t_l {
            text_ids.push(match j {
                0 => special::CLS,
                j if j + 1 == len => special::SEP,
                j if j < len => 1000 + 10 * i as u32 + j as u32,
                _ => special::PAD,
            });
            text_mask.push(u8::from(j < len));
        }
    }
    let frames = |t: usize, d: usize| -> Vec<f32> {
        (0..n * t * d)
            .map(|x| {
                let (i, tt, k) = (x / (t * d), x / d % t, x % d);
                1.0 + (i * 100 + tt * 10 + k) as f32
            })
            .collect()
    };
    Split {
        name: "toy".into(),
        n,
        dims: Dims {
            d_l: 0,
            t_l,
            t_a,
            t_v,
            d_a,
            d_v,
        },
        text_ids,
        text_segment: vec![0; text_mask.len()],
        text_mask,
        audio: frames(t_a, d_a),
        vision: frames(t_v, d_v),
        text_len: text_len.to_vec(),
        audio_len: audio_len.to_vec(),
        vision_len: vision_len.to_vec(),
        score: vec![0.0; n],
        label3: vec![1; n],
        label7: vec![3; n],
        raw_text: vec![String::new(); n],
        id: vec![String::new(); n],
        text_features: None,
        audio_nonfinite: 0,
        audio_sum: 0.0,
        vision_sum: 0.0,
    }
}

/// An unaligned toy split of 40 samples with varied lengths.
pub(super) fn unaligned_split() -> Split {
    let n = 40;
    let text_len: Vec<usize> = (0..n).map(|i| 2 + i % 9).collect();
    let audio_len: Vec<usize> = (0..n).map(|i| (i * 7) % 13).collect();
    let vision_len: Vec<usize> = (0..n).map(|i| 1 + (i * 5) % 11).collect();
    toy_split([10, 12, 11], &text_len, &audio_len, &vision_len)
}

/// An aligned toy split: audio and vision lengths equal the text lengths.
pub(super) fn aligned_split() -> Split {
    let text_len: Vec<usize> = (0..30).map(|i| 2 + i % 9).collect();
    toy_split([10, 10, 10], &text_len, &text_len, &text_len)
}

/// Every invariant of docs/method.md §3.1 for a view of samples `indices`.
pub(super) fn check_rules(split: &Split, indices: &[usize], v: &MissingView) {
    let Dims {
        t_l,
        t_a,
        t_v,
        d_a,
        d_v,
        ..
    } = split.dims;
    for (r, &i) in indices.iter().enumerate() {
        let len = split.text_len[i];
        for j in 0..t_l {
            let (inm, miss) = (split.text_mask[i * t_l + j], v.text_missing[r * t_l + j]);
            assert!(miss <= inm, "text missing mask outside the input mask");
            let id = split.text_ids[i * t_l + j];
            let expected = if inm == 1 && miss == 0 {
                special::UNK
            } else {
                id
            };
            assert_eq!(v.text_m_ids[r * t_l + j], expected);
        }
        assert_eq!(v.text_missing[r * t_l], 1, "[CLS] must be kept");
        assert_eq!(v.text_missing[r * t_l + len - 1], 1, "[SEP] must be kept");
        for (miss, t, d, lens, x, x_m) in [
            (
                &v.audio_missing,
                t_a,
                d_a,
                &split.audio_len,
                &split.audio,
                &v.audio_m,
            ),
            (
                &v.vision_missing,
                t_v,
                d_v,
                &split.vision_len,
                &split.vision,
                &v.vision_m,
            ),
        ] {
            for j in 0..t {
                let m = miss[r * t + j];
                assert!(
                    m == 0 || j < lens[i],
                    "frame missing mask outside the input mask"
                );
                let frame = &x_m[(r * t + j) * d..(r * t + j + 1) * d];
                if m == 1 {
                    assert_eq!(frame, &x[(i * t + j) * d..(i * t + j + 1) * d]);
                } else {
                    assert!(frame.iter().all(|&f| f == 0.0));
                }
            }
        }
    }
}

pub(super) fn all(split: &Split) -> Vec<usize> {
    (0..split.n).collect()
}

/// `a ⊆ b` elementwise for 0/1 masks.
pub(super) fn subset(a: &[u8], b: &[u8]) -> bool {
    a.iter().zip(b).all(|(&x, &y)| x <= y)
}
