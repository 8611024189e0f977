//! A restricted pickle machine: rebuilds plain Python data and NumPy arrays from pickle
//! protocols 0–5 (as written by CPython's `pickle` with NumPy 1.x or 2.x) without executing
//! anything. MMSA's data files are such pickles (docs/method.md §2.2).
//!
//! Values: `None`, bools, ints (up to 64 bits), floats, str, bytes (and `bytearray`, read as
//! bytes), lists, tuples and dicts. Globals allowed, each interpreted by us, never imported:
//!
//! | global | use |
//! |---|---|
//! | `numpy.ndarray`, `numpy.dtype` | array class; dtype from a code (`'f8'`) + BUILD state `(3, '<', …)` |
//! | `numpy{.core,._core}.multiarray._reconstruct` | empty array, filled by BUILD `(1, shape, dtype, is_fortran, raw)` |
//! | `numpy{.core,._core}.numeric._frombuffer` | protocol 5 array from `(buffer, dtype, shape, order)` |
//! | `numpy{.core,._core}.multiarray.scalar` | NumPy scalar from `(dtype, bytes)` → int, float or bool |
//! | `_codecs.encode` | protocols 0–2 spell bytes as `encode(latin1_str, 'latin1')` |
//! | `builtins.bytes` (`__builtin__`) | protocols 0–2 spell `b''` as `bytes()` |
//!
//! Element types: `f4 f8 i8 i4 u1 b1` in either byte order, and `O` (object arrays, whose raw
//! state is a list). Fortran-ordered arrays are converted to C order. Any other global is refused
//! with [`DataError::ForbiddenGlobal`]; persistent ids, extension codes, sets and out-of-band
//! buffers (`NEXT_BUFFER`) are refused with [`DataError::Pickle`].
//!
//! Design: the input is one byte slice and bytes payloads are borrowed from it, so the memo
//! shares them for free and each array's elements are converted once (chunked
//! `from_le_bytes` / `from_be_bytes`). Containers live in a flat heap referenced by index, so
//! memo sharing and in-place BUILD behave as in CPython and nothing recurses while parsing;
//! the final [`PyValue`] is assembled at STOP, moving unshared arrays out of the heap, with
//! nesting bounded by [`MAX_DEPTH`] and cycles refused. Every length field is checked against
//! the bytes left before use, and the memory the machine may build is bounded by a budget
//! proportional to the input size (which stops memo-reference "billion laughs" blow-ups).
//!
//! The machine, file by file: `stream.rs` (the input, checked reads, budget, dialects),
//! `opcodes.rs`, `interpreter.rs` (the opcode loop), `machine.rs` (stack, marks, memo, heap),
//! `object.rs` (values and heap nodes), `globals.rs` (what the allowed globals and BUILD do),
//! `assembly.rs` (the result at STOP), `encodings.rs` (text and integer encodings) and
//! `limits.rs` (depth, nesting and memory limits).

use std::path::Path;

use crate::error::DataError;
use crate::value::PyValue;

mod assembly;
mod encodings;
mod globals;
mod interpreter;
mod limits;
mod machine;
mod object;
pub(crate) mod opcodes;
mod stream;

pub use limits::MAX_DEPTH;
pub(crate) use limits::{BUDGET_FACTOR, RESERVE, budget_for};
pub(crate) use stream::{Extension, StateItem, Stream};

/// Reads a pickle held in memory. `source` names it in errors (usually the file path).
pub fn from_bytes(bytes: &[u8], source: &str) -> Result<PyValue, DataError> {
    Stream::new(bytes, source, &NoExtension).load()
}

/// Reads a pickle file.
pub fn from_path(path: impl AsRef<Path>) -> Result<PyValue, DataError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    from_bytes(&bytes, &path.display().to_string())
}

/// Plain pickles: no class beyond the table in the module docs.
struct NoExtension;

impl Extension for NoExtension {
    fn allows_class(&self, _module: &str, _name: &str) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{check, check_mmsa, fixtures, json, testdata};
    use crate::value::ArrayData;

    fn pickle_error(result: Result<PyValue, DataError>) -> (usize, String) {
        match result {
            Err(DataError::Pickle {
                offset,
                message,
                file,
            }) => {
                assert_eq!(file, "test.pkl");
                (offset, message)
            }
            other => panic!("expected a pickle error, got {other:?}"),
        }
    }

    #[test]
    fn reads_every_protocol_from_numpy_1_and_2() {
        let files = fixtures("pickle");
        // Protocols 0–5, each from NumPy 1.26 and 2.x.
        assert_eq!(files.len(), 12);
        for (path, expected) in files {
            let value = from_path(&path).unwrap_or_else(|e| panic!("{e}"));
            check(&value, &expected, &path.display().to_string()).unwrap();
        }
    }

    #[test]
    fn reads_mmsa_fixtures() {
        let manifest = json("mmsa/manifest.json");
        for name in ["mosi_aligned_50_tiny.pkl", "mosi_unaligned_50_tiny.pkl"] {
            let value = from_path(testdata(&format!("mmsa/{name}"))).unwrap();
            check_mmsa(&value, &manifest["files"][name], name);
        }
    }

    #[test]
    fn memo_shares_containers_filled_after_memoization() {
        // d = {}; l = [1]; d['a'] = l; d['b'] = l — written by CPython as:
        let bytes = b"\x80\x04}\x94(\x8c\x01a\x94]\x94K\x01a\x8c\x01b\x94h\x02u.";
        let value = from_bytes(bytes, "test.pkl").unwrap();
        let list = PyValue::List(vec![PyValue::Int(1)]);
        assert_eq!(value.get("a"), Some(&list));
        assert_eq!(value.get("b"), Some(&list));
    }

    #[test]
    fn repeated_dict_keys_keep_the_last_value() {
        // pickle.loads(b'\x80\x04}(K\x01K\x02K\x01K\x03u.') == {1: 3} in CPython.
        let value = from_bytes(b"\x80\x04}(K\x01K\x02K\x01K\x03u.", "test.pkl").unwrap();
        assert_eq!(
            value,
            PyValue::Dict(vec![(PyValue::Int(1), PyValue::Int(3))])
        );
    }

    #[test]
    fn refuses_forbidden_globals_without_running_them() {
        let cases: [(&[u8], &str, &str, usize); 4] = [
            (b"cos\nsystem\n(S'ls'\ntR.", "os", "system", 0),
            (
                b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.",
                "builtins",
                "eval",
                18,
            ),
            (b"\x80\x02cposix\nsystem\nq\x00.", "posix", "system", 2),
            (b"\x80\x02cnumpy\nmatrix\n.", "numpy", "matrix", 2),
        ];
        for (bytes, module, name, at) in cases {
            match from_bytes(bytes, "evil.pkl") {
                Err(DataError::ForbiddenGlobal {
                    file,
                    offset,
                    module: m,
                    name: n,
                }) => {
                    assert_eq!(
                        (file.as_str(), m.as_str(), n.as_str(), offset),
                        ("evil.pkl", module, name, at)
                    );
                }
                other => panic!("{module}.{name}: {other:?}"),
            }
        }
        // A joblib wrapper is not a plain-pickle class.
        let joblib = std::fs::read(testdata("pickles/np2_joblib_raw.joblib")).unwrap();
        assert!(matches!(
            from_bytes(&joblib, "test.pkl"),
            Err(DataError::ForbiddenGlobal { name, .. }) if name == "NumpyArrayWrapper"
        ));
    }

    #[test]
    fn malformed_streams_give_offsets() {
        let (offset, message) = pickle_error(from_bytes(b"\x80\x04a.", "test.pkl"));
        assert_eq!((offset, message.as_str()), (2, "stack underflow"));
        let (offset, message) = pickle_error(from_bytes(b"\x80\x04N\xff.", "test.pkl"));
        assert_eq!((offset, message.as_str()), (3, "unknown opcode 0xff"));
        let (offset, message) = pickle_error(from_bytes(b"\x80\x04N", "test.pkl"));
        assert_eq!(offset, 3);
        assert!(message.contains("without a STOP"), "{message}");
        let (_, message) = pickle_error(from_bytes(b"\x80\x06N.", "test.pkl"));
        assert!(message.contains("protocol 6"), "{message}");
        // A MARK fences the stack: APPEND cannot reach the list below it.
        let (offset, _) = pickle_error(from_bytes(b"\x80\x04](K\x01a.", "test.pkl"));
        assert_eq!(offset, 6);
        let (_, message) = pickle_error(from_bytes(b"\x80\x04h\x07.", "test.pkl"));
        assert!(message.contains("memo has no entry 7"), "{message}");
        let (_, message) = pickle_error(from_bytes(b"\x80\x05\x97.", "test.pkl"));
        assert!(message.contains("out-of-band"), "{message}");
    }

    #[test]
    fn long_literals_are_not_echoed_whole() {
        let bytes = [&b"\x80\x02I"[..], &[b'7'; 5000], b"\n."].concat();
        let (offset, message) = pickle_error(from_bytes(&bytes, "test.pkl"));
        assert_eq!(offset, 2);
        assert_eq!(
            message,
            format!(
                "integer literal `{}… (5000 characters)` is not a 64-bit integer",
                "7".repeat(40)
            )
        );
    }

    #[test]
    fn huge_length_fields_fail_before_allocating() {
        let mut bytes = b"\x80\x04\x8e".to_vec();
        bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
        bytes.extend_from_slice(b"abc.");
        let (offset, message) = pickle_error(from_bytes(&bytes, "test.pkl"));
        assert_eq!(offset, 2);
        assert!(
            message.contains("needs 1152921504606846976 bytes, only 4 are left"),
            "{message}"
        );
        let (_, message) = pickle_error(from_bytes(
            b"\x80\x04\x95\xff\xff\xff\xff\x00\x00\x00\x00N.",
            "test.pkl",
        ));
        assert!(message.contains("frame of 4294967295 bytes"), "{message}");
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        for name in ["np2_p4.pkl", "np1_p0.pkl", "np1_p2.pkl", "np2_p5.pkl"] {
            let bytes = std::fs::read(testdata(&format!("pickles/{name}"))).unwrap();
            for cut in 0..bytes.len() {
                let (offset, _) = pickle_error(from_bytes(&bytes[..cut], "test.pkl"));
                assert!(offset <= cut, "{name}[..{cut}]: offset {offset}");
            }
        }
    }

    /// `depth` nested lists: `]` × depth, then APPEND × (depth − 1).
    fn nested_lists(depth: usize) -> Vec<u8> {
        let mut bytes = b"\x80\x04".to_vec();
        bytes.extend(std::iter::repeat_n(b']', depth));
        bytes.extend(std::iter::repeat_n(b'a', depth - 1));
        bytes.push(b'.');
        bytes
    }

    #[test]
    fn nesting_is_bounded() {
        let mut value = from_bytes(&nested_lists(MAX_DEPTH), "test.pkl").unwrap();
        let mut depth = 1;
        while let PyValue::List(mut items) = value {
            match items.pop() {
                Some(inner) => {
                    value = inner;
                    depth += 1;
                }
                None => break,
            }
        }
        assert_eq!(depth, MAX_DEPTH);
        let (_, message) = pickle_error(from_bytes(&nested_lists(MAX_DEPTH + 1), "test.pkl"));
        assert!(message.contains("nest more than 128"), "{message}");
        let (_, message) = pickle_error(from_bytes(&nested_lists(100_000), "test.pkl"));
        assert!(message.contains("nest more than 128"), "{message}");
    }

    #[test]
    fn cycles_and_reference_bombs_are_refused() {
        // l = []; l.append(l)
        let (offset, message) = pickle_error(from_bytes(b"\x80\x04]\x94h\x00a.", "test.pkl"));
        assert_eq!((offset, message.as_str()), (2, "a list contains itself"));
        // l0 = ['x' * 255]; l(k+1) = [lk, lk]: 2^60 strings once expanded.
        let mut bytes = b"\x80\x04]\x94\x8c\xff".to_vec();
        bytes.extend(std::iter::repeat_n(b'x', 255));
        bytes.push(b'a');
        for k in 0..60u8 {
            bytes.extend_from_slice(&[b']', 0x94, b'(', b'h', k, b'h', k, b'e']);
        }
        bytes.push(b'.');
        let (_, message) = pickle_error(from_bytes(&bytes, "test.pkl"));
        assert!(message.contains("more than 64x its size"), "{message}");
    }

    /// `pickle::from_bytes` with a memory budget of `budget` bytes instead of the input's.
    fn load_within(bytes: &[u8], budget: usize) -> Result<PyValue, DataError> {
        Stream::with_budget(bytes, "test.pkl", &NoExtension, budget).load()
    }

    /// `body` repeated `n` times between a protocol 4 header and `tail`.
    fn repeated(body: &[u8], n: usize, tail: &[u8]) -> Vec<u8> {
        let mut bytes = b"\x80\x04".to_vec();
        for _ in 0..n {
            bytes.extend_from_slice(body);
        }
        bytes.extend_from_slice(tail);
        bytes
    }

    #[test]
    fn small_values_count_against_the_budget() {
        const BUDGET: usize = 1 << 20;
        // 1000 values fit in 1 MiB; 100 000 of each kind do not: the stack, the marks, the
        // memo, the heap and the vectors of a list are charged as they grow.
        assert_eq!(
            load_within(&repeated(b"N", 1000, b"."), BUDGET).unwrap(),
            PyValue::None
        );
        let cases = [
            ("None", repeated(b"N", 100_000, b".")),
            ("MARK", repeated(b"(", 100_000, b"N.")),
            ("MEMOIZE", repeated(b"N\x94", 100_000, b".")),
            ("EMPTY_LIST", repeated(b"]", 100_000, b".")),
            (
                "APPENDS",
                [repeated(b"", 0, b"]("), vec![b'N'; 30_000], b"e.".to_vec()].concat(),
            ),
            (
                "DUP",
                repeated(b"N", 1, &[vec![b'2'; 100_000], b".".to_vec()].concat()),
            ),
        ];
        for (name, bytes) in cases {
            let (_, message) = pickle_error(load_within(&bytes, BUDGET));
            assert!(
                message.contains("more than 64x its size + 64 MiB"),
                "{name}: {message}"
            );
        }
    }

    #[test]
    fn shared_arrays_are_copied_for_each_reference() {
        let value = from_path(testdata("pickles/np2_p4.pkl")).unwrap();
        let Some(PyValue::List(pair)) = value.get("shared_array") else {
            panic!()
        };
        assert_eq!(pair[0], pair[1]);
        let PyValue::Array(array) = &pair[0] else {
            panic!()
        };
        assert_eq!(array.data(), &ArrayData::I32(vec![1, 2, 3, 4]));
    }

    #[test]
    fn python2_binstrings_become_str_or_bytes() {
        let value = from_bytes(b"\x80\x02(U\x02abT\x01\x00\x00\x00\xfft.", "test.pkl").unwrap();
        assert_eq!(
            value,
            PyValue::Tuple(vec![PyValue::Str("ab".into()), PyValue::Bytes(vec![0xff])])
        );
    }
}
