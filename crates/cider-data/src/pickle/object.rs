//! The object model of the pickle machine: the values on its stack and in its memo ([`Obj`],
//! with str and bytes payloads borrowed from the input), the allowed globals as we interpret
//! them ([`Global`]), the heap nodes that may be shared and changed in place ([`Node`]), and the
//! conversion of leaves and dicts into [`PyValue`]s.

use std::collections::HashMap;
use std::rc::Rc;

use super::stream::{Extension, Stream};
use crate::elements::RawDType;
use crate::error::DataError;
use crate::value::{NumpyArray, PyValue};

/// A value on the stack, in the memo or inside a container. Cheap to clone: large payloads are
/// borrowed from the input or shared.
#[derive(Debug, Clone)]
pub(super) enum Obj<'a> {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Text<'a>),
    Bytes(Blob<'a>),
    Global(Global),
    /// An int beyond 64 bits, as decimal digits (dialects that keep objects only).
    BigInt(Rc<str>),
    /// A container, dtype or array in the machine's heap.
    Node(usize),
}

#[derive(Debug, Clone)]
pub(super) enum Text<'a> {
    Borrowed(&'a str),
    Owned(Rc<String>),
    /// A long str payload whose UTF-8 is checked when used: in protocols 0–2 these hold array
    /// data, which `_codecs.encode` checks while converting it to latin-1 bytes anyway.
    Unchecked(&'a [u8]),
}

impl Text<'_> {
    /// The text, `None` if unchecked bytes turn out not to be UTF-8.
    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Text::Borrowed(s) => Some(s),
            Text::Owned(s) => Some(s),
            Text::Unchecked(bytes) => std::str::from_utf8(bytes).ok(),
        }
    }

    /// The UTF-8 bytes (unchecked for [`Text::Unchecked`]).
    pub(super) fn as_bytes(&self) -> &[u8] {
        match self {
            Text::Borrowed(s) => s.as_bytes(),
            Text::Owned(s) => s.as_bytes(),
            Text::Unchecked(bytes) => bytes,
        }
    }
}

#[derive(Debug, Clone)]
pub(super) enum Blob<'a> {
    Borrowed(&'a [u8]),
    Owned(Rc<Vec<u8>>),
}

impl Blob<'_> {
    pub(super) fn as_slice(&self) -> &[u8] {
        match self {
            Blob::Borrowed(b) => b,
            Blob::Owned(b) => b,
        }
    }
}

/// An allowed global, as we interpret it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Global {
    Reconstruct,
    FromBuffer,
    Scalar,
    DTypeClass,
    NdarrayClass,
    CodecsEncode,
    BytesClass,
    /// A class of the stream's [`Extension`], by `module.name`.
    Extension(Rc<str>),
    /// Any other class or function, kept as a name, in dialects that keep objects
    /// ([`Extension::keeps_objects`]): calling it makes an inert [`Node::Object`].
    Opaque(Rc<str>),
}

impl Global {
    /// Resolves `module.name`, mapping Python 2 module names as CPython's `fix_imports` does.
    pub(super) fn resolve(module: &str, name: &str, extension: &dyn Extension) -> Option<Global> {
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
            _ if extension.keeps_objects() => Global::Opaque(Rc::from(format!("{module}.{name}"))),
            _ => return None,
        })
    }

    pub(super) fn name(&self) -> &str {
        match self {
            Global::Reconstruct => "numpy.core.multiarray._reconstruct",
            Global::FromBuffer => "numpy.core.numeric._frombuffer",
            Global::Scalar => "numpy.core.multiarray.scalar",
            Global::DTypeClass => "numpy.dtype",
            Global::NdarrayClass => "numpy.ndarray",
            Global::CodecsEncode => "_codecs.encode",
            Global::BytesClass => "builtins.bytes",
            Global::Extension(name) | Global::Opaque(name) => name,
        }
    }
}

/// An object in the heap: what may be shared through the memo and changed in place.
#[derive(Debug)]
pub(super) enum Node<'a> {
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
    /// An inert instance of an opaque class ([`Global::Opaque`]).
    Object(Box<ObjectNode<'a>>),
    /// A persistent id (BINPERSID), kept as its value.
    Persistent(Obj<'a>),
    /// Moved into the result.
    Taken,
}

impl Node<'_> {
    pub(super) fn type_name(&self) -> &'static str {
        match self {
            Node::List(_) => "list",
            Node::Tuple(_) => "tuple",
            Node::Dict(_) => "dict",
            Node::DType(_) => "numpy.dtype",
            Node::PendingArray | Node::Array(_) | Node::ObjectArray { .. } => "numpy.ndarray",
            Node::Instance(_) | Node::Object(_) => "object",
            Node::Persistent(_) => "persistent id",
            Node::Taken => "moved value",
        }
    }

    /// The values this node refers to.
    pub(super) fn children(&self) -> Vec<&Obj<'_>> {
        match self {
            Node::List(items) | Node::Tuple(items) | Node::ObjectArray { items, .. } => {
                items.iter().collect()
            }
            Node::Dict(pairs) => pairs.iter().flat_map(|(k, v)| [k, v]).collect(),
            Node::Object(object) => object
                .args
                .iter()
                .chain(&object.state)
                .chain(object.dict_items.iter().flat_map(|(k, v)| [k, v]))
                .chain(&object.list_items)
                .collect(),
            Node::Persistent(pid) => vec![pid],
            _ => Vec::new(),
        }
    }
}

/// An inert object: what REDUCE or NEWOBJ of an opaque class made, and what BUILD, SETITEM(S)
/// and APPEND(S) added to it.
#[derive(Debug)]
pub(super) struct ObjectNode<'a> {
    pub(super) class: Rc<str>,
    pub(super) args: Vec<Obj<'a>>,
    pub(super) state: Option<Obj<'a>>,
    pub(super) dict_items: Vec<(Obj<'a>, Obj<'a>)>,
    pub(super) list_items: Vec<Obj<'a>>,
}

/// A leaf (anything but a heap node) as a value.
pub(super) fn leaf_value(s: &Stream<'_, '_>, obj: Obj<'_>) -> Result<PyValue, DataError> {
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
        Obj::BigInt(digits) => PyValue::BigInt(digits.to_string()),
        Obj::Global(Global::Opaque(name)) => PyValue::Class(name.to_string()),
        Obj::Global(global) => {
            return Err(s.fail(format!(
                "a bare reference to `{}` is not supported as a value",
                global.name()
            )));
        }
        Obj::Node(_) => return Err(s.fail("internal: heap node taken for a leaf")),
    })
}

/// Keeps the last value of repeated str / int keys at the first key's position, as a Python
/// dict does (CPython's pickler never writes repeats; hand-made pickles might).
pub(super) fn dedupe_keys(pairs: Vec<(PyValue, PyValue)>) -> Vec<(PyValue, PyValue)> {
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
