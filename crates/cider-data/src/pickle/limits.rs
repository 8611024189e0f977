//! The resource limits of the pickle machine: how deep containers and nested streams may go,
//! and the memory budget (proportional to the input size) with the costs charged against it:
//! decompressed joblib streams, the stack, marks, memo and heap as they grow, and the result,
//! which stops memo-reference "billion laughs" blow-ups and streams of small values alike.

use crate::elements::{ByteOrder, RawDType};
use crate::value::{ArrayData, DType, PyValue};

/// Deepest nesting of containers in a result (MMSA files nest 3 deep; CPython itself stops
/// near 1000).
pub const MAX_DEPTH: usize = 128;
/// Pickle streams nested inside one another (joblib stores object arrays as inner pickles).
pub(super) const MAX_NESTED_STREAMS: usize = 8;
/// Memory the machine may build, per input byte, on top of [`BUDGET_BASE`].
pub(crate) const BUDGET_FACTOR: usize = 64;
/// Memory the machine may always build, whatever the input size.
pub(super) const BUDGET_BASE: usize = 64 << 20;
/// Bookkeeping of the result's assembly per heap node: a reference count, a height and a
/// visit state (`assembly.rs`).
pub(super) const WALK_COST: usize = 4 + 8 + 1;

/// The memory an input of `len` bytes may make the machine build: [`BUDGET_FACTOR`] bytes per
/// input byte plus [`BUDGET_BASE`]. For a compressed joblib dump, `len` is the file's size and
/// the decompressed stream is charged against the budget too.
pub(crate) fn budget_for(len: usize) -> usize {
    len.saturating_mul(BUDGET_FACTOR)
        .saturating_add(BUDGET_BASE)
}

/// Memory set aside from every budget for what is not charged: the machine's fixed state,
/// error messages, a decompressor's state and read buffer.
pub(crate) const RESERVE: usize = 256 << 10;

/// Str payloads at least this long have their UTF-8 checked when used rather than when read.
pub(super) const LAZY_UTF8_LEN: usize = 1 << 16;
/// Bookkeeping cost charged per value and per heap node.
pub(super) const VALUE_COST: usize = std::mem::size_of::<PyValue>();

/// Heap bytes of a leaf value.
pub(super) fn payload_len(value: &PyValue) -> usize {
    match value {
        PyValue::Str(text) => text.len(),
        PyValue::Bytes(bytes) => bytes.len(),
        PyValue::Class(text) | PyValue::BigInt(text) => text.len(),
        _ => 0,
    }
}

/// Approximate memory of a value, for the budget.
pub(super) fn approx_size(value: &PyValue) -> usize {
    VALUE_COST
        + match value {
            PyValue::List(items) | PyValue::Tuple(items) => items.iter().map(approx_size).sum(),
            PyValue::Dict(pairs) => pairs
                .iter()
                .map(|(k, v)| approx_size(k) + approx_size(v))
                .sum(),
            PyValue::Object(object) => {
                object.class.len()
                    + object.args.iter().map(approx_size).sum::<usize>()
                    + object.state.as_ref().map_or(0, approx_size)
                    + object
                        .dict_items
                        .iter()
                        .map(|(k, v)| approx_size(k) + approx_size(v))
                        .sum::<usize>()
                    + object.list_items.iter().map(approx_size).sum::<usize>()
            }
            PyValue::Persistent(pid) => approx_size(pid),
            PyValue::Array(array) => match array.data() {
                ArrayData::Object(items) => items.iter().map(approx_size).sum(),
                data => data.len() * npy_item_size(data.dtype()),
            },
            leaf => payload_len(leaf),
        }
}

fn npy_item_size(dtype: DType) -> usize {
    RawDType {
        kind: dtype,
        order: ByteOrder::Little,
    }
    .item_size()
}
