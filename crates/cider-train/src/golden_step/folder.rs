//! Reading a golden folder of the reference PyTorch harness (docs/method.md §12, parity test
//! 11): `golden.json`'s hyper-parameters, the saved training batch (`input_*.npy`), and
//! reference-named tensor files (gradients) loaded into a model of the same configuration.

use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use cider_data::npy;
use cider_maci::full_model::{
    Cider, CiderConfig, Confounders, load_reference_bert, load_reference_keys,
};
use cider_maci::golden::float_input;
use cider_model::ModelError;
use cider_model::import::is_bert_key;
use cider_model::network::{InputMasks, TextInput, ViewInput};
use cider_model::weights::{WeightFile, WeightLoader};
use serde_json::Value;

use crate::mssd::losses::ReconLoss;
use crate::mssd::{MissingMasks, MssdBatch};

pub(super) fn config_error(source: &str, message: &str) -> ModelError {
    ModelError::Config {
        source_name: source.to_string(),
        message: message.to_string(),
    }
}

/// `golden.json`'s `hyper_parameters`.
pub(super) struct Hyper<'a> {
    pub(super) values: &'a Value,
    pub(super) source: &'a str,
}

impl Hyper<'_> {
    pub(super) fn number(&self, key: &str) -> Result<f64, ModelError> {
        self.values.get(key).and_then(Value::as_f64).ok_or_else(|| {
            config_error(
                self.source,
                &format!("`hyper_parameters.{key}`: expected a number"),
            )
        })
    }

    pub(super) fn text(&self, key: &str) -> Result<&str, ModelError> {
        self.values.get(key).and_then(Value::as_str).ok_or_else(|| {
            config_error(
                self.source,
                &format!("`hyper_parameters.{key}`: expected a string"),
            )
        })
    }
}

/// The reference's `--recon_loss` (a `torch.nn` loss class name).
pub(super) fn recon_loss(hp: &Hyper<'_>) -> Result<ReconLoss, ModelError> {
    match hp.text("recon_loss")? {
        "SmoothL1Loss" => Ok(ReconLoss::SmoothL1),
        "L1Loss" => Ok(ReconLoss::L1),
        "MSELoss" => Ok(ReconLoss::Mse),
        other => Err(config_error(
            hp.source,
            &format!(
                "`hyper_parameters.recon_loss`: expected SmoothL1Loss, L1Loss or MSELoss, got \
                 {other:?}"
            ),
        )),
    }
}

/// The saved training batch.
pub(super) fn read_batch<B: Backend>(
    dir: &Path,
    task: &str,
    device: &B::Device,
) -> Result<MssdBatch<B>, ModelError> {
    let input = |file: &str| float_input::<B, 3>(dir, file, device);
    let mask = |file: &str| float_input::<B, 2>(dir, file, device);
    let view = |text: &str, audio: &str, vision: &str| -> Result<ViewInput<B>, ModelError> {
        Ok(ViewInput {
            text: TextInput::from_bert_rows(input(text)?),
            audio: input(audio)?,
            vision: input(vision)?,
        })
    };
    Ok(MssdBatch {
        complete: view("input_text.npy", "input_audio.npy", "input_vision.npy")?,
        missing: view(
            "input_text_m.npy",
            "input_audio_m.npy",
            "input_vision_m.npy",
        )?,
        masks: InputMasks {
            text: mask("input_text_mask.npy")?,
            audio: mask("input_audio_mask.npy")?,
            vision: mask("input_vision_mask.npy")?,
            text_len: int_vector(dir, "input_text_lengths.npy", device)?,
        },
        missing_masks: MissingMasks {
            text: mask("input_text_missing_mask.npy")?,
            audio: mask("input_audio_missing_mask.npy")?,
            vision: mask("input_vision_missing_mask.npy")?,
        },
        labels: int_vector(dir, &format!("input_labels_{task}.npy"), device)?,
        confounders: Confounders {
            feats: input("input_cls_feats.npy")?,
            probs: mask("input_cls_probs.npy")?,
        },
    })
}

/// Reads a 1-D integer-valued `.npy` (lengths, labels).
fn int_vector<B: Backend>(
    dir: &Path,
    file: &str,
    device: &B::Device,
) -> Result<Tensor<B, 1, Int>, ModelError> {
    let array = npy::from_path(dir.join(file))?;
    match array.to_f64() {
        Some(values) if array.shape().len() == 1 && values.iter().all(|v| v.fract() == 0.0) => {
            let n = values.len();
            let ints: Vec<i64> = values.into_iter().map(|v| v as i64).collect();
            Ok(Tensor::from_data(TensorData::new(ints, [n]), device))
        }
        _ => Err(ModelError::Input {
            what: file.to_string(),
            message: format!(
                "expected a 1-D integer array, got {} of shape {:?}",
                array.dtype().name(),
                array.shape()
            ),
        }),
    }
}

/// A model of `config` holding the tensors of a reference-named file (e.g. gradients);
/// parameters the file has no tensor for are all-NaN.
///
/// # Errors
/// [`ModelError::Weights`] for unexpected or mis-shaped keys, or missing BERT keys.
pub(super) fn load_as_model<B: Backend>(
    config: &CiderConfig,
    path: &Path,
    device: &B::Device,
) -> Result<Cider<B>, ModelError> {
    let file = WeightFile::read_safetensors(path)?;
    let template = config.init::<B>(device)?.map(&mut NanFill);
    let mut loader = WeightLoader::new(&file, "", device);
    let model = load_reference_keys(template, &mut loader);
    match loader.finish(is_bert_key) {
        Ok(()) => {}
        // Keys without a tensor leave their parameters NaN: "no reference tensor".
        Err(ModelError::Weights {
            unexpected,
            misshaped,
            ..
        }) if unexpected.is_empty() && misshaped.is_empty() => {}
        Err(e) => return Err(e),
    }
    load_reference_bert(model, &file, device)
}

/// Sets every float parameter to NaN.
struct NanFill;

impl<B: Backend> ModuleMapper<B> for NanFill {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.full_like(f32::NAN), mapper)
    }
}
