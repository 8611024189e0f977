//! Helpers of the dataset tests: hand-built split dicts in the MMSA layout.

use super::SPLIT_NAMES;
use crate::value::{ArrayData, NumpyArray, PyValue};

/// The key/value pairs of a split dict.
pub(super) type Entries = Vec<(PyValue, PyValue)>;

pub(super) fn array(shape: Vec<usize>, data: ArrayData) -> PyValue {
    PyValue::Array(NumpyArray::new(shape, data).unwrap())
}

pub(super) fn key(k: &str) -> PyValue {
    PyValue::Str(k.to_string())
}

/// An aligned split of two samples, `T = 4`, `d_a = 2`, `d_v = 1`: texts of 3 and 4 tokens.
pub(super) fn aligned_split(scores: [f32; 2]) -> Entries {
    let text_bert = vec![
        101., 2204., 102., 0., 1., 1., 1., 0., 0., 0., 0., 0., //
        101., 2919., 2204., 102., 1., 1., 1., 1., 0., 0., 0., 0.,
    ];
    vec![
        (
            key("text_bert"),
            array(vec![2, 3, 4], ArrayData::F64(text_bert)),
        ),
        (
            key("audio"),
            array(
                vec![2, 4, 2],
                ArrayData::F32((0..16).map(|x| x as f32).collect()),
            ),
        ),
        (
            key("vision"),
            array(vec![2, 4, 1], ArrayData::F32(vec![0.5; 8])),
        ),
        (
            key("regression_labels"),
            array(vec![2], ArrayData::F32(scores.to_vec())),
        ),
    ]
}

pub(super) fn file(split: Entries) -> PyValue {
    PyValue::Dict(
        SPLIT_NAMES
            .iter()
            .map(|name| (key(name), PyValue::Dict(split.clone())))
            .collect(),
    )
}

pub(super) fn replace(mut split: Entries, name: &str, value: PyValue) -> Entries {
    split.retain(|(k, _)| k != &key(name));
    split.push((key(name), value));
    split
}
