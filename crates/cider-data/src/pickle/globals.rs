//! What the allowed globals do, as the pickle machine interprets them (never imported): calls
//! (REDUCE / INST / OBJ) of NumPy's array, dtype and scalar constructors, `_codecs.encode` and
//! `bytes`; NEWOBJ of a dialect's classes; and BUILD, which sets the state of dtypes, arrays
//! and extension objects. Elements are decoded once, Fortran order converted to C order.

use std::rc::Rc;

use super::encodings::latin1;
use super::limits::{MAX_DEPTH, VALUE_COST};
use super::machine::Machine;
use super::object::{Blob, Global, Node, Obj, ObjectNode, dedupe_keys, leaf_value};
use super::stream::{StateItem, Stream};
use crate::elements::{ByteOrder, RawDType, decode, element_count};
use crate::error::DataError;
use crate::value::{ArrayData, DType, NumpyArray, PyValue};

impl<'a> Machine<'a> {
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

    fn shape_arg(&self, s: &mut Stream<'a, '_>, obj: &Obj<'a>) -> Result<Vec<usize>, DataError> {
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
    pub(super) fn call(
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
            Global::Opaque(class) => self.new_inert_object(s, Rc::clone(class), args),
            Global::NdarrayClass | Global::Extension(_) => {
                Err(s.fail(format!("cannot call `{}` here", global.name())))
            }
        }
    }

    /// An inert object of an opaque class, holding its constructor arguments.
    fn new_inert_object(
        &mut self,
        s: &mut Stream<'a, '_>,
        class: Rc<str>,
        args: Vec<Obj<'a>>,
    ) -> Result<Obj<'a>, DataError> {
        self.new_node(
            s,
            Node::Object(Box::new(ObjectNode {
                class,
                args,
                state: None,
                dict_items: Vec::new(),
                list_items: Vec::new(),
            })),
        )
    }

    /// NEWOBJ: creates an instance of an extension class (joblib's wrapper).
    pub(super) fn new_object(
        &mut self,
        s: &mut Stream<'a, '_>,
        class: Obj<'a>,
        args: Vec<Obj<'a>>,
    ) -> Result<Obj<'a>, DataError> {
        match class {
            Obj::Global(Global::Extension(name)) if args.is_empty() => {
                self.new_node(s, Node::Instance(name))
            }
            Obj::Global(Global::Opaque(class)) => self.new_inert_object(s, class, args),
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
    pub(super) fn build(
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
            Node::Object(object) if object.state.is_some() => {
                return Err(s.fail(format!(
                    "BUILD of a `{}` object whose state is already set",
                    object.class
                )));
            }
            Node::Object(_) => {
                if let Node::Object(object) = &mut self.heap[index] {
                    object.state = Some(state);
                }
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
            let count = element_count(&shape)
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
        let array = decode(bytes, dtype, shape, fortran).map_err(|m| s.fail(m))?;
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
    let array = decode(bytes, dtype, &[], false)?;
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
