//! The state of the pickle machine and its primitive operations: the stack with its MARKs, the
//! memo, and the heap of containers (referenced by index, so memo sharing and in-place BUILD
//! behave as in CPython); pushing, popping, memoizing, resolving globals, filling lists and
//! dicts, and reading str and tuple arguments.

use std::collections::HashMap;

use super::limits::WALK_COST;
use super::object::{Global, Node, Obj};
use super::stream::Stream;
use crate::error::DataError;
use crate::excerpt::excerpt;

/// The opcode interpreter of one pickle stream: its stack, memo and heap.
#[derive(Default)]
pub(super) struct Machine<'a> {
    pub(super) stack: Vec<Obj<'a>>,
    /// Stack lengths at each MARK (CPython's metastack).
    pub(super) marks: Vec<usize>,
    pub(super) memo: HashMap<u64, Obj<'a>>,
    pub(super) heap: Vec<Node<'a>>,
    /// Offset of the opcode that created each heap node.
    pub(super) origin: Vec<usize>,
}

impl<'a> Machine<'a> {
    // ---- stack, marks, memo -------------------------------------------------------------

    /// The stack length below which the current MARK forbids popping.
    pub(super) fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    pub(super) fn pop(&mut self, s: &Stream<'a, '_>) -> Result<Obj<'a>, DataError> {
        if self.stack.len() <= self.fence() {
            return Err(s.fail("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| s.fail("stack underflow"))
    }

    pub(super) fn top(&self, s: &Stream<'a, '_>) -> Result<&Obj<'a>, DataError> {
        if self.stack.len() <= self.fence() {
            return Err(s.fail("stack underflow"));
        }
        self.stack.last().ok_or_else(|| s.fail("stack underflow"))
    }

    /// Pushes a value, charging the stack's growth to the budget.
    pub(super) fn push(&mut self, s: &mut Stream<'a, '_>, obj: Obj<'a>) -> Result<(), DataError> {
        s.reserve(&mut self.stack, 1)?;
        self.stack.push(obj);
        Ok(())
    }

    /// Pushes a MARK, charging the growth of the mark stack to the budget.
    pub(super) fn mark(&mut self, s: &mut Stream<'a, '_>) -> Result<(), DataError> {
        s.reserve(&mut self.marks, 1)?;
        self.marks.push(self.stack.len());
        Ok(())
    }

    /// The items pushed since the last MARK, removing the mark (their new vector is charged to
    /// the budget).
    pub(super) fn pop_mark(&mut self, s: &mut Stream<'a, '_>) -> Result<Vec<Obj<'a>>, DataError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| s.fail("no MARK on the stack"))?;
        if mark > self.stack.len() {
            return Err(s.fail("stack underflow"));
        }
        s.charge((self.stack.len() - mark).saturating_mul(std::mem::size_of::<Obj>()))?;
        Ok(self.stack.split_off(mark))
    }

    pub(super) fn push_node(
        &mut self,
        s: &mut Stream<'a, '_>,
        node: Node<'a>,
    ) -> Result<(), DataError> {
        let obj = self.new_node(s, node)?;
        self.push(s, obj)
    }

    pub(super) fn new_node(
        &mut self,
        s: &mut Stream<'a, '_>,
        node: Node<'a>,
    ) -> Result<Obj<'a>, DataError> {
        s.charge(WALK_COST)?;
        s.reserve(&mut self.heap, 1)?;
        s.reserve(&mut self.origin, 1)?;
        self.heap.push(node);
        self.origin.push(s.op);
        Ok(Obj::Node(self.heap.len() - 1))
    }

    /// Memoizes the top of the stack, charging the memo's growth to the budget (a hash table
    /// slot costs about twice its entry, with its control byte and load factor).
    pub(super) fn put(&mut self, s: &mut Stream<'a, '_>, index: u64) -> Result<(), DataError> {
        let top = self.top(s)?.clone();
        if self.memo.len() == self.memo.capacity() && !self.memo.contains_key(&index) {
            let grow = self.memo.capacity().max(8);
            s.charge(grow.saturating_mul(2 * (std::mem::size_of::<(u64, Obj)>() + 1)))?;
            self.memo.reserve(grow);
        }
        self.memo.insert(index, top);
        Ok(())
    }

    pub(super) fn get(&mut self, s: &mut Stream<'a, '_>, index: u64) -> Result<(), DataError> {
        let value = self
            .memo
            .get(&index)
            .cloned()
            .ok_or_else(|| s.fail(format!("memo has no entry {index}")))?;
        self.push(s, value)
    }

    pub(super) fn global(
        &self,
        s: &Stream<'a, '_>,
        module: &str,
        name: &str,
    ) -> Result<Obj<'a>, DataError> {
        Global::resolve(module, name, s.extension)
            .map(Obj::Global)
            .ok_or_else(|| DataError::ForbiddenGlobal {
                file: s.source.to_string(),
                offset: s.op,
                module: excerpt(module).into_owned(),
                name: excerpt(name).into_owned(),
            })
    }

    // ---- containers ---------------------------------------------------------------------

    pub(super) fn type_name(&self, obj: &Obj<'a>) -> &'static str {
        match obj {
            Obj::None => "None",
            Obj::Bool(_) => "bool",
            Obj::Int(_) | Obj::BigInt(_) => "int",
            Obj::Float(_) => "float",
            Obj::Str(_) => "str",
            Obj::Bytes(_) => "bytes",
            Obj::Global(_) => "class or function",
            Obj::Node(i) => self.heap[*i].type_name(),
        }
    }

    pub(super) fn list_extend(
        &mut self,
        s: &mut Stream<'a, '_>,
        items: Vec<Obj<'a>>,
    ) -> Result<(), DataError> {
        let target = self.top(s)?.clone();
        match target {
            Obj::Node(i) if matches!(self.heap[i], Node::List(_) | Node::Object(_)) => {
                let list = match &mut self.heap[i] {
                    Node::List(list) => list,
                    Node::Object(object) => &mut object.list_items,
                    _ => return Err(s.fail("internal: APPEND target")),
                };
                s.reserve(list, items.len())?;
                list.extend(items);
                Ok(())
            }
            other => Err(s.fail(format!(
                "APPEND to a {}, expected a list",
                self.type_name(&other)
            ))),
        }
    }

    /// Groups `[k0, v0, k1, v1, …]` into pairs, refusing unhashable keys as Python does.
    pub(super) fn pairs(
        &self,
        s: &mut Stream<'a, '_>,
        items: Vec<Obj<'a>>,
    ) -> Result<Vec<(Obj<'a>, Obj<'a>)>, DataError> {
        if !items.len().is_multiple_of(2) {
            return Err(s.fail("odd number of items for a dict"));
        }
        s.charge(items.len().saturating_mul(std::mem::size_of::<Obj>()))?;
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut items = items.into_iter();
        while let (Some(key), Some(value)) = (items.next(), items.next()) {
            if let Obj::Node(i) = &key
                && !matches!(
                    self.heap[*i],
                    Node::Tuple(_) | Node::DType(_) | Node::Object(_)
                )
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

    pub(super) fn dict_extend(
        &mut self,
        s: &mut Stream<'a, '_>,
        pairs: Vec<(Obj<'a>, Obj<'a>)>,
    ) -> Result<(), DataError> {
        let target = self.top(s)?.clone();
        match target {
            Obj::Node(i) if matches!(self.heap[i], Node::Dict(_) | Node::Object(_)) => {
                let dict = match &mut self.heap[i] {
                    Node::Dict(dict) => dict,
                    Node::Object(object) => &mut object.dict_items,
                    _ => return Err(s.fail("internal: SETITEM target")),
                };
                s.reserve(dict, pairs.len())?;
                dict.extend(pairs);
                Ok(())
            }
            other => Err(s.fail(format!(
                "SETITEM on a {}, expected a dict",
                self.type_name(&other)
            ))),
        }
    }

    /// The items of a tuple (or list) argument (a copy, charged to the budget).
    pub(super) fn tuple_items(
        &self,
        s: &mut Stream<'a, '_>,
        obj: &Obj<'a>,
        what: &str,
    ) -> Result<Vec<Obj<'a>>, DataError> {
        match obj {
            Obj::Node(i) => match &self.heap[*i] {
                Node::Tuple(items) | Node::List(items) => {
                    s.charge(items.len().saturating_mul(std::mem::size_of::<Obj>()))?;
                    Ok(items.clone())
                }
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

    pub(super) fn str_arg<'o>(
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
}
