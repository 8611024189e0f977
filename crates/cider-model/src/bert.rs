//! The BERT text encoder (docs/method.md §5.1): HuggingFace `BertModel` without its pooler, written as
//! plain Burn modules so that HuggingFace key names map one to one onto fields.
//!
//! CIDer feeds it the MMSA `text_bert` rows (ids, attention mask, segment ids), each `[B, T_l]`,
//! and uses the last hidden states `X_l` `[B, T_l, d_l]` (`d_l` = 768 for `bert-base-uncased`).
//! The maths follows HuggingFace's eager attention exactly: additive `f32::MIN` on masked keys,
//! LayerNorm with `layer_norm_eps` (1e-12), exact erf GELU, post-norm residuals, and no gradient
//! into the word-embedding row of the padding token (PyTorch's `padding_idx`).

use std::path::Path;

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use serde_json::{Map, Value};

use crate::error::ModelError;
use crate::kernels;
use crate::weights::{WeightFile, WeightLoader};

/// The architecture of a BERT encoder, mirroring the keys of a HuggingFace `config.json`.
///
/// Keys with a HuggingFace default may be absent from the file and take that default; the six
/// size keys are required. Only `hidden_act = "gelu"` (exact erf) and absolute position
/// embeddings are supported.
#[derive(Config, Debug)]
pub struct BertConfig {
    /// Word-piece vocabulary size (`vocab_size`; 30,522 for `bert-base-uncased`).
    pub vocab_size: usize,
    /// Width of every hidden state, `d_l` in docs/method.md (`hidden_size`; 768).
    pub hidden_size: usize,
    /// Number of encoder layers (`num_hidden_layers`; 12).
    pub num_hidden_layers: usize,
    /// Attention heads per layer (`num_attention_heads`; 12); must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Width of the feed-forward block (`intermediate_size`; 3072).
    pub intermediate_size: usize,
    /// Longest sequence the position table covers (`max_position_embeddings`; 512), `T_l ≤` it.
    pub max_position_embeddings: usize,
    /// Number of segment (token type) ids (`type_vocab_size`).
    #[config(default = 2)]
    pub type_vocab_size: usize,
    /// Dropout after the embeddings and after each residual branch (`hidden_dropout_prob`).
    #[config(default = 0.1)]
    pub hidden_dropout_prob: f64,
    /// Dropout on the attention probabilities (`attention_probs_dropout_prob`).
    #[config(default = 0.1)]
    pub attention_probs_dropout_prob: f64,
    /// LayerNorm ε (`layer_norm_eps`).
    #[config(default = 1e-12)]
    pub layer_norm_eps: f64,
    /// Standard deviation of the random normal initialisation (`initializer_range`).
    #[config(default = 0.02)]
    pub initializer_range: f64,
    /// Id of `[PAD]` (`pad_token_id`): its embedding row starts at zero and gets no gradient.
    #[config(default = 0)]
    pub pad_token_id: usize,
}

impl BertConfig {
    /// The `bert-base-uncased` architecture (docs/method.md §5.1) with its dropouts of 0.1.
    pub fn bert_base_uncased() -> Self {
        Self::new(30_522, 768, 12, 12, 3072, 512)
    }

    /// Reads a HuggingFace `config.json`.
    ///
    /// Unknown keys are ignored (HuggingFace files carry many); a wrongly typed key, a missing
    /// size key, `hidden_act` other than `"gelu"`, or `position_embedding_type` other than
    /// `"absolute"` is a [`ModelError::Config`] naming the file and the key.
    pub fn from_json_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    /// Parses the text of a HuggingFace `config.json`; `source_name` names it in errors.
    pub fn from_json_str(text: &str, source_name: &str) -> Result<Self, ModelError> {
        let error = |message: String| ModelError::Config {
            source_name: source_name.to_string(),
            message,
        };
        let value: Value =
            serde_json::from_str(text).map_err(|e| error(format!("not valid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(error("expected a JSON object at the top level".into()));
        };
        let fields = JsonFields { map: &map, error };
        let mut config = Self::new(
            fields.usize("vocab_size")?,
            fields.usize("hidden_size")?,
            fields.usize("num_hidden_layers")?,
            fields.usize("num_attention_heads")?,
            fields.usize("intermediate_size")?,
            fields.usize("max_position_embeddings")?,
        );
        if let Some(v) = fields.optional_usize("type_vocab_size")? {
            config.type_vocab_size = v;
        }
        if let Some(v) = fields.optional_f64("hidden_dropout_prob")? {
            config.hidden_dropout_prob = v;
        }
        if let Some(v) = fields.optional_f64("attention_probs_dropout_prob")? {
            config.attention_probs_dropout_prob = v;
        }
        if let Some(v) = fields.optional_f64("layer_norm_eps")? {
            config.layer_norm_eps = v;
        }
        if let Some(v) = fields.optional_f64("initializer_range")? {
            config.initializer_range = v;
        }
        if let Some(v) = fields.optional_usize("pad_token_id")? {
            config.pad_token_id = v;
        }
        fields.require_string("hidden_act", "gelu")?;
        fields.require_string("position_embedding_type", "absolute")?;
        config.validate().map_err(|e| match e {
            ModelError::Config { message, .. } => error(message),
            other => other,
        })?;
        Ok(config)
    }

    /// Checks the sizes are usable: non-zero, heads dividing `hidden_size`, probabilities in
    /// `[0, 1)`, ε > 0, the padding id inside the vocabulary.
    pub fn validate(&self) -> Result<(), ModelError> {
        let error = |message: String| {
            Err(ModelError::Config {
                source_name: "BertConfig".into(),
                message,
            })
        };
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        if let Some((key, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return error(format!("key `{key}` must be positive"));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return error(format!(
                "key `num_attention_heads` ({}) must divide `hidden_size` ({})",
                self.num_attention_heads, self.hidden_size
            ));
        }
        for (key, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return error(format!("key `{key}` must be in [0, 1), got {p}"));
            }
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return error(format!(
                "key `layer_norm_eps` must be positive, got {}",
                self.layer_norm_eps
            ));
        }
        if !(self.initializer_range >= 0.0 && self.initializer_range.is_finite()) {
            return error(format!(
                "key `initializer_range` must be non-negative, got {}",
                self.initializer_range
            ));
        }
        if self.pad_token_id >= self.vocab_size {
            return error(format!(
                "key `pad_token_id` ({}) must be below `vocab_size` ({})",
                self.pad_token_id, self.vocab_size
            ));
        }
        Ok(())
    }

    /// Parameters of the [`Bert`] module (embeddings and encoder layers, no pooler).
    pub fn num_params(&self) -> usize {
        let (h, i) = (self.hidden_size, self.intermediate_size);
        let embeddings =
            (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * h + 2 * h;
        let attention = 4 * (h * h + h) + 2 * h;
        let feed_forward = (h * i + i) + (i * h + h) + 2 * h;
        embeddings + self.num_hidden_layers * (attention + feed_forward)
    }

    /// Parameters of HuggingFace's `BertModel` including its unused pooler (`h² + h`): the
    /// number the reference prints (docs/method.md §10: 109,482,240 for `bert-base-uncased`).
    pub fn num_params_with_pooler(&self) -> usize {
        self.num_params() + self.hidden_size * self.hidden_size + self.hidden_size
    }

    /// Builds a randomly initialised encoder as HuggingFace does: weights `N(0,
    /// initializer_range)`, biases 0, LayerNorm γ = 1 and β = 0, the `[PAD]` row zero.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Bert<B>, ModelError> {
        self.validate()?;
        let normal = Initializer::Normal {
            mean: 0.0,
            std: self.initializer_range,
        };
        let embedding = |n: usize| {
            EmbeddingConfig::new(n, self.hidden_size)
                .with_initializer(normal.clone())
                .init(device)
        };
        let mut word_embeddings = embedding(self.vocab_size);
        let (pad, hidden) = (self.pad_token_id, self.hidden_size);
        word_embeddings.weight = word_embeddings.weight.init_mapper(move |w: Tensor<B, 2>| {
            // Rebuilt from its values so that the parameter stays a leaf of the autodiff graph.
            let (require_grad, device) = (w.is_require_grad(), w.device());
            let zeros = Tensor::zeros([1, hidden], &device);
            let values = w.slice_assign([pad..pad + 1, 0..hidden], zeros).into_data();
            Tensor::from_data(values, &device).set_require_grad(require_grad)
        });
        let embeddings = BertEmbeddings {
            word_embeddings,
            position_embeddings: embedding(self.max_position_embeddings),
            token_type_embeddings: embedding(self.type_vocab_size),
            layer_norm: self.layer_norm(device),
            dropout: DropoutConfig::new(self.hidden_dropout_prob).init(),
            pad_token_id: self.pad_token_id,
        };
        let layers = (0..self.num_hidden_layers)
            .map(|_| self.init_layer(device))
            .collect();
        Ok(Bert { embeddings, layers })
    }

    fn init_layer<B: Backend>(&self, device: &B::Device) -> BertLayer<B> {
        let (h, i) = (self.hidden_size, self.intermediate_size);
        let hidden_dropout = DropoutConfig::new(self.hidden_dropout_prob);
        BertLayer {
            attention: BertAttention {
                query: self.linear(h, h, device),
                key: self.linear(h, h, device),
                value: self.linear(h, h, device),
                output: self.linear(h, h, device),
                layer_norm: self.layer_norm(device),
                probs_dropout: DropoutConfig::new(self.attention_probs_dropout_prob).init(),
                output_dropout: hidden_dropout.init(),
                num_heads: self.num_attention_heads,
            },
            intermediate: self.linear(h, i, device),
            output: self.linear(i, h, device),
            layer_norm: self.layer_norm(device),
            dropout: hidden_dropout.init(),
        }
    }

    fn linear<B: Backend>(&self, d_in: usize, d_out: usize, device: &B::Device) -> Linear<B> {
        let mut linear = LinearConfig::new(d_in, d_out)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: self.initializer_range,
            })
            .init(device);
        linear.bias = Some(Initializer::Zeros.init([d_out], device));
        linear
    }

    fn layer_norm<B: Backend>(&self, device: &B::Device) -> LayerNorm<B> {
        LayerNormConfig::new(self.hidden_size)
            .with_epsilon(self.layer_norm_eps)
            .init(device)
    }
}

/// Typed access to the keys of a `config.json` object, with errors naming the key.
struct JsonFields<'a, E: Fn(String) -> ModelError> {
    map: &'a Map<String, Value>,
    error: E,
}

impl<E: Fn(String) -> ModelError> JsonFields<'_, E> {
    fn usize(&self, key: &str) -> Result<usize, ModelError> {
        self.optional_usize(key)?
            .ok_or_else(|| (self.error)(format!("missing key `{key}`")))
    }

    fn optional_usize(&self, key: &str) -> Result<Option<usize>, ModelError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    (self.error)(format!(
                        "key `{key}`: expected a non-negative integer, got {v}"
                    ))
                }),
        }
    }

    fn optional_f64(&self, key: &str) -> Result<Option<f64>, ModelError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| (self.error)(format!("key `{key}`: expected a number, got {v}"))),
        }
    }

    /// An optional string key whose only supported value is `expected`.
    fn require_string(&self, key: &str, expected: &str) -> Result<(), ModelError> {
        match self.map.get(key) {
            None => Ok(()),
            Some(Value::String(s)) if s == expected => Ok(()),
            Some(v) => Err((self.error)(format!(
                "key `{key}`: only \"{expected}\" is supported, got {v}"
            ))),
        }
    }
}

/// HuggingFace `BertModel` without the pooler: embeddings and `num_hidden_layers` post-norm
/// encoder layers.
#[derive(Module, Debug)]
pub struct Bert<B: Backend> {
    /// Word + position + segment embeddings, LayerNorm and dropout.
    pub embeddings: BertEmbeddings<B>,
    /// The encoder layers, HuggingFace's `encoder.layer.{i}`.
    pub layers: Vec<BertLayer<B>>,
}

impl<B: Backend> Bert<B> {
    /// Encodes MMSA `text_bert` rows into the last hidden states `X_l`.
    ///
    /// # Shapes
    ///
    /// - `ids`: `[batch, seq]` word-piece ids (< `vocab_size`)
    /// - `attention_mask`: `[batch, seq]`, 1 on real tokens and 0 on padding
    /// - `token_types`: `[batch, seq]` segment ids (< `type_vocab_size`)
    /// - output: `[batch, seq, hidden_size]`
    ///
    /// `seq` must not exceed [`Bert::max_seq_len`]; ids outside the tables are the caller's
    /// responsibility (the data layer validates them), as in every Burn embedding.
    pub fn forward(
        &self,
        ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2>,
        token_types: Tensor<B, 2, Int>,
    ) -> Tensor<B, 3> {
        let hidden = self.embeddings.forward(ids, token_types); // [batch, seq, hidden]
        let mask_bias = attention_bias(attention_mask); // [batch, 1, 1, seq]
        self.layers
            .iter()
            .fold(hidden, |x, layer| layer.forward(x, mask_bias.clone()))
    }

    /// Longest sequence the position table covers (`max_position_embeddings`).
    pub fn max_seq_len(&self) -> usize {
        self.embeddings.position_embeddings.weight.lazy_shape()[0]
    }

    /// Width of the hidden states, `d_l` (`hidden_size`).
    pub fn hidden_size(&self) -> usize {
        self.embeddings.word_embeddings.weight.lazy_shape()[1]
    }
}

/// Turns a 0/1 attention mask `[batch, seq]` into HuggingFace's additive bias
/// `(1 − mask) · f32::MIN`, shaped `[batch, 1, 1, seq]` to broadcast over heads and queries.
fn attention_bias<B: Backend>(attention_mask: Tensor<B, 2>) -> Tensor<B, 4> {
    attention_mask
        .neg()
        .add_scalar(1.0)
        .mul_scalar(f32::MIN)
        .unsqueeze_dims(&[1, 2])
}

/// The embedding block: `LayerNorm(word[ids] + segment[types] + position[0..seq])`, then dropout.
#[derive(Module, Debug)]
pub struct BertEmbeddings<B: Backend> {
    /// `[vocab_size, hidden]`, HuggingFace `embeddings.word_embeddings`.
    pub word_embeddings: Embedding<B>,
    /// `[max_position_embeddings, hidden]`, HuggingFace `embeddings.position_embeddings`.
    pub position_embeddings: Embedding<B>,
    /// `[type_vocab_size, hidden]`, HuggingFace `embeddings.token_type_embeddings`.
    pub token_type_embeddings: Embedding<B>,
    /// HuggingFace `embeddings.LayerNorm`.
    pub layer_norm: LayerNorm<B>,
    /// `hidden_dropout_prob`.
    pub dropout: Dropout,
    /// Id whose word-embedding row receives no gradient.
    pad_token_id: usize,
}

impl<B: Backend> BertEmbeddings<B> {
    /// # Shapes
    ///
    /// - `ids`, `token_types`: `[batch, seq]`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, ids: Tensor<B, 2, Int>, token_types: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [batch, seq] = ids.dims();
        let device = ids.device();
        let mut words = self.word_embeddings.forward(ids.clone()); // [batch, seq, hidden]
        if B::ad_enabled(&device) {
            // PyTorch's `padding_idx`: the `[PAD]` row keeps its value but gets no gradient.
            let hidden = words.dims()[2];
            let is_pad = ids
                .equal_elem(self.pad_token_id as i64)
                .unsqueeze_dim::<3>(2)
                .expand([batch, seq, hidden]); // [batch, seq, hidden]
            words = words.clone().mask_where(is_pad, words.detach());
        }
        let types = self.token_type_embeddings.forward(token_types); // [batch, seq, hidden]
        let positions = Tensor::<B, 1, Int>::arange(0..seq as i64, &device).unsqueeze::<2>(); // [1, seq]
        let positions = self.position_embeddings.forward(positions); // [1, seq, hidden]
        let x = words + types + positions; // [batch, seq, hidden]
        kernels::dropout(self.layer_norm.forward(x), &self.dropout)
    }
}

/// One post-norm encoder layer, HuggingFace `encoder.layer.{i}`.
#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    /// Multi-head self-attention with its residual LayerNorm (`attention.*`).
    pub attention: BertAttention<B>,
    /// `hidden → intermediate`, followed by exact GELU (`intermediate.dense`).
    pub intermediate: Linear<B>,
    /// `intermediate → hidden` (`output.dense`).
    pub output: Linear<B>,
    /// Residual LayerNorm of the feed-forward block (`output.LayerNorm`).
    pub layer_norm: LayerNorm<B>,
    /// `hidden_dropout_prob`, on the feed-forward output before the residual.
    pub dropout: Dropout,
}

impl<B: Backend> BertLayer<B> {
    /// # Shapes
    ///
    /// - `x`: `[batch, seq, hidden]`
    /// - `mask_bias`: `[batch, 1, 1, seq]` additive attention bias
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>, mask_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let attended = self.attention.forward(x, mask_bias); // [batch, seq, hidden]
        let inner = gelu_exact(self.intermediate.forward(attended.clone())); // [batch, seq, inter]
        let out = kernels::dropout(self.output.forward(inner), &self.dropout); // [batch, seq, hidden]
        self.layer_norm.forward(out + attended)
    }
}

/// Multi-head self-attention, HuggingFace `attention.self` + `attention.output`; head `h` owns
/// features `[h·hd, (h+1)·hd)` of q, k, v and of the merged context.
#[derive(Module, Debug)]
pub struct BertAttention<B: Backend> {
    /// `attention.self.query`.
    pub query: Linear<B>,
    /// `attention.self.key`.
    pub key: Linear<B>,
    /// `attention.self.value`.
    pub value: Linear<B>,
    /// `attention.output.dense`.
    pub output: Linear<B>,
    /// `attention.output.LayerNorm`.
    pub layer_norm: LayerNorm<B>,
    /// `attention_probs_dropout_prob`, on the attention probabilities.
    pub probs_dropout: Dropout,
    /// `hidden_dropout_prob`, on the projected output before the residual.
    pub output_dropout: Dropout,
    /// Number of heads.
    num_heads: usize,
}

impl<B: Backend> BertAttention<B> {
    /// `LayerNorm(x + dropout(W_o · softmax(q kᵀ / √hd + mask_bias) v))`.
    ///
    /// # Shapes
    ///
    /// - `x`: `[batch, seq, hidden]`
    /// - `mask_bias`: `[batch, 1, 1, seq]`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>, mask_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let [batch, seq, hidden] = x.dims();
        let head_dim = hidden / self.num_heads;
        let split = |t: Tensor<B, 3>| {
            t.reshape([batch, seq, self.num_heads, head_dim])
                .swap_dims(1, 2) // [batch, heads, seq, hd]
        };
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x.clone()));
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .div_scalar((head_dim as f64).sqrt())
            + mask_bias; // [batch, heads, seq, seq]
        let probs = kernels::dropout(softmax(scores, 3), &self.probs_dropout);
        let context = probs
            .matmul(v) // [batch, heads, seq, hd]
            .swap_dims(1, 2)
            .reshape([batch, seq, hidden]);
        let out = kernels::dropout(self.output.forward(context), &self.output_dropout); // [batch, seq, hidden]
        self.layer_norm.forward(out + x)
    }
}

/// Exact GELU, `x · ½ · (1 + erf(x / √2))`, built from `erf` so that forward and backward are
/// exact on every backend (some backends' fused GELU backward uses the tanh approximation).
pub fn gelu_exact<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let cdf = x
        .clone()
        .mul_scalar(std::f64::consts::FRAC_1_SQRT_2)
        .erf()
        .add_scalar(1.0)
        .mul_scalar(0.5);
    x * cdf
}

/// Keys of a HuggingFace BERT checkpoint that the encoder does not use: the pooler and the
/// `position_ids` buffer (relative to the BERT prefix).
pub fn is_unused_bert_key(key: &str) -> bool {
    key.starts_with("pooler.") || key == "embeddings.position_ids"
}

/// Loads HuggingFace BERT weights from a safetensors file into `bert`.
///
/// `prefix` selects the BERT inside the file: `""` for a bare `BertModel` (all-MiniLM),
/// `"bert."` for `BertFor*` checkpoints, `"text_model.model."` for the CIDer reference
/// `state_dict`. Keys outside the prefix are ignored, as are `pooler.*` and
/// `embeddings.position_ids`; any other missing, unexpected or mis-shaped key is reported in one
/// [`ModelError::Weights`].
pub fn load_bert_safetensors<B: Backend>(
    bert: Bert<B>,
    path: &Path,
    prefix: &str,
    device: &B::Device,
) -> Result<Bert<B>, ModelError> {
    let file = WeightFile::read_safetensors(path)?;
    load_bert_weights(bert, &file, prefix, device)
}

/// [`load_bert_safetensors`] from an already opened [`WeightFile`] (safetensors or PyTorch).
pub fn load_bert_weights<B: Backend>(
    bert: Bert<B>,
    file: &WeightFile,
    prefix: &str,
    device: &B::Device,
) -> Result<Bert<B>, ModelError> {
    let mut loader = WeightLoader::new(file, prefix, device);
    let bert = load_into(bert, &mut loader);
    loader.finish(is_unused_bert_key)?;
    Ok(bert)
}

/// Moves every tensor of `bert` through `loader`, under HuggingFace key names.
fn load_into<B: Backend>(bert: Bert<B>, loader: &mut WeightLoader<'_, B>) -> Bert<B> {
    let e = bert.embeddings;
    let embeddings = BertEmbeddings {
        word_embeddings: loader.embedding(e.word_embeddings, "embeddings.word_embeddings"),
        position_embeddings: loader
            .embedding(e.position_embeddings, "embeddings.position_embeddings"),
        token_type_embeddings: loader
            .embedding(e.token_type_embeddings, "embeddings.token_type_embeddings"),
        layer_norm: loader.layer_norm(e.layer_norm, "embeddings.LayerNorm"),
        dropout: e.dropout,
        pad_token_id: e.pad_token_id,
    };
    let layers = bert
        .layers
        .into_iter()
        .enumerate()
        .map(|(i, layer)| {
            let key = |name: &str| format!("encoder.layer.{i}.{name}");
            let a = layer.attention;
            BertLayer {
                attention: BertAttention {
                    query: loader.linear(a.query, &key("attention.self.query")),
                    key: loader.linear(a.key, &key("attention.self.key")),
                    value: loader.linear(a.value, &key("attention.self.value")),
                    output: loader.linear(a.output, &key("attention.output.dense")),
                    layer_norm: loader.layer_norm(a.layer_norm, &key("attention.output.LayerNorm")),
                    probs_dropout: a.probs_dropout,
                    output_dropout: a.output_dropout,
                    num_heads: a.num_heads,
                },
                intermediate: loader.linear(layer.intermediate, &key("intermediate.dense")),
                output: loader.linear(layer.output, &key("output.dense")),
                layer_norm: loader.layer_norm(layer.layer_norm, &key("output.LayerNorm")),
                dropout: layer.dropout,
            }
        })
        .collect();
    Bert { embeddings, layers }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, TensorData, Tolerance};

    type B = Flex;
    type AB = Autodiff<Flex>;

    fn testdata() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
    }

    fn tiny_config() -> BertConfig {
        BertConfig::new(50, 16, 2, 4, 32, 12)
            .with_hidden_dropout_prob(0.0)
            .with_attention_probs_dropout_prob(0.0)
    }

    fn int_rows(rows: [[i64; 5]; 2]) -> Tensor<B, 2, Int> {
        Tensor::from_data(rows, &Default::default())
    }

    #[test]
    fn gelu_is_the_exact_erf_form() {
        // x·Φ(x) with Φ(1) = 0.841344746, Φ(−1) = 0.158655254, Φ(2) = 0.977249868,
        // Φ(0.5) = 0.691462461; the tanh approximation is off by 1.5e-4 at x = 1.
        let device = Default::default();
        let x = Tensor::<B, 1>::from_floats([1.0, -1.0, 2.0, 0.5, 0.0], &device);
        gelu_exact(x).into_data().assert_approx_eq::<f32>(
            &TensorData::from([0.841_344_75, -0.158_655_25, 1.954_499_7, 0.345_731_23, 0.0]),
            Tolerance::absolute(1e-6),
        );
    }

    #[test]
    fn gelu_gradient_is_exact() {
        // d/dx x·Φ(x) = Φ(x) + x·φ(x): 0.841344746 + 0.241970725 at x = 1, and
        // 0.158655254 − 0.241970725 at x = −1 (tanh-approximation derivative: 1.08296 at 1).
        let device = Default::default();
        let x = Tensor::<AB, 1>::from_floats([1.0, -1.0], &device).require_grad();
        let grads = gelu_exact(x.clone()).sum().backward();
        x.grad(&grads).unwrap().into_data().assert_approx_eq::<f32>(
            &TensorData::from([1.083_315_5, -0.083_315_47]),
            Tolerance::absolute(1e-6),
        );
    }

    #[test]
    fn masked_keys_do_not_influence_unmasked_tokens() {
        let device = Default::default();
        let bert = tiny_config().init::<B>(&device).unwrap();
        let mask = Tensor::<B, 2>::from_floats([[1.0, 1.0, 1.0, 0.0, 0.0]; 2], &device);
        let types = int_rows([[0; 5]; 2]);
        let run = |ids| bert.forward(int_rows(ids), mask.clone(), types.clone());
        let base = run([[2, 7, 9, 0, 0], [3, 4, 5, 0, 0]]);
        let padding_changed = run([[2, 7, 9, 11, 40], [3, 4, 5, 8, 1]]);
        let real_changed = run([[2, 7, 10, 0, 0], [3, 4, 5, 0, 0]]);
        let real = |t: Tensor<B, 3>| t.slice([0..2, 0..3, 0..16]).into_data();
        // The masked keys get probability exactly 0, so real positions are bit-identical…
        real(base.clone()).assert_eq(&real(padding_changed), true);
        // …while a change in an unmasked token does reach the other tokens of its sample.
        let diff = (base.slice([0..1, 0..2, 0..16]) - real_changed.slice([0..1, 0..2, 0..16]))
            .abs()
            .max()
            .into_scalar();
        assert!(diff > 1e-3, "unmasked change had no effect: {diff}");
    }

    #[test]
    fn forward_shapes_and_layer_norm_output() {
        let device = Default::default();
        let bert = tiny_config().init::<B>(&device).unwrap();
        assert_eq!((bert.max_seq_len(), bert.hidden_size()), (12, 16));
        let out = bert.forward(
            int_rows([[2, 7, 9, 1, 0], [3, 4, 5, 6, 7]]),
            Tensor::ones([2, 5], &device),
            int_rows([[0, 0, 1, 1, 1], [0; 5]]),
        );
        assert_eq!(out.dims(), [2, 5, 16]);
        // The last op is a LayerNorm with γ = 1, β = 0: zero mean and unit variance per token.
        let mean = out.clone().mean_dim(2);
        let var = (out - mean.clone()).powi_scalar(2).mean_dim(2);
        mean.into_data().assert_approx_eq::<f32>(
            &TensorData::zeros::<f32, _>([2, 5, 1]),
            Tolerance::absolute(1e-5),
        );
        var.into_data().assert_approx_eq::<f32>(
            &TensorData::ones::<f32, _>([2, 5, 1]),
            Tolerance::absolute(1e-4),
        );
    }

    #[test]
    fn padding_row_starts_at_zero_and_gets_no_gradient() {
        let device = Default::default();
        let bert = tiny_config().init::<AB>(&device).unwrap();
        let table = bert.embeddings.word_embeddings.weight.val();
        let pad_row = table.clone().slice([0..1, 0..16]).abs().max().into_scalar();
        assert_eq!(pad_row, 0.0);
        let ids = Tensor::<AB, 2, Int>::from_data([[2, 7, 0, 0, 0]], &device);
        let out = bert.forward(
            ids,
            Tensor::ones([1, 5], &device),
            Tensor::zeros([1, 5], &device),
        );
        let weights = Tensor::<AB, 3>::random([1, 5, 16], Distribution::Default, &device);
        let grads = (out * weights).sum().backward();
        let grad = bert.embeddings.word_embeddings.weight.grad(&grads).unwrap();
        let row = |i: usize| {
            grad.clone()
                .slice([i..i + 1, 0..16])
                .abs()
                .max()
                .into_scalar()
        };
        assert_eq!(row(0), 0.0, "[PAD] row received a gradient");
        assert!(row(7) > 0.0 && row(2) > 0.0);
    }

    #[test]
    fn parameter_counts_match_spec_section_10() {
        let config = BertConfig::bert_base_uncased();
        assert_eq!(config.num_params_with_pooler(), 109_482_240);
        assert_eq!(config.num_params(), 109_482_240 - 590_592);
        let bert = config.init::<B>(&Default::default()).unwrap();
        assert_eq!(bert.num_params(), 109_482_240 - 590_592);
        let tiny = tiny_config();
        assert_eq!(
            tiny.init::<B>(&Default::default()).unwrap().num_params(),
            tiny.num_params()
        );
    }

    const MINILM_CONFIG: &str = r#"{"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 384,
        "initializer_range": 0.02, "intermediate_size": 1536, "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 12,
        "num_hidden_layers": 6, "pad_token_id": 0, "position_embedding_type": "absolute",
        "type_vocab_size": 2, "use_cache": true, "vocab_size": 30522}"#;

    #[test]
    fn config_reads_huggingface_json() {
        let c = BertConfig::from_json_str(MINILM_CONFIG, "config.json").unwrap();
        assert_eq!(
            (
                c.vocab_size,
                c.hidden_size,
                c.num_hidden_layers,
                c.num_attention_heads
            ),
            (30522, 384, 6, 12)
        );
        assert_eq!(
            (
                c.intermediate_size,
                c.max_position_embeddings,
                c.type_vocab_size
            ),
            (1536, 512, 2)
        );
        assert_eq!(
            (c.layer_norm_eps, c.hidden_dropout_prob, c.pad_token_id),
            (1e-12, 0.1, 0)
        );
        // Optional keys take HuggingFace's defaults.
        let minimal = r#"{"vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 4, "max_position_embeddings": 6}"#;
        let c = BertConfig::from_json_str(minimal, "m.json").unwrap();
        assert_eq!(
            (
                c.type_vocab_size,
                c.attention_probs_dropout_prob,
                c.layer_norm_eps
            ),
            (2, 0.1, 1e-12)
        );
    }

    fn config_error(text: &str) -> String {
        let err = BertConfig::from_json_str(text, "dir/config.json").unwrap_err();
        assert!(matches!(err, ModelError::Config { .. }), "{err:?}");
        err.to_string()
    }

    #[test]
    fn config_errors_name_file_and_key() {
        let edit = |from: &str, to: &str| MINILM_CONFIG.replace(from, to);
        let cases = [
            (
                edit(r#""hidden_act": "gelu""#, r#""hidden_act": "gelu_new""#),
                "`hidden_act`",
            ),
            (
                edit(r#""hidden_size": 384"#, r#""hidden_size": "384""#),
                "`hidden_size`",
            ),
            (
                edit(r#""vocab_size": 30522"#, r#""vocab_sizes": 30522"#),
                "missing key `vocab_size`",
            ),
            (
                edit(r#""num_hidden_layers": 6"#, r#""num_hidden_layers": -6"#),
                "`num_hidden_layers`",
            ),
            (
                edit(
                    r#""num_attention_heads": 12"#,
                    r#""num_attention_heads": 7"#,
                ),
                "`num_attention_heads`",
            ),
            (
                edit(r#""layer_norm_eps": 1e-12"#, r#""layer_norm_eps": 0"#),
                "`layer_norm_eps`",
            ),
            (
                edit(
                    r#""hidden_dropout_prob": 0.1"#,
                    r#""hidden_dropout_prob": 1.5"#,
                ),
                "`hidden_dropout_prob`",
            ),
            (
                edit(r#""pad_token_id": 0"#, r#""pad_token_id": 40000"#),
                "`pad_token_id`",
            ),
            (
                edit("absolute", "relative_key"),
                "`position_embedding_type`",
            ),
            ("[1, 2]".to_string(), "JSON object"),
            ("{\"vocab_size\": ".to_string(), "not valid JSON"),
        ];
        for (text, key) in cases {
            let message = config_error(&text);
            assert!(message.starts_with("dir/config.json: "), "{message}");
            assert!(message.contains(key), "{message} should mention {key}");
        }
        let missing =
            BertConfig::from_json_file(Path::new("/nonexistent/config.json")).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/config.json"));
    }

    /// The tiny BERT of the torch-golden fixture (weights `text_model.model.*`) reproduces the
    /// hidden states PyTorch + transformers computed through the CIDer reference code.
    #[test]
    fn matches_pytorch_on_the_golden_tiny_bert() {
        for case in ["mosi-aligned-small", "mosi-unaligned-small"] {
            let dir = testdata().join("torch-golden").join(case);
            let golden: Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap())
                    .unwrap();
            let config =
                BertConfig::from_json_str(&golden["bert"].to_string(), "golden.json").unwrap();
            let device = Default::default();
            let bert = load_bert_safetensors(
                config.init::<B>(&device).unwrap(),
                &dir.join("model.safetensors"),
                "text_model.model.",
                &device,
            )
            .unwrap();
            let text = cider_data::npy::from_path(dir.join("input_text.npy")).unwrap();
            let [batch, rows, seq] = text.shape().try_into().unwrap();
            assert_eq!(rows, 3);
            let text = Tensor::<B, 3>::from_data(
                TensorData::new(text.to_f32().unwrap(), [batch, 3, seq]),
                &device,
            );
            let row = |r: usize| {
                text.clone()
                    .slice([0..batch, r..r + 1, 0..seq])
                    .squeeze_dim::<2>(1)
            };
            let out = bert.forward(row(0).int(), row(1), row(2).int());
            let expected =
                cider_data::npy::from_path(dir.join("output_complete_text_for_recon.npy")).unwrap();
            let expected = TensorData::new(expected.to_f32().unwrap(), expected.shape().to_vec());
            out.into_data()
                .assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-5));
        }
    }
}
