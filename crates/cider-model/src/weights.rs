//! Reading named tensors from PyTorch-world weight files (safetensors, and `pytorch_model.bin`
//! / `.pt` / `.pth` through cider-data's checkpoint reader, which runs nothing from the file:
//! a state dict or a whole pickled module, in the zip format of PyTorch ≥ 1.6; older bare
//! pickle files are refused with a line saying to re-save them) and moving them into Burn parameters, with every
//! missing, unexpected and mis-shaped key collected into one [`ModelError::Weights`].
//!
//! [`WeightFile`] gives raw `(shape, Vec<f32>)` tensors by key; [`WeightLoader`] walks a module
//! under a key prefix (`"bert."`, `"text_model.model."`, …) and knows PyTorch's layouts for
//! `Linear` (`[out, in]`, transposed into Burn's `[in, out]`), `LayerNorm` (`weight`/`bias` →
//! `gamma`/`beta`) and `Embedding`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use cider_data::atomic_write::write_atomically;
use cider_data::torch_file::{TorchCheckpoint, TorchDType, TorchTensor};
use safetensors::{Dtype, SafeTensors, tensor::Metadata};

use crate::error::ModelError;

/// A weight file opened for reading tensors by name.
pub struct WeightFile {
    path: PathBuf,
    storage: Storage,
}

enum Storage {
    /// The whole file in memory; `data_start` is where the tensor bytes begin.
    Safetensors {
        bytes: Vec<u8>,
        data_start: usize,
        metadata: Metadata,
    },
    /// A PyTorch checkpoint's state dict.
    Pytorch(BTreeMap<String, TorchTensor>),
}

/// Opens a `.safetensors` file (shorthand for [`WeightFile::read_safetensors`]).
pub fn read_safetensors(path: &Path) -> Result<WeightFile, ModelError> {
    WeightFile::read_safetensors(path)
}

impl WeightFile {
    /// Opens a weight file by extension: `.safetensors`, or `.bin` / `.pt` / `.pth` (PyTorch).
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("safetensors") => Self::read_safetensors(path),
            Some("bin" | "pt" | "pth") => Self::read_pytorch(path),
            _ => Err(file_error(
                path,
                "unknown weight file extension (expected .safetensors, .bin, .pt or .pth)",
            )),
        }
    }

    /// Reads a safetensors file; the header is fully validated (offsets inside the file).
    pub fn read_safetensors(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::safetensors_from_bytes(path.to_path_buf(), bytes)
    }

    /// Parses safetensors bytes; `path` only names the source in errors.
    pub fn safetensors_from_bytes(path: PathBuf, bytes: Vec<u8>) -> Result<Self, ModelError> {
        let (header_len, metadata) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| file_error(&path, &format!("not a valid safetensors file: {e}")))?;
        Ok(Self {
            path,
            storage: Storage::Safetensors {
                bytes,
                data_start: 8 + header_len,
                metadata,
            },
        })
    }

    /// Reads a PyTorch checkpoint (`torch.save` of a state dict or of a whole module).
    ///
    /// # Errors
    /// [`ModelError::Data`] with the reader's message for a file that is not such a
    /// checkpoint.
    pub fn read_pytorch(path: &Path) -> Result<Self, ModelError> {
        Ok(Self::from_checkpoint(path, TorchCheckpoint::open(path)?))
    }

    /// The state dict of a checkpoint already read (`path` names it in errors).
    pub fn from_checkpoint(path: &Path, checkpoint: TorchCheckpoint) -> Self {
        Self {
            path: path.to_path_buf(),
            storage: Storage::Pytorch(checkpoint.into_tensors()),
        }
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor name, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = match &self.storage {
            Storage::Safetensors { metadata, .. } => metadata.offset_keys(),
            Storage::Pytorch(map) => map.keys().cloned().collect(),
        };
        keys.sort_unstable();
        keys
    }

    /// Whether a tensor named `key` exists.
    pub fn contains(&self, key: &str) -> bool {
        self.shape(key).is_some()
    }

    /// The stored shape of `key`, or `None` if absent.
    pub fn shape(&self, key: &str) -> Option<Vec<usize>> {
        match &self.storage {
            Storage::Safetensors { metadata, .. } => metadata.info(key).map(|i| i.shape.clone()),
            Storage::Pytorch(map) => map.get(key).map(|t| t.shape().to_vec()),
        }
    }

    /// Reads `key` as `f32` (F32, F64, F16 and BF16 are converted), row-major, with its shape.
    pub fn get_f32(&self, key: &str) -> Result<(Vec<usize>, Vec<f32>), ModelError> {
        let data = match &self.storage {
            Storage::Safetensors {
                bytes,
                data_start,
                metadata,
            } => {
                let info = metadata
                    .info(key)
                    .ok_or_else(|| file_error(&self.path, &format!("no tensor named `{key}`")))?;
                let dtype = match info.dtype {
                    Dtype::F32 => DType::F32,
                    Dtype::F64 => DType::F64,
                    Dtype::F16 => DType::F16,
                    Dtype::BF16 => DType::BF16,
                    other => {
                        return Err(file_error(
                            &self.path,
                            &format!("tensor `{key}` has dtype {other:?}, expected a float"),
                        ));
                    }
                };
                // `read_metadata` checked that every offset lies inside the buffer.
                let (start, end) = info.data_offsets;
                let raw = bytes[data_start + start..data_start + end].to_vec();
                TensorData::from_bytes_vec(raw, info.shape.clone(), dtype)
            }
            Storage::Pytorch(map) => {
                let tensor = map
                    .get(key)
                    .ok_or_else(|| file_error(&self.path, &format!("no tensor named `{key}`")))?;
                if !matches!(
                    tensor.dtype(),
                    TorchDType::F32 | TorchDType::F64 | TorchDType::F16 | TorchDType::BF16
                ) {
                    return Err(file_error(
                        &self.path,
                        &format!(
                            "tensor `{key}` has dtype {:?}, expected a float",
                            tensor.dtype()
                        ),
                    ));
                }
                return Ok((tensor.shape().to_vec(), tensor.to_f32()));
            }
        };
        let shape = data.shape.to_vec();
        let values = data
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| file_error(&self.path, &format!("tensor `{key}`: {e:?}")))?;
        Ok((shape, values))
    }
}

/// Writes `(key, shape, values)` tensors as a safetensors file of `f32`s, atomically
/// ([`write_atomically`]).
///
/// # Errors
/// [`ModelError::WeightFile`] for a shape that disagrees with its values; [`ModelError::Data`]
/// naming the file when it cannot be written.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
) -> Result<(), ModelError> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, values)| values.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((key, shape, _), data)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|view| (key.clone(), view))
                .map_err(|e| file_error(path, &format!("tensor `{key}`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let serialized = safetensors::serialize(views, None)
        .map_err(|e| file_error(path, &format!("cannot serialise: {e}")))?;
    Ok(write_atomically(path, &serialized)?)
}

fn file_error(path: &Path, message: &str) -> ModelError {
    ModelError::WeightFile {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Moves tensors stored under `prefix` into Burn parameters, collecting every problem.
///
/// Keys given to its methods are relative to the prefix. Each read key is marked used;
/// [`WeightLoader::finish`] then reports the keys under the prefix nobody read (except those the
/// caller ignores) together with the missing and mis-shaped ones. A parameter whose key is
/// missing or mis-shaped keeps its current value, but `finish` fails.
pub struct WeightLoader<'a, B: Backend> {
    file: &'a WeightFile,
    prefix: String,
    device: B::Device,
    used: BTreeSet<String>,
    missing: Vec<String>,
    misshaped: Vec<String>,
}

impl<'a, B: Backend> WeightLoader<'a, B> {
    /// A loader for the tensors of `file` whose names start with `prefix`.
    pub fn new(file: &'a WeightFile, prefix: &str, device: &B::Device) -> Self {
        Self {
            file,
            prefix: prefix.to_string(),
            device: device.clone(),
            used: BTreeSet::new(),
            missing: Vec::new(),
            misshaped: Vec::new(),
        }
    }

    /// Reads `prefix + key`, which must have exactly the file shape `shape`; `None` (and the
    /// key recorded as missing or mis-shaped) otherwise.
    pub fn tensor<const D: usize>(&mut self, key: &str, shape: [usize; D]) -> Option<Tensor<B, D>> {
        let (shape, values) = self.read(key, &shape)?;
        Some(Tensor::from_data(
            TensorData::new(values, shape),
            &self.device,
        ))
    }

    /// Replaces `param` by `prefix + key`, stored in the same shape.
    pub fn param<const D: usize>(
        &mut self,
        param: Param<Tensor<B, D>>,
        key: &str,
    ) -> Param<Tensor<B, D>> {
        let shape: [usize; D] = param.lazy_shape().dims();
        match self.tensor(key, shape) {
            Some(tensor) => replace_param(param, tensor),
            None => param,
        }
    }

    /// Replaces a `[rows, cols]` `param` by `prefix + key` stored as `[cols, rows]` (PyTorch's
    /// `Linear.weight` is `[out, in]`, Burn's is `[in, out]`).
    pub fn param_transposed(
        &mut self,
        param: Param<Tensor<B, 2>>,
        key: &str,
    ) -> Param<Tensor<B, 2>> {
        let [rows, cols] = param.lazy_shape().dims();
        let Some((_, values)) = self.read(key, &[cols, rows]) else {
            return param;
        };
        let transposed: Vec<f32> = (0..rows * cols)
            .map(|i| values[(i % cols) * rows + i / cols])
            .collect();
        let tensor = Tensor::from_data(TensorData::new(transposed, [rows, cols]), &self.device);
        replace_param(param, tensor)
    }

    /// Loads a PyTorch `nn.Linear` stored as `key.weight` `[out, in]` and `key.bias` `[out]`.
    pub fn linear(&mut self, mut linear: Linear<B>, key: &str) -> Linear<B> {
        linear.weight = self.param_transposed(linear.weight, &format!("{key}.weight"));
        linear.bias = linear.bias.map(|b| self.param(b, &format!("{key}.bias")));
        linear
    }

    /// Loads a PyTorch `nn.LayerNorm` stored as `key.weight` (γ) and `key.bias` (β).
    pub fn layer_norm(&mut self, mut norm: LayerNorm<B>, key: &str) -> LayerNorm<B> {
        norm.gamma = self.param(norm.gamma, &format!("{key}.weight"));
        norm.beta = norm.beta.map(|b| self.param(b, &format!("{key}.bias")));
        norm
    }

    /// Loads a PyTorch `nn.Embedding` stored as `key.weight` `[n, d]`.
    pub fn embedding(&mut self, mut embedding: Embedding<B>, key: &str) -> Embedding<B> {
        embedding.weight = self.param(embedding.weight, &format!("{key}.weight"));
        embedding
    }

    /// Marks `prefix + key` as read without loading it (e.g. a buffer the caller rebuilds).
    pub fn skip(&mut self, key: &str) {
        self.used.insert(format!("{}{key}", self.prefix));
    }

    /// Ends the load: fails with [`ModelError::Weights`] if any key was missing or mis-shaped,
    /// or if a key under the prefix was never read and `ignored` (given the key without the
    /// prefix) does not accept it.
    pub fn finish(self, ignored: impl Fn(&str) -> bool) -> Result<(), ModelError> {
        let unexpected: Vec<String> = self
            .file
            .keys()
            .into_iter()
            .filter(|k| {
                k.strip_prefix(self.prefix.as_str())
                    .is_some_and(|rest| !self.used.contains(k) && !ignored(rest))
            })
            .collect();
        if self.missing.is_empty() && self.misshaped.is_empty() && unexpected.is_empty() {
            return Ok(());
        }
        Err(ModelError::Weights {
            file: self.file.path().display().to_string(),
            missing: self.missing,
            unexpected,
            misshaped: self.misshaped,
        })
    }

    /// Reads `prefix + key` as f32 if it exists with exactly `shape`, recording the outcome.
    fn read(&mut self, key: &str, shape: &[usize]) -> Option<(Vec<usize>, Vec<f32>)> {
        let full = format!("{}{key}", self.prefix);
        let Some(stored) = self.file.shape(&full) else {
            self.missing.push(full);
            return None;
        };
        self.used.insert(full.clone());
        if stored != shape {
            self.misshaped
                .push(format!("{full} (file {stored:?}, model expects {shape:?})"));
            return None;
        }
        match self.file.get_f32(&full) {
            Ok(read) => Some(read),
            Err(e) => {
                self.misshaped.push(format!("{full} ({e})"));
                None
            }
        }
    }
}

/// Gives `param` the value `tensor`, keeping its id, device and `require_grad` setting.
pub fn replace_param<B: Backend, const D: usize>(
    param: Param<Tensor<B, D>>,
    tensor: Tensor<B, D>,
) -> Param<Tensor<B, D>> {
    let id = param.id;
    param.transform_for_load(tensor, id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::nn::{LayerNormConfig, LinearConfig};
    use safetensors::tensor::TensorView;

    type B = Flex;

    /// A safetensors file from `(name, dtype, shape, little-endian bytes)` entries.
    fn file(entries: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> WeightFile {
        let views = entries.iter().map(|(name, dtype, shape, bytes)| {
            (
                *name,
                TensorView::new(*dtype, shape.clone(), bytes).unwrap(),
            )
        });
        let bytes = safetensors::serialize(views, None).unwrap();
        WeightFile::safetensors_from_bytes("mem.safetensors".into(), bytes).unwrap()
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn reads_float_dtypes_as_f32() {
        let f64s: Vec<u8> = [1.5f64, -2.25]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        // f16 0x3E00 = 1.5, 0xC080 = -2.25 (sign, exponent 16, mantissa 0x080);
        // bf16 keeps the top half of the f32 bits: 1.5 = 0x3FC0, -2.25 = 0xC010.
        let f16s = [0x3E00u16, 0xC080]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let bf16s = [0x3FC0u16, 0xC010]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let f = file(&[
            ("a", Dtype::F32, vec![2], f32_bytes(&[1.5, -2.25])),
            ("b", Dtype::F64, vec![2, 1], f64s),
            ("c", Dtype::F16, vec![1, 2], f16s),
            ("d", Dtype::BF16, vec![2], bf16s),
            ("e", Dtype::I64, vec![1], 7i64.to_le_bytes().to_vec()),
        ]);
        assert_eq!(f.keys(), ["a", "b", "c", "d", "e"]);
        assert_eq!(f.get_f32("a").unwrap(), (vec![2], vec![1.5, -2.25]));
        assert_eq!(f.get_f32("b").unwrap(), (vec![2, 1], vec![1.5, -2.25]));
        assert_eq!(f.get_f32("c").unwrap(), (vec![1, 2], vec![1.5, -2.25]));
        assert_eq!(f.get_f32("d").unwrap(), (vec![2], vec![1.5, -2.25]));
        let int = f.get_f32("e").unwrap_err().to_string();
        assert!(
            int.contains("mem.safetensors") && int.contains("`e`") && int.contains("I64"),
            "{int}"
        );
        assert!(
            f.get_f32("zz")
                .unwrap_err()
                .to_string()
                .contains("no tensor named `zz`")
        );
    }

    #[test]
    fn malformed_files_are_errors() {
        let good = safetensors::serialize(
            [(
                "a",
                TensorView::new(Dtype::F32, vec![2], &f32_bytes(&[1.0, 2.0])).unwrap(),
            )],
            None,
        )
        .unwrap();
        for bytes in [
            vec![],
            good[..good.len() - 1].to_vec(),
            b"\xff\xff\xff\xff\xff\xff\xff\x7f{}".to_vec(),
        ] {
            let err = WeightFile::safetensors_from_bytes("bad.safetensors".into(), bytes)
                .err()
                .unwrap();
            assert!(matches!(err, ModelError::WeightFile { .. }), "{err:?}");
            assert!(err.to_string().starts_with("bad.safetensors: "), "{err}");
        }
        let err = WeightFile::open(Path::new("weights.npz")).err().unwrap();
        assert!(err.to_string().contains("extension"), "{err}");
        let dir = std::env::temp_dir().join(format!("cider-weights-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in [
            ("junk.bin", &b"not a pickle"[..]),
            ("cut.pt", &b"PK\x03\x04\x14\x00"[..]),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            let err = WeightFile::open(&path).err().unwrap();
            assert!(
                matches!(
                    err,
                    ModelError::Data(cider_data::DataError::Checkpoint { .. })
                ),
                "{err:?}"
            );
            assert!(err.to_string().contains(name), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn linear_is_transposed_and_layer_norm_renamed() {
        // PyTorch Linear(3 → 2): weight [[1, 2, 3], [4, 5, 6]], bias [0.5, -0.5].
        let f = file(&[
            (
                "m.fc.weight",
                Dtype::F32,
                vec![2, 3],
                f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            ),
            ("m.fc.bias", Dtype::F32, vec![2], f32_bytes(&[0.5, -0.5])),
            ("m.norm.weight", Dtype::F32, vec![2], f32_bytes(&[2.0, 3.0])),
            ("m.norm.bias", Dtype::F32, vec![2], f32_bytes(&[0.25, 0.75])),
            ("other.x", Dtype::F32, vec![1], f32_bytes(&[9.0])),
        ]);
        let device = Default::default();
        let mut loader = WeightLoader::<B>::new(&f, "m.", &device);
        let fc = loader.linear(LinearConfig::new(3, 2).init(&device), "fc");
        let norm = loader.layer_norm(LayerNormConfig::new(2).init(&device), "norm");
        loader.finish(|_| false).unwrap();
        // x = [1, 1, 1] → [1+2+3+0.5, 4+5+6−0.5] = [6.5, 14.5], as torch's x @ Wᵀ + b.
        let y = fc.forward(Tensor::<B, 2>::ones([1, 3], &device));
        assert_eq!(y.into_data().to_vec::<f32>().unwrap(), [6.5, 14.5]);
        assert_eq!(
            norm.gamma.val().into_data().to_vec::<f32>().unwrap(),
            [2.0, 3.0]
        );
        assert_eq!(
            norm.beta
                .unwrap()
                .val()
                .into_data()
                .to_vec::<f32>()
                .unwrap(),
            [0.25, 0.75]
        );
    }

    #[test]
    fn loaded_parameters_stay_trainable() {
        type AB = burn::backend::Autodiff<Flex>;
        let f = file(&[
            ("fc.weight", Dtype::F32, vec![1, 2], f32_bytes(&[3.0, 4.0])),
            ("fc.bias", Dtype::F32, vec![1], f32_bytes(&[1.0])),
        ]);
        let device = Default::default();
        let mut loader = WeightLoader::<AB>::new(&f, "", &device);
        let fc = loader.linear(LinearConfig::new(2, 1).init(&device), "fc");
        loader.finish(|_| false).unwrap();
        let y = fc.forward(Tensor::<AB, 2>::from_floats([[1.0, 2.0]], &device));
        assert_eq!(y.clone().into_data().to_vec::<f32>().unwrap(), [12.0]);
        let grads = y.sum().backward();
        let weight = fc.weight.grad(&grads).unwrap().into_data();
        let bias = fc.bias.unwrap().grad(&grads).unwrap().into_data();
        assert_eq!(weight.to_vec::<f32>().unwrap(), [1.0, 2.0]);
        assert_eq!(bias.to_vec::<f32>().unwrap(), [1.0]);
    }

    #[test]
    fn every_mismatch_is_reported_at_once() {
        let f = file(&[
            ("p.fc.weight", Dtype::F32, vec![3, 2], f32_bytes(&[0.0; 6])),
            ("p.norm.weight", Dtype::F32, vec![2], f32_bytes(&[1.0, 1.0])),
            ("p.norm.bias", Dtype::F32, vec![2], f32_bytes(&[0.0, 0.0])),
            ("p.extra", Dtype::F32, vec![1], f32_bytes(&[0.0])),
            ("p.ignored.x", Dtype::F32, vec![1], f32_bytes(&[0.0])),
            ("q.outside", Dtype::F32, vec![1], f32_bytes(&[0.0])),
        ]);
        let device = Default::default();
        let mut loader = WeightLoader::<B>::new(&f, "p.", &device);
        let fc = LinearConfig::new(3, 2).init::<B>(&device);
        let before = fc.weight.val().into_data();
        let fc = loader.linear(fc, "fc");
        loader.layer_norm(LayerNormConfig::new(2).init(&device), "norm");
        let err = loader.finish(|k| k.starts_with("ignored.")).unwrap_err();
        let ModelError::Weights {
            file,
            missing,
            unexpected,
            misshaped,
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(file, "mem.safetensors");
        assert_eq!(missing, &["p.fc.bias"]);
        assert_eq!(unexpected, &["p.extra"]);
        assert_eq!(
            misshaped,
            &["p.fc.weight (file [3, 2], model expects [2, 3])"]
        );
        // A mis-shaped parameter keeps its value.
        fc.weight.val().into_data().assert_eq(&before, true);
    }
}
