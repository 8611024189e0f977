//! Writes a [`PyValue`] as a pickle (protocol 4) that CPython's `pickle.load` reads back as
//! dicts, lists, tuples, str, bytes, ints, floats and NumPy arrays, with NumPy 1.x or 2.x.
//!
//! Arrays are spelled as NumPy 1.x itself pickles them, which NumPy 2.x still loads:
//! `numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')`, then BUILD with
//! `(1, shape, dtype, False, raw)` where `dtype = numpy.dtype('f4', False, True)` with BUILD
//! `(3, '<', None, None, None, -1, -1, 0)`. `raw` is the little-endian C-order element bytes, or
//! the list of elements for object arrays. Globals and dtypes are memoized and reused.

use std::collections::HashMap;
use std::path::Path;

use crate::atomic_write::write_atomically;
use crate::elements::{ByteOrder, RawDType, append_le_bytes};
use crate::error::DataError;
use crate::pickle::MAX_DEPTH;
use crate::pickle::opcodes::{
    APPENDS, BINBYTES, BINBYTES8, BINFLOAT, BININT, BININT1, BININT2, BINUNICODE, BINUNICODE8,
    BUILD, EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE, LONG_BINGET, LONG1, MARK, MEMOIZE, NEWFALSE,
    NEWTRUE, NONE, PROTO, REDUCE, SETITEMS, SHORT_BINBYTES, SHORT_BINUNICODE, STACK_GLOBAL, STOP,
    TUPLE, TUPLE1, TUPLE3,
};
use crate::value::{ArrayData, DType, NumpyArray, PyValue};

/// Serialises `value` as a protocol 4 pickle.
pub fn to_bytes(value: &PyValue) -> Result<Vec<u8>, DataError> {
    let mut writer = Writer::default();
    writer.out.extend_from_slice(&[PROTO, 4]);
    writer.value(value, 0)?;
    writer.out.push(STOP);
    Ok(writer.out)
}

/// Writes `value` as a pickle file, atomically: to a temporary file in the same folder, then
/// renamed over `path`, so readers never see a half-written file.
pub fn to_path(value: &PyValue, path: impl AsRef<Path>) -> Result<(), DataError> {
    let bytes = to_bytes(value)?;
    write_atomically(path.as_ref(), &bytes)
}

/// Items per APPENDS / SETITEMS batch, as CPython writes them.
const BATCH: usize = 1000;

#[derive(Default)]
struct Writer {
    out: Vec<u8>,
    /// Memo index of each global (`module.name`) and dtype (descr) already written.
    memo: HashMap<String, u32>,
    memo_len: u32,
}

impl Writer {
    fn value(&mut self, value: &PyValue, depth: usize) -> Result<(), DataError> {
        if depth > MAX_DEPTH {
            return Err(DataError::Invalid {
                what: "value to pickle".to_string(),
                message: format!("containers nest more than {MAX_DEPTH} deep"),
            });
        }
        match value {
            PyValue::None => self.out.push(NONE),
            PyValue::Bool(b) => self.out.push(if *b { NEWTRUE } else { NEWFALSE }),
            PyValue::Int(v) => self.int(*v),
            PyValue::Float(v) => {
                self.out.push(BINFLOAT);
                self.out.extend_from_slice(&v.to_be_bytes());
            }
            PyValue::Str(text) => self.str(text),
            PyValue::Bytes(bytes) => self.bytes(bytes),
            PyValue::List(items) => self.list(items, depth)?,
            PyValue::Tuple(items) => {
                if items.is_empty() {
                    self.out.push(EMPTY_TUPLE);
                } else {
                    self.out.push(MARK);
                    for item in items {
                        self.value(item, depth + 1)?;
                    }
                    self.out.push(TUPLE);
                }
            }
            PyValue::Dict(pairs) => {
                self.out.push(EMPTY_DICT);
                for batch in pairs.chunks(BATCH) {
                    self.out.push(MARK);
                    for (k, v) in batch {
                        self.value(k, depth + 1)?;
                        self.value(v, depth + 1)?;
                    }
                    self.out.push(SETITEMS);
                }
            }
            PyValue::Array(array) => self.array(array, depth)?,
            PyValue::Object(_)
            | PyValue::Class(_)
            | PyValue::BigInt(_)
            | PyValue::Persistent(_) => {
                return Err(DataError::Invalid {
                    what: "value to pickle".to_string(),
                    message: format!(
                        "a {} is not plain data and cannot be written",
                        value.type_name()
                    ),
                });
            }
        }
        Ok(())
    }

    fn list(&mut self, items: &[PyValue], depth: usize) -> Result<(), DataError> {
        self.out.push(EMPTY_LIST);
        for batch in items.chunks(BATCH) {
            self.out.push(MARK);
            for item in batch {
                self.value(item, depth + 1)?;
            }
            self.out.push(APPENDS);
        }
        Ok(())
    }

    fn int(&mut self, v: i64) {
        if let Ok(small) = u8::try_from(v) {
            self.out.extend_from_slice(&[BININT1, small]);
        } else if let Ok(medium) = u16::try_from(v) {
            self.out.push(BININT2);
            self.out.extend_from_slice(&medium.to_le_bytes());
        } else if let Ok(word) = i32::try_from(v) {
            self.out.push(BININT);
            self.out.extend_from_slice(&word.to_le_bytes());
        } else {
            // Shortest little-endian two's complement, as CPython's `encode_long`.
            let bytes = v.to_le_bytes();
            let mut n = 8;
            while n > 1 {
                let (top, next) = (bytes[n - 1], bytes[n - 2]);
                let redundant =
                    (top == 0x00 && next & 0x80 == 0) || (top == 0xff && next & 0x80 != 0);
                if !redundant {
                    break;
                }
                n -= 1;
            }
            self.out.extend_from_slice(&[LONG1, n as u8]);
            self.out.extend_from_slice(&bytes[..n]);
        }
    }

    fn str(&mut self, text: &str) {
        let len = text.len();
        if let Ok(short) = u8::try_from(len) {
            self.out.extend_from_slice(&[SHORT_BINUNICODE, short]);
        } else if let Ok(word) = u32::try_from(len) {
            self.out.push(BINUNICODE);
            self.out.extend_from_slice(&word.to_le_bytes());
        } else {
            self.out.push(BINUNICODE8);
            self.out.extend_from_slice(&(len as u64).to_le_bytes());
        }
        self.out.extend_from_slice(text.as_bytes());
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.bytes_header(bytes.len());
        self.out.extend_from_slice(bytes);
    }

    /// The opcode and length of a bytes object of `len` bytes.
    fn bytes_header(&mut self, len: usize) {
        if let Ok(short) = u8::try_from(len) {
            self.out.extend_from_slice(&[SHORT_BINBYTES, short]);
        } else if let Ok(word) = u32::try_from(len) {
            self.out.push(BINBYTES);
            self.out.extend_from_slice(&word.to_le_bytes());
        } else {
            self.out.push(BINBYTES8);
            self.out.extend_from_slice(&(len as u64).to_le_bytes());
        }
    }

    /// Pushes a memoized object, or writes it with `write` and memoizes it.
    fn memoized(&mut self, key: &str, write: impl FnOnce(&mut Self)) {
        if let Some(&index) = self.memo.get(key) {
            self.out.push(LONG_BINGET);
            self.out.extend_from_slice(&index.to_le_bytes());
            return;
        }
        write(self);
        self.out.push(MEMOIZE);
        self.memo.insert(key.to_string(), self.memo_len);
        self.memo_len += 1;
    }

    fn global(&mut self, module: &str, name: &str) {
        self.memoized(&format!("{module}.{name}"), |w| {
            w.str(module);
            w.str(name);
            w.out.push(STACK_GLOBAL);
        });
    }

    /// `numpy.dtype(code, False, True)` with its byte-order state.
    fn dtype(&mut self, dtype: DType) {
        let raw = RawDType {
            kind: dtype,
            order: ByteOrder::Little,
        };
        let descr = raw.descr();
        self.memoized(&format!("dtype {descr}"), |w| {
            w.global("numpy", "dtype");
            w.str(&descr[1..]);
            w.out
                .extend_from_slice(&[NEWFALSE, NEWTRUE, TUPLE3, REDUCE]);
            // State (3, byte order, subarray, names, fields, elsize, alignment, flags); object
            // dtypes carry NumPy's flags 63 (refcounted, needs init, …).
            w.out.push(MARK);
            w.int(3);
            w.str(&descr[..1]);
            w.out.extend_from_slice(&[NONE, NONE, NONE]);
            w.int(-1);
            w.int(-1);
            w.int(if dtype == DType::Object { 63 } else { 0 });
            w.out.extend_from_slice(&[TUPLE, BUILD]);
        });
    }

    fn array(&mut self, array: &NumpyArray, depth: usize) -> Result<(), DataError> {
        self.global("numpy.core.multiarray", "_reconstruct");
        self.global("numpy", "ndarray");
        self.int(0);
        self.out.push(TUPLE1);
        self.bytes(b"b");
        self.out.extend_from_slice(&[TUPLE3, REDUCE]);
        // State (1, shape, dtype, is_fortran, raw).
        self.out.push(MARK);
        self.int(1);
        self.out.push(MARK);
        for &dim in array.shape() {
            let dim = i64::try_from(dim).map_err(|_| DataError::Invalid {
                what: "array to pickle".to_string(),
                message: format!("dimension {dim} exceeds the int64 range"),
            })?;
            self.int(dim);
        }
        self.out.push(TUPLE);
        self.dtype(array.dtype());
        self.out.push(NEWFALSE);
        match array.data() {
            // The list stands for the array itself: same nesting level, as the reader counts it.
            ArrayData::Object(items) => self.list(items, depth)?,
            data => {
                let dtype = RawDType {
                    kind: data.dtype(),
                    order: ByteOrder::Little,
                };
                self.bytes_header(data.len() * dtype.item_size());
                append_le_bytes(data, &mut self.out);
            }
        }
        self.out.extend_from_slice(&[TUPLE, BUILD]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::testdata;
    use crate::value::ArrayData;

    fn array(shape: &[usize], data: ArrayData) -> PyValue {
        PyValue::Array(NumpyArray::new(shape.to_vec(), data).unwrap())
    }

    fn s(text: &str) -> PyValue {
        PyValue::Str(text.to_string())
    }

    /// A value using every kind of data the writer knows; `check_rust_written.py` rebuilds the
    /// same value in Python.
    fn sample() -> PyValue {
        let train = PyValue::Dict(vec![
            (
                s("audio"),
                array(
                    &[2, 3, 2],
                    ArrayData::F32((0..12).map(|i| i as f32 / 4.0).collect()),
                ),
            ),
            (
                s("ids"),
                array(&[2, 2], ArrayData::I64(vec![101, -5, 1 << 40, 0])),
            ),
            (
                s("mask"),
                array(&[3], ArrayData::Bool(vec![true, false, true])),
            ),
            (s("bytes"), array(&[2], ArrayData::U8(vec![0, 255]))),
            (s("i32"), array(&[2], ArrayData::I32(vec![i32::MIN, 7]))),
            (
                s("labels"),
                array(&[2, 2], ArrayData::F64(vec![-1.5, 0.0, 2.25, 3.0])),
            ),
            (
                s("raw_text"),
                array(
                    &[2],
                    ArrayData::Object(vec![s("good film"), s("bad \u{e9}")]),
                ),
            ),
            (
                s("lengths"),
                PyValue::List(vec![PyValue::Int(3), PyValue::Int(1)]),
            ),
            (s("empty"), array(&[0, 4], ArrayData::F32(Vec::new()))),
            (s("scalar"), array(&[], ArrayData::F64(vec![2.5]))),
        ]);
        let ints = [
            0,
            -1,
            255,
            256,
            65535,
            65536,
            i64::from(i32::MIN),
            1 << 31,
            i64::MIN,
            i64::MAX,
        ];
        PyValue::Dict(vec![
            (s("train"), train),
            (
                s("ints"),
                PyValue::List(ints.into_iter().map(PyValue::Int).collect()),
            ),
            (
                s("floats"),
                PyValue::List(vec![
                    PyValue::Float(1.5),
                    PyValue::Float(-0.0),
                    PyValue::Float(f64::INFINITY),
                ]),
            ),
            (
                s("misc"),
                PyValue::Tuple(vec![
                    PyValue::None,
                    PyValue::Bool(true),
                    PyValue::Bool(false),
                    s("\u{fc}n\u{ef}\n"),
                    PyValue::Bytes(vec![0, 255]),
                    PyValue::Tuple(Vec::new()),
                    PyValue::Tuple(vec![PyValue::Int(1)]),
                    PyValue::Dict(Vec::new()),
                ]),
            ),
        ])
    }

    #[test]
    fn round_trips_through_the_reader() {
        let value = sample();
        let bytes = to_bytes(&value).unwrap();
        assert_eq!(crate::pickle::from_bytes(&bytes, "rt.pkl").unwrap(), value);
        // Lists longer than one APPENDS batch.
        let long = PyValue::List((0..2500).map(PyValue::Int).collect());
        let bytes = to_bytes(&long).unwrap();
        assert_eq!(crate::pickle::from_bytes(&bytes, "rt.pkl").unwrap(), long);
    }

    #[test]
    fn matches_the_file_python_loaded() {
        // testdata/pickles/rust_written.pkl was written by this writer and loaded by CPython
        // with NumPy 1.26 and 2.x (check_rust_written.py); the writer must keep producing it.
        let golden = std::fs::read(testdata("pickles/rust_written.pkl")).unwrap();
        assert_eq!(to_bytes(&sample()).unwrap(), golden);
    }

    #[test]
    fn integers_and_floats_use_cpython_encodings() {
        // Bodies of CPython's pickle.dumps(v, protocol=2), after the 2-byte PROTO.
        let cases: [(PyValue, &[u8]); 9] = [
            (PyValue::Int(-1), b"J\xff\xff\xff\xff"),
            (PyValue::Int(1 << 31), b"\x8a\x05\x00\x00\x00\x80\x00"),
            (
                PyValue::Int(i64::MIN),
                b"\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80",
            ),
            (
                PyValue::Int(i64::MAX),
                b"\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f",
            ),
            (PyValue::Int(255), b"K\xff"),
            (PyValue::Int(256), b"M\x00\x01"),
            (PyValue::Int(65536), b"J\x00\x00\x01\x00"),
            (PyValue::Int(-129), b"J\x7f\xff\xff\xff"),
            (PyValue::Float(1.5), b"G?\xf8\x00\x00\x00\x00\x00\x00"),
        ];
        for (value, body) in cases {
            let bytes = to_bytes(&value).unwrap();
            assert_eq!(&bytes[..2], b"\x80\x04");
            assert_eq!(&bytes[2..bytes.len() - 1], body, "{value:?}");
            assert_eq!(bytes.last(), Some(&b'.'));
        }
    }

    #[test]
    fn to_path_replaces_the_file_atomically() {
        let dir = std::env::temp_dir().join(format!("cider-pickle-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.pkl");
        to_path(&PyValue::Int(1), &path).unwrap();
        to_path(&sample(), &path).unwrap();
        assert_eq!(crate::pickle::from_path(&path).unwrap(), sample());
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.pkl")]);
        std::fs::remove_dir_all(&dir).unwrap();
        let missing = dir.join("no-such-dir").join("out.pkl");
        assert!(matches!(
            to_path(&PyValue::None, &missing),
            Err(DataError::Io { path, .. }) if path == missing
        ));
    }

    #[test]
    fn nesting_beyond_the_reader_limit_is_refused() {
        let mut value = PyValue::None;
        for _ in 0..=MAX_DEPTH + 1 {
            value = PyValue::List(vec![value]);
        }
        assert!(matches!(to_bytes(&value), Err(DataError::Invalid { .. })));
    }
}
