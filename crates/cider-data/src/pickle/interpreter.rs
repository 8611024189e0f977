//! The opcode loop of the pickle machine: [`Stream::load`] runs one pickle from the read
//! position to its STOP, one opcode at a time, without recursing and without executing
//! anything; calls and BUILD are interpreted by the allowed globals, and the value left by STOP
//! is assembled into a [`PyValue`].

use std::rc::Rc;

use super::encodings::{
    MAX_BIG_INT_BYTES, decode_raw_unicode_escape, long_decimal, long_from_le, parse_int,
};
use super::limits::{LAZY_UTF8_LEN, MAX_NESTED_STREAMS};
use super::machine::Machine;
use super::object::{Blob, Node, Obj, Text};
use super::opcodes as op;
use super::stream::Stream;
use crate::error::DataError;
use crate::excerpt::excerpt;
use crate::value::PyValue;

impl Stream<'_, '_> {
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
            op::MARK => self.mark(s)?,
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
                self.push(s, top)?;
            }
            op::NONE => self.push(s, Obj::None)?,
            op::NEWTRUE => self.push(s, Obj::Bool(true))?,
            op::NEWFALSE => self.push(s, Obj::Bool(false))?,
            op::INT => {
                let line = s.line_str()?;
                let value = match line {
                    "00" => Obj::Bool(false),
                    "01" => Obj::Bool(true),
                    text => Obj::Int(parse_int(s, text)?),
                };
                self.push(s, value)?;
            }
            op::LONG => {
                let line = s.line_str()?;
                let value = parse_int(s, line.strip_suffix('L').unwrap_or(line))?;
                self.push(s, Obj::Int(value))?;
            }
            op::BININT => {
                let value = i32::from_le_bytes(s.array("BININT")?);
                self.push(s, Obj::Int(i64::from(value)))?;
            }
            op::BININT1 => {
                let value = s.byte()?;
                self.push(s, Obj::Int(i64::from(value)))?;
            }
            op::BININT2 => {
                let value = u16::from_le_bytes(s.array("BININT2")?);
                self.push(s, Obj::Int(i64::from(value)))?;
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
                let value = match long_from_le(bytes) {
                    Some(value) => Obj::Int(value),
                    None if s.extension.keeps_objects() => {
                        let digits = long_decimal(bytes).ok_or_else(|| {
                            s.fail(format!(
                                "integer of {len} bytes is longer than {MAX_BIG_INT_BYTES}"
                            ))
                        })?;
                        s.charge(digits.len())?;
                        Obj::BigInt(Rc::from(digits))
                    }
                    None => return Err(s.fail("integer does not fit in 64 bits")),
                };
                self.push(s, value)?;
            }
            op::FLOAT => {
                let line = s.line_str()?;
                let value = line
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| s.fail(format!("bad float literal `{}`", excerpt(line))))?;
                self.push(s, Obj::Float(value))?;
            }
            op::BINFLOAT => {
                let value = f64::from_be_bytes(s.array("BINFLOAT")?);
                self.push(s, Obj::Float(value))?;
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
                self.push(s, value)?;
            }
            op::UNICODE => {
                let line = s.line()?;
                let text = decode_raw_unicode_escape(line)
                    .ok_or_else(|| s.fail("bad raw-unicode-escape string"))?;
                s.charge(text.len())?;
                self.push(s, Obj::Str(Text::Owned(Rc::new(text))))?;
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
                self.push(s, Obj::Str(text))?;
            }
            op::SHORT_BINBYTES | op::BINBYTES | op::BINBYTES8 | op::BYTEARRAY8 => {
                let len = match code {
                    op::SHORT_BINBYTES => u64::from(s.byte()?),
                    op::BINBYTES => s.u32("BINBYTES length")?,
                    _ => s.u64("BINBYTES8 / BYTEARRAY8 length")?,
                };
                let bytes = s.read(len, "a bytes object")?;
                self.push(s, Obj::Bytes(Blob::Borrowed(bytes)))?;
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
                s.charge(n * std::mem::size_of::<Obj>())?;
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
                self.push(s, global)?;
            }
            op::STACK_GLOBAL => {
                let name = self.pop(s)?;
                let module = self.pop(s)?;
                let module = self.str_arg(s, &module, "STACK_GLOBAL module")?;
                let name = self.str_arg(s, &name, "STACK_GLOBAL name")?;
                let global = self.global(s, module, name)?;
                self.push(s, global)?;
            }
            op::INST => {
                let module = s.line_str()?;
                let name = s.line_str()?;
                let func = self.global(s, module, name)?;
                let args = self.pop_mark(s)?;
                let value = self.call(s, func, args)?;
                self.push(s, value)?;
            }
            op::OBJ => {
                let mut args = self.pop_mark(s)?;
                if args.is_empty() {
                    return Err(s.fail("OBJ without a class"));
                }
                let func = args.remove(0);
                let value = self.call(s, func, args)?;
                self.push(s, value)?;
            }
            op::REDUCE => {
                let args = self.pop(s)?;
                let func = self.pop(s)?;
                let args = self.tuple_items(s, &args, "REDUCE arguments")?;
                let value = self.call(s, func, args)?;
                self.push(s, value)?;
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
                self.push(s, value)?;
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
                    .map_err(|_| s.fail(format!("bad PUT index `{}`", excerpt(index))))?;
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
                    .map_err(|_| s.fail(format!("bad GET index `{}`", excerpt(index))))?;
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
            op::PERSID if s.extension.keeps_objects() => {
                let pid = s.line_str()?;
                let pid = Obj::Str(Text::Borrowed(pid));
                self.push_node(s, Node::Persistent(pid))?;
            }
            op::BINPERSID if s.extension.keeps_objects() => {
                let pid = self.pop(s)?;
                self.push_node(s, Node::Persistent(pid))?;
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
}
