//! PyTorch checkpoint files (`torch.save`), read without running anything: a whole pickled
//! module (`torch.save(model, path)`, how the CIDer reference saves every trained model) or a
//! state dict (`torch.save(model.state_dict())`, HuggingFace's `pytorch_model.bin`).
//!
//! The zip layout is read by `archive.rs`; its `data.pkl` by the restricted pickle machine
//! ([`crate::pickle`]) in the dialect that keeps objects: every class is an opaque name,
//! REDUCE / NEWOBJ / BUILD make inert [`PyObject`]s holding their arguments and state, and
//! storages are persistent ids. Nothing is imported or executed. `state_dict.rs` then finds
//! the tensors under their state-dict keys (walking a module's `_parameters`, `_buffers` and
//! `_modules`); only tensors rebuilt by `torch._utils._rebuild_tensor_v2` (or wrapped by
//! `_rebuild_parameter`) are accepted, each view checked against its storage (`tensor.rs`).
//! The storage's location tag (`cpu`, `cuda:0`) is ignored, so GPU-saved files load anywhere.
//!
//! The object tree stays available ([`TorchCheckpoint::root`], [`TorchCheckpoint::module`]) for
//! callers that read a model's configuration from its pickled attributes.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::error::DataError;
use crate::pickle::{BUDGET_FACTOR, Extension, Stream, budget_for};
use crate::value::{PyObject, PyValue};

mod archive;
mod state_dict;
mod tensor;

pub use tensor::{TorchDType, TorchTensor};

use archive::Archive;
use state_dict::{Contents, collect};

/// A PyTorch checkpoint: its unpickled object tree and its state dict.
#[derive(Debug)]
pub struct TorchCheckpoint {
    source: String,
    root: PyValue,
    is_module: bool,
    tensors: BTreeMap<String, TorchTensor>,
}

impl TorchCheckpoint {
    /// Reads a checkpoint file.
    ///
    /// # Errors
    /// [`DataError::Io`] if the file cannot be read; [`DataError::Checkpoint`] for a file that
    /// is not a `torch.save` zip, a tensor not rebuilt the way PyTorch writes them, or a view
    /// beyond its storage; [`DataError::Pickle`] for a malformed `data.pkl`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Reads a checkpoint held in memory; `source` names it in errors.
    ///
    /// # Errors
    /// As [`TorchCheckpoint::open`].
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<Self, DataError> {
        let fail = |message: String| DataError::Checkpoint {
            file: source.to_string(),
            message,
        };
        let mut archive = Archive::open(bytes, source)?;
        archive.check_byte_order()?;
        let pickle = archive.pickle()?;
        let pickle_source = format!("{source} (data.pkl)");
        let root = Stream::new(&pickle, &pickle_source, &KeepObjects).load()?;
        let (contents, refs) = collect(&root).map_err(fail)?;
        let is_module = matches!(contents, Contents::Module);
        // Storages and tensor copies are charged to the budget of a pickle of the file's
        // size: a stored record costs its own bytes in the file, so only deflated records and
        // many keys viewing one storage can reach the limit.
        let mut left = budget_for(bytes.len());
        let mut charge = |len: usize, what: &str| {
            left = left.checked_sub(len).ok_or_else(|| {
                fail(format!(
                    "{what} would take the checkpoint beyond {} bytes ({} per file byte \
                     plus {} MiB); refusing",
                    budget_for(bytes.len()),
                    BUDGET_FACTOR,
                    budget_for(0) >> 20
                ))
            })?;
            Ok::<(), DataError>(())
        };
        let mut storages: HashMap<&str, Vec<u8>> = HashMap::new();
        let mut tensors = BTreeMap::new();
        for (key, tensor) in &refs {
            let storage = &tensor.storage;
            let len = storage
                .numel
                .checked_mul(storage.dtype.size())
                .ok_or_else(|| fail(format!("`{key}`: storage size overflows")))?;
            if !storages.contains_key(storage.key) {
                charge(len, &format!("`{key}`'s storage of {len} bytes"))?;
                let record = format!("data/{}", storage.key);
                let bytes = archive.record(&record, Some(len as u64))?.ok_or_else(|| {
                    fail(format!("`{key}`: the zip has no storage record `{record}`"))
                })?;
                storages.insert(storage.key, bytes);
            }
            let bytes = &storages[storage.key];
            if bytes.len() != len {
                return Err(fail(format!(
                    "`{key}`: storage `{}` is shared with a tensor of another type or size",
                    storage.key
                )));
            }
            charge(tensor.byte_len(), &format!("a copy of `{key}`"))?;
            let value = tensor
                .read(bytes)
                .map_err(|message| fail(format!("`{key}`: {message}")))?;
            tensors.insert(key.clone(), value);
        }
        drop(refs);
        Ok(TorchCheckpoint {
            source: source.to_string(),
            root,
            is_module,
            tensors,
        })
    }

    /// The file (or source) this was read from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The unpickled `data.pkl`: a module object or a mapping; tensors appear in it as the
    /// inert calls that rebuild them.
    pub fn root(&self) -> &PyValue {
        &self.root
    }

    /// The pickled module when the file is a whole module (`torch.save(model)`); `None` for a
    /// state dict.
    pub fn module(&self) -> Option<&PyObject> {
        match &self.root {
            PyValue::Object(object) if self.is_module => Some(object),
            _ => None,
        }
    }

    /// The tensors under their state-dict keys (`text_model.model.embeddings.word_embeddings.weight`, …).
    pub fn tensors(&self) -> &BTreeMap<String, TorchTensor> {
        &self.tensors
    }

    /// The tensors, taken out.
    pub fn into_tensors(self) -> BTreeMap<String, TorchTensor> {
        self.tensors
    }
}

/// The pickle dialect of checkpoints: no classes of its own, everything else kept inert.
struct KeepObjects;

impl Extension for KeepObjects {
    fn allows_class(&self, _module: &str, _name: &str) -> bool {
        false
    }

    fn keeps_objects(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::testdata;

    /// The f32 tensors of a safetensors file, read by hand: an 8-byte little-endian header
    /// length, a JSON header `{name: {dtype, shape, data_offsets}}`, then the data.
    fn safetensors(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
        let bytes = std::fs::read(path).unwrap();
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
        let data = &bytes[8 + header_len..];
        let mut out = BTreeMap::new();
        for (name, info) in header.as_object().unwrap() {
            if name == "__metadata__" {
                continue;
            }
            assert_eq!(info["dtype"], "F32", "{name}");
            let shape = info["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let [start, end] = [0, 1].map(|i| info["data_offsets"][i].as_u64().unwrap() as usize);
            let values = data[start..end]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            out.insert(name.clone(), (shape, values));
        }
        out
    }

    const FOLDERS: [(&str, &str); 2] = [
        (
            "mosi-aligned-small",
            "mosi_aligned_iid_binary_CIDER_trial_0.pt",
        ),
        (
            "mosi-unaligned-small",
            "mosi_unaligned_iid_binary_CIDER_trial_0.pt",
        ),
    ];

    #[test]
    fn both_checkpoint_kinds_hold_the_golden_weights() {
        for (folder, whole) in FOLDERS {
            let golden = safetensors(&testdata(&format!(
                "torch-golden/{folder}/model.safetensors"
            )));
            let module =
                TorchCheckpoint::open(testdata(&format!("torch-checkpoints/{folder}/{whole}")))
                    .unwrap_or_else(|e| panic!("{e}"));
            let state = TorchCheckpoint::open(testdata(&format!(
                "torch-checkpoints/{folder}/state_dict.pt"
            )))
            .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                module.module().map(|m| m.class.as_str()),
                Some("src.models.CIDERModel")
            );
            assert!(state.module().is_none());
            // Walking the module gives exactly the keys of its own `state_dict()`.
            let module_keys: Vec<&String> = module.tensors().keys().collect();
            let state_keys: Vec<&String> = state.tensors().keys().collect();
            assert_eq!(module_keys, state_keys, "{folder}");
            assert_eq!(module.tensors(), state.tensors(), "{folder}");
            // Every golden tensor, bit for bit (the golden folder has only float weights).
            for (key, (shape, values)) in &golden {
                let tensor = &module.tensors()[key];
                assert_eq!(tensor.shape(), shape.as_slice(), "{folder} {key}");
                assert_eq!(&tensor.to_f32(), values, "{folder} {key}");
            }
            let extra: Vec<&String> = module
                .tensors()
                .keys()
                .filter(|k| !golden.contains_key(*k))
                .collect();
            // Integer buffers the safetensors export leaves out, if any, are all BERT ids.
            for key in extra {
                assert!(
                    key.ends_with("position_ids") || key.ends_with("version"),
                    "{key}"
                );
            }
        }
    }

    #[test]
    fn the_module_tree_keeps_the_configuration() {
        let (folder, whole) = FOLDERS[0];
        let file = TorchCheckpoint::open(testdata(&format!("torch-checkpoints/{folder}/{whole}")))
            .unwrap();
        let module = file.module().unwrap();
        assert_eq!(module.attr("embed_dim"), Some(&PyValue::Int(32)));
        assert_eq!(module.attr("aligned"), Some(&PyValue::Bool(true)));
        // The tokenizer's `model_max_length` is int(1e30), beyond 64 bits.
        let mut found = false;
        let mut stack = vec![file.root()];
        while let Some(value) = stack.pop() {
            match value {
                PyValue::BigInt(digits) => {
                    assert_eq!(digits, "1000000000000000019884624838656");
                    found = true;
                }
                PyValue::Object(object) => {
                    stack.extend(&object.args);
                    stack.extend(&object.state);
                    stack.extend(object.dict_items.iter().flat_map(|(k, v)| [k, v]));
                    stack.extend(&object.list_items);
                }
                PyValue::Dict(pairs) => stack.extend(pairs.iter().flat_map(|(k, v)| [k, v])),
                PyValue::List(items) | PyValue::Tuple(items) => stack.extend(items),
                _ => {}
            }
        }
        assert!(found);
    }

    /// A stored (uncompressed) zip of `entries`, as `torch.save` writes them.
    pub(crate) fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, bytes) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    /// `_rebuild_tensor_v2(('storage', <class>, '0', 'cuda:0', numel), 0, (size,), (1,),
    /// False, OrderedDict()[, metadata])` built by `rebuild` (`module\nname`); `numel` is an int
    /// opcode with its argument, `metadata` pickled ops (empty for none).
    fn tensor_pickle(
        rebuild: &str,
        class: &str,
        numel: &[u8],
        size: u8,
        metadata: &[u8],
    ) -> Vec<u8> {
        let mut p = format!("c{rebuild}\n").into_bytes();
        p.extend_from_slice(b"((X\x07\x00\x00\x00storage");
        p.extend_from_slice(format!("c{class}\n").as_bytes());
        p.extend_from_slice(b"X\x01\x00\x00\x000X\x06\x00\x00\x00cuda:0");
        p.extend_from_slice(numel);
        p.extend_from_slice(&[b't', b'Q', b'K', 0, b'K', size, 0x85, b'K', 1, 0x85]);
        p.extend_from_slice(b"\x89ccollections\nOrderedDict\n)R");
        p.extend_from_slice(metadata);
        p.extend_from_slice(b"tR");
        p
    }

    /// An `OrderedDict` of `entries` (key, pickled value), in order, as pickle ops.
    fn ordered_dict(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut p = b"ccollections\nOrderedDict\n)R(".to_vec();
        for (key, value) in entries {
            p.push(b'X');
            p.extend_from_slice(&(key.len() as u32).to_le_bytes());
            p.extend_from_slice(key.as_bytes());
            p.extend_from_slice(value);
        }
        p.push(b'u');
        p
    }

    /// A protocol-2 pickle of `ordered_dict(entries)`, as `torch.save(model.state_dict())`
    /// writes it.
    fn dict_pickle(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut p = b"\x80\x02".to_vec();
        p.extend_from_slice(&ordered_dict(entries));
        p.push(b'.');
        p
    }

    /// `{'w': <tensor_pickle>}` with a small numel.
    fn state_dict_pickle(rebuild: &str, class: &str, numel: u8, size: u8) -> Vec<u8> {
        dict_pickle(&[(
            "w",
            tensor_pickle(rebuild, class, &[b'K', numel], size, b""),
        )])
    }

    const REBUILD: &str = "torch._utils\n_rebuild_tensor_v2";
    const FLOAT: &str = "torch\nFloatStorage";

    fn checkpoint_error(bytes: &[u8]) -> String {
        match TorchCheckpoint::from_bytes(bytes, "bad.pt") {
            Err(DataError::Checkpoint { file, message }) => {
                assert_eq!(file, "bad.pt");
                message
            }
            other => panic!("expected a checkpoint error, got {other:?}"),
        }
    }

    #[test]
    fn a_gpu_saved_state_dict_loads() {
        let pickle = state_dict_pickle(REBUILD, FLOAT, 3, 2);
        let record = f32_bytes(&[1.5, -2.0, 4.0]);
        let file = zip_of(&[
            ("archive/data.pkl", &pickle),
            ("archive/byteorder", b"little"),
            ("archive/data/0", &record),
        ]);
        let checkpoint = TorchCheckpoint::from_bytes(&file, "gpu.pt").unwrap();
        let tensor = &checkpoint.tensors()["w"];
        assert_eq!(
            (tensor.shape(), tensor.to_f32()),
            (&[2][..], vec![1.5, -2.0])
        );
        assert!(checkpoint.module().is_none());
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn hostile_and_foreign_files_get_one_clear_error() {
        let record = f32_bytes(&[0.0; 3]);
        let with = |pickle: &[u8], record: &[u8]| {
            zip_of(&[("archive/data.pkl", pickle), ("archive/data/0", record)])
        };
        // A tensor made by anything but torch's rebuild functions: named, never run.
        let evil = state_dict_pickle("os\nsystem", "torch\nFloatStorage", 3, 2);
        let message = checkpoint_error(&with(&evil, &record));
        assert_eq!(
            message,
            "`w` is built by `os.system`, not by torch._utils._rebuild_tensor_v2 or \
             torch._utils._rebuild_parameter"
        );
        // A storage class that is not one.
        let fake = state_dict_pickle(REBUILD, "os\nsystem", 3, 2);
        assert!(checkpoint_error(&with(&fake, &record)).contains("`os.system`"));
        // A storage shorter than its tensor, and a record shorter than its storage.
        let long = state_dict_pickle(REBUILD, FLOAT, 3, 5);
        assert!(checkpoint_error(&with(&long, &record)).contains("beyond a storage of 3"));
        let good = state_dict_pickle(REBUILD, FLOAT, 3, 2);
        let message = checkpoint_error(&with(&good, &record[..8]));
        assert!(
            message.contains("holds 8 bytes, the pickle says 12"),
            "{message}"
        );
        let message = checkpoint_error(&zip_of(&[("archive/data.pkl", &good)]));
        assert!(message.contains("no storage record `data/0`"), "{message}");
        // A pickle of something else.
        let list = b"\x80\x02]q\x00(K\x01K\x02e.";
        let message = checkpoint_error(&with(list, &record));
        assert!(
            message.contains("holds a list, expected a torch.nn.Module"),
            "{message}"
        );
        // Not a zip, a bare pickle, a TorchScript archive, a big-endian file.
        assert!(checkpoint_error(b"hello").contains("not a zip archive"));
        assert!(checkpoint_error(list).contains("a bare pickle"));
        let script = zip_of(&[("m/constants.pkl", list), ("m/code/x.py", b"")]);
        assert!(checkpoint_error(&script).contains("TorchScript"));
        let big = zip_of(&[("a/data.pkl", &good), ("a/byteorder", b"big")]);
        assert!(checkpoint_error(&big).contains("big-endian"));
    }

    #[test]
    fn tensors_that_read_wrongly_or_twice_are_refused() {
        let record = f32_bytes(&[0.0; 3]);
        let file = |entries: &[(&str, Vec<u8>)]| {
            zip_of(&[
                ("archive/data.pkl", &dict_pickle(entries)),
                ("archive/data/0", &record),
            ])
        };
        let plain = tensor_pickle(REBUILD, FLOAT, b"K\x03", 2, b"");
        // A module with a parameter and a buffer of one name: both would be the key `w`.
        let mut module = b"\x80\x02ctorch.nn\nLinear\n)\x81}(".to_vec();
        for (name, table) in [
            ("_parameters", ordered_dict(&[("w", plain.clone())])),
            ("_buffers", ordered_dict(&[("w", plain.clone())])),
            ("_modules", ordered_dict(&[])),
        ] {
            module.push(b'X');
            module.extend_from_slice(&(name.len() as u32).to_le_bytes());
            module.extend_from_slice(name.as_bytes());
            module.extend_from_slice(&table);
        }
        module.extend_from_slice(b"ub.");
        let message = checkpoint_error(&zip_of(&[
            ("archive/data.pkl", &module),
            ("archive/data/0", &record),
        ]));
        assert_eq!(message, "the state dict has the key `w` twice");
        // Tensor metadata (a 7th argument with entries) changes what the tensor is.
        let tagged = tensor_pickle(REBUILD, FLOAT, b"K\x03", 2, b"}X\x01\x00\x00\x00aK\x01s");
        let message = checkpoint_error(&file(&[("w", tagged)]));
        assert!(
            message.contains("`w`: torch._utils._rebuild_tensor_v2 carries tensor metadata"),
            "{message}"
        );
        // An empty metadata dict is what a plain tensor may carry.
        let empty = tensor_pickle(REBUILD, FLOAT, b"K\x03", 2, b"}");
        let checkpoint = TorchCheckpoint::from_bytes(&file(&[("w", empty)]), "ok.pt").unwrap();
        assert_eq!(checkpoint.tensors()["w"].shape(), &[2]);
        // A second key on the same storage whose numel overflows: an error, not a panic.
        let mut huge = b"\x8a\x08".to_vec();
        huge.extend_from_slice(&i64::MAX.to_le_bytes());
        let message = checkpoint_error(&file(&[
            ("a", plain.clone()),
            ("b", tensor_pickle(REBUILD, FLOAT, &huge, 2, b"")),
        ]));
        assert_eq!(message, "`b`: storage size overflows");
    }

    #[test]
    fn many_keys_viewing_one_storage_stay_within_the_budget() {
        // One 1 MiB storage viewed whole by many keys: the budget of a file of just over 1 MiB
        // is 64 × 1 MiB + 64 MiB plus a little, so 40 copies pass, and after the storage and
        // 128 copies (129 MiB) the copy of the 129th key, `k128`, is refused.
        let numel: u32 = 1 << 18;
        let record = vec![0u8; 1 << 20];
        let mut op = vec![b'J'];
        op.extend_from_slice(&numel.to_le_bytes());
        let view = |keys: usize| {
            let mut tensor = format!("c{REBUILD}\n").into_bytes();
            tensor.extend_from_slice(b"((X\x07\x00\x00\x00storage");
            tensor.extend_from_slice(format!("c{FLOAT}\n").as_bytes());
            tensor.extend_from_slice(b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpu");
            tensor.extend_from_slice(&op);
            tensor.extend_from_slice(b"tQK\x00");
            tensor.extend_from_slice(&op);
            tensor.extend_from_slice(b"\x85K\x01\x85\x89}tR");
            let names: Vec<String> = (0..keys).map(|i| format!("k{i:03}")).collect();
            let entries: Vec<(&str, Vec<u8>)> =
                names.iter().map(|n| (n.as_str(), tensor.clone())).collect();
            zip_of(&[
                ("archive/data.pkl", &dict_pickle(&entries)),
                ("archive/data/0", &record),
            ])
        };
        let checkpoint = TorchCheckpoint::from_bytes(&view(40), "shared.pt").unwrap();
        assert_eq!(checkpoint.tensors().len(), 40);
        let message = checkpoint_error(&view(200));
        assert!(
            message.starts_with("a copy of `k128` would take the checkpoint beyond"),
            "{message}"
        );
    }

    #[test]
    fn every_truncation_of_a_real_checkpoint_is_an_error() {
        let (folder, _) = FOLDERS[0];
        let bytes = std::fs::read(testdata(&format!(
            "torch-checkpoints/{folder}/state_dict.pt"
        )))
        .unwrap();
        // Cuts through the records, the pickle and the central directory.
        let step = bytes.len() / 150;
        for cut in (0..bytes.len()).step_by(step) {
            let result = TorchCheckpoint::from_bytes(&bytes[..cut], "cut.pt");
            assert!(
                matches!(
                    result,
                    Err(DataError::Checkpoint { .. } | DataError::Pickle { .. })
                ),
                "cut at {cut}: {result:?}"
            );
        }
    }
}
