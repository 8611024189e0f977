//! A restricted pickle machine: rebuilds plain Python data and NumPy arrays from pickle
//! protocols 0–5 (as written by CPython's `pickle` with NumPy 1.x or 2.x) without executing
//! anything.
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

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use crate::error::DataError;
use crate::npy::{self, ByteOrder, RawDType};
use crate::value::{ArrayData, DType, NumpyArray, PyValue};

/// Deepest nesting of containers in a result (MMSA files nest 3 deep; CPython itself stops
/// near 1000).
pub const MAX_DEPTH: usize = 128;
/// Pickle streams nested inside one another (joblib stores object arrays as inner pickles).
const MAX_NESTED_STREAMS: usize = 8;
/// Memory the machine may build, per input byte, on top of [`BUDGET_BASE`].
const BUDGET_FACTOR: usize = 64;
/// Memory the machine may always build, whatever the input size.
const BUDGET_BASE: usize = 64 << 20;
/// Str payloads at least this long have their UTF-8 checked when used rather than when read.
const LAZY_UTF8_LEN: usize = 1 << 16;
/// Bookkeeping cost charged per value and per heap node.
const VALUE_COST: usize = std::mem::size_of::<PyValue>();

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

/// Extra classes of a pickle dialect (joblib's `NumpyArrayWrapper`), on top of what plain
/// pickles may use.
pub(crate) trait Extension {
    /// True when `module.name` is a class of this dialect: NEWOBJ may create an instance and
    /// BUILD hands its state to [`Extension::build`].
    fn allows_class(&self, module: &str, name: &str) -> bool;

    /// Turns an instance of `class` (`"module.name"`) with its BUILD `state` (a dict with str
    /// keys) into an array, reading any payload that follows the BUILD opcode from `stream`.
    fn build(
        &self,
        class: &str,
        state: Vec<(String, StateItem)>,
        stream: &mut Stream<'_, '_>,
    ) -> Result<NumpyArray, DataError>;
}

/// A value of an extension class's BUILD state.
#[derive(Debug)]
pub(crate) enum StateItem {
    /// Plain data.
    Value(PyValue),
    /// An allowed class, by its `module.name`.
    Class(String),
    /// A NumPy dtype.
    DType(RawDType),
}

/// Plain pickles: no class beyond the table in the module docs.
struct NoExtension;

impl Extension for NoExtension {
    fn allows_class(&self, _module: &str, _name: &str) -> bool {
        false
    }

    fn build(
        &self,
        class: &str,
        _state: Vec<(String, StateItem)>,
        stream: &mut Stream<'_, '_>,
    ) -> Result<NumpyArray, DataError> {
        Err(stream.fail(format!("BUILD of `{class}` is not supported")))
    }
}

/// The input of one or more pickle streams, with the read position, the dialect and the
/// memory budget shared by nested streams.
pub(crate) struct Stream<'a, 'e> {
    bytes: &'a [u8],
    pos: usize,
    /// Offset of the opcode being run, for error messages.
    op: usize,
    source: &'e str,
    extension: &'e dyn Extension,
    budget: usize,
    nesting: usize,
}

impl<'a, 'e> Stream<'a, 'e> {
    /// A stream over `bytes`, read from the start.
    pub(crate) fn new(bytes: &'a [u8], source: &'e str, extension: &'e dyn Extension) -> Self {
        Stream {
            bytes,
            pos: 0,
            op: 0,
            source,
            extension,
            budget: bytes
                .len()
                .saturating_mul(BUDGET_FACTOR)
                .saturating_add(BUDGET_BASE),
            nesting: 0,
        }
    }

    /// The name of the input, for error messages.
    pub(crate) fn source(&self) -> &str {
        self.source
    }

    /// The read position.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left after the read position.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// The next `n` bytes, advancing past them; `None`, consuming nothing, if fewer remain.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.remaining() {
            return None;
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Some(out)
    }

    /// Runs one pickle from the read position up to and including its STOP opcode.
    pub(crate) fn load(&mut self) -> Result<PyValue, DataError> {
        if self.nesting >= MAX_NESTED_STREAMS {
            return Err(self.fail(format!(
                "pickle streams nest more than {MAX_NESTED_STREAMS} deep"
            )));
        }
        self.nesting += 1;
        let result = Machine::default().run(self);
        self.nesting -= 1;
        result
    }

    /// Takes `bytes` from the memory budget.
    pub(crate) fn charge(&mut self, bytes: usize) -> Result<(), DataError> {
        match self.budget.checked_sub(bytes) {
            Some(left) => {
                self.budget = left;
                Ok(())
            }
            None => Err(self.fail(format!(
                "the pickle would build more than {BUDGET_FACTOR}x its size in memory \
                 (shared references expanded); refusing"
            ))),
        }
    }

    /// A [`DataError::Pickle`] at the current opcode.
    pub(crate) fn fail(&self, message: impl Into<String>) -> DataError {
        self.fail_at(self.op, message)
    }

    fn fail_at(&self, offset: usize, message: impl Into<String>) -> DataError {
        DataError::Pickle {
            file: self.source.to_string(),
            offset,
            message: message.into(),
        }
    }

    fn byte(&mut self) -> Result<u8, DataError> {
        Ok(self.read(1, "an opcode argument")?[0])
    }

    /// Exactly `n` bytes of `what`, or a truncation error naming the shortfall. The length is
    /// checked against the input before anything is allocated.
    fn read(&mut self, n: u64, what: &str) -> Result<&'a [u8], DataError> {
        let left = self.remaining();
        usize::try_from(n)
            .ok()
            .and_then(|n| self.take(n))
            .ok_or_else(|| {
                self.fail(format!(
                    "truncated: {what} needs {n} bytes, only {left} are left"
                ))
            })
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DataError> {
        let bytes = self.read(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u64, DataError> {
        Ok(u64::from(u32::from_le_bytes(self.array(what)?)))
    }

    fn u64(&mut self, what: &str) -> Result<u64, DataError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A text line (protocol 0 arguments), without its `\n`.
    fn line(&mut self) -> Result<&'a [u8], DataError> {
        let rest = &self.bytes[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.fail("truncated: a text argument has no end of line"))?;
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    fn line_str(&mut self) -> Result<&'a str, DataError> {
        let line = self.line()?;
        std::str::from_utf8(line).map_err(|_| self.fail("text argument is not UTF-8"))
    }
}

/// A value on the stack, in the memo or inside a container. Cheap to clone: large payloads are
/// borrowed from the input or shared.
#[derive(Debug, Clone)]
enum Obj<'a> {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Text<'a>),
    Bytes(Blob<'a>),
    Global(Global),
    /// A container, dtype or array in the machine's heap.
    Node(usize),
}

#[derive(Debug, Clone)]
enum Text<'a> {
    Borrowed(&'a str),
    Owned(Rc<String>),
    /// A long str payload whose UTF-8 is checked when used: in protocols 0–2 these hold array
    /// data, which `_codecs.encode` checks while converting it to latin-1 bytes anyway.
    Unchecked(&'a [u8]),
}

impl Text<'_> {
    /// The text, `None` if unchecked bytes turn out not to be UTF-8.
    fn as_str(&self) -> Option<&str> {
        match self {
            Text::Borrowed(s) => Some(s),
            Text::Owned(s) => Some(s),
            Text::Unchecked(bytes) => std::str::from_utf8(bytes).ok(),
        }
    }

    /// The UTF-8 bytes (unchecked for [`Text::Unchecked`]).
    fn as_bytes(&self) -> &[u8] {
        match self {
            Text::Borrowed(s) => s.as_bytes(),
            Text::Owned(s) => s.as_bytes(),
            Text::Unchecked(bytes) => bytes,
        }
    }
}

#[derive(Debug, Clone)]
enum Blob<'a> {
    Borrowed(&'a [u8]),
    Owned(Rc<Vec<u8>>),
}

impl Blob<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Blob::Borrowed(b) => b,
            Blob::Owned(b) => b,
        }
    }
}

/// An allowed global, as we interpret it.
#[derive(Debug, Clone, PartialEq)]
enum Global {
    Reconstruct,
    FromBuffer,
    Scalar,
    DTypeClass,
    NdarrayClass,
    CodecsEncode,
    BytesClass,
    /// A class of the stream's [`Extension`], by `module.name`.
    Extension(Rc<str>),
}

impl Global {
    /// Resolves `module.name`, mapping Python 2 module names as CPython's `fix_imports` does.
    fn resolve(module: &str, name: &str, extension: &dyn Extension) -> Option<Global> {
        let module = match module {
            "__builtin__" => "builtins",
            other => other,
        };
        let numpy_core = |suffix: &str| {
            module == format!("numpy.core.{suffix}") || module == format!("numpy._core.{suffix}")
        };
        Some(match (module, name) {
            (_, "_reconstruct") if numpy_core("multiarray") => Global::Reconstruct,
            (_, "scalar") if numpy_core("multiarray") => Global::Scalar,
            (_, "_frombuffer") if numpy_core("numeric") => Global::FromBuffer,
            ("numpy", "dtype") => Global::DTypeClass,
            ("numpy", "ndarray") => Global::NdarrayClass,
            ("_codecs", "encode") => Global::CodecsEncode,
            ("builtins", "bytes") => Global::BytesClass,
            _ if extension.allows_class(module, name) => {
                Global::Extension(Rc::from(format!("{module}.{name}")))
            }
            _ => return None,
        })
    }

    fn name(&self) -> &str {
        match self {
            Global::Reconstruct => "numpy.core.multiarray._reconstruct",
            Global::FromBuffer => "numpy.core.numeric._frombuffer",
            Global::Scalar => "numpy.core.multiarray.scalar",
            Global::DTypeClass => "numpy.dtype",
            Global::NdarrayClass => "numpy.ndarray",
            Global::CodecsEncode => "_codecs.encode",
            Global::BytesClass => "builtins.bytes",
            Global::Extension(name) => name,
        }
    }
}

/// An object in the heap: what may be shared through the memo and changed in place.
#[derive(Debug)]
enum Node<'a> {
    List(Vec<Obj<'a>>),
    Tuple(Vec<Obj<'a>>),
    Dict(Vec<(Obj<'a>, Obj<'a>)>),
    DType(RawDType),
    /// An array made by `_reconstruct`, waiting for its BUILD.
    PendingArray,
    Array(NumpyArray),
    /// An object array: `shape` and its elements in C order.
    ObjectArray {
        shape: Vec<usize>,
        items: Vec<Obj<'a>>,
    },
    /// An instance of an extension class, waiting for its BUILD.
    Instance(Rc<str>),
    /// Moved into the result.
    Taken,
}

impl Node<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Node::List(_) => "list",
            Node::Tuple(_) => "tuple",
            Node::Dict(_) => "dict",
            Node::DType(_) => "numpy.dtype",
            Node::PendingArray | Node::Array(_) | Node::ObjectArray { .. } => "numpy.ndarray",
            Node::Instance(_) => "object",
            Node::Taken => "moved value",
        }
    }

    /// The values this node refers to.
    fn children(&self) -> Vec<&Obj<'_>> {
        match self {
            Node::List(items) | Node::Tuple(items) | Node::ObjectArray { items, .. } => {
                items.iter().collect()
            }
            Node::Dict(pairs) => pairs.iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => Vec::new(),
        }
    }
}

/// The opcode interpreter of one pickle stream.
#[derive(Default)]
struct Machine<'a> {
    stack: Vec<Obj<'a>>,
    /// Stack lengths at each MARK (CPython's metastack).
    marks: Vec<usize>,
    memo: HashMap<u64, Obj<'a>>,
    heap: Vec<Node<'a>>,
    /// Offset of the opcode that created each heap node.
    origin: Vec<usize>,
}

mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const FLOAT: u8 = b'F';
    pub const INT: u8 = b'I';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const LONG: u8 = b'L';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const PERSID: u8 = b'P';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const STRING: u8 = b'S';
    pub const BINSTRING: u8 = b'T';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const UNICODE: u8 = b'V';
    pub const BINUNICODE: u8 = b'X';
    pub const APPEND: u8 = b'a';
    pub const BUILD: u8 = b'b';
    pub const GLOBAL: u8 = b'c';
    pub const DICT: u8 = b'd';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const GET: u8 = b'g';
    pub const BINGET: u8 = b'h';
    pub const INST: u8 = b'i';
    pub const LONG_BINGET: u8 = b'j';
    pub const LIST: u8 = b'l';
    pub const EMPTY_LIST: u8 = b']';
    pub const OBJ: u8 = b'o';
    pub const PUT: u8 = b'p';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const BINFLOAT: u8 = b'G';
    pub const PROTO: u8 = 0x80;
    pub const NEWOBJ: u8 = 0x81;
    pub const EXT1: u8 = 0x82;
    pub const EXT2: u8 = 0x83;
    pub const EXT4: u8 = 0x84;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES8: u8 = 0x8e;
    pub const EMPTY_SET: u8 = 0x8f;
    pub const ADDITEMS: u8 = 0x90;
    pub const FROZENSET: u8 = 0x91;
    pub const NEWOBJ_EX: u8 = 0x92;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
    pub const BYTEARRAY8: u8 = 0x96;
    pub const NEXT_BUFFER: u8 = 0x97;
    pub const READONLY_BUFFER: u8 = 0x98;
}

impl<'a> Machine<'a> {
    /// Runs opcodes until STOP and assembles the result.
    fn run(mut self, s: &mut Stream<'a, '_>) -> Result<PyValue, DataError> {
        loop {
            s.op = s.pos;
            if s.remaining() == 0 {
                return Err(s.fail("truncated: the pickle ends without a STOP opcode"));
            }
            let code = s.byte()?;
            if code == op::STOP {
                let root = self.pop(s)?;
                return self.finish(s, root);
            }
            self.step(s, code)?;
        }
    }

    /// Runs one opcode (all but STOP).
    fn step(&mut self, s: &mut Stream<'a, '_>, code: u8) -> Result<(), DataError> {
        match code {
            op::PROTO => {
                let version = s.byte()?;
                if version > 5 {
                    return Err(s.fail(format!("unsupported pickle protocol {version}")));
                }
            }
            op::FRAME => {
                // Frames only group opcodes for buffered reading: check and ignore.
                let len = s.u64("FRAME length")?;
                if len > s.remaining() as u64 {
                    return Err(s.fail(format!(
                        "truncated: a frame of {len} bytes, only {} are left",
                        s.remaining()
                    )));
                }
            }
            op::MARK => self.marks.push(self.stack.len()),
            op::POP => {
                // As CPython: at a MARK, POP discards the mark itself.
                if self.stack.len() > self.fence() || self.marks.is_empty() {
                    self.pop(s)?;
                } else {
                    self.pop_mark(s)?;
                }
            }
            op::POP_MARK => {
                self.pop_mark(s)?;
            }
            op::DUP => {
                let top = self.top(s)?.clone();
                self.stack.push(top);
            }
            op::NONE => self.stack.push(Obj::None),
            op::NEWTRUE => self.stack.push(Obj::Bool(true)),
            op::NEWFALSE => self.stack.push(Obj::Bool(false)),
            op::INT => {
                let line = s.line_str()?;
                let value = match line {
                    "00" => Obj::Bool(false),
                    "01" => Obj::Bool(true),
                    text => Obj::Int(parse_int(s, text)?),
                };
                self.stack.push(value);
            }
            op::LONG => {
                let line = s.line_str()?;
                let value = parse_int(s, line.strip_suffix('L').unwrap_or(line))?;
                self.stack.push(Obj::Int(value));
            }
            op::BININT => {
                let value = i32::from_le_bytes(s.array("BININT")?);
                self.stack.push(Obj::Int(i64::from(value)));
            }
            op::BININT1 => {
                let value = s.byte()?;
                self.stack.push(Obj::Int(i64::from(value)));
            }
            op::BININT2 => {
                let value = u16::from_le_bytes(s.array("BININT2")?);
                self.stack.push(Obj::Int(i64::from(value)));
            }
            op::LONG1 | op::LONG4 => {
                let len = if code == op::LONG1 {
                    u64::from(s.byte()?)
                } else {
                    let len = i32::from_le_bytes(s.array("LONG4 length")?);
                    u64::try_from(len)
                        .map_err(|_| s.fail(format!("negative LONG4 length {len}")))?
                };
                let bytes = s.read(len, "a long integer")?;
                let value =
                    long_from_le(bytes).ok_or_else(|| s.fail("integer does not fit in 64 bits"))?;
                self.stack.push(Obj::Int(value));
            }
            op::FLOAT => {
                let line = s.line_str()?;
                let value = line
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| s.fail(format!("bad float literal `{line}`")))?;
                self.stack.push(Obj::Float(value));
            }
            op::BINFLOAT => {
                let value = f64::from_be_bytes(s.array("BINFLOAT")?);
                self.stack.push(Obj::Float(value));
            }
            op::STRING => {
                return Err(s.fail(
                    "Python 2 STRING opcode is not supported (re-save the file with Python 3)",
                ));
            }
            op::BINSTRING | op::SHORT_BINSTRING => {
                let len = if code == op::SHORT_BINSTRING {
                    u64::from(s.byte()?)
                } else {
                    let len = i32::from_le_bytes(s.array("BINSTRING length")?);
                    u64::try_from(len)
                        .map_err(|_| s.fail(format!("negative BINSTRING length {len}")))?
                };
                let bytes = s.read(len, "a Python 2 string")?;
                // Python 3 decodes these as ASCII str; anything else stays bytes.
                let value = match std::str::from_utf8(bytes) {
                    Ok(text) if text.is_ascii() => Obj::Str(Text::Borrowed(text)),
                    _ => Obj::Bytes(Blob::Borrowed(bytes)),
                };
                self.stack.push(value);
            }
            op::UNICODE => {
                let line = s.line()?;
                let text = decode_raw_unicode_escape(line)
                    .ok_or_else(|| s.fail("bad raw-unicode-escape string"))?;
                s.charge(text.len())?;
                self.stack.push(Obj::Str(Text::Owned(Rc::new(text))));
            }
            op::SHORT_BINUNICODE | op::BINUNICODE | op::BINUNICODE8 => {
                let len = match code {
                    op::SHORT_BINUNICODE => u64::from(s.byte()?),
                    op::BINUNICODE => s.u32("BINUNICODE length")?,
                    _ => s.u64("BINUNICODE8 length")?,
                };
                let bytes = s.read(len, "a str")?;
                let text = if bytes.len() >= LAZY_UTF8_LEN {
                    Text::Unchecked(bytes)
                } else {
                    let text = std::str::from_utf8(bytes)
                        .map_err(|e| s.fail(format!("str is not valid UTF-8: {e}")))?;
                    Text::Borrowed(text)
                };
                self.stack.push(Obj::Str(text));
            }
            op::SHORT_BINBYTES | op::BINBYTES | op::BINBYTES8 | op::BYTEARRAY8 => {
                let len = match code {
                    op::SHORT_BINBYTES => u64::from(s.byte()?),
                    op::BINBYTES => s.u32("BINBYTES length")?,
                    _ => s.u64("BINBYTES8 / BYTEARRAY8 length")?,
                };
                let bytes = s.read(len, "a bytes object")?;
                self.stack.push(Obj::Bytes(Blob::Borrowed(bytes)));
            }
            op::NEXT_BUFFER => {
                return Err(s.fail(
                    "out-of-band buffer (NEXT_BUFFER): the data is not in the file; \
                     pickle it without buffer_callback",
                ));
            }
            op::READONLY_BUFFER => {
                self.top(s)?;
            }
            op::EMPTY_TUPLE => self.push_node(s, Node::Tuple(Vec::new()))?,
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = usize::from(code - op::TUPLE1 + 1);
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop(s)?);
                }
                items.reverse();
                self.push_node(s, Node::Tuple(items))?;
            }
            op::TUPLE => {
                let items = self.pop_mark(s)?;
                self.push_node(s, Node::Tuple(items))?;
            }
            op::EMPTY_LIST => self.push_node(s, Node::List(Vec::new()))?,
            op::LIST => {
                let items = self.pop_mark(s)?;
                self.push_node(s, Node::List(items))?;
            }
            op::APPEND => {
                let item = self.pop(s)?;
                self.list_extend(s, vec![item])?;
            }
            op::APPENDS => {
                let items = self.pop_mark(s)?;
                self.list_extend(s, items)?;
            }
            op::EMPTY_DICT => self.push_node(s, Node::Dict(Vec::new()))?,
            op::DICT => {
                let items = self.pop_mark(s)?;
                let pairs = self.pairs(s, items)?;
                self.push_node(s, Node::Dict(pairs))?;
            }
            op::SETITEM => {
                let value = self.pop(s)?;
                let key = self.pop(s)?;
                let pairs = self.pairs(s, vec![key, value])?;
                self.dict_extend(s, pairs)?;
            }
            op::SETITEMS => {
                let items = self.pop_mark(s)?;
                let pairs = self.pairs(s, items)?;
                self.dict_extend(s, pairs)?;
            }
            op::EMPTY_SET | op::ADDITEMS | op::FROZENSET => {
                return Err(s.fail("sets are not supported"));
            }
            op::GLOBAL => {
                let module = s.line_str()?;
                let name = s.line_str()?;
                let global = self.global(s, module, name)?;
                self.stack.push(global);
            }
            op::STACK_GLOBAL => {
                let name = self.pop(s)?;
                let module = self.pop(s)?;
                let module = self.str_arg(s, &module, "STACK_GLOBAL module")?;
                let name = self.str_arg(s, &name, "STACK_GLOBAL name")?;
                let global = self.global(s, module, name)?;
                self.stack.push(global);
            }
            op::INST => {
                let module = s.line_str()?;
                let name = s.line_str()?;
                let func = self.global(s, module, name)?;
                let args = self.pop_mark(s)?;
                let value = self.call(s, func, args)?;
                self.stack.push(value);
            }
            op::OBJ => {
                let mut args = self.pop_mark(s)?;
                if args.is_empty() {
                    return Err(s.fail("OBJ without a class"));
                }
                let func = args.remove(0);
                let value = self.call(s, func, args)?;
                self.stack.push(value);
            }
            op::REDUCE => {
                let args = self.pop(s)?;
                let func = self.pop(s)?;
                let args = self.tuple_items(s, &args, "REDUCE arguments")?;
                let value = self.call(s, func, args)?;
                self.stack.push(value);
            }
            op::NEWOBJ | op::NEWOBJ_EX => {
                if code == op::NEWOBJ_EX {
                    let kwargs = self.pop(s)?;
                    if !matches!(&kwargs, Obj::Node(i) if matches!(&self.heap[*i], Node::Dict(d) if d.is_empty()))
                    {
                        return Err(s.fail("NEWOBJ_EX with keyword arguments is not supported"));
                    }
                }
                let args = self.pop(s)?;
                let class = self.pop(s)?;
                let args = self.tuple_items(s, &args, "NEWOBJ arguments")?;
                let value = self.new_object(s, class, args)?;
                self.stack.push(value);
            }
            op::BUILD => {
                let state = self.pop(s)?;
                let target = self.top(s)?.clone();
                self.build(s, target, state)?;
            }
            op::PUT => {
                let index = s.line_str()?;
                let index = index
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| s.fail(format!("bad PUT index `{index}`")))?;
                self.put(s, index)?;
            }
            op::BINPUT => {
                let index = u64::from(s.byte()?);
                self.put(s, index)?;
            }
            op::LONG_BINPUT => {
                let index = s.u32("LONG_BINPUT index")?;
                self.put(s, index)?;
            }
            op::MEMOIZE => {
                let index = self.memo.len() as u64;
                self.put(s, index)?;
            }
            op::GET => {
                let index = s.line_str()?;
                let index = index
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| s.fail(format!("bad GET index `{index}`")))?;
                self.get(s, index)?;
            }
            op::BINGET => {
                let index = u64::from(s.byte()?);
                self.get(s, index)?;
            }
            op::LONG_BINGET => {
                let index = s.u32("LONG_BINGET index")?;
                self.get(s, index)?;
            }
            op::PERSID | op::BINPERSID => {
                return Err(s.fail("persistent ids are not supported"));
            }
            op::EXT1 | op::EXT2 | op::EXT4 => {
                return Err(s.fail("copyreg extension codes are not supported"));
            }
            other => return Err(s.fail(format!("unknown opcode 0x{other:02x}"))),
        }
        Ok(())
    }

    // ---- stack, marks, memo -------------------------------------------------------------

    /// The stack length below which the current MARK forbids popping.
    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self, s: &Stream<'a, '_>) -> Result<Obj<'a>, DataError> {
        if self.stack.len() <= self.fence() {
            return Err(s.fail("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| s.fail("stack underflow"))
    }

    fn top(&self, s: &Stream<'a, '_>) -> Result<&Obj<'a>, DataError> {
        if self.stack.len() <= self.fence() {
            return Err(s.fail("stack underflow"));
        }
        self.stack.last().ok_or_else(|| s.fail("stack underflow"))
    }

    /// The items pushed since the last MARK, removing the mark.
    fn pop_mark(&mut self, s: &Stream<'a, '_>) -> Result<Vec<Obj<'a>>, DataError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| s.fail("no MARK on the stack"))?;
        if mark > self.stack.len() {
            return Err(s.fail("stack underflow"));
        }
        Ok(self.stack.split_off(mark))
    }

    fn push_node(&mut self, s: &mut Stream<'a, '_>, node: Node<'a>) -> Result<(), DataError> {
        let obj = self.new_node(s, node)?;
        self.stack.push(obj);
        Ok(())
    }

    fn new_node(&mut self, s: &mut Stream<'a, '_>, node: Node<'a>) -> Result<Obj<'a>, DataError> {
        s.charge(std::mem::size_of::<Node>())?;
        self.heap.push(node);
        self.origin.push(s.op);
        Ok(Obj::Node(self.heap.len() - 1))
    }

    fn put(&mut self, s: &Stream<'a, '_>, index: u64) -> Result<(), DataError> {
        let top = self.top(s)?.clone();
        self.memo.insert(index, top);
        Ok(())
    }

    fn get(&mut self, s: &Stream<'a, '_>, index: u64) -> Result<(), DataError> {
        let value = self
            .memo
            .get(&index)
            .cloned()
            .ok_or_else(|| s.fail(format!("memo has no entry {index}")))?;
        self.stack.push(value);
        Ok(())
    }

    fn global(&self, s: &Stream<'a, '_>, module: &str, name: &str) -> Result<Obj<'a>, DataError> {
        Global::resolve(module, name, s.extension)
            .map(Obj::Global)
            .ok_or_else(|| DataError::ForbiddenGlobal {
                file: s.source.to_string(),
                offset: s.op,
                module: module.to_string(),
                name: name.to_string(),
            })
    }

    // ---- containers ---------------------------------------------------------------------

    fn type_name(&self, obj: &Obj<'a>) -> &'static str {
        match obj {
            Obj::None => "None",
            Obj::Bool(_) => "bool",
            Obj::Int(_) => "int",
            Obj::Float(_) => "float",
            Obj::Str(_) => "str",
            Obj::Bytes(_) => "bytes",
            Obj::Global(_) => "class or function",
            Obj::Node(i) => self.heap[*i].type_name(),
        }
    }

    fn list_extend(&mut self, s: &Stream<'a, '_>, items: Vec<Obj<'a>>) -> Result<(), DataError> {
        let target = self.top(s)?.clone();
        match target {
            Obj::Node(i) if matches!(self.heap[i], Node::List(_)) => {
                if let Node::List(list) = &mut self.heap[i] {
                    list.extend(items);
                }
                Ok(())
            }
            other => Err(s.fail(format!(
                "APPEND to a {}, expected a list",
                self.type_name(&other)
            ))),
        }
    }

    /// Groups `[k0, v0, k1, v1, …]` into pairs, refusing unhashable keys as Python does.
    fn pairs(
        &self,
        s: &Stream<'a, '_>,
        items: Vec<Obj<'a>>,
    ) -> Result<Vec<(Obj<'a>, Obj<'a>)>, DataError> {
        if !items.len().is_multiple_of(2) {
            return Err(s.fail("odd number of items for a dict"));
        }
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut items = items.into_iter();
        while let (Some(key), Some(value)) = (items.next(), items.next()) {
            if let Obj::Node(i) = &key
                && !matches!(self.heap[*i], Node::Tuple(_) | Node::DType(_))
            {
                return Err(s.fail(format!(
                    "unhashable dict key of type {}",
                    self.heap[*i].type_name()
                )));
            }
            pairs.push((key, value));
        }
        Ok(pairs)
    }

    fn dict_extend(
        &mut self,
        s: &Stream<'a, '_>,
        pairs: Vec<(Obj<'a>, Obj<'a>)>,
    ) -> Result<(), DataError> {
        let target = self.top(s)?.clone();
        match target {
            Obj::Node(i) if matches!(self.heap[i], Node::Dict(_)) => {
                if let Node::Dict(dict) = &mut self.heap[i] {
                    dict.extend(pairs);
                }
                Ok(())
            }
            other => Err(s.fail(format!(
                "SETITEM on a {}, expected a dict",
                self.type_name(&other)
            ))),
        }
    }

    /// The items of a tuple (or list) argument.
    fn tuple_items(
        &self,
        s: &Stream<'a, '_>,
        obj: &Obj<'a>,
        what: &str,
    ) -> Result<Vec<Obj<'a>>, DataError> {
        match obj {
            Obj::Node(i) => match &self.heap[*i] {
                Node::Tuple(items) | Node::List(items) => Ok(items.clone()),
                other => Err(s.fail(format!(
                    "{what} should be a tuple, found {}",
                    other.type_name()
                ))),
            },
            other => Err(s.fail(format!(
                "{what} should be a tuple, found {}",
                self.type_name(other)
            ))),
        }
    }

    // ---- argument accessors -------------------------------------------------------------

    fn int_arg(&self, s: &Stream<'a, '_>, obj: &Obj<'a>, what: &str) -> Result<i64, DataError> {
        match obj {
            Obj::Int(v) => Ok(*v),
            Obj::Bool(b) => Ok(i64::from(*b)),
            other => Err(s.fail(format!(
                "{what} should be an int, found {}",
                self.type_name(other)
            ))),
        }
    }

    fn str_arg<'o>(
        &self,
        s: &Stream<'a, '_>,
        obj: &'o Obj<'a>,
        what: &str,
    ) -> Result<&'o str, DataError> {
        match obj {
            Obj::Str(text) => text
                .as_str()
                .ok_or_else(|| s.fail(format!("{what} is not valid UTF-8"))),
            other => Err(s.fail(format!(
                "{what} should be a str, found {}",
                self.type_name(other)
            ))),
        }
    }

    fn dtype_arg(&self, s: &Stream<'a, '_>, obj: &Obj<'a>) -> Result<RawDType, DataError> {
        match obj {
            Obj::Node(i) => match &self.heap[*i] {
                Node::DType(dtype) => Ok(*dtype),
                other => Err(s.fail(format!(
                    "expected a numpy.dtype, found {}",
                    other.type_name()
                ))),
            },
            other => Err(s.fail(format!(
                "expected a numpy.dtype, found {}",
                self.type_name(other)
            ))),
        }
    }

    fn shape_arg(&self, s: &Stream<'a, '_>, obj: &Obj<'a>) -> Result<Vec<usize>, DataError> {
        let items = self.tuple_items(s, obj, "an array shape")?;
        items
            .iter()
            .map(|item| {
                let dim = self.int_arg(s, item, "an array dimension")?;
                usize::try_from(dim).map_err(|_| s.fail(format!("negative array dimension {dim}")))
            })
            .collect()
    }

    /// Raw element bytes: bytes, or a str whose chars are bytes (Python 2 pickles read as
    /// latin-1).
    fn raw_bytes(&self, s: &mut Stream<'a, '_>, obj: &Obj<'a>) -> Result<Blob<'a>, DataError> {
        match obj {
            Obj::Bytes(blob) => Ok(blob.clone()),
            Obj::Str(text) => {
                let bytes = latin1(text.as_bytes()).ok_or_else(|| {
                    s.fail("array data str is not UTF-8 text of chars up to U+00FF")
                })?;
                s.charge(bytes.len())?;
                Ok(Blob::Owned(Rc::new(bytes)))
            }
            other => Err(s.fail(format!(
                "array data should be bytes, found {}",
                self.type_name(other)
            ))),
        }
    }

    // ---- calls and BUILD ----------------------------------------------------------------

    /// REDUCE / INST / OBJ: applies an allowed function to its arguments.
    fn call(
        &mut self,
        s: &mut Stream<'a, '_>,
        func: Obj<'a>,
        args: Vec<Obj<'a>>,
    ) -> Result<Obj<'a>, DataError> {
        let Obj::Global(global) = func else {
            return Err(s.fail(format!("cannot call a {}", self.type_name(&func))));
        };
        match &global {
            Global::Reconstruct => {
                arity(s, &global, &args, 3..=3)?;
                if !matches!(&args[0], Obj::Global(Global::NdarrayClass)) {
                    return Err(s.fail(format!(
                        "_reconstruct of a {}, expected numpy.ndarray",
                        self.type_name(&args[0])
                    )));
                }
                self.new_node(s, Node::PendingArray)
            }
            Global::DTypeClass => {
                arity(s, &global, &args, 1..=3)?;
                let code = self.str_arg(s, &args[0], "a dtype code")?;
                let dtype = RawDType::parse(code).ok_or_else(|| {
                    s.fail(format!(
                        "unsupported NumPy dtype '{code}' (supported: f4 f8 i8 i4 u1 b1 O)"
                    ))
                })?;
                self.new_node(s, Node::DType(dtype))
            }
            Global::FromBuffer => {
                arity(s, &global, &args, 4..=4)?;
                let data = self.raw_bytes(s, &args[0])?;
                let dtype = self.dtype_arg(s, &args[1])?;
                let shape = self.shape_arg(s, &args[2])?;
                let fortran = match self.str_arg(s, &args[3], "the array order")? {
                    "C" => false,
                    "F" => true,
                    other => return Err(s.fail(format!("array order '{other}', expected C or F"))),
                };
                let array = self.decode_array(s, data.as_slice(), dtype, &shape, fortran)?;
                self.new_node(s, Node::Array(array))
            }
            Global::Scalar => {
                arity(s, &global, &args, 2..=2)?;
                let dtype = self.dtype_arg(s, &args[0])?;
                let data = self.raw_bytes(s, &args[1])?;
                scalar(dtype, data.as_slice()).map_err(|m| s.fail(m))
            }
            Global::CodecsEncode => {
                arity(s, &global, &args, 2..=2)?;
                let Obj::Str(text) = &args[0] else {
                    return Err(s.fail(format!(
                        "_codecs.encode of a {}, expected a str",
                        self.type_name(&args[0])
                    )));
                };
                let encoding = self.str_arg(s, &args[1], "the encoding")?;
                if !matches!(encoding, "latin1" | "latin-1") {
                    return Err(s.fail(format!(
                        "_codecs.encode with encoding '{encoding}', expected latin1"
                    )));
                }
                let bytes = latin1(text.as_bytes()).ok_or_else(|| {
                    s.fail("text to encode as latin1 is not UTF-8 of chars up to U+00FF")
                })?;
                s.charge(bytes.len())?;
                Ok(Obj::Bytes(Blob::Owned(Rc::new(bytes))))
            }
            Global::BytesClass => {
                arity(s, &global, &args, 0..=0)?;
                Ok(Obj::Bytes(Blob::Borrowed(&[])))
            }
            Global::NdarrayClass | Global::Extension(_) => {
                Err(s.fail(format!("cannot call `{}` here", global.name())))
            }
        }
    }

    /// NEWOBJ: creates an instance of an extension class (joblib's wrapper).
    fn new_object(
        &mut self,
        s: &mut Stream<'a, '_>,
        class: Obj<'a>,
        args: Vec<Obj<'a>>,
    ) -> Result<Obj<'a>, DataError> {
        match class {
            Obj::Global(Global::Extension(name)) if args.is_empty() => {
                self.new_node(s, Node::Instance(name))
            }
            Obj::Global(global) => {
                Err(s.fail(format!("cannot create a `{}` object here", global.name())))
            }
            other => Err(s.fail(format!(
                "NEWOBJ of a {}, expected a class",
                self.type_name(&other)
            ))),
        }
    }

    /// BUILD: sets the state of a dtype, an array from `_reconstruct`, or an extension object.
    fn build(
        &mut self,
        s: &mut Stream<'a, '_>,
        target: Obj<'a>,
        state: Obj<'a>,
    ) -> Result<(), DataError> {
        let Obj::Node(index) = target else {
            return Err(s.fail(format!("BUILD of a {}", self.type_name(&target))));
        };
        match &self.heap[index] {
            Node::DType(dtype) => {
                let mut dtype = *dtype;
                let items = self.tuple_items(s, &state, "a dtype state")?;
                let order = items
                    .get(1)
                    .ok_or_else(|| s.fail("dtype state has no byte order"))?;
                dtype.order = match self.str_arg(s, order, "the dtype byte order")? {
                    "<" => ByteOrder::Little,
                    ">" => ByteOrder::Big,
                    "=" => ByteOrder::NATIVE,
                    "|" => dtype.order,
                    other => return Err(s.fail(format!("dtype byte order '{other}'"))),
                };
                self.heap[index] = Node::DType(dtype);
            }
            Node::PendingArray => {
                let node = self.array_state(s, &state)?;
                self.heap[index] = node;
            }
            Node::Instance(class) => {
                let class = Rc::clone(class);
                let items = self.state_items(s, &state)?;
                let extension = s.extension;
                let array = extension.build(&class, items, s)?;
                self.heap[index] = Node::Array(array);
            }
            Node::Array(_) | Node::ObjectArray { .. } => {
                return Err(s.fail("BUILD of an array whose state is already set"));
            }
            other => return Err(s.fail(format!("BUILD of a {}", other.type_name()))),
        }
        Ok(())
    }

    /// An array from its `__setstate__` tuple `([version,] shape, dtype, is_fortran, raw)`.
    fn array_state(
        &mut self,
        s: &mut Stream<'a, '_>,
        state: &Obj<'a>,
    ) -> Result<Node<'a>, DataError> {
        let mut items = self.tuple_items(s, state, "an array state")?;
        if items.len() == 5 {
            self.int_arg(s, &items[0], "the array state version")?;
            items.remove(0);
        }
        let [shape, dtype, fortran, raw] = items.as_slice() else {
            return Err(s.fail(format!(
                "array state should have 4 or 5 items, found {}",
                items.len()
            )));
        };
        let shape = self.shape_arg(s, shape)?;
        let dtype = self.dtype_arg(s, dtype)?;
        let fortran = self.int_arg(s, fortran, "the array is_fortran flag")? != 0;
        if dtype.kind == DType::Object {
            // The list is in C order whatever the memory layout (NumPy walks it with a flat
            // iterator on both sides).
            let items = match raw {
                Obj::Node(i) => match &self.heap[*i] {
                    Node::List(items) => items.clone(),
                    other => {
                        return Err(s.fail(format!(
                            "object array data should be a list, found {}",
                            other.type_name()
                        )));
                    }
                },
                other => {
                    return Err(s.fail(format!(
                        "object array data should be a list, found {}",
                        self.type_name(other)
                    )));
                }
            };
            let count = npy::element_count(&shape)
                .ok_or_else(|| s.fail(format!("array shape {shape:?} overflows")))?;
            if items.len() != count {
                return Err(s.fail(format!(
                    "object array of shape {shape:?} needs {count} items, found {}",
                    items.len()
                )));
            }
            return Ok(Node::ObjectArray { shape, items });
        }
        let raw = self.raw_bytes(s, raw)?;
        let array = self.decode_array(s, raw.as_slice(), dtype, &shape, fortran)?;
        Ok(Node::Array(array))
    }

    fn decode_array(
        &self,
        s: &mut Stream<'a, '_>,
        bytes: &[u8],
        dtype: RawDType,
        shape: &[usize],
        fortran: bool,
    ) -> Result<NumpyArray, DataError> {
        if dtype.kind == DType::Object {
            return Err(s.fail("an object array cannot be rebuilt from a raw buffer"));
        }
        // `decode` checks the byte count against the shape before allocating.
        let array = npy::decode(bytes, dtype, shape, fortran).map_err(|m| s.fail(m))?;
        s.charge(bytes.len())?;
        Ok(array)
    }

    /// The BUILD state of an extension object: a dict with str keys.
    fn state_items(
        &self,
        s: &mut Stream<'a, '_>,
        state: &Obj<'a>,
    ) -> Result<Vec<(String, StateItem)>, DataError> {
        let Obj::Node(i) = state else {
            return Err(s.fail(format!(
                "object state should be a dict, found {}",
                self.type_name(state)
            )));
        };
        let Node::Dict(pairs) = &self.heap[*i] else {
            return Err(s.fail(format!(
                "object state should be a dict, found {}",
                self.heap[*i].type_name()
            )));
        };
        let mut out = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            let key = self.str_arg(s, key, "an object state key")?.to_string();
            let item = match value {
                Obj::Global(global) => StateItem::Class(global.name().to_string()),
                Obj::Node(j) if matches!(self.heap[*j], Node::DType(_)) => {
                    StateItem::DType(self.dtype_arg(s, value)?)
                }
                other => StateItem::Value(self.snapshot(s, other, 0)?),
            };
            out.push((key, item));
        }
        Ok(out)
    }

    /// A copy of a value as plain data, in the middle of a stream (extension states).
    fn snapshot(
        &self,
        s: &mut Stream<'a, '_>,
        obj: &Obj<'a>,
        depth: usize,
    ) -> Result<PyValue, DataError> {
        if depth > MAX_DEPTH {
            return Err(s.fail(format!("containers nest more than {MAX_DEPTH} deep")));
        }
        let value = match obj {
            Obj::Node(i) => match &self.heap[*i] {
                Node::List(items) => PyValue::List(self.snapshot_all(s, items, depth)?),
                Node::Tuple(items) => PyValue::Tuple(self.snapshot_all(s, items, depth)?),
                Node::Dict(pairs) => {
                    let mut out = Vec::with_capacity(pairs.len());
                    for (k, v) in pairs {
                        out.push((
                            self.snapshot(s, k, depth + 1)?,
                            self.snapshot(s, v, depth + 1)?,
                        ));
                    }
                    PyValue::Dict(dedupe_keys(out))
                }
                other => {
                    return Err(s.fail(format!(
                        "a {} is not supported in an object state",
                        other.type_name()
                    )));
                }
            },
            leaf => leaf_value(s, leaf.clone())?,
        };
        s.charge(VALUE_COST)?;
        Ok(value)
    }

    fn snapshot_all(
        &self,
        s: &mut Stream<'a, '_>,
        items: &[Obj<'a>],
        depth: usize,
    ) -> Result<Vec<PyValue>, DataError> {
        items
            .iter()
            .map(|item| self.snapshot(s, item, depth + 1))
            .collect()
    }

    // ---- the result ---------------------------------------------------------------------

    /// Assembles the value left by STOP: counts the references to every reachable node
    /// (refusing cycles and over-deep nesting), then converts, moving each node's contents out
    /// at its last reference and cloning it for earlier ones.
    fn finish(mut self, s: &mut Stream<'a, '_>, root: Obj<'a>) -> Result<PyValue, DataError> {
        self.stack.clear();
        self.memo.clear();
        let mut walk = Walk {
            refs: vec![0; self.heap.len()],
            height: vec![0; self.heap.len()],
            state: vec![Visit::New; self.heap.len()],
        };
        walk.visit(&self.heap, &self.origin, s, &root, 0)?;
        let mut assembly = Assembly {
            refs: walk.refs,
            cache: HashMap::new(),
        };
        assembly.convert(&mut self.heap, &self.origin, s, root)
    }
}

/// Reference counting pass over the heap.
struct Walk {
    refs: Vec<u32>,
    /// Longest chain of containers below each node (1 for a node holding only leaves).
    height: Vec<usize>,
    state: Vec<Visit>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Visit {
    New,
    InProgress,
    Done,
}

impl Walk {
    /// Counts one reference to `obj` at nesting `depth`; returns its height.
    fn visit(
        &mut self,
        heap: &[Node<'_>],
        origin: &[usize],
        s: &Stream<'_, '_>,
        obj: &Obj<'_>,
        depth: usize,
    ) -> Result<usize, DataError> {
        let Obj::Node(i) = obj else {
            return Ok(0);
        };
        let i = *i;
        self.refs[i] = self.refs[i].saturating_add(1);
        match self.state[i] {
            Visit::InProgress => {
                return Err(s.fail_at(
                    origin[i],
                    format!("a {} contains itself", heap[i].type_name()),
                ));
            }
            Visit::Done => {}
            Visit::New => {
                if depth >= MAX_DEPTH {
                    return Err(s.fail_at(
                        origin[i],
                        format!("containers nest more than {MAX_DEPTH} deep"),
                    ));
                }
                self.state[i] = Visit::InProgress;
                let mut below = 0;
                for child in heap[i].children() {
                    below = below.max(self.visit(heap, origin, s, child, depth + 1)?);
                }
                self.height[i] = below + 1;
                self.state[i] = Visit::Done;
            }
        }
        if depth + self.height[i] > MAX_DEPTH {
            return Err(s.fail_at(
                origin[i],
                format!("containers nest more than {MAX_DEPTH} deep"),
            ));
        }
        Ok(self.height[i])
    }
}

/// Conversion pass: heap nodes into [`PyValue`]s.
struct Assembly {
    /// References not yet converted, per node.
    refs: Vec<u32>,
    /// Converted nodes that have references left.
    cache: HashMap<usize, PyValue>,
}

impl Assembly {
    fn convert<'a>(
        &mut self,
        heap: &mut [Node<'a>],
        origin: &[usize],
        s: &mut Stream<'a, '_>,
        obj: Obj<'a>,
    ) -> Result<PyValue, DataError> {
        let Obj::Node(i) = obj else {
            let value = leaf_value(s, obj)?;
            s.charge(VALUE_COST + payload_len(&value))?;
            return Ok(value);
        };
        self.refs[i] = self.refs[i].saturating_sub(1);
        let last = self.refs[i] == 0;
        if let Some(cached) = self.cache.get(&i) {
            if last {
                return self
                    .cache
                    .remove(&i)
                    .ok_or_else(|| s.fail("internal: cache"));
            }
            s.charge(approx_size(cached))?;
            return Ok(cached.clone());
        }
        let fail = |s: &Stream<'a, '_>, message: String| s.fail_at(origin[i], message);
        let value = match std::mem::replace(&mut heap[i], Node::Taken) {
            Node::List(items) => PyValue::List(self.convert_all(heap, origin, s, items)?),
            Node::Tuple(items) => PyValue::Tuple(self.convert_all(heap, origin, s, items)?),
            Node::Dict(pairs) => {
                let mut out = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    let k = self.convert(heap, origin, s, k)?;
                    let v = self.convert(heap, origin, s, v)?;
                    out.push((k, v));
                }
                PyValue::Dict(dedupe_keys(out))
            }
            Node::Array(array) => PyValue::Array(array),
            Node::ObjectArray { shape, items } => {
                let items = self.convert_all(heap, origin, s, items)?;
                let array = NumpyArray::new(shape, ArrayData::Object(items))
                    .map_err(|e| fail(s, e.to_string()))?;
                PyValue::Array(array)
            }
            Node::PendingArray => {
                return Err(fail(
                    s,
                    "an array from _reconstruct never got its state (BUILD)".into(),
                ));
            }
            Node::DType(_) => {
                return Err(fail(
                    s,
                    "a bare numpy.dtype is not supported as a value".into(),
                ));
            }
            Node::Instance(class) => {
                return Err(fail(
                    s,
                    format!("an object of class `{class}` never got its state"),
                ));
            }
            Node::Taken => return Err(fail(s, "internal: value converted twice".into())),
        };
        s.charge(VALUE_COST)?;
        if !last {
            s.charge(approx_size(&value))?;
            self.cache.insert(i, value.clone());
        }
        Ok(value)
    }

    fn convert_all<'a>(
        &mut self,
        heap: &mut [Node<'a>],
        origin: &[usize],
        s: &mut Stream<'a, '_>,
        items: Vec<Obj<'a>>,
    ) -> Result<Vec<PyValue>, DataError> {
        items
            .into_iter()
            .map(|item| self.convert(heap, origin, s, item))
            .collect()
    }
}

/// Checks the number of arguments of a call.
fn arity(
    s: &Stream<'_, '_>,
    global: &Global,
    args: &[Obj<'_>],
    expected: std::ops::RangeInclusive<usize>,
) -> Result<(), DataError> {
    if expected.contains(&args.len()) {
        return Ok(());
    }
    let (low, high) = (expected.start(), expected.end());
    let wanted = if low == high {
        low.to_string()
    } else {
        format!("{low} to {high}")
    };
    Err(s.fail(format!(
        "{} takes {wanted} arguments here, found {}",
        global.name(),
        args.len()
    )))
}

/// A leaf (anything but a heap node) as a value.
fn leaf_value(s: &Stream<'_, '_>, obj: Obj<'_>) -> Result<PyValue, DataError> {
    Ok(match obj {
        Obj::None => PyValue::None,
        Obj::Bool(b) => PyValue::Bool(b),
        Obj::Int(v) => PyValue::Int(v),
        Obj::Float(v) => PyValue::Float(v),
        Obj::Str(Text::Borrowed(text)) => PyValue::Str(text.to_string()),
        Obj::Str(Text::Unchecked(bytes)) => PyValue::Str(
            std::str::from_utf8(bytes)
                .map_err(|e| s.fail(format!("a str is not valid UTF-8: {e}")))?
                .to_string(),
        ),
        Obj::Str(Text::Owned(text)) => {
            PyValue::Str(Rc::try_unwrap(text).unwrap_or_else(|rc| rc.as_ref().clone()))
        }
        Obj::Bytes(Blob::Borrowed(bytes)) => PyValue::Bytes(bytes.to_vec()),
        Obj::Bytes(Blob::Owned(bytes)) => {
            PyValue::Bytes(Rc::try_unwrap(bytes).unwrap_or_else(|rc| rc.as_ref().clone()))
        }
        Obj::Global(global) => {
            return Err(s.fail(format!(
                "a bare reference to `{}` is not supported as a value",
                global.name()
            )));
        }
        Obj::Node(_) => return Err(s.fail("internal: heap node taken for a leaf")),
    })
}

/// Heap bytes of a leaf value.
fn payload_len(value: &PyValue) -> usize {
    match value {
        PyValue::Str(text) => text.len(),
        PyValue::Bytes(bytes) => bytes.len(),
        _ => 0,
    }
}

/// Approximate memory of a value, for the budget.
fn approx_size(value: &PyValue) -> usize {
    VALUE_COST
        + match value {
            PyValue::List(items) | PyValue::Tuple(items) => items.iter().map(approx_size).sum(),
            PyValue::Dict(pairs) => pairs
                .iter()
                .map(|(k, v)| approx_size(k) + approx_size(v))
                .sum(),
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

/// Keeps the last value of repeated str / int keys at the first key's position, as a Python
/// dict does (CPython's pickler never writes repeats; hand-made pickles might).
fn dedupe_keys(pairs: Vec<(PyValue, PyValue)>) -> Vec<(PyValue, PyValue)> {
    #[derive(Hash, PartialEq, Eq)]
    enum Key {
        Str(String),
        Int(i64),
    }
    if pairs.len() < 2 {
        return pairs;
    }
    let mut seen: HashMap<Key, usize> = HashMap::with_capacity(pairs.len());
    let mut out: Vec<(PyValue, PyValue)> = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        let id = match &key {
            PyValue::Str(text) => Some(Key::Str(text.clone())),
            PyValue::Int(v) => Some(Key::Int(*v)),
            PyValue::Bool(b) => Some(Key::Int(i64::from(*b))),
            _ => None,
        };
        match id {
            Some(id) => match seen.get(&id) {
                Some(&at) => out[at].1 = value,
                None => {
                    seen.insert(id, out.len());
                    out.push((key, value));
                }
            },
            None => out.push((key, value)),
        }
    }
    out
}

/// A NumPy scalar from its dtype and raw bytes.
fn scalar<'a>(dtype: RawDType, bytes: &[u8]) -> Result<Obj<'a>, String> {
    if dtype.kind == DType::Object {
        return Err("object scalars are not supported".to_string());
    }
    if bytes.len() != dtype.item_size() {
        return Err(format!(
            "a {} scalar needs {} bytes, found {}",
            dtype.descr(),
            dtype.item_size(),
            bytes.len()
        ));
    }
    let array = npy::decode(bytes, dtype, &[], false)?;
    Ok(match array.data() {
        ArrayData::F32(v) => Obj::Float(f64::from(v[0])),
        ArrayData::F64(v) => Obj::Float(v[0]),
        ArrayData::I64(v) => Obj::Int(v[0]),
        ArrayData::I32(v) => Obj::Int(i64::from(v[0])),
        ArrayData::U8(v) => Obj::Int(i64::from(v[0])),
        ArrayData::Bool(v) => Obj::Bool(v[0]),
        ArrayData::Object(_) => return Err("object scalars are not supported".to_string()),
    })
}

/// A decimal integer argument of a text opcode.
fn parse_int(s: &Stream<'_, '_>, text: &str) -> Result<i64, DataError> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| s.fail(format!("integer literal `{text}` is not a 64-bit integer")))
}

/// A little-endian two's complement integer (LONG1 / LONG4), if it fits in 64 bits.
fn long_from_le(bytes: &[u8]) -> Option<i64> {
    let Some(&last) = bytes.last() else {
        return Some(0);
    };
    let fill = if last & 0x80 != 0 { 0xff } else { 0x00 };
    if bytes.len() > 8 {
        let sign_kept = (bytes[7] & 0x80 != 0) == (fill == 0xff);
        if !sign_kept || bytes[8..].iter().any(|&b| b != fill) {
            return None;
        }
    }
    let mut buf = [fill; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    Some(i64::from_le_bytes(buf))
}

/// Encodes UTF-8 text as latin-1; `None` if a char is above U+00FF or the bytes are not UTF-8.
///
/// Works on the bytes directly (protocol 0–2 array data is one such string per array, hundreds
/// of MB for MMSA features), checking the encoding as it goes: U+0000–U+007F are one byte,
/// U+0080–U+00FF the lead byte `C2` or `C3` and one continuation byte `80`–`BF`; any other lead
/// byte is a higher char or not UTF-8.
fn latin1(utf8: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(utf8.len());
    let mut i = 0;
    while i < utf8.len() {
        let lead = utf8[i];
        if lead < 0x80 {
            out.push(lead);
            i += 1;
        } else if lead == 0xc2 || lead == 0xc3 {
            let next = *utf8.get(i + 1)?;
            if next & 0xc0 != 0x80 {
                return None;
            }
            out.push(((lead & 0x03) << 6) | (next & 0x3f));
            i += 2;
        } else {
            return None;
        }
    }
    Some(out)
}

/// Decodes Python's `raw-unicode-escape` (protocol 0 str): bytes are latin-1 chars, except
/// `\uXXXX` / `\UXXXXXXXX` after an odd number of backslashes.
fn decode_raw_unicode_escape(bytes: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(char::from(bytes[i]));
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i] == b'\\' {
            i += 1;
        }
        let run = i - start;
        let escape = run % 2 == 1 && matches!(bytes.get(i), Some(b'u' | b'U'));
        let literal = if escape { run - 1 } else { run };
        out.extend(std::iter::repeat_n('\\', literal));
        if !escape {
            continue;
        }
        let digits = if bytes[i] == b'u' { 4 } else { 8 };
        let hex = bytes.get(i + 1..i + 1 + digits)?;
        let hex = std::str::from_utf8(hex).ok()?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
        i += 1 + digits;
    }
    Some(out)
}

/// Helpers shared by the reader tests of this crate.
#[cfg(test)]
pub(crate) mod testkit {
    use std::path::PathBuf;

    use serde_json::Value;

    use crate::value::{ArrayData, NumpyArray, PyValue};

    /// A path under the repository's `testdata/`.
    pub(crate) fn testdata(relative: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata")
            .join(relative)
    }

    /// A JSON file under `testdata/`.
    pub(crate) fn json(relative: &str) -> Value {
        let text = std::fs::read_to_string(testdata(relative)).expect("read json fixture");
        serde_json::from_str(&text).expect("parse json fixture")
    }

    /// The fixture files of `testdata/pickles/manifest.json` read by `reader`, with the
    /// description of the value each must hold.
    pub(crate) fn fixtures(reader: &str) -> Vec<(PathBuf, Value)> {
        let manifest = json("pickles/manifest.json");
        let mut out = Vec::new();
        for (name, entry) in manifest["files"].as_object().expect("files") {
            if entry["reader"] != reader {
                continue;
            }
            let expected = match entry["value"].as_str() {
                Some(key) => manifest["values"][key].clone(),
                None => entry["expected"].clone(),
            };
            out.push((testdata(&format!("pickles/{name}")), expected));
        }
        assert!(!out.is_empty(), "no {reader} fixtures in the manifest");
        out
    }

    /// Checks a value against its description written by `make_pickles.py` (floats by IEEE
    /// bits, arrays by dtype, shape and C-order elements).
    pub(crate) fn check(value: &PyValue, expected: &Value, at: &str) -> Result<(), String> {
        let fail = |what: String| Err(format!("{at}: {what}; found {value:?}"));
        let items = |key: &str| expected[key].as_array().cloned().unwrap_or_default();
        match (expected["t"].as_str().unwrap_or("?"), value) {
            ("none", PyValue::None) => Ok(()),
            ("bool", PyValue::Bool(b)) if expected["v"].as_bool() == Some(*b) => Ok(()),
            ("int", PyValue::Int(v)) if expected["v"].as_i64() == Some(*v) => Ok(()),
            ("float", PyValue::Float(v)) if expected["bits"].as_u64() == Some(v.to_bits()) => {
                Ok(())
            }
            ("str", PyValue::Str(s)) if expected["v"].as_str() == Some(s.as_str()) => Ok(()),
            ("bytes", PyValue::Bytes(b)) if expected["hex"].as_str() == Some(&hex(b)) => Ok(()),
            ("list", PyValue::List(values)) | ("tuple", PyValue::Tuple(values)) => {
                let wanted = items("items");
                if wanted.len() != values.len() {
                    return fail(format!("expected {} items", wanted.len()));
                }
                for (i, (v, e)) in values.iter().zip(&wanted).enumerate() {
                    check(v, e, &format!("{at}[{i}]"))?;
                }
                Ok(())
            }
            ("dict", PyValue::Dict(pairs)) => {
                let wanted = items("items");
                if wanted.len() != pairs.len() {
                    return fail(format!("expected {} pairs", wanted.len()));
                }
                for (i, ((k, v), e)) in pairs.iter().zip(&wanted).enumerate() {
                    check(k, &e[0], &format!("{at}.key{i}"))?;
                    check(v, &e[1], &format!("{at}[{k:?}]"))?;
                }
                Ok(())
            }
            ("array", PyValue::Array(array)) => check_array(array, expected, at),
            (t, _) => fail(format!("expected {t} {expected}")),
        }
    }

    fn check_array(array: &NumpyArray, expected: &Value, at: &str) -> Result<(), String> {
        let shape: Vec<usize> = expected["shape"]
            .as_array()
            .map(|dims| {
                dims.iter()
                    .filter_map(|d| d.as_u64())
                    .map(|d| d as usize)
                    .collect()
            })
            .unwrap_or_default();
        if array.dtype().name() != expected["dtype"] || array.shape() != shape.as_slice() {
            return Err(format!(
                "{at}: expected {} {:?}, found {} {:?}",
                expected["dtype"],
                shape,
                array.dtype().name(),
                array.shape()
            ));
        }
        let data = expected["data"].as_array().cloned().unwrap_or_default();
        let as_json: Vec<Value> = match array.data() {
            ArrayData::F32(v) => v.iter().map(|x| x.to_bits().into()).collect(),
            ArrayData::F64(v) => v.iter().map(|x| x.to_bits().into()).collect(),
            ArrayData::I64(v) => v.iter().map(|&x| x.into()).collect(),
            ArrayData::I32(v) => v.iter().map(|&x| x.into()).collect(),
            ArrayData::U8(v) => v.iter().map(|&x| x.into()).collect(),
            ArrayData::Bool(v) => v.iter().map(|&x| x.into()).collect(),
            ArrayData::Object(items) => {
                if items.len() != data.len() {
                    return Err(format!("{at}: expected {} objects", data.len()));
                }
                for (i, (v, e)) in items.iter().zip(&data).enumerate() {
                    check(v, e, &format!("{at}.flat[{i}]"))?;
                }
                return Ok(());
            }
        };
        if as_json != data {
            return Err(format!("{at}: elements {as_json:?}, expected {data:?}"));
        }
        Ok(())
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Checks an unpickled MMSA file against its entry in `testdata/mmsa/manifest.json`:
    /// dtypes, shapes, sums of finite values, `-inf` counts, first strings, length lists and
    /// the per-class counts of `classification_labels`.
    pub(crate) fn check_mmsa(value: &PyValue, entry: &Value, file: &str) {
        let splits = entry["splits"].as_object().expect("splits");
        assert_eq!(splits.len(), 3);
        for (split, keys) in splits {
            let data = value
                .get(split)
                .unwrap_or_else(|| panic!("{file}: no split {split}"));
            for (key, spec) in keys.as_object().expect("keys") {
                let at = format!("{file}[{split}][{key}]");
                if key == "three_way_counts" {
                    let labels = match data.get("classification_labels") {
                        Some(PyValue::Array(a)) => a.to_f64().expect("numeric labels"),
                        other => panic!("{at}: labels {other:?}"),
                    };
                    let counts: Vec<u64> = (0..3)
                        .map(|c| labels.iter().filter(|&&l| l == f64::from(c)).count() as u64)
                        .collect();
                    let wanted: Vec<u64> = spec
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| c.as_u64().unwrap())
                        .collect();
                    assert_eq!(counts, wanted, "{at}");
                    continue;
                }
                let got = data.get(key).unwrap_or_else(|| panic!("{at}: missing"));
                if let Some(len) = spec["len"].as_u64() {
                    let PyValue::List(items) = got else {
                        panic!("{at}: {got:?}")
                    };
                    let sum: i64 = items
                        .iter()
                        .map(|v| match v {
                            PyValue::Int(i) => *i,
                            other => panic!("{at}: length {other:?}"),
                        })
                        .sum();
                    assert_eq!(
                        (items.len() as u64, sum),
                        (len, spec["sum"].as_i64().unwrap()),
                        "{at}"
                    );
                    continue;
                }
                let PyValue::Array(array) = got else {
                    panic!("{at}: {got:?}")
                };
                assert_eq!(array.dtype().name(), spec["dtype"], "{at}");
                let shape: Vec<usize> = spec["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect();
                assert_eq!(array.shape(), shape.as_slice(), "{at}");
                if let Some(first) = spec["first"].as_str() {
                    let ArrayData::Object(items) = array.data() else {
                        panic!("{at}")
                    };
                    assert_eq!(items[0], PyValue::Str(first.to_string()), "{at}");
                }
                if let Some(sum) = spec["sum_finite"].as_f64() {
                    let values = array.to_f64().expect("numeric");
                    let got: f64 = values.iter().filter(|v| v.is_finite()).sum();
                    let tolerance = 1e-9 * values.iter().map(|v| v.abs()).sum::<f64>().max(1.0);
                    assert!((got - sum).abs() <= tolerance, "{at}: sum {got} vs {sum}");
                    let neg_inf = values.iter().filter(|&&v| v == f64::NEG_INFINITY).count();
                    assert_eq!(neg_inf as u64, spec["neg_inf"].as_u64().unwrap(), "{at}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::{check, check_mmsa, fixtures, json, testdata};
    use super::*;

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
    fn long_integers_decode_two_complement() {
        assert_eq!(long_from_le(&[]), Some(0));
        assert_eq!(long_from_le(&[0xff]), Some(-1));
        assert_eq!(long_from_le(&[0x00, 0x80, 0x00]), Some(32768));
        assert_eq!(long_from_le(&[0x00, 0x00, 0x00, 0x80, 0x00]), Some(1 << 31));
        let min = [0, 0, 0, 0, 0, 0, 0, 0x80];
        assert_eq!(long_from_le(&min), Some(i64::MIN));
        // Nine bytes are fine while the ninth only extends the sign.
        assert_eq!(
            long_from_le(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Some(-2)
        );
        assert_eq!(long_from_le(&[0, 0, 0, 0, 0, 0, 0, 0, 1]), None);
        assert_eq!(long_from_le(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0]), None);
    }

    #[test]
    fn latin1_maps_chars_below_256_to_single_bytes() {
        let all: String = (0u8..=255).map(char::from).collect();
        assert_eq!(latin1(all.as_bytes()), Some((0u8..=255).collect()));
        for above in ["\u{100}", "a\u{20ac}", "\u{1F600}"] {
            assert_eq!(latin1(above.as_bytes()), None, "{above}");
        }
        // Not UTF-8: a lone lead byte, a lead byte without continuation, a bare continuation.
        for bad in [&b"\xc3"[..], b"\xc3A", b"\x80"] {
            assert_eq!(latin1(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn raw_unicode_escape_follows_cpython() {
        assert_eq!(
            decode_raw_unicode_escape(b"x\\u00e9").as_deref(),
            Some("x\u{e9}")
        );
        // An even run of backslashes is literal (CPython: 'x\\\\u00e9' stays as is).
        assert_eq!(
            decode_raw_unicode_escape(b"\\\\u00e9").as_deref(),
            Some("\\\\u00e9")
        );
        assert_eq!(
            decode_raw_unicode_escape(b"\\U0001F600").as_deref(),
            Some("\u{1F600}")
        );
        assert_eq!(
            decode_raw_unicode_escape(b"\xe9").as_deref(),
            Some("\u{e9}")
        );
        assert_eq!(decode_raw_unicode_escape(b"\\u00"), None);
        assert_eq!(decode_raw_unicode_escape(b"\\ud800"), None);
    }

    #[test]
    fn corrupt_corpus_gives_the_expected_typed_errors() {
        let expected = json("corrupt/expected.json");
        let entries = expected.as_object().unwrap();
        assert!(entries.len() >= 25);
        for (name, entry) in entries {
            let path = testdata(&format!("corrupt/{name}"));
            let error = match entry["reader"].as_str().unwrap() {
                "pickle" => from_path(&path).err(),
                "joblib" => crate::joblib::from_path(&path).err(),
                "npy" => crate::npy::from_path(&path).err(),
                "npz" => crate::npy::npz_from_path(&path).err(),
                other => panic!("{name}: reader {other}"),
            };
            let error = error.unwrap_or_else(|| panic!("{name} was accepted"));
            let variant = match &error {
                DataError::Pickle { .. } => "Pickle",
                DataError::ForbiddenGlobal { .. } => "ForbiddenGlobal",
                DataError::Joblib { .. } => "Joblib",
                DataError::Npy { .. } => "Npy",
                other => panic!("{name}: unexpected {other:?}"),
            };
            assert_eq!(variant, entry["error"], "{name}: {error}");
            assert!(error.to_string().contains(name.as_str()), "{name}: {error}");
            // Every reader refuses every file of the corpus without panicking.
            let bytes = std::fs::read(&path).unwrap();
            assert!(from_bytes(&bytes, name).is_err(), "{name}");
            assert!(crate::joblib::from_bytes(&bytes, name).is_err(), "{name}");
            assert!(crate::npy::from_bytes(&bytes, name).is_err(), "{name}");
            assert!(crate::npy::npz_from_bytes(&bytes, name).is_err(), "{name}");
        }
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
