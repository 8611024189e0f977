//! joblib dumps (CIDer's OOD files), read with the restricted [`crate::pickle`] machine.
//!
//! `joblib.dump` writes a pickle in which every NumPy array is replaced by a
//! `joblib.numpy_pickle.NumpyArrayWrapper` object: NEWOBJ, then BUILD with the state dict
//! `{subclass, shape, order, dtype, allow_mmap[, numpy_array_alignment_bytes]}`, and right after
//! the BUILD opcode, outside any pickle frame, the array itself:
//!
//! * numeric / bool arrays: when `numpy_array_alignment_bytes` is set (joblib ≥ 1.2), one byte
//!   `p` and `p` padding bytes, then `product(shape) · itemsize` raw bytes in `order` ('C' or
//!   'F');
//! * object arrays: a complete inner pickle of the array (protocol 5, own memo), up to its STOP.
//!
//! The whole file may be compressed: a zlib stream (first byte `0x78`, joblib's default
//! `compress=3`), gzip (`1f 8b`), or the pre-0.10 `ZF` container (`ZF`, the decompressed length in
//! hex padded to 19 chars, then zlib data). bz2, xz, lzma and lz4 are recognised and refused.
//! The only class allowed beyond those of a plain pickle is `NumpyArrayWrapper`.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

use flate2::read::{MultiGzDecoder, ZlibDecoder};

use crate::elements::{RawDType, decode, element_count};
use crate::error::DataError;
use crate::pickle::{BUDGET_FACTOR, Extension, RESERVE, StateItem, Stream, budget_for};
use crate::value::{DType, NumpyArray, PyValue};

/// Module and class of joblib's array placeholder.
const WRAPPER: (&str, &str) = ("joblib.numpy_pickle", "NumpyArrayWrapper");
/// Length of the hex length field of the old `ZF` container (`len(hex(2**64))`).
const ZF_LEN_FIELD: usize = 19;
/// Bytes decompressed per read.
const INFLATE_CHUNK: usize = 64 << 10;

/// Reads a joblib dump held in memory. `source` names it in errors.
///
/// The dump may build as much memory as a pickle of its size (`pickle::budget_for`, 64 × its
/// size + 64 MiB); the decompressed stream counts against that budget.
pub fn from_bytes(bytes: &[u8], source: &str) -> Result<PyValue, DataError> {
    from_bytes_within(bytes, source, budget_for(bytes.len()))
}

/// [`from_bytes`] with an explicit memory budget in bytes.
pub(crate) fn from_bytes_within(
    bytes: &[u8],
    source: &str,
    budget: usize,
) -> Result<PyValue, DataError> {
    let (pickle, used) = decompress(bytes, source, budget)?;
    Stream::with_budget(&pickle, source, &Joblib, budget - used).load()
}

/// Reads a joblib dump file.
pub fn from_path(path: impl AsRef<Path>) -> Result<PyValue, DataError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    from_bytes(&bytes, &path.display().to_string())
}

fn joblib_error(source: &str, message: impl Into<String>) -> DataError {
    DataError::Joblib {
        file: source.to_string(),
        message: message.into(),
    }
}

/// The pickle stream of a dump (the bytes themselves, or their decompression) and the memory
/// its decompression took from `budget`.
fn decompress<'b>(
    bytes: &'b [u8],
    source: &str,
    budget: usize,
) -> Result<(Cow<'b, [u8]>, usize), DataError> {
    let inflate = |reader: &mut dyn Read, what: &str| {
        let out = inflate_within(reader, budget)
            .map_err(|e| joblib_error(source, format!("corrupt {what} stream: {e}")))?
            .ok_or_else(|| {
                joblib_error(
                    source,
                    format!(
                        "the {what} stream inflates to more than the file's memory budget \
                         ({BUDGET_FACTOR}x its size + 64 MiB = {budget} bytes); refusing"
                    ),
                )
            })?;
        let used = out.capacity();
        Ok::<_, DataError>((Cow::Owned(out), used))
    };
    match bytes {
        [] => Err(joblib_error(source, "empty file")),
        [0x80, ..] => Ok((Cow::Borrowed(bytes), 0)),
        [0x78, ..] => inflate(&mut ZlibDecoder::new(bytes), "zlib"),
        [0x1f, 0x8b, ..] => inflate(&mut MultiGzDecoder::new(bytes), "gzip"),
        [b'Z', b'F', rest @ ..] => {
            let (declared, data) = zf_header(rest)
                .ok_or_else(|| joblib_error(source, "bad ZF header: expected a hex length"))?;
            let (out, used) = inflate(&mut ZlibDecoder::new(data), "zlib")?;
            if out.len() as u64 != declared {
                return Err(joblib_error(
                    source,
                    format!(
                        "ZF container declares {declared} bytes, decompressed {}",
                        out.len()
                    ),
                ));
            }
            Ok((out, used))
        }
        _ => {
            let refused = [
                (&b"BZ"[..], "bz2"),
                (&b"\xfd7zXZ"[..], "xz"),
                (&b"\x5d\x00"[..], "lzma"),
                (&b"\x04\x22\x4d\x18"[..], "lz4"),
            ];
            if let Some((_, name)) = refused.iter().find(|(magic, _)| bytes.starts_with(magic)) {
                return Err(joblib_error(
                    source,
                    format!(
                        "{name} compression is not supported (re-save with compress=0 or 'zlib')"
                    ),
                ));
            }
            Err(joblib_error(
                source,
                format!(
                    "not a joblib dump: starts with {:02x?}, expected a pickle (0x80) or a \
                     zlib / gzip / ZF stream",
                    &bytes[..bytes.len().min(4)]
                ),
            ))
        }
    }
}

/// Reads `reader` to its end into a vector that never holds more than `budget` bytes, counting
/// the moment a growing vector and its copy both exist; `None` when the data does not fit.
fn inflate_within(reader: &mut dyn Read, budget: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; INFLATE_CHUNK];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(Some(out)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let needed = out.len() + n;
        if needed > out.capacity() {
            let room = budget.saturating_sub(RESERVE + out.capacity());
            if needed > room {
                return Ok(None);
            }
            let new_cap = needed.max((out.capacity() * 2).min(room));
            let mut grown = Vec::with_capacity(new_cap);
            grown.extend_from_slice(&out);
            out = grown;
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Parses the `ZF` container's length field (after `ZF`): `0x…` padded with spaces to 19
/// chars, plus one optional space. Returns the declared length and the zlib data.
fn zf_header(rest: &[u8]) -> Option<(u64, &[u8])> {
    let field = std::str::from_utf8(rest.get(..ZF_LEN_FIELD)?).ok()?;
    let hex = field.trim_end().strip_prefix("0x")?;
    let declared = u64::from_str_radix(hex, 16).ok()?;
    let data = &rest[ZF_LEN_FIELD..];
    Some((declared, data.strip_prefix(b" ").unwrap_or(data)))
}

/// The joblib dialect: `NumpyArrayWrapper` objects followed by their array data.
struct Joblib;

impl Extension for Joblib {
    fn allows_class(&self, module: &str, name: &str) -> bool {
        (module, name) == WRAPPER
    }

    fn build(
        &self,
        class: &str,
        state: Vec<(String, StateItem)>,
        stream: &mut Stream<'_, '_>,
    ) -> Result<NumpyArray, DataError> {
        let source = stream.source().to_string();
        let at = stream.position();
        let fail =
            |message: String| joblib_error(&source, format!("{class} at byte {at}: {message}"));
        let wrapper = Wrapper::from_state(state).map_err(fail)?;
        if wrapper.dtype.kind == DType::Object {
            return wrapper.read_objects(stream).map_err(|e| match e {
                Failure::Joblib(message) => fail(message),
                Failure::Data(e) => e,
            });
        }
        wrapper.read_raw(stream).map_err(fail)
    }
}

/// A failure while reading an object array: joblib framing, or the inner pickle's own error.
enum Failure {
    Joblib(String),
    Data(DataError),
}

/// The state of a `NumpyArrayWrapper`.
#[derive(Debug)]
struct Wrapper {
    shape: Vec<usize>,
    fortran: bool,
    dtype: RawDType,
    /// Whether a padding byte (and padding) precedes the data: joblib ≥ 1.2 writes
    /// `numpy_array_alignment_bytes`, older versions do not.
    padded: bool,
}

impl Wrapper {
    fn from_state(state: Vec<(String, StateItem)>) -> Result<Wrapper, String> {
        let (mut shape, mut order, mut dtype, mut padded) = (None, None, None, false);
        for (key, item) in state {
            match (key.as_str(), item) {
                ("subclass", StateItem::Class(name)) => {
                    if name != "numpy.ndarray" {
                        return Err(format!("array subclass `{name}` is not supported"));
                    }
                }
                ("shape", StateItem::Value(PyValue::Tuple(dims) | PyValue::List(dims))) => {
                    let dims: Option<Vec<usize>> = dims
                        .iter()
                        .map(|d| match d {
                            PyValue::Int(n) => usize::try_from(*n).ok(),
                            _ => None,
                        })
                        .collect();
                    shape = Some(dims.ok_or("shape should hold non-negative ints")?);
                }
                ("order", StateItem::Value(PyValue::Str(o))) => order = Some(o),
                ("dtype", StateItem::DType(d)) => dtype = Some(d),
                ("allow_mmap", StateItem::Value(PyValue::Bool(_))) => {}
                ("numpy_array_alignment_bytes", StateItem::Value(value)) => {
                    padded = match value {
                        PyValue::None => false,
                        PyValue::Int(_) => true,
                        other => {
                            return Err(format!(
                                "numpy_array_alignment_bytes is a {}, expected int or None",
                                other.type_name()
                            ));
                        }
                    }
                }
                (key, item) => return Err(format!("unexpected state entry `{key}`: {item:?}")),
            }
        }
        let shape = shape.ok_or("state has no `shape`")?;
        let fortran = match order.as_deref() {
            Some("C") => false,
            Some("F") => true,
            Some(other) => return Err(format!("order '{other}', expected C or F")),
            None => return Err("state has no `order`".to_string()),
        };
        let dtype = dtype.ok_or("state has no `dtype`")?;
        element_count(&shape).ok_or_else(|| format!("shape {shape:?} overflows"))?;
        Ok(Wrapper {
            shape,
            fortran,
            dtype,
            padded,
        })
    }

    /// Reads the padding and raw elements that follow the BUILD opcode.
    fn read_raw(&self, stream: &mut Stream<'_, '_>) -> Result<NumpyArray, String> {
        if self.padded {
            let pad = stream
                .take(1)
                .ok_or("truncated: the padding-length byte is missing")?[0];
            stream.take(usize::from(pad)).ok_or_else(|| {
                format!(
                    "truncated: {pad} padding bytes, {} left",
                    stream.remaining()
                )
            })?;
        }
        let needed = element_count(&self.shape)
            .and_then(|n| n.checked_mul(self.dtype.item_size()))
            .ok_or_else(|| format!("shape {:?} overflows", self.shape))?;
        let data = stream.take(needed).ok_or_else(|| {
            format!(
                "truncated: array of shape {:?} and dtype {} needs {needed} bytes, {} left",
                self.shape,
                self.dtype.descr(),
                stream.remaining()
            )
        })?;
        stream.charge(needed).map_err(|e| e.to_string())?;
        decode(data, self.dtype, &self.shape, self.fortran)
    }

    /// Reads the inner pickle of an object array.
    fn read_objects(&self, stream: &mut Stream<'_, '_>) -> Result<NumpyArray, Failure> {
        match stream.load().map_err(Failure::Data)? {
            PyValue::Array(array)
                if array.dtype() == DType::Object && array.shape() == self.shape.as_slice() =>
            {
                Ok(array)
            }
            PyValue::Array(array) => Err(Failure::Joblib(format!(
                "inner pickle holds a {} array of shape {:?}, the wrapper says object {:?}",
                array.dtype().name(),
                array.shape(),
                self.shape
            ))),
            other => Err(Failure::Joblib(format!(
                "inner pickle holds a {}, expected an object array",
                other.type_name()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::ZlibEncoder;

    use super::*;
    use crate::testkit::{check, check_mmsa, fixtures, json, testdata};

    fn zlib(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = ZlibEncoder::new(Vec::new(), Compression::new(3));
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn joblib_message(result: Result<PyValue, DataError>) -> String {
        match result {
            Err(DataError::Joblib { file, message }) => {
                assert_eq!(file, "test.joblib");
                message
            }
            other => panic!("expected a joblib error, got {other:?}"),
        }
    }

    #[test]
    fn reads_raw_zlib_and_gzip_dumps_from_numpy_1_and_2() {
        let files = fixtures("joblib");
        // compress=0 (protocols 4 and 2), zlib level 3, gzip level 3; NumPy 1.26 and 2.x.
        assert_eq!(files.len(), 8);
        for (path, expected) in files {
            let value = from_path(&path).unwrap_or_else(|e| panic!("{e}"));
            check(&value, &expected, &path.display().to_string()).unwrap();
        }
    }

    #[test]
    fn reads_the_ood_fixture() {
        let name = "ood_mosi_unaligned_50_tiny.joblib.pkl";
        let value = from_path(testdata(&format!("mmsa/{name}"))).unwrap();
        check_mmsa(&value, &json("mmsa/manifest.json")["files"][name], name);
    }

    #[test]
    fn reads_plain_pickles_and_the_old_zf_container() {
        let path = testdata("pickles/np2_p4.pkl");
        let (_, expected) = fixtures("pickle")
            .into_iter()
            .find(|(p, _)| *p == path)
            .unwrap();
        let pickle = std::fs::read(&path).unwrap();
        check(
            &from_bytes(&pickle, "test.joblib").unwrap(),
            &expected,
            "plain",
        )
        .unwrap();
        for extra_space in [false, true] {
            // joblib < 0.10: "ZF", hex(len) left-justified to 19 chars, [space,] zlib data.
            let mut zf = format!("ZF{:<19}", format!("{:#x}", pickle.len())).into_bytes();
            if extra_space {
                zf.push(b' ');
            }
            zf.extend(zlib(&pickle));
            check(&from_bytes(&zf, "test.joblib").unwrap(), &expected, "ZF").unwrap();
        }
        let mut lying = format!("ZF{:<19}", "0x10").into_bytes();
        lying.extend(zlib(&pickle));
        let message = joblib_message(from_bytes(&lying, "test.joblib"));
        assert!(message.contains("declares 16 bytes"), "{message}");
    }

    #[test]
    fn wrong_headers_are_joblib_errors() {
        let cases: [(&[u8], &str); 5] = [
            (b"", "empty file"),
            (
                b"PK\x03\x04rest",
                "not a joblib dump: starts with [50, 4b, 03, 04]",
            ),
            (b"BZh91AY&SY", "bz2 compression is not supported"),
            (b"ZFnot a hex length at all", "bad ZF header"),
            (b"\x78\x9cgarbage", "corrupt zlib stream"),
        ];
        for (bytes, wanted) in cases {
            let message = joblib_message(from_bytes(bytes, "test.joblib"));
            assert!(message.contains(wanted), "{message}");
        }
    }

    #[test]
    fn inflated_bytes_count_against_the_budget() {
        const BUDGET: usize = 1 << 20;
        let nones = |n: usize| [&b"\x80\x04"[..], &vec![b'N'; n], b"."].concat();
        // A stream that inflates past the budget stops there, whichever the compression.
        let bomb = nones(2 << 20);
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), Compression::new(9));
        gzip.write_all(&bomb).unwrap();
        for (what, packed) in [("zlib", zlib(&bomb)), ("gzip", gzip.finish().unwrap())] {
            let message = joblib_message(from_bytes_within(&packed, "test.joblib", BUDGET));
            assert_eq!(
                message,
                format!(
                    "the {what} stream inflates to more than the file's memory budget \
                     (64x its size + 64 MiB = 1048576 bytes); refusing"
                )
            );
        }
        // What is left of the budget after inflating bounds the pickle machine: 300 000
        // `None`s inflate within 1 MiB but their stack does not fit in the rest.
        let packed = zlib(&nones(300_000));
        match from_bytes_within(&packed, "test.joblib", BUDGET) {
            Err(DataError::Pickle { message, .. }) => {
                assert!(message.contains("more than 64x its size"), "{message}")
            }
            other => panic!("expected the pickle budget to run out, got {other:?}"),
        }
        assert_eq!(
            from_bytes_within(&zlib(&nones(1000)), "test.joblib", BUDGET).unwrap(),
            PyValue::None
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        for name in ["np2_joblib_raw.joblib", "np1_joblib_raw_p2.joblib"] {
            let bytes = std::fs::read(testdata(&format!("pickles/{name}"))).unwrap();
            for cut in 0..bytes.len() {
                let result = from_bytes(&bytes[..cut], "test.joblib");
                assert!(
                    matches!(
                        result,
                        Err(DataError::Pickle { .. } | DataError::Joblib { .. })
                    ),
                    "{name}[..{cut}]: {result:?}"
                );
            }
        }
        let zlib = std::fs::read(testdata("pickles/np2_joblib_zlib3.joblib")).unwrap();
        for cut in 1..zlib.len() {
            assert!(
                from_bytes(&zlib[..cut], "test.joblib").is_err(),
                "zlib[..{cut}]"
            );
        }
    }

    #[test]
    fn inline_array_shorter_than_its_shape_names_the_shortfall() {
        // Cut a raw dump inside the first numeric array's data (the `audio` f4 array, 48 bytes).
        let bytes = std::fs::read(testdata("pickles/np2_joblib_raw.joblib")).unwrap();
        let value = from_bytes(&bytes, "test.joblib").unwrap();
        let Some(PyValue::Dict(train)) = value.get("train") else {
            panic!()
        };
        assert_eq!(train[1].0, PyValue::Str("audio".into()));
        let find = |needle: &[u8], from: usize| {
            from + bytes[from..]
                .windows(needle.len())
                .position(|w| w == needle)
                .unwrap()
        };
        // The wrapper state of `audio` ends with `numpy_array_alignment_bytes: 16` (BININT1 16,
        // SETITEMS), then BUILD, the padding length, the padding and 48 data bytes.
        let key = find(b"\x8c\x05audio", 0);
        let build = find(b"K\x10ub", key) + 3;
        let cut = build + 1 + 1 + usize::from(bytes[build + 1]) + 10;
        let message = joblib_message(from_bytes(&bytes[..cut], "test.joblib"));
        assert!(
            message.contains("shape [2, 3, 2] and dtype <f4 needs 48 bytes, 10 left"),
            "{message}"
        );
    }
}
