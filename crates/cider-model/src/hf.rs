//! Loading a HuggingFace BERT folder (what `BertModel.from_pretrained(dir)` reads; the
//! reference's "bert_en" folder, docs/method.md §5.1): `config.json`, the weights (`model.safetensors`,
//! else `pytorch_model.bin`) and the tokenizer (`tokenizer.json`, else `vocab.txt`).

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;

use crate::bert::{Bert, BertConfig, load_bert_weights};
use crate::error::ModelError;
use crate::tokenize::WordPieceTokenizer;
use crate::weights::WeightFile;

/// Weight files looked for, in order of preference.
const WEIGHT_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];

/// A HuggingFace BERT folder whose `config.json` has been read.
#[derive(Debug)]
pub struct HfBertFolder {
    /// The folder.
    pub dir: PathBuf,
    /// Its `config.json`; callers may change the dropouts before [`HfBertFolder::load_bert`].
    pub config: BertConfig,
    weights: PathBuf,
}

impl HfBertFolder {
    /// Reads `dir/config.json` and finds the weight file.
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        let config = BertConfig::from_json_file(&dir.join("config.json"))?;
        let weights = WEIGHT_FILES
            .iter()
            .map(|name| dir.join(name))
            .find(|p| p.is_file())
            .ok_or_else(|| ModelError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no weight file (looked for {})", WEIGHT_FILES.join(", ")),
                ),
            })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            weights,
        })
    }

    /// The weight file that [`HfBertFolder::load_bert`] reads.
    pub fn weights_path(&self) -> &Path {
        &self.weights
    }

    /// Builds the encoder from `self.config` and loads the folder's weights into it; the key
    /// prefix (`""` for a bare `BertModel`, `"bert."` for `BertFor*` checkpoints) is detected.
    pub fn load_bert<B: Backend>(&self, device: &B::Device) -> Result<Bert<B>, ModelError> {
        let file = WeightFile::open(&self.weights)?;
        let bert = self.config.init(device)?;
        load_bert_weights(bert, &file, bert_prefix(&file), device)
    }

    /// The folder's tokenizer with rows of length `seq_len` (`T_l`): `tokenizer.json` if
    /// present, else `vocab.txt`, lower-casing unless `tokenizer_config.json` says
    /// `"do_lower_case": false`.
    pub fn tokenizer(&self, seq_len: usize) -> Result<WordPieceTokenizer, ModelError> {
        let json = self.dir.join("tokenizer.json");
        if json.is_file() {
            return WordPieceTokenizer::from_tokenizer_json(&json, seq_len);
        }
        WordPieceTokenizer::from_vocab_txt(&self.dir.join("vocab.txt"), self.lowercase()?, seq_len)
    }

    /// `do_lower_case` from `tokenizer_config.json`, `true` when the file or key is absent.
    fn lowercase(&self) -> Result<bool, ModelError> {
        let path = self.dir.join("tokenizer_config.json");
        if !path.is_file() {
            return Ok(true);
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io {
            path: path.clone(),
            source,
        })?;
        let error = |message: String| ModelError::Config {
            source_name: path.display().to_string(),
            message,
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| error(format!("not valid JSON: {e}")))?;
        match value.get("do_lower_case") {
            None => Ok(true),
            Some(serde_json::Value::Bool(b)) => Ok(*b),
            Some(v) => Err(error(format!(
                "key `do_lower_case`: expected a boolean, got {v}"
            ))),
        }
    }
}

/// The prefix of the BERT weights in a HuggingFace checkpoint: `"bert."` when the file holds a
/// `BertFor*` model (keys `bert.embeddings.*`), `""` for a bare `BertModel`.
pub fn bert_prefix(file: &WeightFile) -> &'static str {
    if file.contains("bert.embeddings.word_embeddings.weight") {
        "bert."
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::{Int, Tensor, TensorData, Tolerance};
    use serde_json::Value;

    type B = Flex;

    fn workspace_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// `CIDER_MINILM_DIR`, else `${CARGO_TARGET_DIR:-target}/minilm` under the workspace root,
    /// where scripts/fetch_minilm.sh puts the model.
    fn minilm_dir() -> PathBuf {
        if let Ok(dir) = std::env::var("CIDER_MINILM_DIR") {
            return PathBuf::from(dir);
        }
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        workspace_root().join(target).join("minilm")
    }

    fn floats(value: &Value) -> Vec<f32> {
        match value {
            Value::Array(items) => items.iter().flat_map(floats).collect(),
            v => vec![v.as_f64().unwrap() as f32],
        }
    }

    fn ints(value: &Value) -> Vec<u32> {
        floats(value).into_iter().map(|v| v as u32).collect()
    }

    /// all-MiniLM-L6-v2 (6 layers, hidden 384) against testdata/minilm/expected.json, written by
    /// scripts/minilm_reference.py (a float64 NumPy BertModel checked against PyTorch; see its
    /// header). Tolerances: f32 against f64 leaves ~1e-6 per value after 6 layers, so 1e-4 on
    /// hidden values and on the unit-norm embedding, 1e-3 on sums of 384 values.
    #[test]
    fn minilm_matches_reference_values() {
        let dir = minilm_dir();
        assert!(
            dir.join("model.safetensors").is_file(),
            "all-MiniLM-L6-v2 not found in {}: run scripts/fetch_minilm.sh (or set CIDER_MINILM_DIR)",
            dir.display()
        );
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(workspace_root().join("testdata/minilm/expected.json"))
                .unwrap(),
        )
        .unwrap();
        let folder = HfBertFolder::open(&dir).unwrap();
        assert_eq!(
            (folder.config.hidden_size, folder.config.num_hidden_layers),
            (384, 6)
        );
        let seq_len = expected["seq_len"].as_u64().unwrap() as usize;
        let sentences: Vec<&str> = expected["sentences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        let batch = sentences.len();

        // Our ids equal the Python `tokenizers` ids, from tokenizer.json and from vocab.txt.
        let rows = folder
            .tokenizer(seq_len)
            .unwrap()
            .encode_all(&sentences)
            .unwrap();
        let from_vocab =
            WordPieceTokenizer::from_vocab_txt(&dir.join("vocab.txt"), true, seq_len).unwrap();
        assert_eq!(from_vocab.encode_all(&sentences).unwrap(), rows);
        let flat = |f: fn(&crate::tokenize::TextBertRows) -> Vec<u32>| {
            rows.iter().flat_map(f).collect::<Vec<u32>>()
        };
        let ids = flat(|r| r.ids.clone());
        let mask = flat(|r| r.attention_mask.iter().map(|&v| v.into()).collect());
        let segments = flat(|r| r.segments.iter().map(|&v| v.into()).collect());
        assert_eq!(ids, ints(&expected["ids"]));
        assert_eq!(mask, ints(&expected["attention_mask"]));
        assert_eq!(segments, ints(&expected["segments"]));

        let device = Default::default();
        let bert = folder.load_bert::<B>(&device).unwrap();
        let int_tensor = |v: &[u32]| {
            let v: Vec<i64> = v.iter().map(|&x| x.into()).collect();
            Tensor::<B, 2, Int>::from_data(TensorData::new(v, [batch, seq_len]), &device)
        };
        let mask_f: Vec<f32> = mask.iter().map(|&v| v as f32).collect();
        let mask_t = Tensor::<B, 2>::from_data(TensorData::new(mask_f, [batch, seq_len]), &device);
        let hidden = bert.forward(int_tensor(&ids), mask_t.clone(), int_tensor(&segments));

        let dims = expected["first_dims"].as_u64().unwrap() as usize;
        let first = hidden.clone().slice([0..batch, 0..seq_len, 0..dims]);
        first.into_data().assert_approx_eq::<f32>(
            &TensorData::new(
                floats(&expected["hidden_first_dims"]),
                [batch, seq_len, dims],
            ),
            Tolerance::absolute(1e-4),
        );
        let sums = hidden.clone().sum_dim(2).reshape([batch, seq_len]);
        sums.into_data().assert_approx_eq::<f32>(
            &TensorData::new(floats(&expected["hidden_token_sums"]), [batch, seq_len]),
            Tolerance::absolute(1e-3),
        );
        // Sentence-transformers pooling: masked mean over tokens, then L2 normalisation.
        let m = mask_t.unsqueeze_dim::<3>(2); // [batch, seq, 1]
        let pooled = (hidden * m.clone()).sum_dim(1) / m.sum_dim(1); // [batch, 1, 384]
        let norm = pooled.clone().powi_scalar(2).sum_dim(2).sqrt();
        let embedding = (pooled / norm).reshape([batch, 384]);
        embedding.into_data().assert_approx_eq::<f32>(
            &TensorData::new(floats(&expected["mean_pooled_normalized"]), [batch, 384]),
            Tolerance::absolute(1e-4),
        );
    }

    #[test]
    fn prefix_is_detected_and_missing_weights_are_reported() {
        use safetensors::{Dtype, tensor::TensorView};
        let one = 1.0f32.to_le_bytes();
        let file = |key: &str| {
            let view = TensorView::new(Dtype::F32, vec![1], &one).unwrap();
            let bytes = safetensors::serialize([(key, view)], None).unwrap();
            WeightFile::safetensors_from_bytes("w.safetensors".into(), bytes).unwrap()
        };
        assert_eq!(
            bert_prefix(&file("bert.embeddings.word_embeddings.weight")),
            "bert."
        );
        assert_eq!(bert_prefix(&file("embeddings.word_embeddings.weight")), "");

        let dir = std::env::temp_dir().join(format!("cider-hf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = r#"{"vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 4, "max_position_embeddings": 6}"#;
        std::fs::write(dir.join("config.json"), config).unwrap();
        let err = HfBertFolder::open(&dir).unwrap_err().to_string();
        assert!(
            err.contains("no weight file") && err.contains("model.safetensors"),
            "{err}"
        );
        // A checkpoint of another model: every BERT key is missing, its own key unexpected.
        std::fs::write(
            dir.join("model.safetensors"),
            safetensors::serialize(
                [(
                    "head.w",
                    TensorView::new(Dtype::F32, vec![1], &one).unwrap(),
                )],
                None,
            )
            .unwrap(),
        )
        .unwrap();
        let folder = HfBertFolder::open(&dir).unwrap();
        let Err(ModelError::Weights {
            missing,
            unexpected,
            ..
        }) = folder.load_bert::<B>(&Default::default())
        else {
            panic!("loading an unrelated checkpoint must fail");
        };
        assert_eq!(unexpected, ["head.w"]);
        assert_eq!(missing.len(), 5 + 16);
        assert!(missing.contains(&"encoder.layer.0.attention.self.query.weight".to_string()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
