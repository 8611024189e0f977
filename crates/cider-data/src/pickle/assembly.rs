//! The result of a pickle: at STOP, the value left on the stack is assembled into a
//! [`PyValue`]. A first pass counts the references to every reachable heap node, refusing
//! cycles and nesting beyond [`MAX_DEPTH`]; a second converts, moving each node's contents out
//! at its last reference and cloning it (charged to the budget) for earlier ones.

use std::collections::HashMap;

use super::limits::{MAX_DEPTH, VALUE_COST, approx_size, payload_len};
use super::machine::Machine;
use super::object::{Node, Obj, ObjectNode, dedupe_keys, leaf_value};
use super::stream::Stream;
use crate::error::DataError;
use crate::value::{ArrayData, NumpyArray, PyObject, PyValue};

impl<'a> Machine<'a> {
    /// Assembles the value left by STOP: counts the references to every reachable node
    /// (refusing cycles and over-deep nesting), then converts, moving each node's contents out
    /// at its last reference and cloning it for earlier ones.
    pub(super) fn finish(
        mut self,
        s: &mut Stream<'a, '_>,
        root: Obj<'a>,
    ) -> Result<PyValue, DataError> {
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
            Node::Object(object) => {
                let ObjectNode {
                    class,
                    args,
                    state,
                    dict_items,
                    list_items,
                } = *object;
                let args = self.convert_all(heap, origin, s, args)?;
                let state = match state {
                    Some(state) => Some(self.convert(heap, origin, s, state)?),
                    None => None,
                };
                let mut pairs = Vec::with_capacity(dict_items.len());
                for (k, v) in dict_items {
                    let k = self.convert(heap, origin, s, k)?;
                    let v = self.convert(heap, origin, s, v)?;
                    pairs.push((k, v));
                }
                let list_items = self.convert_all(heap, origin, s, list_items)?;
                PyValue::Object(Box::new(PyObject {
                    class: class.to_string(),
                    args,
                    state,
                    dict_items: dedupe_keys(pairs),
                    list_items,
                }))
            }
            Node::Persistent(pid) => {
                PyValue::Persistent(Box::new(self.convert(heap, origin, s, pid)?))
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
