//! The raw element layout of NumPy arrays, shared by every reader and writer of this crate
//! (`.npy`, pickle, joblib): dtype `descr` strings and byte order, element counts, decoding raw
//! bytes into C-order arrays (Fortran order converted) and encoding them back as little-endian
//! bytes.
//!
//! Supported element types: `f4 f8 i8 i4 u1 b1` in either byte order, and `O` (object
//! references, which have no raw bytes of their own).

use crate::value::{ArrayData, DType, NumpyArray};

/// Byte order of multi-byte elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByteOrder {
    Little,
    Big,
}

impl ByteOrder {
    /// The order of the machine we run on (NumPy's `'='`).
    pub(crate) const NATIVE: ByteOrder = if cfg!(target_endian = "big") {
        ByteOrder::Big
    } else {
        ByteOrder::Little
    };
}

/// An element type with its byte order, what NumPy calls a dtype `descr` (`'<f8'`, `'|u1'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawDType {
    pub(crate) kind: DType,
    pub(crate) order: ByteOrder,
}

impl RawDType {
    /// Parses a type string: an optional order (`<` `>` `|` `=`) then `f4 f8 i8 i4 u1 b1 ?` or
    /// `O` (optionally `O8` / `O4`). Without an order the type is native, as in `numpy.dtype`.
    pub(crate) fn parse(code: &str) -> Option<RawDType> {
        let (order, rest) = match code.as_bytes().first() {
            Some(b'<') => (ByteOrder::Little, &code[1..]),
            Some(b'>') => (ByteOrder::Big, &code[1..]),
            Some(b'|' | b'=') => (ByteOrder::NATIVE, &code[1..]),
            _ => (ByteOrder::NATIVE, code),
        };
        let kind = match rest {
            "f4" => DType::F32,
            "f8" => DType::F64,
            "i8" => DType::I64,
            "i4" => DType::I32,
            "u1" => DType::U8,
            "b1" | "?" => DType::Bool,
            "O" | "O8" | "O4" => DType::Object,
            _ => return None,
        };
        Some(RawDType { kind, order })
    }

    /// Bytes per element (8 for object references, as on 64-bit NumPy).
    pub(crate) fn item_size(self) -> usize {
        match self.kind {
            DType::F64 | DType::I64 | DType::Object => 8,
            DType::F32 | DType::I32 => 4,
            DType::U8 | DType::Bool => 1,
        }
    }

    /// The `.npy` descr string, e.g. `'<f4'`, `'>i8'`, `'|b1'`, `'|O'`.
    pub(crate) fn descr(self) -> String {
        let order = match (self.item_size(), self.order) {
            _ if self.kind == DType::Object => '|',
            (1, _) => '|',
            (_, ByteOrder::Little) => '<',
            (_, ByteOrder::Big) => '>',
        };
        let code = match self.kind {
            DType::F32 => "f4",
            DType::F64 => "f8",
            DType::I64 => "i8",
            DType::I32 => "i4",
            DType::U8 => "u1",
            DType::Bool => "b1",
            DType::Object => "O",
        };
        format!("{order}{code}")
    }
}

/// The number of elements of `shape`, `None` on overflow.
pub(crate) fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Decodes raw elements into a C-order array of `shape`.
///
/// `bytes` must hold exactly `product(shape) · item_size` bytes, in C order, or in Fortran
/// (column-major) order when `fortran` is set. Errors are plain messages: the callers add the
/// file name and offset.
pub(crate) fn decode(
    bytes: &[u8],
    dtype: RawDType,
    shape: &[usize],
    fortran: bool,
) -> Result<NumpyArray, String> {
    let count = element_count(shape).ok_or_else(|| format!("shape {shape:?} overflows"))?;
    if dtype.kind == DType::Object {
        return Err("an object array has no raw element bytes".to_string());
    }
    let expected = count
        .checked_mul(dtype.item_size())
        .ok_or_else(|| format!("shape {shape:?} overflows"))?;
    if bytes.len() != expected {
        return Err(format!(
            "array of shape {shape:?} and dtype {} needs {expected} bytes, found {}",
            dtype.descr(),
            bytes.len()
        ));
    }
    let big = dtype.order == ByteOrder::Big;
    let data = match dtype.kind {
        DType::F32 => ArrayData::F32(if big {
            from_chunks(bytes, f32::from_be_bytes)
        } else {
            from_chunks(bytes, f32::from_le_bytes)
        }),
        DType::F64 => ArrayData::F64(if big {
            from_chunks(bytes, f64::from_be_bytes)
        } else {
            from_chunks(bytes, f64::from_le_bytes)
        }),
        DType::I64 => ArrayData::I64(if big {
            from_chunks(bytes, i64::from_be_bytes)
        } else {
            from_chunks(bytes, i64::from_le_bytes)
        }),
        DType::I32 => ArrayData::I32(if big {
            from_chunks(bytes, i32::from_be_bytes)
        } else {
            from_chunks(bytes, i32::from_le_bytes)
        }),
        DType::U8 => ArrayData::U8(bytes.to_vec()),
        DType::Bool => ArrayData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        DType::Object => unreachable!("object arrays were refused above"),
    };
    let data = if fortran {
        fortran_to_c(data, shape)
    } else {
        data
    };
    NumpyArray::new(shape.to_vec(), data).map_err(|e| e.to_string())
}

/// Converts fixed-size chunks of `bytes` (whose length is a multiple of `N`) to elements.
fn from_chunks<const N: usize, T>(bytes: &[u8], convert: impl Fn([u8; N]) -> T) -> Vec<T> {
    let (chunks, _) = bytes.as_chunks::<N>();
    chunks.iter().map(|&c| convert(c)).collect()
}

/// Reorders elements stored in Fortran order into C order (both for the same `shape`).
pub(crate) fn fortran_to_c(data: ArrayData, shape: &[usize]) -> ArrayData {
    if shape.iter().filter(|&&d| d > 1).count() <= 1 {
        return data;
    }
    match data {
        ArrayData::F32(v) => ArrayData::F32(reorder(&v, shape)),
        ArrayData::F64(v) => ArrayData::F64(reorder(&v, shape)),
        ArrayData::I64(v) => ArrayData::I64(reorder(&v, shape)),
        ArrayData::I32(v) => ArrayData::I32(reorder(&v, shape)),
        ArrayData::U8(v) => ArrayData::U8(reorder(&v, shape)),
        ArrayData::Bool(v) => ArrayData::Bool(reorder(&v, shape)),
        ArrayData::Object(v) => ArrayData::Object(reorder(&v, shape)),
    }
}

/// Gathers a Fortran-order buffer into C order: walks the C-order multi-index, last axis
/// fastest, keeping the Fortran offset `Σ i_k · Π_{j<k} d_j` up to date.
fn reorder<T: Clone>(data: &[T], shape: &[usize]) -> Vec<T> {
    let mut strides = Vec::with_capacity(shape.len());
    let mut stride = 1usize;
    for &d in shape {
        strides.push(stride);
        stride *= d;
    }
    let mut index = vec![0usize; shape.len()];
    let mut offset = 0usize;
    let mut out = Vec::with_capacity(data.len());
    for _ in 0..data.len() {
        out.push(data[offset].clone());
        for k in (0..shape.len()).rev() {
            index[k] += 1;
            offset += strides[k];
            if index[k] < shape[k] {
                break;
            }
            offset -= strides[k] * shape[k];
            index[k] = 0;
        }
    }
    out
}

/// Appends the elements of a numeric or bool array to `out` as little-endian bytes (C order);
/// appends nothing for object arrays.
pub(crate) fn append_le_bytes(data: &ArrayData, out: &mut Vec<u8>) {
    match data {
        ArrayData::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        ArrayData::F64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        ArrayData::I64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        ArrayData::I32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        ArrayData::U8(v) => out.extend_from_slice(v),
        ArrayData::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        ArrayData::Object(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order_is_converted_to_c_order() {
        // [[0, 1, 2], [3, 4, 5]] stored column by column.
        let bytes: Vec<u8> = [0i32, 3, 1, 4, 2, 5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let array = decode(&bytes, RawDType::parse("<i4").unwrap(), &[2, 3], true).unwrap();
        assert_eq!(array.data(), &ArrayData::I32(vec![0, 1, 2, 3, 4, 5]));
        // Three axes: element (i, j, k) of a 2x3x4 array sits at i + 2j + 6k in Fortran order.
        let fortran: Vec<f32> = (0..24)
            .map(|f| {
                let (i, j, k) = (f % 2, (f / 2) % 3, f / 6);
                (i * 12 + j * 4 + k) as f32
            })
            .collect();
        let bytes: Vec<u8> = fortran.iter().flat_map(|v| v.to_be_bytes()).collect();
        let array = decode(&bytes, RawDType::parse(">f4").unwrap(), &[2, 3, 4], true).unwrap();
        assert_eq!(
            array.data(),
            &ArrayData::F32((0..24).map(|v| v as f32).collect())
        );
    }
}
