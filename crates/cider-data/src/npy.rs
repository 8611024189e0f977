//! NumPy `.npy` / `.npz` files.
//!
//! A `.npy` file is `\x93NUMPY`, a version (1.0, 2.0 or 3.0), a header length (`u16` for 1.0,
//! `u32` otherwise), a Python dict literal `{'descr': '<f8', 'fortran_order': False, 'shape':
//! (2, 3), }` and the raw elements. Object arrays (`'|O'`) hold a pickle of the array instead,
//! read with our restricted [`crate::pickle`] machine. A `.npz` file is a zip archive of `.npy`
//! files, stored or deflated.
//!
//! Supported element types: `f4 f8 i8 i4 u1 b1` in either byte order, and `O`.

use std::io::{Read, Seek};
use std::path::Path;

use crate::atomic_write::write_atomically;
use crate::elements::{ByteOrder, RawDType, append_le_bytes, decode, element_count};
use crate::error::DataError;
use crate::value::{DType, NumpyArray, PyValue};

/// The magic string that opens every `.npy` file.
const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// NumPy pads headers so that the data starts on a multiple of this many bytes.
const HEADER_ALIGN: usize = 64;
/// Digits NumPy reserves for the first dimension, so that arrays can grow in place.
const GROWTH_AXIS_DIGITS: usize = 21;
/// Longest header we accept: NumPy itself refuses headers above 10 000 bytes by default.
const MAX_HEADER_LEN: usize = 1 << 20;
/// Nesting allowed in a header literal (NumPy's own headers nest two deep).
const MAX_LITERAL_DEPTH: usize = 16;

/// Reads a `.npy` file held in memory. `source` names it in errors.
pub fn from_bytes(bytes: &[u8], source: &str) -> Result<NumpyArray, DataError> {
    let err = |message: String| DataError::Npy {
        file: source.to_string(),
        message,
    };
    if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(err(format!(
            "bad magic: expected a file starting with \\x93NUMPY, found {:02x?}",
            &bytes[..bytes.len().min(MAGIC.len())]
        )));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len_size, utf8) = match (major, minor) {
        (1, 0) => (2, false),
        (2, 0) => (4, false),
        (3, 0) => (4, true),
        _ => return Err(err(format!("unsupported format version {major}.{minor}"))),
    };
    let start = MAGIC.len() + 2 + len_size;
    let len_bytes = bytes
        .get(MAGIC.len() + 2..start)
        .ok_or_else(|| err("truncated header length".to_string()))?;
    let header_len = len_bytes
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    if header_len > MAX_HEADER_LEN || header_len > bytes.len() - start {
        return Err(err(format!(
            "header length {header_len} exceeds the {} bytes left in the file",
            bytes.len() - start
        )));
    }
    let header = &bytes[start..start + header_len];
    let header = Header::parse(header, utf8).map_err(|m| err(format!("bad header: {m}")))?;
    let body = &bytes[start + header_len..];
    if header.dtype.kind == DType::Object {
        return object_array(body, &header, source);
    }
    decode(body, header.dtype, &header.shape, header.fortran).map_err(err)
}

/// Reads the pickled payload of an object (`'|O'`) array.
fn object_array(body: &[u8], header: &Header, source: &str) -> Result<NumpyArray, DataError> {
    match crate::pickle::from_bytes(body, source)? {
        PyValue::Array(array)
            if array.dtype() == DType::Object && array.shape() == header.shape.as_slice() =>
        {
            Ok(array)
        }
        other => Err(DataError::Npy {
            file: source.to_string(),
            message: format!(
                "object array payload should be an object array of shape {:?}, found {}",
                header.shape,
                describe(&other)
            ),
        }),
    }
}

/// A short description of a value, for error messages.
fn describe(value: &PyValue) -> String {
    match value {
        PyValue::Array(a) => format!("a {} array of shape {:?}", a.dtype().name(), a.shape()),
        other => other.type_name().to_string(),
    }
}

/// Reads a `.npy` file.
pub fn from_path(path: impl AsRef<Path>) -> Result<NumpyArray, DataError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    from_bytes(&bytes, &path.display().to_string())
}

/// Writes an array as a version 1.0 `.npy` file (2.0 when the header outgrows 64 KiB), in C
/// order, little-endian, byte for byte as `numpy.save` does. Object arrays are stored pickled, as `numpy.save` does; NumPy reads
/// those back with `allow_pickle=True`.
pub fn to_bytes(array: &NumpyArray) -> Result<Vec<u8>, DataError> {
    let dtype = RawDType {
        kind: array.dtype(),
        order: ByteOrder::Little,
    };
    let shape = match array.shape() {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        dims => {
            let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        dtype.descr()
    );
    // As NumPy: room to grow the first axis in place, then spaces and a final '\n' so that the
    // data starts on a multiple of 64 bytes (a full 64 more when already aligned).
    if let Some(first) = array.shape().first() {
        let digits = first.to_string().len();
        header.extend(std::iter::repeat_n(
            ' ',
            GROWTH_AXIS_DIGITS.saturating_sub(digits),
        ));
    }
    let padded_len = |len_field: usize| {
        let unpadded = MAGIC.len() + 2 + len_field + header.len() + 1;
        header.len() + 1 + HEADER_ALIGN - unpadded % HEADER_ALIGN
    };
    let short_len = u16::try_from(padded_len(2)).ok();
    let block_len = short_len.map_or_else(|| padded_len(4), usize::from);
    let pad = block_len - header.len() - 1;
    header.extend(std::iter::repeat_n(' ', pad));
    header.push('\n');
    let mut out = Vec::with_capacity(16 + block_len + array.data().len() * dtype.item_size());
    out.extend_from_slice(MAGIC);
    match short_len {
        Some(len) => {
            out.extend_from_slice(&[1, 0]);
            out.extend_from_slice(&len.to_le_bytes());
        }
        None => {
            let len = u32::try_from(block_len).map_err(|_| DataError::Invalid {
                what: "npy header".to_string(),
                message: format!("{block_len} bytes exceed the 4 GiB format limit"),
            })?;
            out.extend_from_slice(&[2, 0]);
            out.extend_from_slice(&len.to_le_bytes());
        }
    }
    out.extend_from_slice(header.as_bytes());
    if dtype.kind == DType::Object {
        out.extend(crate::pickle_write::to_bytes(&PyValue::Array(
            array.clone(),
        ))?);
    } else {
        append_le_bytes(array.data(), &mut out);
    }
    Ok(out)
}

/// Writes an array to a `.npy` file atomically (temporary file in the same folder, then rename).
pub fn to_path(array: &NumpyArray, path: impl AsRef<Path>) -> Result<(), DataError> {
    let bytes = to_bytes(array)?;
    write_atomically(path.as_ref(), &bytes)
}

/// Reads every array of a `.npz` archive, in archive order, keyed by entry name without `.npy`.
pub fn npz_from_path(path: impl AsRef<Path>) -> Result<Vec<(String, NumpyArray)>, DataError> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    npz_read(std::io::BufReader::new(file), &path.display().to_string())
}

/// Reads every array of a `.npz` archive held in memory (see [`npz_from_path`]).
pub fn npz_from_bytes(bytes: &[u8], source: &str) -> Result<Vec<(String, NumpyArray)>, DataError> {
    npz_read(std::io::Cursor::new(bytes), source)
}

fn npz_read<R: Read + Seek>(
    reader: R,
    source: &str,
) -> Result<Vec<(String, NumpyArray)>, DataError> {
    let err = |message: String| DataError::Npy {
        file: source.to_string(),
        message,
    };
    let mut archive =
        zip::ZipArchive::new(reader).map_err(|e| err(format!("not a valid npz archive: {e}")))?;
    let mut arrays = Vec::with_capacity(archive.len().min(4096));
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| err(format!("entry {index}: {e}")))?;
        let name = entry.name().to_string();
        let key = name
            .strip_suffix(".npy")
            .ok_or_else(|| err(format!("entry `{name}` is not a .npy file")))?
            .to_string();
        let declared = entry.size();
        let mut bytes = Vec::new();
        (&mut entry)
            .take(declared)
            .read_to_end(&mut bytes)
            .map_err(|e| err(format!("entry `{name}`: {e}")))?;
        if bytes.len() as u64 != declared {
            return Err(err(format!(
                "entry `{name}` holds {} bytes, its directory says {declared}",
                bytes.len()
            )));
        }
        let array = from_bytes(&bytes, &format!("{source}:{name}"))?;
        arrays.push((key, array));
    }
    Ok(arrays)
}

/// The three fields of a `.npy` header.
#[derive(Debug)]
struct Header {
    dtype: RawDType,
    fortran: bool,
    shape: Vec<usize>,
}

impl Header {
    /// Parses the dict literal `{'descr': .., 'fortran_order': .., 'shape': (..), }`.
    fn parse(bytes: &[u8], utf8: bool) -> Result<Header, String> {
        let text: String = if utf8 {
            std::str::from_utf8(bytes)
                .map_err(|e| format!("not UTF-8: {e}"))?
                .to_string()
        } else {
            bytes.iter().map(|&b| char::from(b)).collect()
        };
        let mut parser = Literal {
            chars: text.chars().collect(),
            pos: 0,
        };
        let value = parser.value(0)?;
        parser.skip_space();
        if parser.pos != parser.chars.len() {
            return Err(format!("unexpected text after the dict at {}", parser.pos));
        }
        let Lit::Dict(items) = value else {
            return Err("expected a dict literal".to_string());
        };
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        for (key, value) in items {
            match (key.as_str(), value) {
                ("descr", Lit::Str(s)) => descr = Some(s),
                ("fortran_order", Lit::Bool(b)) => fortran = Some(b),
                ("shape", Lit::Tuple(dims)) => shape = Some(dims),
                (key, value) => return Err(format!("unexpected entry `{key}`: {value:?}")),
            }
        }
        let descr = descr.ok_or("missing key `descr`")?;
        let dtype = RawDType::parse(&descr).ok_or_else(|| {
            format!("unsupported dtype '{descr}' (expected f4, f8, i8, i4, u1, b1 or O)")
        })?;
        let shape = shape.ok_or("missing key `shape`")?;
        element_count(&shape).ok_or_else(|| format!("shape {shape:?} overflows"))?;
        Ok(Header {
            dtype,
            fortran: fortran.ok_or("missing key `fortran_order`")?,
            shape,
        })
    }
}

/// A value of the tiny Python-literal subset that `.npy` headers use.
#[derive(Debug)]
enum Lit {
    Str(String),
    Bool(bool),
    Int(usize),
    /// A tuple of non-negative integers (a shape).
    Tuple(Vec<usize>),
    Dict(Vec<(String, Lit)>),
}

/// A recursive-descent parser over the header's characters.
struct Literal {
    chars: Vec<char>,
    pos: usize,
}

impl Literal {
    fn skip_space(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_space();
        self.chars.get(self.pos).copied()
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected `{c}` at {}", self.pos))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Lit, String> {
        if depth > MAX_LITERAL_DEPTH {
            return Err("header literal nests too deep".to_string());
        }
        match self.peek() {
            Some('{') => self.dict(depth),
            Some('(') => self.tuple(depth),
            Some('[') => Err("structured dtypes are not supported".to_string()),
            Some('\'' | '"') => self.string().map(Lit::Str),
            Some(c) if c.is_ascii_digit() => self.int().map(Lit::Int),
            Some(c) if c.is_ascii_alphabetic() => self.word(),
            Some(c) => Err(format!("unexpected `{c}` at {}", self.pos)),
            None => Err("unexpected end of header".to_string()),
        }
    }

    fn dict(&mut self, depth: usize) -> Result<Lit, String> {
        self.expect('{')?;
        let mut items = Vec::new();
        loop {
            if self.peek() == Some('}') {
                self.pos += 1;
                return Ok(Lit::Dict(items));
            }
            let key = match self.peek() {
                Some('\'' | '"') => self.string()?,
                _ => return Err(format!("expected a string key at {}", self.pos)),
            };
            self.expect(':')?;
            let value = self.value(depth + 1)?;
            items.push((key, value));
            match self.peek() {
                Some(',') => self.pos += 1,
                Some('}') => {}
                _ => return Err(format!("expected `,` or `}}` at {}", self.pos)),
            }
        }
    }

    fn tuple(&mut self, depth: usize) -> Result<Lit, String> {
        self.expect('(')?;
        let mut dims = Vec::new();
        loop {
            if self.peek() == Some(')') {
                self.pos += 1;
                return Ok(Lit::Tuple(dims));
            }
            match self.value(depth + 1)? {
                Lit::Int(n) => dims.push(n),
                other => return Err(format!("shape entries must be integers, found {other:?}")),
            }
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(')') => {}
                _ => return Err(format!("expected `,` or `)` at {}", self.pos)),
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let quote = self.chars[self.pos];
        self.pos += 1;
        let mut out = String::new();
        while let Some(&c) = self.chars.get(self.pos) {
            self.pos += 1;
            match c {
                '\\' => return Err("escapes in header strings are not supported".to_string()),
                c if c == quote => return Ok(out),
                c => out.push(c),
            }
        }
        Err("unterminated string in header".to_string())
    }

    fn int(&mut self) -> Result<usize, String> {
        let start = self.pos;
        while self.chars.get(self.pos).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let digits: String = self.chars[start..self.pos].iter().collect();
        // Python 2 era headers write longs as `3L`.
        if self.chars.get(self.pos) == Some(&'L') {
            self.pos += 1;
        }
        digits
            .parse()
            .map_err(|_| format!("integer `{digits}` out of range"))
    }

    fn word(&mut self) -> Result<Lit, String> {
        let start = self.pos;
        while self
            .chars
            .get(self.pos)
            .is_some_and(|c| c.is_ascii_alphanumeric())
        {
            self.pos += 1;
        }
        let word: String = self.chars[start..self.pos].iter().collect();
        match word.as_str() {
            "True" => Ok(Lit::Bool(true)),
            "False" => Ok(Lit::Bool(false)),
            _ => Err(format!("unexpected `{word}` in header")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{check, fixtures, json, testdata};
    use crate::value::ArrayData;

    fn npy_message(result: Result<NumpyArray, DataError>) -> String {
        match result {
            Err(DataError::Npy { file, message }) => {
                assert_eq!(file, "test.npy");
                message
            }
            other => panic!("expected an npy error, got {other:?}"),
        }
    }

    /// A little `.npy` file with a hand-written header.
    fn npy_with_header(header: &str, body: &[u8]) -> Vec<u8> {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    #[test]
    fn reads_numpy_written_files() {
        let files = fixtures("npy");
        // <f4, >f8, Fortran <i4, bool, u1 (v2.0 header), <i8 (v3.0 header), object, 0-d.
        assert_eq!(files.len(), 8);
        for (path, expected) in files {
            let array = from_path(&path).unwrap_or_else(|e| panic!("{e}"));
            check(
                &PyValue::Array(array),
                &expected,
                &path.display().to_string(),
            )
            .unwrap();
        }
    }

    #[test]
    fn reads_npz_stored_and_deflated() {
        for (path, expected) in fixtures("npz") {
            let arrays = npz_from_path(&path).unwrap();
            let wanted = expected.as_array().unwrap();
            assert_eq!(arrays.len(), wanted.len());
            for ((name, array), want) in arrays.into_iter().zip(wanted) {
                assert_eq!(name, want[0].as_str().unwrap());
                check(&PyValue::Array(array), &want[1], &name).unwrap();
            }
        }
    }

    #[test]
    fn writes_byte_for_byte_what_numpy_saves() {
        // Every C-order little-endian file NumPy wrote for us: masks, metrics, fixtures.
        let mut files = Vec::new();
        for dir in ["masks/mosi_aligned", "masks/mosi_unaligned", "metrics"] {
            for entry in std::fs::read_dir(testdata(dir)).unwrap() {
                files.push(entry.unwrap().path());
            }
        }
        for name in [
            "np2_save_f4",
            "np2_bool",
            "np2_zero_dim",
            "rust_written_audio",
        ] {
            files.push(testdata(&format!("pickles/{name}.npy")));
        }
        let mut checked = 0;
        for path in files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "npy"))
        {
            let bytes = std::fs::read(path).unwrap();
            let array = from_bytes(&bytes, "test.npy").unwrap();
            assert_eq!(to_bytes(&array).unwrap(), bytes, "{}", path.display());
            checked += 1;
        }
        assert!(checked > 100, "{checked}");
    }

    #[test]
    fn mask_fixtures_have_their_indexed_shapes_and_values() {
        for layout in ["mosi_aligned", "mosi_unaligned"] {
            let index = json(&format!("masks/{layout}/index.json"));
            for (case, entry) in index["cases"].as_object().unwrap() {
                for (key, file) in entry["files"].as_object().unwrap() {
                    let path = testdata(&format!(
                        "masks/{layout}/{}",
                        file["file"].as_str().unwrap()
                    ));
                    let array = from_path(&path).unwrap();
                    let shape: Vec<usize> = file["shape"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|d| d.as_u64().unwrap() as usize)
                        .collect();
                    assert_eq!(array.shape(), shape.as_slice(), "{case} {key}");
                    assert_eq!(array.dtype().name(), file["dtype"], "{case} {key}");
                    match array.data() {
                        // Missing masks are 0/1.
                        ArrayData::U8(v) => assert!(v.iter().all(|&m| m <= 1), "{case} {key}"),
                        // [CLS] (101) is never masked (docs/method.md §3).
                        ArrayData::I64(ids) => {
                            assert!(
                                ids.chunks(shape[1]).all(|row| row[0] == 101),
                                "{case} {key}"
                            )
                        }
                        ArrayData::F32(v) => {
                            assert!(v.iter().all(|x| x.is_finite()), "{case} {key}")
                        }
                        other => panic!("{case} {key}: {:?}", other.dtype()),
                    }
                }
            }
        }
    }

    #[test]
    fn metric_fixtures_have_their_declared_sizes() {
        let metrics = json("metrics/metrics.json");
        for case in metrics["cases"].as_array().unwrap() {
            let n = case["n"].as_u64().unwrap() as usize;
            let classes = case["classes"].as_u64().unwrap() as usize;
            let read = |key: &str| {
                from_path(testdata(&format!(
                    "metrics/{}",
                    case["inputs"][key].as_str().unwrap()
                )))
                .unwrap()
            };
            for key in ["pred", "cf_pred"] {
                let pred = read(key);
                assert_eq!(
                    (pred.shape(), pred.dtype()),
                    (&[n, classes][..], DType::F32)
                );
                // Log-probabilities: each row's probabilities sum to 1.
                let values = pred.to_f64().unwrap();
                for row in values.chunks(classes) {
                    let total: f64 = row.iter().map(|v| v.exp()).sum();
                    assert!((total - 1.0).abs() < 1e-5, "{total}");
                }
            }
            let truth = read("truth");
            assert_eq!((truth.shape(), truth.dtype()), (&[n][..], DType::I64));
            let ArrayData::I64(labels) = truth.data() else {
                panic!()
            };
            assert!(labels.iter().all(|&l| (0..classes as i64).contains(&l)));
        }
    }

    #[test]
    fn round_trips_every_dtype_and_shape() {
        let arrays = [
            NumpyArray::new(
                vec![2, 3],
                ArrayData::F32(vec![0.5, -1.0, 2.0, f32::MAX, f32::MIN_POSITIVE, -0.0]),
            ),
            NumpyArray::new(vec![3], ArrayData::F64(vec![1e-300, -2.5, f64::INFINITY])),
            NumpyArray::new(vec![1, 2, 1], ArrayData::I64(vec![i64::MIN, i64::MAX])),
            NumpyArray::new(vec![2], ArrayData::I32(vec![-7, 1 << 30])),
            NumpyArray::new(vec![0], ArrayData::U8(Vec::new())),
            NumpyArray::new(vec![2, 2], ArrayData::Bool(vec![true, false, false, true])),
            NumpyArray::new(vec![], ArrayData::F64(vec![4.0])),
            NumpyArray::new(
                vec![2],
                ArrayData::Object(vec![PyValue::Str("a".into()), PyValue::None]),
            ),
        ];
        let dir = std::env::temp_dir().join(format!("cider-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (i, array) in arrays.into_iter().enumerate() {
            let array = array.unwrap();
            let bytes = to_bytes(&array).unwrap();
            assert_eq!(from_bytes(&bytes, "test.npy").unwrap(), array);
            let path = dir.join(format!("a{i}.npy"));
            to_path(&array, &path).unwrap();
            assert_eq!(from_path(&path).unwrap(), array);
        }
        std::fs::remove_dir_all(&dir).unwrap();
        // NumPy loads our object arrays (checked once with check_rust_written.py).
        let golden = std::fs::read(testdata("pickles/rust_written_raw_text.npy")).unwrap();
        let array = from_bytes(&golden, "test.npy").unwrap();
        assert_eq!(to_bytes(&array).unwrap(), golden);
    }

    #[test]
    fn bad_files_give_npy_errors() {
        let header = |descr: &str, shape: &str| {
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n")
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"PK\x03\x04 not npy".to_vec(), "bad magic"),
            (Vec::new(), "bad magic"),
            (
                b"\x93NUMPY\x09\x00\x10\x00".to_vec(),
                "unsupported format version 9.0",
            ),
            (
                b"\x93NUMPY\x01\x00\xff\x7f{}".to_vec(),
                "header length 32767 exceeds the 2 bytes left",
            ),
            (
                npy_with_header(&header("<f4", "(3,)"), &[0; 8]),
                "needs 12 bytes, found 8",
            ),
            (
                npy_with_header(&header("<U3", "(1,)"), &[0; 12]),
                "unsupported dtype '<U3'",
            ),
            (
                npy_with_header(&header("<f4", "(-1,)"), &[]),
                "unexpected `-`",
            ),
            (
                npy_with_header(&header("<f4", "(99999999999, 99999999999)"), &[]),
                "overflows",
            ),
            (
                npy_with_header(
                    "{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (1,), }",
                    &[0; 4],
                ),
                "structured",
            ),
            (
                npy_with_header("{'descr': '<f4', 'shape': (1,), }", &[0; 4]),
                "missing key `fortran_order`",
            ),
            (
                npy_with_header("{'descr': '<f4' 'fortran_order': False}", &[]),
                "expected `,`",
            ),
            (npy_with_header(&"(".repeat(100), &[]), "nests too deep"),
        ];
        for (bytes, wanted) in cases {
            let message = npy_message(from_bytes(&bytes, "test.npy"));
            assert!(message.contains(wanted), "{wanted}: {message}");
        }
        match npz_from_bytes(b"not a zip", "test.npz") {
            Err(DataError::Npy { file, message }) => {
                assert_eq!(file, "test.npz");
                assert!(message.contains("not a valid npz archive"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        for name in ["np2_be_f8.npy", "np2_object.npy", "np2_i8_v3.npy"] {
            let bytes = std::fs::read(testdata(&format!("pickles/{name}"))).unwrap();
            for cut in 0..bytes.len() {
                let result = from_bytes(&bytes[..cut], "test.npy");
                assert!(
                    matches!(
                        result,
                        Err(DataError::Npy { .. } | DataError::Pickle { .. })
                    ),
                    "{name}[..{cut}]: {result:?}"
                );
            }
        }
        let npz = std::fs::read(testdata("pickles/np2_arrays_deflated.npz")).unwrap();
        for cut in 0..npz.len() {
            assert!(
                npz_from_bytes(&npz[..cut], "test.npz").is_err(),
                "npz[..{cut}]"
            );
        }
    }
}
