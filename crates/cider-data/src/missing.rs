//! Missing-modality simulation (docs/method.md §3): which tokens and frames a sample loses, and the
//! missing view built from it.
//!
//! Masks are bytes, 1 = present ("kept"), 0 = missing or padding; a missing mask is always
//! inside its input mask. Common rules (docs/method.md §3.1): a missing token becomes `[UNK]` (100), a
//! missing frame becomes all zeros, and `[CLS]` (position 0) and `[SEP]` (position
//! `text_len − 1`) are never missing.
//!
//! * Evaluation ([`eval_view`], docs/method.md §3.3): one draw for the whole split from NumPy's legacy
//!   MT19937 seeded with 1111 (reset before every generation), consuming exactly the arrays the
//!   reference draws, in its order, so the masks equal the reference's.
//! * Training ([`TrainMissing`], docs/method.md §3.2): every valid position of every modality is kept
//!   with probability ½, freshly for every fetch, yet reproducible from
//!   `(seed, epoch, sample index)`, so batching and shuffling never change a sample's mask.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use crate::dataset::{Dims, Split, special};
use crate::error::DataError;
use crate::mt19937::Mt19937;

/// The reference's evaluation seed (`np.random.seed(1111)`, docs/method.md §3.3).
pub const DEFAULT_MISSING_SEED: u32 = 1111;

/// Evaluation-time missing modes (docs/method.md §3.3). Rates are probabilities of *missing*, in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EvalMissing {
    /// `RMFM` (the paper's; default): each valid position of `[text; audio; vision]` is
    /// missing with probability `rate`. Draws one `[N, T_l + T_a + T_v]` uniform array.
    Rmfm { rate: f64 },
    /// `RMFM_same`: per-modality rates `(p_t, p_a, p_v)`. Draws `[N, T_l]`, `[N, T_a]`,
    /// `[N, T_v]` uniform arrays, in that order. See [`smm_rates`] for SMM.
    RmfmSame { rates: [f64; 3] },
    /// `RMM`: each modality of each sample is dropped whole with probability `rate` (text keeps
    /// `[CLS]`/`[SEP]`). Draws one `[N, 3]` uniform array.
    Rmm { rate: f64 },
    /// `TMFM` (aligned data only): one per-time-step mask over the text mask, shared by all
    /// three modalities. Draws one `[N, T_l]` uniform array.
    Tmfm { rate: f64 },
    /// `STMFM` (aligned data only): one block of `round_half_even((text_len − 2)·rate)` steps,
    /// starting at `randint(1, text_len − block)`, missing in all three modalities. Draws one
    /// legacy `randint` per sample.
    Stmfm { rate: f64 },
}

impl EvalMissing {
    /// The reference's name of the mode (`"RMFM"`, `"RMFM_same"`, `"RMM"`, `"TMFM"`, `"STMFM"`).
    pub fn name(&self) -> &'static str {
        match self {
            EvalMissing::Rmfm { .. } => "RMFM",
            EvalMissing::RmfmSame { .. } => "RMFM_same",
            EvalMissing::Rmm { .. } => "RMM",
            EvalMissing::Tmfm { .. } => "TMFM",
            EvalMissing::Stmfm { .. } => "STMFM",
        }
    }

    /// True for the modes that share one time-step mask across modalities (TMFM, STMFM) and
    /// therefore need aligned data.
    pub fn needs_aligned(&self) -> bool {
        matches!(self, EvalMissing::Tmfm { .. } | EvalMissing::Stmfm { .. })
    }

    /// Every rate of the mode must be a number in [0, 1].
    fn validate(&self) -> Result<(), DataError> {
        let rates: &[f64] = match self {
            EvalMissing::RmfmSame { rates } => rates,
            EvalMissing::Rmfm { rate }
            | EvalMissing::Rmm { rate }
            | EvalMissing::Tmfm { rate }
            | EvalMissing::Stmfm { rate } => std::slice::from_ref(rate),
        };
        match rates.iter().find(|r| !(0.0..=1.0).contains(*r)) {
            Some(bad) => Err(DataError::Invalid {
                what: format!("{} missing rate", self.name()),
                message: format!("{bad} is not a number in [0, 1]"),
            }),
            None => Ok(()),
        }
    }
}

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
    fn build(
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
    /// [`eval_view`]), and for a mask whose length is not `N·T` or that holds a value other
    /// than 0 and 1.
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
fn check_split(split: &Split) -> Result<(), DataError> {
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
fn check_indices(split: &Split, indices: &[usize]) -> Result<(), DataError> {
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
fn text_input_len(text_mask: &[u8]) -> usize {
    text_mask
        .iter()
        .position(|&m| m == 0)
        .unwrap_or(text_mask.len())
}

/// Forces `[CLS]` (position 0) and `[SEP]` (position `text_len − 1`) present in one text
/// missing-mask row. Both lie inside the input mask (checked by [`check_split`]).
fn force_cls_sep(text_missing: &mut [u8], text_mask: &[u8]) {
    let len = text_input_len(text_mask);
    text_missing[0] = 1;
    text_missing[len - 1] = 1;
}

/// Fills one mask row: `keep()` is called once for every position (valid or not, so that the
/// draws stay aligned with the reference's full arrays), and a position is present iff it was
/// kept and is valid.
fn fill_row(out: &mut [u8], valid: impl Fn(usize) -> bool, keep: &mut impl FnMut() -> bool) {
    for (j, o) in out.iter_mut().enumerate() {
        let k = keep();
        *o = u8::from(k && valid(j));
    }
}

/// True when audio and vision share the text's time axis and lengths (the aligned layout,
/// docs/method.md §2.3), which TMFM and STMFM require.
fn is_aligned(split: &Split) -> bool {
    let d = split.dims;
    d.t_a == d.t_l
        && d.t_v == d.t_l
        && split.audio_len == split.text_len
        && split.vision_len == split.text_len
}

/// Evaluation masks and missing view of a whole split (docs/method.md §3.3), from NumPy's legacy MT19937
/// seeded with `seed` (the reference uses [`DEFAULT_MISSING_SEED`]). Draws exactly the arrays
/// of the mode, in the reference's order, and compares `u > p` in f64, so the result equals
/// the reference's; masks for one mode are nested across rates.
///
/// Errors: a rate outside [0, 1] or NaN; TMFM/STMFM on unaligned data; a split whose arrays
/// disagree with its dims or whose text lacks `[CLS]`/`[SEP]`.
pub fn eval_view(split: &Split, mode: EvalMissing, seed: u32) -> Result<MissingView, DataError> {
    mode.validate()?;
    check_split(split)?;
    if mode.needs_aligned() && !is_aligned(split) {
        return Err(DataError::Invalid {
            what: format!("{} missing mode", mode.name()),
            message: format!(
                "split `{}` is unaligned (T_l, T_a, T_v = {}, {}, {}); {} needs aligned data",
                split.name,
                split.dims.t_l,
                split.dims.t_a,
                split.dims.t_v,
                mode.name()
            ),
        });
    }
    let Dims { t_l, t_a, t_v, .. } = split.dims;
    let n = split.n;
    let mut text = vec![0u8; n * t_l];
    let mut audio = vec![0u8; n * t_a];
    let mut vision = vec![0u8; n * t_v];
    let mut mt = Mt19937::new(seed);
    let text_row = |i: usize| i * t_l..(i + 1) * t_l;
    let audio_row = |i: usize| i * t_a..(i + 1) * t_a;
    let vision_row = |i: usize| i * t_v..(i + 1) * t_v;
    let text_valid = |i: usize| {
        let mask = &split.text_mask[text_row(i)];
        move |j: usize| mask[j] != 0
    };
    let prefix = |len: usize| move |j: usize| j < len;

    match mode {
        EvalMissing::Rmfm { rate } => {
            let mut keep = || mt.random_sample() > rate;
            for i in 0..n {
                fill_row(&mut text[text_row(i)], text_valid(i), &mut keep);
                fill_row(
                    &mut audio[audio_row(i)],
                    prefix(split.audio_len[i]),
                    &mut keep,
                );
                fill_row(
                    &mut vision[vision_row(i)],
                    prefix(split.vision_len[i]),
                    &mut keep,
                );
            }
        }
        EvalMissing::RmfmSame {
            rates: [p_t, p_a, p_v],
        } => {
            let mut keep = |p: f64| mt.random_sample() > p;
            for i in 0..n {
                fill_row(&mut text[text_row(i)], text_valid(i), &mut || keep(p_t));
            }
            for i in 0..n {
                let valid = prefix(split.audio_len[i]);
                fill_row(&mut audio[audio_row(i)], valid, &mut || keep(p_a));
            }
            for i in 0..n {
                let valid = prefix(split.vision_len[i]);
                fill_row(&mut vision[vision_row(i)], valid, &mut || keep(p_v));
            }
        }
        EvalMissing::Rmm { rate } => {
            for i in 0..n {
                let [keep_t, keep_a, keep_v] = [(); 3].map(|()| mt.random_sample() > rate);
                fill_row(&mut text[text_row(i)], text_valid(i), &mut || keep_t);
                fill_row(
                    &mut audio[audio_row(i)],
                    prefix(split.audio_len[i]),
                    &mut || keep_a,
                );
                fill_row(
                    &mut vision[vision_row(i)],
                    prefix(split.vision_len[i]),
                    &mut || keep_v,
                );
            }
        }
        EvalMissing::Tmfm { rate } => {
            let mut keep = || mt.random_sample() > rate;
            for i in 0..n {
                fill_row(&mut text[text_row(i)], text_valid(i), &mut keep);
            }
        }
        EvalMissing::Stmfm { rate } => {
            for i in 0..n {
                let row = &mut text[text_row(i)];
                let mask = &split.text_mask[text_row(i)];
                let len = text_input_len(mask);
                let block = ((len - 2) as f64 * rate).round_ties_even() as usize;
                let start = mt.randint(1, (len - block) as i64)? as usize;
                for (j, o) in row.iter_mut().enumerate() {
                    *o = u8::from(mask[j] != 0 && !(start..start + block).contains(&j));
                }
            }
        }
    }

    for i in 0..n {
        force_cls_sep(&mut text[text_row(i)], &split.text_mask[text_row(i)]);
    }
    if mode.needs_aligned() {
        // One mask shared by the three modalities (aligned: same time axis and lengths).
        for i in 0..n {
            let shared = &text[text_row(i)];
            for (out, len) in [
                (&mut audio[audio_row(i)], split.audio_len[i]),
                (&mut vision[vision_row(i)], split.vision_len[i]),
            ] {
                let mut steps = shared.iter();
                fill_row(out, prefix(len), &mut || steps.next() == Some(&1));
            }
        }
    }
    let all: Vec<usize> = (0..n).collect();
    Ok(MissingView::build(split, &all, text, audio, vision))
}

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

    /// A hand-built split: `n` samples, text lengths `text_len` (prefix masks, ids
    /// `[CLS] 1000+i*10+j … [SEP]`), audio/vision lengths, `d_a = 2`, `d_v = 1`, frames
    /// `x[i, t, k] = 1 + i·100 + t·10 + k` (never zero, so zeroing is visible).
    fn toy_split(
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
    fn unaligned_split() -> Split {
        let n = 40;
        let text_len: Vec<usize> = (0..n).map(|i| 2 + i % 9).collect();
        let audio_len: Vec<usize> = (0..n).map(|i| (i * 7) % 13).collect();
        let vision_len: Vec<usize> = (0..n).map(|i| 1 + (i * 5) % 11).collect();
        toy_split([10, 12, 11], &text_len, &audio_len, &vision_len)
    }

    /// An aligned toy split: audio and vision lengths equal the text lengths.
    fn aligned_split() -> Split {
        let text_len: Vec<usize> = (0..30).map(|i| 2 + i % 9).collect();
        toy_split([10, 10, 10], &text_len, &text_len, &text_len)
    }

    /// Every invariant of docs/method.md §3.1 for a view of samples `indices`.
    fn check_rules(split: &Split, indices: &[usize], v: &MissingView) {
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

    fn all(split: &Split) -> Vec<usize> {
        (0..split.n).collect()
    }

    /// `a ⊆ b` elementwise for 0/1 masks.
    fn subset(a: &[u8], b: &[u8]) -> bool {
        a.iter().zip(b).all(|(&x, &y)| x <= y)
    }

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
    fn every_mode_keeps_the_rules_and_nests_across_rates() {
        let rates = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0];
        let unaligned = unaligned_split();
        let aligned = aligned_split();
        type Make = fn(f64) -> EvalMissing;
        let modes: [(Make, bool); 4] = [
            (|p| EvalMissing::Rmfm { rate: p }, false),
            (|p| EvalMissing::RmfmSame { rates: [p, p, p] }, false),
            (|p| EvalMissing::Rmm { rate: p }, false),
            (|p| EvalMissing::Tmfm { rate: p }, true),
        ];
        for (make, needs_aligned) in modes {
            let split = if needs_aligned { &aligned } else { &unaligned };
            let views: Vec<MissingView> = rates
                .iter()
                .map(|&p| eval_view(split, make(p), DEFAULT_MISSING_SEED).unwrap())
                .collect();
            for v in &views {
                check_rules(split, &all(split), v);
            }
            for w in views.windows(2) {
                assert!(subset(&w[1].text_missing, &w[0].text_missing));
                assert!(subset(&w[1].audio_missing, &w[0].audio_missing));
                assert!(subset(&w[1].vision_missing, &w[0].vision_missing));
            }
            // Rate 1: only [CLS]/[SEP] remain; every frame is missing, except that TMFM's
            // shared mask also keeps the frames at the [CLS]/[SEP] time steps.
            let last = views.last().unwrap();
            let kept: usize = last.text_missing.iter().map(|&m| usize::from(m)).sum();
            assert_eq!(kept, 2 * split.n, "{:?}", make(1.0));
            if needs_aligned {
                assert_eq!(last.audio_missing, last.text_missing);
                assert_eq!(last.vision_missing, last.text_missing);
            } else {
                let frames = last.audio_missing.iter().chain(&last.vision_missing);
                assert!(frames.into_iter().all(|&m| m == 0));
            }
            // Rate 0 keeps every valid position (u = 0 exactly has probability 2^-53).
            let first = &views[0];
            assert_eq!(first.text_missing, split.text_mask);
            assert_eq!(first.audio_missing, split.audio_mask());
        }
    }

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

    #[test]
    fn bad_options_are_typed_errors() {
        let split = unaligned_split();
        for mode in [
            EvalMissing::Rmfm { rate: -0.1 },
            EvalMissing::Rmfm { rate: f64::NAN },
            EvalMissing::RmfmSame {
                rates: [0.0, 1.5, 0.0],
            },
            EvalMissing::Rmm {
                rate: f64::INFINITY,
            },
            EvalMissing::Tmfm { rate: 0.3 },
            EvalMissing::Stmfm { rate: 0.3 },
        ] {
            assert!(
                matches!(
                    eval_view(&split, mode, 1111),
                    Err(DataError::Invalid { .. })
                ),
                "{mode:?}"
            );
        }
        let mut short = split.clone();
        short.audio.pop();
        assert!(matches!(
            eval_view(&short, EvalMissing::Rmfm { rate: 0.2 }, 1111),
            Err(DataError::Invalid { .. })
        ));
        let mut no_sep = toy_split([4, 4, 4], &[2], &[1], &[1]);
        no_sep.text_mask = vec![1, 0, 0, 0];
        assert!(eval_view(&no_sep, EvalMissing::Rmm { rate: 0.2 }, 1111).is_err());
        let train = TrainMissing::new(TrainRng::Fast, 0);
        assert!(matches!(
            train.view(&split, &[40], 0),
            Err(DataError::Invalid { .. })
        ));
        assert!(matches!(
            eval_view(&split, EvalMissing::Rmfm { rate: 0.2 }, 1111)
                .unwrap()
                .rows(&[40]),
            Err(DataError::Invalid { .. })
        ));
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

    /// One reference file of a fixture case, as i64 / f32 values (shape checked).
    fn fixture_values(dir: &std::path::Path, file: &serde_json::Value) -> (Vec<i64>, Vec<f32>) {
        let name = file["file"].as_str().unwrap();
        let array = crate::npy::from_path(dir.join(name)).unwrap();
        let shape: Vec<usize> = file["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(array.shape(), shape.as_slice(), "{name}");
        let ints = match array.data() {
            crate::ArrayData::I64(v) => v.clone(),
            crate::ArrayData::U8(v) => v.iter().map(|&x| i64::from(x)).collect(),
            _ => Vec::new(),
        };
        let floats = match array.data() {
            crate::ArrayData::F32(v) => v.clone(),
            _ => Vec::new(),
        };
        (ints, floats)
    }

    /// Parity with the reference pipeline (`testdata/masks/*/index.json`): the test split of
    /// the tiny MOSI fixtures, binary task, seed 1111. For every case (RMFM 0/0.3/0.7/1.0,
    /// RMFM_same, RMM, and on aligned data TMFM/STMFM) the missing masks, `[UNK]` ids, zeroed
    /// frames and counterfactual ids must equal the reference's exactly (frames compared by
    /// value: the reference's `0 · x` may be −0.0 where we write 0.0); the bias words (train
    /// split, threshold 100, [`BiasRule::Parity`]; [`BiasRule::Clean`] differs) too, in dictionary
    /// order.
    #[test]
    fn reference_fixtures_match_exactly() {
        use crate::bias::{BiasRule, bias_words, counterfactual_ids};
        use crate::dataset::{Dataset, Task};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
        let mut cases_checked = 0;
        for layout in ["mosi_aligned", "mosi_unaligned"] {
            let dir = root.join("masks").join(layout);
            let index: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
            assert_eq!(index["task"], "binary");
            assert_eq!(index["split"], "test");
            let seed = index["seed"].as_u64().unwrap() as u32;
            let pkl = root
                .join("mmsa")
                .join(index["source_fixture"].as_str().unwrap());
            let data = Dataset::from_path(&pkl).unwrap();
            assert_eq!(data.aligned, index["aligned"].as_bool().unwrap());

            let bias = bias_words(&data.train, Task::Binary, 100, BiasRule::Parity).unwrap();
            let bias_ref = crate::npy::from_path(dir.join("bias_word_ids.npy")).unwrap();
            let crate::ArrayData::I64(bias_ref) = bias_ref.data() else {
                panic!("bias_word_ids.npy is not int64");
            };
            let bias_i64: Vec<i64> = bias.iter().map(|&x| i64::from(x)).collect();
            assert_eq!(&bias_i64, bias_ref, "{layout}: bias words");
            // The stale-cv quirk matters here: skipping neutral-only tokens changes the list.
            let clean = bias_words(&data.train, Task::Binary, 100, BiasRule::Clean).unwrap();
            assert_ne!(clean, bias, "{layout}: clean rule");

            for (name, case) in index["cases"].as_object().unwrap() {
                let rate = &case["rate"];
                let scalar = || rate.as_f64().or_else(|| rate[0].as_f64()).unwrap();
                let mode = match case["mode"].as_str().unwrap() {
                    "RMFM" => EvalMissing::Rmfm { rate: scalar() },
                    "RMFM_same" => EvalMissing::RmfmSame {
                        rates: [0, 1, 2].map(|k| rate[k].as_f64().unwrap()),
                    },
                    "RMM" => EvalMissing::Rmm { rate: scalar() },
                    "TMFM" => EvalMissing::Tmfm { rate: scalar() },
                    "STMFM" => EvalMissing::Stmfm { rate: scalar() },
                    other => panic!("unknown mode {other}"),
                };
                let v = eval_view(&data.test, mode, seed).unwrap();
                let cf = counterfactual_ids(&v.text_m_ids, &bias);
                let files = &case["files"];
                let as_i64 = |x: &[u32]| x.iter().map(|&v| i64::from(v)).collect::<Vec<_>>();
                let bytes = |x: &[u8]| x.iter().map(|&v| i64::from(v)).collect::<Vec<_>>();
                let ours: [(&str, Vec<i64>); 5] = [
                    ("text_m_ids", as_i64(&v.text_m_ids)),
                    ("text_cf_ids", as_i64(&cf)),
                    ("text_missing_mask", bytes(&v.text_missing)),
                    ("audio_missing_mask", bytes(&v.audio_missing)),
                    ("vision_missing_mask", bytes(&v.vision_missing)),
                ];
                for (key, values) in ours {
                    let (reference, _) = fixture_values(&dir, &files[key]);
                    assert_eq!(values, reference, "{layout} {name}: {key}");
                }
                for (key, values) in [("audio_m", &v.audio_m), ("vision_m", &v.vision_m)] {
                    let (_, reference) = fixture_values(&dir, &files[key]);
                    assert!(
                        values.len() == reference.len()
                            && values.iter().zip(&reference).all(|(a, b)| a == b),
                        "{layout} {name}: {key}"
                    );
                }
                cases_checked += 1;
            }
        }
        assert_eq!(cases_checked, 16);
    }
}
