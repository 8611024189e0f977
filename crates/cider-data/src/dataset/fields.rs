//! Typed access to the arrays of one split dict while it is read (docs/method.md §2.2), with
//! errors that name the file, `split/key` and the expectation: required and optional arrays,
//! shapes, number lists (MMSA stores lengths as lists), strings, integral lengths, and the
//! conversion of numeric arrays to `f32`.

use crate::error::DataError;
use crate::value::{ArrayData, DType, NumpyArray, PyValue};

/// Field access with errors that name the file and `split/key`.
pub(super) struct Fields<'a> {
    pub(super) items: Vec<(PyValue, PyValue)>,
    pub(super) source: &'a str,
    pub(super) split: &'a str,
}

impl<'a> Fields<'a> {
    pub(super) fn key(&self, key: &str) -> String {
        format!("{}/{}", self.split, key)
    }

    pub(super) fn take(&mut self, key: &str) -> Option<PyValue> {
        let pos = self
            .items
            .iter()
            .position(|(k, _)| matches!(k, PyValue::Str(s) if s == key))?;
        Some(self.items.swap_remove(pos).1)
    }

    pub(super) fn array(&mut self, key: &str, expected: &str) -> Result<NumpyArray, DataError> {
        match self.take(key) {
            Some(value) => self.as_array(key, value, expected),
            None => Err(DataError::MissingKey {
                file: self.source.to_string(),
                key: self.key(key),
                expected: expected.to_string(),
            }),
        }
    }

    pub(super) fn optional_array(
        &mut self,
        key: &str,
        expected: &str,
    ) -> Result<Option<NumpyArray>, DataError> {
        match self.take(key) {
            Some(PyValue::None) | None => Ok(None),
            Some(value) => self.as_array(key, value, expected).map(Some),
        }
    }

    /// A 1-D numeric array or a list/tuple of numbers (MMSA stores lengths as lists).
    pub(super) fn optional_numbers(&mut self, key: &str) -> Result<Option<Vec<f64>>, DataError> {
        let expected = "a 1-D integer array or list of ints";
        let items = match self.take(key) {
            None | Some(PyValue::None) => return Ok(None),
            Some(PyValue::List(items)) | Some(PyValue::Tuple(items)) => items,
            Some(value) => {
                let array = self.as_array(key, value, expected)?;
                self.check_shape(key, &array, &[None])?;
                return Ok(array.to_f64());
            }
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                PyValue::Int(x) => Ok(*x as f64),
                PyValue::Float(x) => Ok(*x),
                PyValue::Bool(b) => Ok(f64::from(u8::from(*b))),
                other => Err(self.value_error(
                    key,
                    i,
                    format!("expected a number, found {}", other.type_name()),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    pub(super) fn as_array(
        &self,
        key: &str,
        value: PyValue,
        expected: &str,
    ) -> Result<NumpyArray, DataError> {
        match value {
            PyValue::Array(a) if a.dtype() != DType::Object => Ok(a),
            other => Err(DataError::WrongType {
                file: self.source.to_string(),
                key: self.key(key),
                expected: expected.to_string(),
                found: match &other {
                    PyValue::Array(a) => format!("numpy array of {}", a.dtype().name()),
                    v => v.type_name().to_string(),
                },
            }),
        }
    }

    pub(super) fn check_shape(
        &self,
        key: &str,
        array: &NumpyArray,
        want: &[Option<usize>],
    ) -> Result<(), DataError> {
        let shape = array.shape();
        let fits = shape.len() == want.len()
            && shape
                .iter()
                .zip(want)
                .all(|(&d, w)| w.is_none_or(|w| w == d));
        if fits {
            return Ok(());
        }
        let expected = want
            .iter()
            .map(|w| w.map_or_else(|| "_".to_string(), |d| d.to_string()))
            .collect::<Vec<_>>()
            .join(", ");
        Err(DataError::Shape {
            file: self.source.to_string(),
            key: self.key(key),
            expected: format!("[{expected}]"),
            found: shape.to_vec(),
        })
    }

    pub(super) fn value_error(&self, key: &str, index: usize, message: String) -> DataError {
        DataError::Value {
            file: self.source.to_string(),
            key: self.key(key),
            index,
            message,
        }
    }

    /// Strings from an object array or a list; empty strings when the key is absent.
    pub(super) fn strings(&mut self, key: &str, n: usize) -> Result<Vec<String>, DataError> {
        let items = match self.take(key) {
            None | Some(PyValue::None) => return Ok(vec![String::new(); n]),
            Some(PyValue::Array(a)) => match a.into_parts().1 {
                ArrayData::Object(items) => items,
                other => {
                    return Err(DataError::WrongType {
                        file: self.source.to_string(),
                        key: self.key(key),
                        expected: "an object array of str".into(),
                        found: format!("numpy array of {}", other.dtype().name()),
                    });
                }
            },
            Some(PyValue::List(items)) | Some(PyValue::Tuple(items)) => items,
            Some(other) => {
                return Err(DataError::WrongType {
                    file: self.source.to_string(),
                    key: self.key(key),
                    expected: "a list or object array of str".into(),
                    found: other.type_name().into(),
                });
            }
        };
        if items.len() != n {
            return Err(DataError::Shape {
                file: self.source.to_string(),
                key: self.key(key),
                expected: format!("[{n}]"),
                found: vec![items.len()],
            });
        }
        items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                PyValue::Str(s) => Ok(s),
                PyValue::Bytes(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
                other => Err(self.value_error(
                    key,
                    i,
                    format!("expected str, found {}", other.type_name()),
                )),
            })
            .collect()
    }
}

/// The elements of a numeric array as `f32`, without a copy when they already are.
pub(super) fn into_f32(array: NumpyArray) -> Vec<f32> {
    match array.into_parts().1 {
        ArrayData::F32(v) => v,
        other => NumpyArray::new(vec![other.len()], other)
            .ok()
            .and_then(|a| a.to_f32())
            .unwrap_or_default(),
    }
}

/// Integer lengths `[N]` in `0..=max`, from integral numbers.
pub(super) fn lengths(
    fields: &Fields,
    key: &str,
    values: &[f64],
    n: usize,
    max: usize,
) -> Result<Vec<usize>, DataError> {
    if values.len() != n {
        return Err(DataError::Shape {
            file: fields.source.to_string(),
            key: fields.key(key),
            expected: format!("[{n}]"),
            found: vec![values.len()],
        });
    }
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v.fract() == 0.0 && (0.0..=max as f64).contains(&v) {
                Ok(v as usize)
            } else {
                Err(fields.value_error(
                    key,
                    i,
                    format!("length {v} is not an integer in 0..={max}"),
                ))
            }
        })
        .collect()
}
