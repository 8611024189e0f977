//! Python values as rebuilt by the restricted pickle reader, and NumPy arrays.
//!
//! Every array is held in C (row-major) order; readers convert Fortran-ordered input.

use crate::error::DataError;

/// A NumPy element type we can read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// `float32`.
    F32,
    /// `float64`.
    F64,
    /// `int64`.
    I64,
    /// `int32`.
    I32,
    /// `uint8`.
    U8,
    /// `bool`.
    Bool,
    /// `dtype('O')`: an array of Python objects (strings in MMSA files).
    Object,
}

impl DType {
    /// NumPy's name for the type (`"float32"`, `"int64"`, …).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::U8 => "uint8",
            DType::Bool => "bool",
            DType::Object => "object",
        }
    }
}

/// The elements of an array, one variant per [`DType`], in C order.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    /// `float32` elements.
    F32(Vec<f32>),
    /// `float64` elements.
    F64(Vec<f64>),
    /// `int64` elements.
    I64(Vec<i64>),
    /// `int32` elements.
    I32(Vec<i32>),
    /// `uint8` elements.
    U8(Vec<u8>),
    /// `bool` elements.
    Bool(Vec<bool>),
    /// Python objects (`dtype('O')`).
    Object(Vec<PyValue>),
}

impl ArrayData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            ArrayData::F32(v) => v.len(),
            ArrayData::F64(v) => v.len(),
            ArrayData::I64(v) => v.len(),
            ArrayData::I32(v) => v.len(),
            ArrayData::U8(v) => v.len(),
            ArrayData::Bool(v) => v.len(),
            ArrayData::Object(v) => v.len(),
        }
    }

    /// True when the array holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            ArrayData::F32(_) => DType::F32,
            ArrayData::F64(_) => DType::F64,
            ArrayData::I64(_) => DType::I64,
            ArrayData::I32(_) => DType::I32,
            ArrayData::U8(_) => DType::U8,
            ArrayData::Bool(_) => DType::Bool,
            ArrayData::Object(_) => DType::Object,
        }
    }
}

/// An n-dimensional NumPy array in C order. `data.len()` always equals the product of `shape`.
#[derive(Debug, Clone, PartialEq)]
pub struct NumpyArray {
    shape: Vec<usize>,
    data: ArrayData,
}

impl NumpyArray {
    /// Builds an array, checking that the element count matches the shape.
    pub fn new(shape: Vec<usize>, data: ArrayData) -> Result<Self, DataError> {
        let expected = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| DataError::ArrayShape {
                shape: shape.clone(),
                len: data.len(),
            })?;
        if expected != data.len() {
            return Err(DataError::ArrayShape {
                shape,
                len: data.len(),
            });
        }
        Ok(Self { shape, data })
    }

    /// The dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements in C order.
    pub fn data(&self) -> &ArrayData {
        &self.data
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// Consumes the array, returning shape and elements.
    pub fn into_parts(self) -> (Vec<usize>, ArrayData) {
        (self.shape, self.data)
    }

    /// The elements converted to `f32` (numeric and bool types only; `None` for objects).
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        Some(match &self.data {
            ArrayData::F32(v) => v.clone(),
            ArrayData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::U8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            ArrayData::Bool(v) => v.iter().map(|&x| f32::from(u8::from(x))).collect(),
            ArrayData::Object(_) => return None,
        })
    }

    /// The elements converted to `f64` (numeric and bool types only; `None` for objects).
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        Some(match &self.data {
            ArrayData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            ArrayData::F64(v) => v.clone(),
            ArrayData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            ArrayData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            ArrayData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            ArrayData::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
            ArrayData::Object(_) => return None,
        })
    }
}

/// A Python value rebuilt from a pickle. Only plain data: no object is ever constructed.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An `int` that fits in 64 bits.
    Int(i64),
    /// A `float`.
    Float(f64),
    /// A `str`.
    Str(String),
    /// A `bytes` object.
    Bytes(Vec<u8>),
    /// A `list`.
    List(Vec<PyValue>),
    /// A `tuple`.
    Tuple(Vec<PyValue>),
    /// Key/value pairs in insertion order.
    Dict(Vec<(PyValue, PyValue)>),
    /// A NumPy array or scalar.
    Array(NumpyArray),
    /// An instance of a class the reader keeps without interpreting it (PyTorch checkpoints
    /// only): its class, constructor arguments and state, never executed.
    Object(Box<PyObject>),
    /// A reference to a class or function, by `module.name` (PyTorch checkpoints only).
    Class(String),
    /// An `int` beyond 64 bits, as its decimal digits (PyTorch checkpoints only).
    BigInt(String),
    /// A persistent id: a reference to data stored outside the pickle (PyTorch checkpoints
    /// only, where it names a tensor storage).
    Persistent(Box<PyValue>),
}

/// An inert Python object, as a pickle describes it: the class it names, the arguments of
/// its constructor call (REDUCE / NEWOBJ), the state BUILD gave it, and the items that
/// SETITEM(S) and APPEND(S) added (how an `OrderedDict` or a `list` subclass is filled).
#[derive(Debug, Clone, PartialEq)]
pub struct PyObject {
    /// `module.name` of the class or function that made it.
    pub class: String,
    /// The constructor's positional arguments.
    pub args: Vec<PyValue>,
    /// The BUILD state (usually the instance's `__dict__`), if any.
    pub state: Option<PyValue>,
    /// Key/value pairs set on it, in order.
    pub dict_items: Vec<(PyValue, PyValue)>,
    /// Items appended to it, in order.
    pub list_items: Vec<PyValue>,
}

impl PyObject {
    /// An attribute from the BUILD state: a dict, or the `(dict, slots)` pair of objects with
    /// `__slots__` (both dicts are searched).
    pub fn attr(&self, name: &str) -> Option<&PyValue> {
        match &self.state {
            Some(state @ PyValue::Dict(_)) => state.get(name),
            Some(PyValue::Tuple(parts)) => parts.iter().find_map(|part| part.get(name)),
            _ => None,
        }
    }
}

/// The classes whose objects [`PyValue::entries`] reads as mappings.
const MAPPING_CLASSES: [&str; 2] = ["collections.OrderedDict", "builtins.dict"];

impl PyValue {
    /// A short name of the value's Python type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            PyValue::None => "None",
            PyValue::Bool(_) => "bool",
            PyValue::Int(_) => "int",
            PyValue::Float(_) => "float",
            PyValue::Str(_) => "str",
            PyValue::Bytes(_) => "bytes",
            PyValue::List(_) => "list",
            PyValue::Tuple(_) => "tuple",
            PyValue::Dict(_) => "dict",
            PyValue::Array(_) => "numpy.ndarray",
            PyValue::Object(_) => "object",
            PyValue::Class(_) => "class or function",
            PyValue::BigInt(_) => "int",
            PyValue::Persistent(_) => "persistent id",
        }
    }

    /// The key/value pairs of a mapping: a dict, or a `collections.OrderedDict` (an object
    /// filled by SETITEM(S), built with no arguments); `None` for anything else, other classes
    /// filled by SETITEMS included.
    pub fn entries(&self) -> Option<&[(PyValue, PyValue)]> {
        match self {
            PyValue::Dict(pairs) => Some(pairs),
            PyValue::Object(object)
                if MAPPING_CLASSES.contains(&object.class.as_str())
                    && object.args.is_empty()
                    && object.list_items.is_empty() =>
            {
                Some(&object.dict_items)
            }
            _ => None,
        }
    }

    /// Looks up a string key in a mapping ([`PyValue::entries`]); `None` if this is not a
    /// mapping or the key is absent.
    pub fn get(&self, key: &str) -> Option<&PyValue> {
        self.entries()?
            .iter()
            .find(|(k, _)| matches!(k, PyValue::Str(s) if s == key))
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(class: &str, args: Vec<PyValue>) -> PyValue {
        PyValue::Object(Box::new(PyObject {
            class: class.to_string(),
            args,
            state: None,
            dict_items: vec![(PyValue::Str("w".into()), PyValue::Int(1))],
            list_items: Vec::new(),
        }))
    }

    #[test]
    fn only_dicts_and_ordered_dicts_are_mappings() {
        let ordered = object("collections.OrderedDict", Vec::new());
        assert_eq!(ordered.get("w"), Some(&PyValue::Int(1)));
        assert_eq!(ordered.get("v"), None);
        // Another class filled by SETITEMS, and an OrderedDict built from arguments, are not.
        assert_eq!(object("os.environ", Vec::new()).entries(), None);
        assert_eq!(
            object("collections.OrderedDict", vec![PyValue::None]).entries(),
            None
        );
        assert_eq!(PyValue::List(Vec::new()).entries(), None);
    }
}
