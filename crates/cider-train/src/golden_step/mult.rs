//! The golden check of MulT (docs/method.md §13.2) against MMSA's own `MULT`: a folder of
//! `../shared/fixtures/mult-golden` (its `golden.json` names MMSA's MULT) holds the weights under
//! MMSA's key names, the inputs, the eval-mode outputs and the gradients of
//! `mean NLL(log_softmax(M), labels)`.
//!
//! The model is built from `mult_args` with the linear head (MMSA's `out_layer`), loaded from
//! `model.safetensors`, run on the inputs (forward outputs compared by largest absolute error,
//! as [`check_golden`](cider_maci::golden::check_golden) does) and differentiated once
//! (gradients compared with the tolerance rule of the [parent module](super): the key third of
//! every `in_proj_bias` has a true gradient of zero, which both sides return as rounding noise).

use std::path::Path;

use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor};
use cider_data::npy;
use cider_maci::full_model::{Cider, CiderConfig, Classifier};
use cider_maci::golden::{GoldenEntry, GoldenReport, GoldenStatus, compare_output, float_input};
use cider_model::ModelError;
use cider_model::backbone::{BackboneKind, Network};
use cider_model::mult::MultOptions;
use cider_model::network_config::{Alignment, NetworkConfig, NetworkOptions};
use serde_json::Value;

use super::compare::compare_gradients;
use super::folder::{config_error, load_as_model};
use super::params::{gradient_values, param_values};
use super::report::{LossComparison, StepCheckReport};
use crate::mssd::losses::nll;
use crate::mssd::read_loss;

/// Whether the golden folder `dir` is one of MMSA's MulT (its `golden.json` `source` names
/// `MULT`).
pub fn is_mult_golden(dir: &Path) -> bool {
    read_golden(dir).is_ok_and(|(golden, _)| {
        golden
            .get("source")
            .and_then(Value::as_str)
            .is_some_and(|s| s.contains("MULT"))
    })
}

/// Runs the MulT golden check on `dir` (weights from `weights` when given, else
/// `DIR/model.safetensors`): the forward outputs, then the loss and every parameter's gradient.
///
/// # Errors
/// [`ModelError`] for missing or malformed files and weights that do not fit. Numeric
/// differences are in the reports.
pub fn check_mult_golden<B: AutodiffBackend>(
    dir: &Path,
    weights: Option<&Path>,
    device: &B::Device,
) -> Result<(GoldenReport, StepCheckReport), ModelError> {
    let (golden, source) = read_golden(dir)?;
    let config = mult_config(&golden, &source)?;
    let weights = weights.map_or_else(|| dir.join("model.safetensors"), Path::to_path_buf);
    let model: Cider<B> = config.init(device)?.load_reference(&weights, device)?;

    let text: Tensor<B, 3> = float_input(dir, "input_text.npy", device)?;
    let audio: Tensor<B, 3> = float_input(dir, "input_audio.npy", device)?;
    let vision: Tensor<B, 3> = float_input(dir, "input_vision.npy", device)?;
    let labels = npy::from_path(dir.join("input_labels.npy"))?
        .to_f64()
        .ok_or_else(|| config_error(&source, "input_labels.npy: expected a numeric array"))?;
    let labels: Vec<i64> = labels.iter().map(|&v| v as i64).collect();
    let labels = Tensor::<B, 1, Int>::from_ints(labels.as_slice(), device);

    let Network::Mult(mult) = &model.network else {
        return Err(config_error(&source, "the configuration built no MulT"));
    };
    let head = model
        .linear_head
        .as_ref()
        .ok_or_else(|| config_error(&source, "the configuration built no linear head"))?;
    let out = mult.forward_features(text, audio, vision);
    let logits = head.forward(out.joint_rep.clone()); // [B, C]
    let outputs = [
        ("M", logits.clone()),
        ("Feature_t", out.text),
        ("Feature_a", out.audio),
        ("Feature_v", out.vision),
        ("Feature_f", out.fused),
    ];
    let mut entries = Vec::new();
    for (name, tensor) in outputs {
        let file = format!("output_{name}.npy");
        let path = dir.join(&file);
        if !path.is_file() {
            continue;
        }
        let ours = (
            tensor.dims().to_vec(),
            tensor
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .unwrap_or_default(),
        );
        entries.push(GoldenEntry {
            name: name.to_string(),
            status: compare_output(&ours, &npy::from_path(&path)?, &file)?,
        });
    }
    if entries.is_empty() {
        entries.push(GoldenEntry {
            name: "output_M".into(),
            status: GoldenStatus::Unknown,
        });
    }

    let loss = nll(log_softmax(logits, 1), labels);
    let loss_value = read_loss(loss.clone());
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let ours = gradient_values(&model, &grads);
    let reference = param_values(&load_as_model::<B::InnerBackend>(
        &config,
        &dir.join("grads.safetensors"),
        device,
    )?);
    let reference_loss = golden
        .get("loss")
        .and_then(Value::as_f64)
        .ok_or_else(|| config_error(&source, "missing number `loss`"))?;
    let name = golden
        .get("source")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let forward = GoldenReport {
        dir: dir.display().to_string(),
        config: name.clone(),
        entries,
    };
    let step = StepCheckReport {
        dir: dir.display().to_string(),
        config: name,
        losses: vec![LossComparison {
            name: "nll".into(),
            ours: loss_value,
            reference: reference_loss,
            relative_error: (loss_value - reference_loss).abs() / reference_loss.abs(),
        }],
        files: vec![compare_gradients("grads", &ours, &reference)],
    };
    Ok((forward, step))
}

/// `golden.json` of `dir` and its path (for errors).
fn read_golden(dir: &Path) -> Result<(Value, String), ModelError> {
    let path = dir.join("golden.json");
    let source = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| ModelError::Io {
        path: path.clone(),
        source: e,
    })?;
    let golden = serde_json::from_str(&text).map_err(|e| ModelError::Config {
        source_name: source.clone(),
        message: format!("not valid JSON: {e}"),
    })?;
    Ok((golden, source))
}

/// The model of `mult_args` (MMSA's argument names), `lens` and `num_classes`, with the linear
/// head that holds `out_layer`.
fn mult_config(golden: &Value, source: &str) -> Result<CiderConfig, ModelError> {
    let args = golden
        .get("mult_args")
        .ok_or_else(|| config_error(source, "missing object `mult_args`"))?;
    let number = |v: Option<&Value>, key: &str| {
        v.and_then(Value::as_f64)
            .ok_or_else(|| config_error(source, &format!("`{key}`: expected a number")))
    };
    let size = |v: Option<&Value>, key: &str| {
        v.and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| config_error(source, &format!("`{key}`: expected a size")))
    };
    let arg = |key: &str| number(args.get(key), &format!("mult_args.{key}"));
    let list = |key: &str, i: usize| {
        size(
            args.get(key).and_then(|l| l.get(i)),
            &format!("mult_args.{key}[{i}]"),
        )
    };
    if args.get("use_bert").and_then(Value::as_bool) != Some(false) {
        return Err(config_error(
            source,
            "`mult_args.use_bert`: only precomputed text features (false) are checked",
        ));
    }
    let kernel = |m: &str| size(args.get(format!("conv1d_kernel_size_{m}").as_str()), m);
    let mult = MultOptions {
        width: list("dst_feature_dim_nheads", 0)?,
        num_heads: list("dst_feature_dim_nheads", 1)?,
        levels: size(args.get("nlevels"), "mult_args.nlevels")?,
        kernels: [kernel("l")?, kernel("a")?, kernel("v")?],
        attn_dropout: arg("attn_dropout")?,
        attn_dropout_a: arg("attn_dropout_a")?,
        attn_dropout_v: arg("attn_dropout_v")?,
        relu_dropout: arg("relu_dropout")?,
        embed_dropout: arg("embed_dropout")?,
        res_dropout: arg("res_dropout")?,
        output_dropout: arg("output_dropout")?,
        text_dropout: arg("text_dropout")?,
        future_mask: args
            .get("attn_mask")
            .and_then(Value::as_bool)
            .ok_or_else(|| config_error(source, "`mult_args.attn_mask`: expected a boolean"))?,
    };
    let lens = golden.get("lens");
    let len = |m: &str| size(lens.and_then(|l| l.get(m)), &format!("lens.{m}"));
    let (t_l, t_a, t_v) = (len("text")?, len("audio")?, len("vision")?);
    let alignment = if t_a == t_l && t_v == t_l {
        Alignment::Aligned
    } else {
        Alignment::Unaligned
    };
    let network = NetworkConfig::new(
        list("feature_dims", 0)?,
        list("feature_dims", 1)?,
        list("feature_dims", 2)?,
        t_l,
        t_a,
        t_v,
        alignment,
    )
    .with_options(NetworkOptions {
        backbone: BackboneKind::Mult,
        mult,
        ..NetworkOptions::default()
    });
    let classes = size(args.get("num_classes"), "mult_args.num_classes")?;
    Ok(CiderConfig::new(network, classes).with_classifier(Classifier::Linear))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use burn::backend::flex::FlexDevice;
    use burn::backend::{Autodiff, Flex};

    use burn::module::Module;

    use super::*;
    use crate::golden_step::STEP_TOLERANCE;

    fn small() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/mult-golden/mult-mosi-aligned-small")
    }

    /// MMSA's MulT reproduced: outputs within 1e-4, the loss and every gradient within
    /// [`STEP_TOLERANCE`] of the reference.
    #[test]
    fn small_mult_matches_mmsa() {
        let _rng = crate::testkit::backend_rng();
        assert!(is_mult_golden(&small()));
        let (forward, step) =
            check_mult_golden::<Autodiff<Flex>>(&small(), None, &FlexDevice).expect("check runs");
        assert!(forward.passes(1e-4), "{}", forward.to_text(1e-4));
        assert_eq!(forward.entries.len(), 5);
        assert!(
            step.passes(STEP_TOLERANCE),
            "{:?}",
            step.failures(STEP_TOLERANCE)
        );
        let grads = &step.files[0];
        assert!(grads.missing.is_empty() && grads.unexpected.is_empty());
        // Every MulT parameter but the unused projections' has a reference gradient.
        assert!(grads.tensors.len() > 100, "{}", grads.tensors.len());
    }

    /// The parameter counts MMSA's MulT has (`golden.json` `parameters`), plus the CIDer-side
    /// MCM that is built but unused with the linear head.
    #[test]
    fn parameter_count_matches_mmsa() {
        let _rng = crate::testkit::backend_rng();
        let (golden, source) = read_golden(&small()).expect("golden.json");
        let config = mult_config(&golden, &source).expect("config");
        let model: Cider<Flex> = config.init(&FlexDevice).expect("model");
        let Network::Mult(mult) = &model.network else {
            panic!("MulT expected")
        };
        let head = model.linear_head.as_ref().expect("head").num_params();
        let expected = golden["parameters"].as_u64().expect("parameters") as usize;
        assert_eq!(mult.num_params() + head, expected);
    }
}
