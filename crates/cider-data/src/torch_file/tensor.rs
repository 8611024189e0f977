//! Tensors of a PyTorch checkpoint: a storage record (raw little-endian elements of one dtype)
//! viewed through an offset, a size and a stride, as `torch._utils._rebuild_tensor_v2` does;
//! every index is checked against the storage before anything is copied.

/// The element type of a storage, from its pickled class (`torch.FloatStorage`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorchDType {
    /// `torch.float32`.
    F32,
    /// `torch.float64`.
    F64,
    /// `torch.float16`.
    F16,
    /// `torch.bfloat16`.
    BF16,
    /// `torch.int64`.
    I64,
    /// `torch.int32`.
    I32,
    /// `torch.int16`.
    I16,
    /// `torch.int8`.
    I8,
    /// `torch.uint8`.
    U8,
    /// `torch.bool`.
    Bool,
}

impl TorchDType {
    /// The dtype of a storage class (`torch.FloatStorage` → [`TorchDType::F32`]); `None` for
    /// any other class.
    pub fn of_storage_class(class: &str) -> Option<Self> {
        Some(match class {
            "torch.FloatStorage" => TorchDType::F32,
            "torch.DoubleStorage" => TorchDType::F64,
            "torch.HalfStorage" => TorchDType::F16,
            "torch.BFloat16Storage" => TorchDType::BF16,
            "torch.LongStorage" => TorchDType::I64,
            "torch.IntStorage" => TorchDType::I32,
            "torch.ShortStorage" => TorchDType::I16,
            "torch.CharStorage" => TorchDType::I8,
            "torch.ByteStorage" => TorchDType::U8,
            "torch.BoolStorage" => TorchDType::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            TorchDType::F64 | TorchDType::I64 => 8,
            TorchDType::F32 | TorchDType::I32 => 4,
            TorchDType::F16 | TorchDType::BF16 | TorchDType::I16 => 2,
            TorchDType::I8 | TorchDType::U8 | TorchDType::Bool => 1,
        }
    }
}

/// One tensor of a checkpoint, contiguous in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchTensor {
    dtype: TorchDType,
    shape: Vec<usize>,
    /// `product(shape) * dtype.size()` little-endian bytes.
    bytes: Vec<u8>,
}

impl TorchTensor {
    /// Views `storage` (elements of `dtype`) at `offset` with `size` and `stride` (in
    /// elements), copying the viewed elements in C order. Errors say which index leaves the
    /// storage.
    pub(super) fn view(
        dtype: TorchDType,
        storage: &[u8],
        offset: usize,
        size: &[usize],
        stride: &[usize],
    ) -> Result<Self, String> {
        if size.len() != stride.len() {
            return Err(format!(
                "size {size:?} and stride {stride:?} have different lengths"
            ));
        }
        let count = size
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("size {size:?} overflows"))?;
        let item = dtype.size();
        let elements = storage.len() / item;
        let mut bytes = Vec::new();
        if count > 0 {
            size.iter()
                .zip(stride)
                .try_fold(offset, |acc, (&d, &s)| {
                    acc.checked_add((d - 1).checked_mul(s)?)
                })
                .filter(|&last| last < elements)
                .ok_or_else(|| {
                    format!(
                        "offset {offset}, size {size:?} and stride {stride:?} reach beyond a \
                         storage of {elements} elements"
                    )
                })?;
            if count > elements {
                return Err(format!(
                    "size {size:?} views {count} elements of a storage of {elements} (a \
                     broadcast view); not supported"
                ));
            }
            bytes.reserve_exact(count * item);
            let contiguous = is_contiguous(size, stride);
            if contiguous {
                bytes.extend_from_slice(&storage[offset * item..(offset + count) * item]);
            } else {
                let mut index = vec![0usize; size.len()];
                for _ in 0..count {
                    let at = offset + index.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>();
                    bytes.extend_from_slice(&storage[at * item..(at + 1) * item]);
                    for axis in (0..size.len()).rev() {
                        index[axis] += 1;
                        if index[axis] < size[axis] {
                            break;
                        }
                        index[axis] = 0;
                    }
                }
            }
        }
        Ok(TorchTensor {
            dtype,
            shape: size.to_vec(),
            bytes,
        })
    }

    /// The element type.
    pub fn dtype(&self) -> TorchDType {
        self.dtype
    }

    /// The dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.bytes.len() / self.dtype.size()
    }

    /// True when the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The elements as `f32` in C order (integers and bools converted, `f64` rounded).
    pub fn to_f32(&self) -> Vec<f32> {
        let chunks = self.bytes.chunks_exact(self.dtype.size());
        match self.dtype {
            TorchDType::F32 => chunks
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            TorchDType::F64 => chunks
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
            TorchDType::F16 => chunks
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            TorchDType::BF16 => chunks
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                .collect(),
            TorchDType::I64 => chunks
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
            TorchDType::I32 => chunks
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
                .collect(),
            TorchDType::I16 => chunks
                .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])))
                .collect(),
            TorchDType::I8 => chunks.map(|c| f32::from(c[0] as i8)).collect(),
            TorchDType::U8 | TorchDType::Bool => chunks.map(|c| f32::from(c[0])).collect(),
        }
    }
}

/// Whether `stride` is the C-order stride of `size` (axes of length 1 may have any stride).
fn is_contiguous(size: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&d, &s) in size.iter().zip(stride).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(d);
    }
    true
}

/// IEEE half precision to single.
fn f16_to_f32(bits: u16) -> f32 {
    let exponent = (bits >> 10) & 0x1f;
    let mantissa = u32::from(bits & 0x3ff);
    let magnitude = match exponent {
        0 => mantissa as f32 * 2f32.powi(-24),
        0x1f => f32::from_bits(0x7f80_0000 | (mantissa << 13)),
        e => f32::from_bits(((u32::from(e) + 112) << 23) | (mantissa << 13)),
    };
    if bits >> 15 == 1 {
        -magnitude
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn views_follow_offset_size_and_stride() {
        // Storage 0..12 as a 3×4 matrix; its transpose [4, 3] has stride (1, 4).
        let storage = f32_bytes(&(0..12).map(|v| v as f32).collect::<Vec<_>>());
        let t = TorchTensor::view(TorchDType::F32, &storage, 0, &[4, 3], &[1, 4]).unwrap();
        assert_eq!(t.shape(), &[4, 3]);
        assert_eq!(
            t.to_f32(),
            [0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]
        );
        // Row 1 of the matrix: offset 4, size [4], stride [1].
        let row = TorchTensor::view(TorchDType::F32, &storage, 4, &[4], &[1]).unwrap();
        assert_eq!(row.to_f32(), [4., 5., 6., 7.]);
        // A scalar and an empty tensor.
        let scalar = TorchTensor::view(TorchDType::F32, &storage, 11, &[], &[]).unwrap();
        assert_eq!(scalar.to_f32(), [11.]);
        let empty = TorchTensor::view(TorchDType::F32, &storage, 0, &[0, 5], &[5, 1]).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn views_beyond_the_storage_are_refused() {
        let storage = f32_bytes(&[0.0; 12]);
        let err = TorchTensor::view(TorchDType::F32, &storage, 1, &[3, 4], &[4, 1]).unwrap_err();
        assert!(err.contains("beyond a storage of 12 elements"), "{err}");
        let err = TorchTensor::view(TorchDType::F32, &storage, 0, &[2], &[usize::MAX]).unwrap_err();
        assert!(err.contains("beyond"), "{err}");
        let err = TorchTensor::view(TorchDType::F32, &storage, 0, &[2, 2], &[1]).unwrap_err();
        assert!(err.contains("different lengths"), "{err}");
        let err =
            TorchTensor::view(TorchDType::F32, &storage, 0, &[usize::MAX, 3], &[1, 1]).unwrap_err();
        assert!(err.contains("overflows"), "{err}");
    }

    #[test]
    fn half_and_integer_storages_convert_to_f32() {
        // 1.0, -2.5, 65504 (largest half), 2^-24 (smallest subnormal) in IEEE half.
        let halves: Vec<u8> = [0x3c00u16, 0xc100, 0x7bff, 0x0001]
            .iter()
            .flat_map(|b| b.to_le_bytes())
            .collect();
        let t = TorchTensor::view(TorchDType::F16, &halves, 0, &[4], &[1]).unwrap();
        assert_eq!(t.to_f32(), [1.0, -2.5, 65504.0, 2f32.powi(-24)]);
        // bfloat16 1.5 is 0x3fc0.
        let t = TorchTensor::view(TorchDType::BF16, &0x3fc0u16.to_le_bytes(), 0, &[1], &[1]);
        assert_eq!(t.unwrap().to_f32(), [1.5]);
        let longs: Vec<u8> = [-3i64, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
        let t = TorchTensor::view(TorchDType::I64, &longs, 0, &[2], &[1]).unwrap();
        assert_eq!(t.to_f32(), [-3.0, 7.0]);
    }
}
