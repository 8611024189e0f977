//! The golden check: runs the model on the inputs saved by the reference PyTorch harness
//! (`testdata/torch-golden/<config>/`) and compares every forward output with the saved one.
//!
//! A golden folder holds `golden.json` (hyper-parameters, the tiny BERT's config, the input and
//! output file names with shapes), `model.safetensors` (the reference `state_dict`),
//! `input_*.npy` and `output_<pass>_<key>.npy`. The training-step files (`grads_pass1`,
//! `grads_pass2_accumulated`, `model_after_step`) are reported as not checked: the MSSD step is
//! not part of the model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use cider_data::npy;
use cider_model::ModelError;
use cider_model::bert::BertConfig;
use cider_model::network::{InputMasks, TextInput, ViewInput};
use serde::Serialize;
use serde_json::Value;

use crate::full_model::{Cider, CiderConfig, Confounders, ViewOutput};
use crate::reference_checkpoint::ReferenceHyperParameters;

/// Training-step files of a golden folder that this check does not compare.
const TRAINING_FILES: [&str; 3] = [
    "grads_pass1.safetensors",
    "grads_pass2_accumulated.safetensors",
    "model_after_step.safetensors",
];

/// The outcome for one golden output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum GoldenStatus {
    /// Compared element-wise: the largest `|ours − reference|` (NaN if either side has one).
    Checked {
        /// The output's shape.
        shape: Vec<usize>,
        /// Largest absolute error.
        max_abs_error: f64,
    },
    /// Our output has a different shape from the reference file's.
    ShapeMismatch {
        /// The reference shape.
        expected: Vec<usize>,
        /// Our shape.
        actual: Vec<usize>,
    },
    /// `golden.json` names an output that the model does not produce.
    Unknown,
    /// Deliberately not compared (with the reason).
    NotChecked {
        /// Why.
        reason: String,
    },
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GoldenEntry {
    /// Output name, e.g. `complete_pred` (the file name without `output_` and `.npy`).
    pub name: String,
    /// What happened.
    #[serde(flatten)]
    pub status: GoldenStatus,
}

/// The result of [`check_golden`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GoldenReport {
    /// The golden folder.
    pub dir: String,
    /// The configuration name from `golden.json` (e.g. `mosi-unaligned`).
    pub config: String,
    /// One entry per output, then the not-checked training files.
    pub entries: Vec<GoldenEntry>,
}

impl GoldenReport {
    /// Whether every compared output is within `tol` (and none is mis-shaped or unknown).
    pub fn passes(&self, tol: f64) -> bool {
        self.failures(tol).is_empty()
    }

    /// The entries that fail at `tol`: errors above it (or NaN), shape mismatches, unknown
    /// outputs.
    pub fn failures(&self, tol: f64) -> Vec<&GoldenEntry> {
        self.entries
            .iter()
            .filter(|e| match &e.status {
                GoldenStatus::Checked { max_abs_error, .. } => {
                    max_abs_error.is_nan() || *max_abs_error > tol
                }
                GoldenStatus::ShapeMismatch { .. } | GoldenStatus::Unknown => true,
                GoldenStatus::NotChecked { .. } => false,
            })
            .collect()
    }

    /// A plain-text table, one line per entry, marking each compared output `ok` or `FAIL`
    /// at `tol`.
    pub fn to_text(&self, tol: f64) -> String {
        let width = self.entries.iter().map(|e| e.name.len()).max().unwrap_or(0);
        let mut text = format!("{} ({}), tolerance {tol:e}\n", self.dir, self.config);
        for e in &self.entries {
            let line = match &e.status {
                GoldenStatus::Checked { max_abs_error, .. } => {
                    let verdict = if *max_abs_error <= tol { "ok" } else { "FAIL" };
                    format!("{verdict:<4} max abs error {max_abs_error:.3e}")
                }
                GoldenStatus::ShapeMismatch { expected, actual } => {
                    format!("FAIL shape {actual:?}, reference {expected:?}")
                }
                GoldenStatus::Unknown => "FAIL not produced by the model".to_string(),
                GoldenStatus::NotChecked { reason } => format!("-    not checked: {reason}"),
            };
            text.push_str(&format!("{:<width$}  {line}\n", e.name));
        }
        let verdict = if self.passes(tol) { "PASS" } else { "FAIL" };
        text.push_str(&format!("{verdict}\n"));
        text
    }

    /// The largest error over the compared outputs (`None` if nothing was compared).
    pub fn max_abs_error(&self) -> Option<f64> {
        self.entries
            .iter()
            .filter_map(|e| match e.status {
                GoldenStatus::Checked { max_abs_error, .. } => Some(max_abs_error),
                _ => None,
            })
            .reduce(|a, b| if a.is_nan() || a > b { a } else { b })
    }
}

/// Runs the golden check on `dir`.
///
/// Builds the model from `golden.json` (`hyper_parameters` and `bert`), imports `weights`
/// (a `.safetensors` file, or a PyTorch `.pt` / `.pth` whole module or state dict; by default
/// [`golden_weights`]), runs the complete, missing-view, counterfactual and test passes and
/// compares them with the `output_*.npy` files. Dropout is off on non-autodiff backends (and
/// the golden configurations set every dropout to 0).
///
/// # Errors
/// [`ModelError`] when a file is missing or malformed, the weights do not fit, or an input has
/// the wrong shape. Differences in the outputs are not errors: they are in the report.
pub fn check_golden<B: Backend>(
    dir: &Path,
    weights: Option<&Path>,
    device: &B::Device,
) -> Result<GoldenReport, ModelError> {
    let golden_path = dir.join("golden.json");
    let text = std::fs::read_to_string(&golden_path).map_err(|source| ModelError::Io {
        path: golden_path.clone(),
        source,
    })?;
    let source_name = golden_path.display().to_string();
    let golden: Value = serde_json::from_str(&text).map_err(|e| ModelError::Config {
        source_name: source_name.clone(),
        message: format!("not valid JSON: {e}"),
    })?;
    let config = golden_config(&golden, &source_name)?;
    let model = config
        .init::<B>(device)?
        .load_reference(&golden_weights(dir, weights), device)?;

    let inputs = GoldenInputs::read(dir, device)?;
    let outputs = run_passes(&model, &inputs)?;

    let expected = golden
        .get("outputs")
        .and_then(Value::as_object)
        .ok_or_else(|| config_error(&source_name, "missing object `outputs`"))?;
    let mut entries = Vec::with_capacity(expected.len() + TRAINING_FILES.len());
    for file in expected.keys() {
        let name = file
            .strip_prefix("output_")
            .and_then(|n| n.strip_suffix(".npy"))
            .ok_or_else(|| {
                config_error(
                    &source_name,
                    &format!("output `{file}` is not output_*.npy"),
                )
            })?;
        let status = match outputs.get(name) {
            None => GoldenStatus::Unknown,
            Some(ours) => compare_output(ours, &npy::from_path(dir.join(file))?, file)?,
        };
        entries.push(GoldenEntry {
            name: name.to_string(),
            status,
        });
    }
    for file in TRAINING_FILES {
        if dir.join(file).exists() {
            entries.push(GoldenEntry {
                name: file.trim_end_matches(".safetensors").to_string(),
                status: GoldenStatus::NotChecked {
                    reason: "training step (MSSD) is not checked by the forward golden check"
                        .into(),
                },
            });
        }
    }
    Ok(GoldenReport {
        dir: dir.display().to_string(),
        config: golden
            .get("config")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        entries,
    })
}

/// The weight file of a golden check: `weights` when given, else `DIR/model.safetensors`.
pub fn golden_weights(dir: &Path, weights: Option<&Path>) -> PathBuf {
    weights.map_or_else(|| dir.join("model.safetensors"), Path::to_path_buf)
}

fn config_error(source_name: &str, message: &str) -> ModelError {
    ModelError::Config {
        source_name: source_name.to_string(),
        message: message.to_string(),
    }
}

/// The model configuration of a golden folder: `hyper_parameters` (reference argument names)
/// and the BERT config, built by [`ReferenceHyperParameters::to_config`] (the reference has
/// the batch-indexed positional term).
pub fn golden_config(golden: &Value, source_name: &str) -> Result<CiderConfig, ModelError> {
    let hp = golden
        .get("hyper_parameters")
        .ok_or_else(|| config_error(source_name, "missing object `hyper_parameters`"))?;
    let size = |key: &str| {
        hp.get(key)
            .and_then(Value::as_u64)
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| {
                config_error(
                    source_name,
                    &format!("`hyper_parameters.{key}`: expected a non-negative integer"),
                )
            })
    };
    let prob = |key: &str| {
        hp.get(key).and_then(Value::as_f64).ok_or_else(|| {
            config_error(
                source_name,
                &format!("`hyper_parameters.{key}`: expected a number"),
            )
        })
    };
    let flag = |key: &str| {
        hp.get(key).and_then(Value::as_bool).ok_or_else(|| {
            config_error(
                source_name,
                &format!("`hyper_parameters.{key}`: expected true or false"),
            )
        })
    };
    let bert = golden
        .get("bert")
        .ok_or_else(|| config_error(source_name, "missing object `bert`"))?;
    let bert = BertConfig::from_json_str(&bert.to_string(), &format!("{source_name} (bert)"))?;
    let hyper_parameters = ReferenceHyperParameters {
        orig_d_l: size("orig_d_l")?,
        orig_d_a: size("orig_d_a")?,
        orig_d_v: size("orig_d_v")?,
        l_len: size("l_len")?,
        a_len: size("a_len")?,
        v_len: size("v_len")?,
        aligned: flag("aligned")?,
        embed_dim: size("embed_dim")?,
        multimodal_layers: size("multimodal_layers")?,
        num_heads: size("num_heads")?,
        attn_dropout: prob("attn_dropout")?,
        relu_dropout: prob("relu_dropout")?,
        res_dropout: prob("res_dropout")?,
        out_dropout: prob("out_dropout")?,
        embed_dropout: prob("embed_dropout")?,
        output_dim: size("output_dim")?,
        cross_dataset: flag("cross_dataset")?,
        bert,
    };
    Ok(hyper_parameters.to_config())
}

/// The `input_*.npy` tensors.
struct GoldenInputs<B: Backend> {
    text: Tensor<B, 3>,
    text_m: Tensor<B, 3>,
    text_cf: Tensor<B, 3>,
    audio: Tensor<B, 3>,
    audio_m: Tensor<B, 3>,
    vision: Tensor<B, 3>,
    vision_m: Tensor<B, 3>,
    masks: InputMasks<B>,
    confounders: Confounders<B>,
}

impl<B: Backend> GoldenInputs<B> {
    fn read(dir: &Path, device: &B::Device) -> Result<Self, ModelError> {
        let lengths_file = "input_text_lengths.npy";
        let lengths = npy::from_path(dir.join(lengths_file))?;
        let text_len = match lengths.to_f64() {
            Some(values) if lengths.shape().len() == 1 => {
                values.into_iter().map(|v| v as i64).collect::<Vec<i64>>()
            }
            _ => {
                return Err(input_error(
                    lengths_file,
                    format!(
                        "expected a 1-D numeric array, got shape {:?}",
                        lengths.shape()
                    ),
                ));
            }
        };
        let n = text_len.len();
        Ok(Self {
            text: float_input(dir, "input_text.npy", device)?,
            text_m: float_input(dir, "input_text_m.npy", device)?,
            text_cf: float_input(dir, "input_text_cf.npy", device)?,
            audio: float_input(dir, "input_audio.npy", device)?,
            audio_m: float_input(dir, "input_audio_m.npy", device)?,
            vision: float_input(dir, "input_vision.npy", device)?,
            vision_m: float_input(dir, "input_vision_m.npy", device)?,
            masks: InputMasks {
                text: float_input(dir, "input_text_mask.npy", device)?,
                audio: float_input(dir, "input_audio_mask.npy", device)?,
                vision: float_input(dir, "input_vision_mask.npy", device)?,
                text_len: Tensor::<B, 1, Int>::from_data(TensorData::new(text_len, [n]), device),
            },
            confounders: Confounders {
                feats: float_input(dir, "input_cls_feats.npy", device)?,
                probs: float_input(dir, "input_cls_probs.npy", device)?,
            },
        })
    }

    /// A view from the reference's float `[B, 3, T_l]` text and the audio / vision features.
    fn view(text: &Tensor<B, 3>, audio: &Tensor<B, 3>, vision: &Tensor<B, 3>) -> ViewInput<B> {
        ViewInput {
            text: TextInput::from_bert_rows(text.clone()),
            audio: audio.clone(),
            vision: vision.clone(),
        }
    }
}

/// Reads a float `.npy` of rank `D` into a tensor.
pub fn float_input<B: Backend, const D: usize>(
    dir: &Path,
    file: &str,
    device: &B::Device,
) -> Result<Tensor<B, D>, ModelError> {
    let array = npy::from_path(dir.join(file))?;
    let shape = array.shape().to_vec();
    match array.to_f32() {
        Some(values) if shape.len() == D => {
            Ok(Tensor::from_data(TensorData::new(values, shape), device))
        }
        _ => Err(input_error(
            file,
            format!(
                "expected a numeric array of rank {D}, got {} of shape {shape:?}",
                array.dtype().name()
            ),
        )),
    }
}

fn input_error(file: &str, message: String) -> ModelError {
    ModelError::Input {
        what: file.to_string(),
        message,
    }
}

/// Our outputs by golden name: `(shape, values)`.
#[derive(Default)]
struct Outputs(BTreeMap<String, (Vec<usize>, Vec<f32>)>);

impl Outputs {
    fn put(&mut self, name: &str, data: TensorData) -> Result<(), ModelError> {
        let shape = data.shape.to_vec();
        let values = data
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| input_error(name, format!("output cannot be read as f32: {e:?}")))?;
        self.0.insert(name.to_string(), (shape, values));
        Ok(())
    }

    /// Stores `<prefix>pred<suffix>`, `<prefix>joint_rep<suffix>`, `<prefix>attn<suffix>`.
    fn put_view<B: Backend>(
        &mut self,
        prefix: &str,
        suffix: &str,
        view: &ViewOutput<B>,
    ) -> Result<(), ModelError> {
        self.put(&format!("{prefix}pred{suffix}"), view.pred.to_data())?;
        self.put(
            &format!("{prefix}joint_rep{suffix}"),
            view.joint_rep.to_data(),
        )?;
        self.put(&format!("{prefix}attn{suffix}"), view.attn.to_data())
    }

    fn get(&self, name: &str) -> Option<&(Vec<usize>, Vec<f32>)> {
        self.0.get(name)
    }
}

/// Runs the passes of the golden harness: complete view, missing view, counterfactual view
/// (`text_cf` with the masked audio / vision) and the test-time forward (factual + counterfactual).
fn run_passes<B: Backend>(model: &Cider<B>, x: &GoldenInputs<B>) -> Result<Outputs, ModelError> {
    let view = GoldenInputs::<B>::view;
    let mut out = Outputs::default();

    let complete = model.complete(view(&x.text, &x.audio, &x.vision), &x.masks, &x.confounders)?;
    out.put_view("complete_", "", &complete.view)?;
    out.put("complete_text_for_recon", complete.text_for_recon.to_data())?;

    let missing = model.missing(
        view(&x.text_m, &x.audio_m, &x.vision_m),
        &x.masks,
        &x.confounders,
    )?;
    out.put_view("missing_", "_m", &missing.view)?;
    out.put("missing_text_recon", missing.recon.text.to_data())?;
    out.put("missing_audio_recon", missing.recon.audio.to_data())?;
    out.put("missing_vision_recon", missing.recon.vision.to_data())?;

    let (counterfactual, _) = model.forward_view(
        view(&x.text_cf, &x.audio_m, &x.vision_m),
        &x.masks,
        &x.confounders,
    )?;
    out.put_view("counterfactual_cf_", "_m", &counterfactual)?;

    let test = model.test(
        view(&x.text_m, &x.audio_m, &x.vision_m),
        TextInput::from_bert_rows(x.text_cf.clone()),
        &x.masks,
        &x.confounders,
    )?;
    out.put_view("forward_test_", "_m", &test.factual)?;
    out.put_view("forward_test_cf_", "_m", &test.counterfactual)?;
    Ok(out)
}

/// Compares our output with a reference array.
/// Compares one of our outputs (`(shape, values)`) with a reference `.npy` array: the largest
/// absolute error, or the shape mismatch.
///
/// # Errors
/// [`ModelError::Input`] naming `file` when the reference array is not numeric.
pub fn compare_output(
    (shape, ours): &(Vec<usize>, Vec<f32>),
    reference: &cider_data::NumpyArray,
    file: &str,
) -> Result<GoldenStatus, ModelError> {
    if reference.shape() != shape.as_slice() {
        return Ok(GoldenStatus::ShapeMismatch {
            expected: reference.shape().to_vec(),
            actual: shape.clone(),
        });
    }
    let values = reference.to_f64().ok_or_else(|| {
        input_error(
            file,
            format!("expected a numeric array, got {}", reference.dtype().name()),
        )
    })?;
    let max_abs_error = ours
        .iter()
        .zip(&values)
        .map(|(&a, &b)| (f64::from(a) - b).abs())
        .fold(0.0f64, |m, e| {
            if m.is_nan() || e.is_nan() {
                f64::NAN
            } else {
                m.max(e)
            }
        });
    Ok(GoldenStatus::Checked {
        shape: shape.clone(),
        max_abs_error,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use burn::backend::Flex;

    use super::*;

    fn golden_dir(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/torch-golden")
            .join(name)
    }

    /// Every forward output of the reference within 1e-4, the three training files listed as
    /// not checked.
    fn assert_golden(name: &str) {
        let report = check_golden::<Flex>(&golden_dir(name), None, &Default::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let checked = report
            .entries
            .iter()
            .filter(|e| matches!(e.status, GoldenStatus::Checked { .. }))
            .count();
        let not_checked: Vec<&str> = report
            .entries
            .iter()
            .filter(|e| matches!(e.status, GoldenStatus::NotChecked { .. }))
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(checked, 19, "{report:#?}");
        assert_eq!(
            not_checked,
            ["grads_pass1", "grads_pass2_accumulated", "model_after_step"]
        );
        assert!(report.passes(1e-4), "{report:#?}");
        eprintln!("{name}: max abs error {:?}", report.max_abs_error());
    }

    #[test]
    fn report_fails_on_large_nan_misshaped_and_unknown_outputs() {
        let entry = |name: &str, status| GoldenEntry {
            name: name.into(),
            status,
        };
        let checked = |e| GoldenStatus::Checked {
            shape: vec![2],
            max_abs_error: e,
        };
        let mut report = GoldenReport {
            dir: "d".into(),
            config: "c".into(),
            entries: vec![
                entry("a", checked(5e-5)),
                entry(
                    "t",
                    GoldenStatus::NotChecked {
                        reason: "later".into(),
                    },
                ),
            ],
        };
        assert!(report.passes(1e-4));
        assert!(!report.passes(1e-5));
        assert_eq!(report.max_abs_error(), Some(5e-5));
        for bad in [
            checked(f64::NAN),
            GoldenStatus::ShapeMismatch {
                expected: vec![2],
                actual: vec![3],
            },
            GoldenStatus::Unknown,
        ] {
            report.entries.push(entry("bad", bad));
            let failures: Vec<&str> = report
                .failures(1e-4)
                .iter()
                .map(|e| e.name.as_str())
                .collect();
            assert_eq!(failures, ["bad"]);
            report.entries.pop();
        }
        let text = report.to_text(1e-4);
        assert!(text.contains("a  ok   max abs error 5.000e-5"), "{text}");
        assert!(text.ends_with("PASS\n"), "{text}");
        let json = serde_json::to_value(&report).expect("serialisable");
        assert_eq!(json["entries"][0]["status"], "checked");
        assert_eq!(json["entries"][1]["reason"], "later");
    }

    #[test]
    fn missing_folder_is_an_io_error() {
        let err = check_golden::<Flex>(&golden_dir("no-such-config"), None, &Default::default());
        assert!(matches!(err, Err(ModelError::Io { .. })), "{err:?}");
    }

    #[test]
    fn golden_mosi_aligned_small() {
        assert_golden("mosi-aligned-small");
    }

    #[test]
    fn golden_mosi_unaligned_small() {
        assert_golden("mosi-unaligned-small");
    }
}
