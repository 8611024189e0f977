//! The input of the pickle machine and the dialect it reads: one or more pickle streams over a
//! byte slice, with the read position, the checked reads of opcode arguments, the memory budget
//! and the errors (which carry the offset of the opcode being run); and the [`Extension`] hook
//! through which a dialect (joblib) adds classes of its own.

use super::limits::{BUDGET_FACTOR, RESERVE, budget_for};
use crate::elements::RawDType;
use crate::error::DataError;
use crate::value::{NumpyArray, PyValue};

/// Extra classes of a pickle dialect (joblib's `NumpyArrayWrapper`), on top of what plain
/// pickles may use.
pub(crate) trait Extension {
    /// True when `module.name` is a class of this dialect: NEWOBJ may create an instance and
    /// BUILD hands its state to [`Extension::build`].
    fn allows_class(&self, module: &str, name: &str) -> bool;

    /// True for dialects that keep what they do not interpret (PyTorch checkpoints): any other
    /// global becomes an opaque class reference, calling or instantiating it makes an inert
    /// object holding its arguments and state, persistent ids are kept as values and ints
    /// beyond 64 bits as their digits. Nothing is imported or run either way.
    fn keeps_objects(&self) -> bool {
        false
    }

    /// Turns an instance of `class` (`"module.name"`) with its BUILD `state` (a dict with str
    /// keys) into an array, reading any payload that follows the BUILD opcode from `stream`.
    /// Dialects without classes of their own refuse it.
    fn build(
        &self,
        class: &str,
        _state: Vec<(String, StateItem)>,
        stream: &mut Stream<'_, '_>,
    ) -> Result<NumpyArray, DataError> {
        Err(stream.fail(format!("BUILD of `{class}` is not supported")))
    }
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

/// The input of one or more pickle streams, with the read position, the dialect and the
/// memory budget shared by nested streams.
pub(crate) struct Stream<'a, 'e> {
    bytes: &'a [u8],
    pub(super) pos: usize,
    /// Offset of the opcode being run, for error messages.
    pub(super) op: usize,
    pub(super) source: &'e str,
    pub(super) extension: &'e dyn Extension,
    budget: usize,
    /// Streams being run, this one included (joblib reads inner pickles mid-stream).
    pub(super) nesting: usize,
}

impl<'a, 'e> Stream<'a, 'e> {
    /// A stream over `bytes`, read from the start, with the budget of an input of that size
    /// ([`budget_for`]).
    pub(crate) fn new(bytes: &'a [u8], source: &'e str, extension: &'e dyn Extension) -> Self {
        Self::with_budget(bytes, source, extension, budget_for(bytes.len()))
    }

    /// A stream over `bytes` that may build at most `budget` bytes in memory, [`RESERVE`]
    /// included (joblib passes what is left of the file's budget after decompression).
    pub(crate) fn with_budget(
        bytes: &'a [u8],
        source: &'e str,
        extension: &'e dyn Extension,
        budget: usize,
    ) -> Self {
        Stream {
            bytes,
            pos: 0,
            op: 0,
            source,
            extension,
            budget: budget.saturating_sub(RESERVE),
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

    /// Takes `bytes` from the memory budget.
    pub(crate) fn charge(&mut self, bytes: usize) -> Result<(), DataError> {
        match self.budget.checked_sub(bytes) {
            Some(left) => {
                self.budget = left;
                Ok(())
            }
            None => Err(self.fail(format!(
                "the pickle would build more than {BUDGET_FACTOR}x its size + 64 MiB in \
                 memory; refusing"
            ))),
        }
    }

    /// Makes room for `additional` more items in `vec`, charging its whole new capacity to the
    /// budget before allocating: while it grows, the old and the new buffer both exist (so a
    /// stack or container of small values cannot outgrow the budget either).
    pub(super) fn reserve<T>(
        &mut self,
        vec: &mut Vec<T>,
        additional: usize,
    ) -> Result<(), DataError> {
        let needed = vec.len().saturating_add(additional);
        if needed <= vec.capacity() {
            return Ok(());
        }
        let new_cap = needed.max(vec.capacity().saturating_mul(2));
        self.charge(new_cap.saturating_mul(std::mem::size_of::<T>()))?;
        vec.reserve_exact(new_cap - vec.len());
        Ok(())
    }

    /// A [`DataError::Pickle`] at the current opcode.
    pub(crate) fn fail(&self, message: impl Into<String>) -> DataError {
        self.fail_at(self.op, message)
    }

    pub(super) fn fail_at(&self, offset: usize, message: impl Into<String>) -> DataError {
        DataError::Pickle {
            file: self.source.to_string(),
            offset,
            message: message.into(),
        }
    }

    pub(super) fn byte(&mut self) -> Result<u8, DataError> {
        Ok(self.read(1, "an opcode argument")?[0])
    }

    /// Exactly `n` bytes of `what`, or a truncation error naming the shortfall. The length is
    /// checked against the input before anything is allocated.
    pub(super) fn read(&mut self, n: u64, what: &str) -> Result<&'a [u8], DataError> {
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

    pub(super) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DataError> {
        let bytes = self.read(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(super) fn u32(&mut self, what: &str) -> Result<u64, DataError> {
        Ok(u64::from(u32::from_le_bytes(self.array(what)?)))
    }

    pub(super) fn u64(&mut self, what: &str) -> Result<u64, DataError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A text line (protocol 0 arguments), without its `\n`.
    pub(super) fn line(&mut self) -> Result<&'a [u8], DataError> {
        let rest = &self.bytes[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.fail("truncated: a text argument has no end of line"))?;
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    pub(super) fn line_str(&mut self) -> Result<&'a str, DataError> {
        let line = self.line()?;
        std::str::from_utf8(line).map_err(|_| self.fail("text argument is not UTF-8"))
    }
}
