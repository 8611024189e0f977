//! The state dict of a checkpoint, under PyTorch's key names: either the pickled mapping
//! itself (`torch.save(model.state_dict())`), or the tensors found by walking a whole pickled
//! module (`torch.save(model)`) through its `_parameters`, `_buffers` and `_modules`, as
//! `Module.state_dict()` would (`None` entries and non-persistent buffers left out).
//!
//! A tensor must be rebuilt by `torch._utils._rebuild_tensor_v2` (or wrapped by
//! `_rebuild_parameter` / `_rebuild_parameter_with_state`) from a `('storage', <class>, key,
//! location, numel)` persistent id; anything else where a tensor belongs is an error naming the
//! key and what built it. The location (`cpu`, `cuda:0`, …) is ignored.

use std::collections::BTreeMap;

use super::tensor::{TorchDType, TorchTensor};
use crate::value::{PyObject, PyValue};

const REBUILD_TENSOR: &str = "torch._utils._rebuild_tensor_v2";
const REBUILD_PARAMETER: &str = "torch._utils._rebuild_parameter";
const REBUILD_PARAMETER_WITH_STATE: &str = "torch._utils._rebuild_parameter_with_state";

/// A storage record the pickle refers to.
pub(super) struct StorageRef<'v> {
    pub(super) key: &'v str,
    pub(super) dtype: TorchDType,
    /// Elements, as the persistent id states them.
    pub(super) numel: usize,
}

/// A tensor as the pickle describes it, before its storage is read.
pub(super) struct TensorRef<'v> {
    pub(super) storage: StorageRef<'v>,
    pub(super) offset: usize,
    pub(super) size: Vec<usize>,
    pub(super) stride: Vec<usize>,
}

impl TensorRef<'_> {
    /// Bytes of the tensor's contiguous copy (saturating: an overflowing size is refused when
    /// the view is checked).
    pub(super) fn byte_len(&self) -> usize {
        self.size
            .iter()
            .fold(self.storage.dtype.size(), |acc, &d| acc.saturating_mul(d))
    }

    /// The tensor, from the storage's bytes.
    pub(super) fn read(&self, storage: &[u8]) -> Result<TorchTensor, String> {
        TorchTensor::view(
            self.storage.dtype,
            storage,
            self.offset,
            &self.size,
            &self.stride,
        )
    }
}

/// What the pickle holds.
pub(super) enum Contents {
    /// A whole module.
    Module,
    /// A mapping of names to tensors.
    StateDict,
}

/// The state dict's tensors by key, and what kind of file it came from. Errors are one line
/// (the caller adds the file).
pub(super) fn collect(
    root: &PyValue,
) -> Result<(Contents, BTreeMap<String, TensorRef<'_>>), String> {
    let mut out = BTreeMap::new();
    match root {
        PyValue::Object(object) if object.attr("_modules").is_some() => {
            walk_module(object, "", &mut out)?;
            Ok((Contents::Module, out))
        }
        value if value.entries().is_some() => {
            for (key, value) in value.entries().unwrap_or_default() {
                let PyValue::Str(key) = key else {
                    return Err(format!(
                        "a state dict key is a {}, expected a str",
                        key.type_name()
                    ));
                };
                insert_new(&mut out, key.clone(), tensor_ref(value, key)?)?;
            }
            Ok((Contents::StateDict, out))
        }
        PyValue::Object(object) => Err(format!(
            "the pickle holds a `{}` object, expected a torch.nn.Module or a state dict",
            object.class
        )),
        other => Err(format!(
            "the pickle holds a {}, expected a torch.nn.Module or a state dict",
            other.type_name()
        )),
    }
}

/// Adds `tensor` under `key`; a key seen before is an error (`torch.save` never writes one
/// twice, and keeping either would silently drop the other).
fn insert_new<'v>(
    out: &mut BTreeMap<String, TensorRef<'v>>,
    key: String,
    tensor: TensorRef<'v>,
) -> Result<(), String> {
    if out.contains_key(&key) {
        return Err(format!("the state dict has the key `{key}` twice"));
    }
    out.insert(key, tensor);
    Ok(())
}

/// Adds the parameters and persistent buffers of `module` and its submodules under `prefix`.
fn walk_module<'v>(
    module: &'v PyObject,
    prefix: &str,
    out: &mut BTreeMap<String, TensorRef<'v>>,
) -> Result<(), String> {
    let non_persistent = non_persistent_buffers(module, prefix)?;
    for (table, skip) in [("_parameters", &[][..]), ("_buffers", &non_persistent[..])] {
        for (name, value) in named(module, table, prefix)? {
            if matches!(value, PyValue::None) || skip.contains(&name) {
                continue;
            }
            let key = format!("{prefix}{name}");
            let tensor = tensor_ref(value, &key)?;
            insert_new(out, key, tensor)?;
        }
    }
    for (name, value) in named(module, "_modules", prefix)? {
        match value {
            PyValue::None => {}
            PyValue::Object(child) if child.attr("_modules").is_some() => {
                walk_module(child, &format!("{prefix}{name}."), out)?;
            }
            other => {
                return Err(format!(
                    "submodule `{prefix}{name}` is a {}, expected a torch.nn.Module",
                    describe(other)
                ));
            }
        }
    }
    Ok(())
}

/// The `(name, value)` pairs of a module's `_parameters`, `_buffers` or `_modules` table.
fn named<'v>(
    module: &'v PyObject,
    table: &str,
    prefix: &str,
) -> Result<Vec<(&'v str, &'v PyValue)>, String> {
    let Some(value) = module.attr(table) else {
        return Ok(Vec::new());
    };
    let entries = value.entries().ok_or_else(|| {
        format!(
            "`{prefix}{table}` of a `{}` is a {}, expected a dict",
            module.class,
            describe(value)
        )
    })?;
    entries
        .iter()
        .map(|(name, value)| match name {
            PyValue::Str(name) => Ok((name.as_str(), value)),
            other => Err(format!(
                "`{prefix}{table}` has a {} key, expected str",
                other.type_name()
            )),
        })
        .collect()
}

/// The names in a module's `_non_persistent_buffers_set` (a pickled `set([...])`).
fn non_persistent_buffers<'v>(module: &'v PyObject, prefix: &str) -> Result<Vec<&'v str>, String> {
    let Some(value) = module.attr("_non_persistent_buffers_set") else {
        return Ok(Vec::new());
    };
    let items = match value {
        PyValue::Object(set) if set.class == "builtins.set" => match set.args.as_slice() {
            [] => return Ok(Vec::new()),
            [PyValue::List(items)] => items,
            _ => {
                return Err(format!(
                    "`{prefix}_non_persistent_buffers_set` is not a set of names"
                ));
            }
        },
        other => {
            return Err(format!(
                "`{prefix}_non_persistent_buffers_set` is a {}, expected a set",
                describe(other)
            ));
        }
    };
    items
        .iter()
        .map(|item| match item {
            PyValue::Str(name) => Ok(name.as_str()),
            _ => Err(format!(
                "`{prefix}_non_persistent_buffers_set` holds a non-str"
            )),
        })
        .collect()
}

/// The tensor `value` describes (`key` names it in errors).
fn tensor_ref<'v>(value: &'v PyValue, key: &str) -> Result<TensorRef<'v>, String> {
    let object = match value {
        PyValue::Object(object) => object,
        other => {
            return Err(format!(
                "`{key}` is a {}, expected a tensor",
                describe(other)
            ));
        }
    };
    match (object.class.as_str(), object.args.as_slice()) {
        (REBUILD_PARAMETER, [data, _, _]) | (REBUILD_PARAMETER_WITH_STATE, [data, _, _, _]) => {
            match data {
                PyValue::Object(inner) if inner.class == REBUILD_TENSOR => rebuilt(inner, key),
                other => Err(format!(
                    "parameter `{key}` wraps a {}, expected a tensor from {REBUILD_TENSOR}",
                    describe(other)
                )),
            }
        }
        (REBUILD_TENSOR, _) => rebuilt(object, key),
        (class, _) => Err(format!(
            "`{key}` is built by `{class}`, not by {REBUILD_TENSOR} or {REBUILD_PARAMETER}"
        )),
    }
}

/// The arguments of `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
/// backward_hooks[, metadata])`.
fn rebuilt<'v>(object: &'v PyObject, key: &str) -> Result<TensorRef<'v>, String> {
    let [pid, offset, size, stride, ..] = object.args.as_slice() else {
        return Err(format!(
            "`{key}`: {REBUILD_TENSOR} with {} arguments, expected 6 or 7",
            object.args.len()
        ));
    };
    if !(6..=7).contains(&object.args.len()) {
        return Err(format!(
            "`{key}`: {REBUILD_TENSOR} with {} arguments, expected 6 or 7",
            object.args.len()
        ));
    }
    if let Some(metadata) = object.args.get(6)
        && !is_empty_mapping(metadata)
    {
        return Err(format!(
            "`{key}`: {REBUILD_TENSOR} carries tensor metadata ({}); only plain tensors \
             are supported",
            describe(metadata)
        ));
    }
    Ok(TensorRef {
        storage: storage_ref(pid, key)?,
        offset: index(offset, key, "storage offset")?,
        size: indices(size, key, "size")?,
        stride: indices(stride, key, "stride")?,
    })
}

/// `None` or a mapping with no entries: what `torch.save` writes as the metadata of a plain
/// tensor.
fn is_empty_mapping(value: &PyValue) -> bool {
    matches!(value, PyValue::None) || value.entries().is_some_and(<[_]>::is_empty)
}

/// The storage of a `('storage', <class>, key, location, numel)` persistent id.
fn storage_ref<'v>(pid: &'v PyValue, key: &str) -> Result<StorageRef<'v>, String> {
    let PyValue::Persistent(pid) = pid else {
        return Err(format!(
            "`{key}`'s storage is a {}, expected a persistent id",
            describe(pid)
        ));
    };
    let bad = || {
        format!("`{key}`'s storage id is not ('storage', <storage class>, key, location, numel)")
    };
    let PyValue::Tuple(items) = pid.as_ref() else {
        return Err(bad());
    };
    match items.as_slice() {
        [
            PyValue::Str(kind),
            PyValue::Class(class),
            PyValue::Str(record),
            PyValue::Str(_location),
            numel,
        ] if kind == "storage" => {
            let dtype = TorchDType::of_storage_class(class).ok_or_else(|| {
                format!("`{key}`'s storage is a `{class}`, not a supported torch storage class")
            })?;
            Ok(StorageRef {
                key: record,
                dtype,
                numel: index(numel, key, "storage size")?,
            })
        }
        _ => Err(bad()),
    }
}

fn index(value: &PyValue, key: &str, what: &str) -> Result<usize, String> {
    match value {
        PyValue::Int(v) => {
            usize::try_from(*v).map_err(|_| format!("`{key}`: {what} {v} is negative"))
        }
        other => Err(format!(
            "`{key}`: {what} is a {}, expected an int",
            other.type_name()
        )),
    }
}

fn indices(value: &PyValue, key: &str, what: &str) -> Result<Vec<usize>, String> {
    match value {
        PyValue::Tuple(items) => items.iter().map(|v| index(v, key, what)).collect(),
        other => Err(format!(
            "`{key}`: {what} is a {}, expected a tuple",
            other.type_name()
        )),
    }
}

/// A value's type for messages: an object's class, else the Python type.
fn describe(value: &PyValue) -> String {
    match value {
        PyValue::Object(object) => format!("`{}` object", object.class),
        other => other.type_name().to_string(),
    }
}
