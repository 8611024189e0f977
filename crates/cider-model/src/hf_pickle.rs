//! HuggingFace objects inside a pickled PyTorch module (`torch.save(model)`, read inertly by
//! [`cider_data::torch_file`]): a `BertConfig` becomes a [`BertConfig`], a slow `BertTokenizer`
//! a [`WordPieceTokenizer`], without `config.json` or `vocab.txt`.
//!
//! [`Pickled`] is typed access to a pickled object's attributes; its errors are one
//! [`ModelError::Config`] line naming the file, the attribute's path from the root
//! (`text_model.model.config.hidden_size`) and what was expected.

use cider_data::{PyObject, PyValue};
use serde_json::{Map, Number, Value};

use crate::bert::BertConfig;
use crate::error::ModelError;
use crate::tokenize::{WordPieceOptions, WordPieceTokenizer};

/// Special tokens the tokenizer supports, by the name HuggingFace keeps them under.
const SPECIAL_TOKEN_NAMES: [(&str, &str); 5] = [
    ("unk_token", "[UNK]"),
    ("sep_token", "[SEP]"),
    ("pad_token", "[PAD]"),
    ("cls_token", "[CLS]"),
    ("mask_token", "[MASK]"),
];

/// A pickled object with its path from the root object and the file it came from.
#[derive(Debug, Clone)]
pub struct Pickled<'a> {
    object: &'a PyObject,
    path: String,
    source: &'a str,
}

impl<'a> Pickled<'a> {
    /// The root object of the file `source`.
    pub fn root(object: &'a PyObject, source: &'a str) -> Self {
        Self {
            object,
            path: String::new(),
            source,
        }
    }

    /// The object itself.
    pub fn object(&self) -> &'a PyObject {
        self.object
    }

    /// Its class, `module.name`.
    pub fn class(&self) -> &'a str {
        &self.object.class
    }

    /// The file (or source) it came from.
    pub fn source(&self) -> &'a str {
        self.source
    }

    /// Its path from the root: attribute names joined by `.` (empty for the root).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path of attribute `name`.
    pub fn path_of(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// A [`ModelError::Config`] about attribute `name` (or the object itself when `None`).
    pub fn error(&self, name: Option<&str>, message: impl std::fmt::Display) -> ModelError {
        let what = match name {
            Some(name) => format!("`{}`", self.path_of(name)),
            None if self.path.is_empty() => format!("the pickled `{}`", self.class()),
            None => format!("`{}` (`{}`)", self.path, self.class()),
        };
        ModelError::Config {
            source_name: self.source.to_string(),
            message: format!("{what}: {message}"),
        }
    }

    /// Checks the class is `class`, or any class named like its last component (the module a
    /// class lives in moves between library versions) when `any_module`.
    pub fn expect_class(self, class: &str, any_module: bool) -> Result<Self, ModelError> {
        let short = |c: &str| c.rsplit('.').next().unwrap_or(c).to_string();
        let fits = self.class() == class || (any_module && short(self.class()) == short(class));
        if fits {
            Ok(self)
        } else {
            Err(self.error(
                None,
                format!("expected a pickled `{class}`, got `{}`", self.class()),
            ))
        }
    }

    /// Attribute `name` from the BUILD state, if present.
    pub fn optional(&self, name: &str) -> Option<&'a PyValue> {
        self.object.attr(name)
    }

    /// Attribute `name`; missing is an error.
    pub fn value(&self, name: &str) -> Result<&'a PyValue, ModelError> {
        self.optional(name).ok_or_else(|| {
            self.error(
                Some(name),
                format!("missing from the pickled `{}`", self.class()),
            )
        })
    }

    /// A non-negative `int` attribute.
    pub fn usize(&self, name: &str) -> Result<usize, ModelError> {
        match self.value(name)? {
            PyValue::Int(v) => usize::try_from(*v).ok(),
            _ => None,
        }
        .ok_or_else(|| self.wrong_type(name, "a non-negative int"))
    }

    /// A number attribute (`float`, or an `int` as Python allows).
    pub fn f64(&self, name: &str) -> Result<f64, ModelError> {
        match self.value(name)? {
            PyValue::Float(v) => Ok(*v),
            PyValue::Int(v) => Ok(*v as f64),
            _ => Err(self.wrong_type(name, "a float")),
        }
    }

    /// A `bool` attribute.
    pub fn bool(&self, name: &str) -> Result<bool, ModelError> {
        match self.value(name)? {
            PyValue::Bool(v) => Ok(*v),
            _ => Err(self.wrong_type(name, "True or False")),
        }
    }

    /// An optional `bool` attribute: `default` when absent.
    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, ModelError> {
        match self.optional(name) {
            None => Ok(default),
            Some(_) => self.bool(name),
        }
    }

    /// A `str` attribute.
    pub fn str(&self, name: &str) -> Result<&'a str, ModelError> {
        match self.value(name)? {
            PyValue::Str(v) => Ok(v),
            _ => Err(self.wrong_type(name, "a str")),
        }
    }

    /// An attribute holding an object.
    pub fn attr_object(&self, name: &str) -> Result<Pickled<'a>, ModelError> {
        match self.value(name)? {
            PyValue::Object(object) => Ok(self.child(object, self.path_of(name))),
            _ => Err(self.wrong_type(name, "an object")),
        }
    }

    /// A submodule of a pickled `torch.nn.Module` (an entry of its `_modules`), its path
    /// named as in the state dict (`text_model.model`).
    pub fn submodule(&self, name: &str) -> Result<Pickled<'a>, ModelError> {
        let modules = self.value("_modules")?;
        let entries = modules
            .entries()
            .ok_or_else(|| self.wrong_type("_modules", "a dict"))?;
        let found = entries
            .iter()
            .find(|(k, _)| matches!(k, PyValue::Str(s) if s == name))
            .map(|(_, v)| v);
        match found {
            Some(PyValue::Object(object)) => Ok(self.child(object, self.path_of(name))),
            Some(other) => Err(self.error(
                Some(name),
                format!("expected a submodule, got {}", describe(other)),
            )),
            None => Err(self.error(
                Some(name),
                format!("no such submodule of the pickled `{}`", self.class()),
            )),
        }
    }

    /// The submodules (`_modules` entries) in order, by name.
    pub fn submodules(&self) -> Result<Vec<(&'a str, Pickled<'a>)>, ModelError> {
        let modules = self.value("_modules")?;
        let entries = modules
            .entries()
            .ok_or_else(|| self.wrong_type("_modules", "a dict"))?;
        let mut out = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            match (key, value) {
                (PyValue::Str(name), PyValue::Object(object)) => {
                    out.push((name.as_str(), self.child(object, self.path_of(name))));
                }
                (PyValue::Str(_), PyValue::None) => {}
                (PyValue::Str(name), other) => {
                    return Err(self.error(
                        Some(name),
                        format!("expected a submodule, got {}", describe(other)),
                    ));
                }
                (other, _) => {
                    return Err(self.error(
                        Some("_modules"),
                        format!("expected str keys, got {}", describe(other)),
                    ));
                }
            }
        }
        Ok(out)
    }

    fn child(&self, object: &'a PyObject, path: String) -> Pickled<'a> {
        Pickled {
            object,
            path,
            source: self.source,
        }
    }

    fn wrong_type(&self, name: &str, expected: &str) -> ModelError {
        let got = self.optional(name).map_or("nothing".into(), describe);
        self.error(Some(name), format!("expected {expected}, got {got}"))
    }
}

/// A short description of a value for error messages: its type and, for scalars, the value.
pub fn describe(value: &PyValue) -> String {
    match value {
        PyValue::None => "None".into(),
        PyValue::Bool(v) => format!("bool {}", if *v { "True" } else { "False" }),
        PyValue::Int(v) => format!("int {v}"),
        PyValue::BigInt(v) => format!("int {v}"),
        PyValue::Float(v) => format!("float {v}"),
        PyValue::Str(v) if v.chars().count() > 40 => {
            format!("str {:?}…", v.chars().take(40).collect::<String>())
        }
        PyValue::Str(v) => format!("str {v:?}"),
        PyValue::Object(object) => format!("a `{}` object", object.class),
        PyValue::Class(name) => format!("class `{name}`"),
        other => other.type_name().to_string(),
    }
}

/// The BERT architecture from a pickled `transformers` `BertConfig` (its instance `__dict__`),
/// read with the rules of [`BertConfig::from_json_str`]: the same required keys, defaults and
/// checks (`hidden_act = "gelu"`, absolute positions).
///
/// # Errors
/// [`ModelError::Config`] naming the file, the object's path and the key, when the object is
/// not a `BertConfig`, a size is missing or wrongly typed, or a setting is unsupported.
pub fn bert_config(config: &Pickled<'_>) -> Result<BertConfig, ModelError> {
    let config = config.clone().expect_class(
        "transformers.models.bert.configuration_bert.BertConfig",
        true,
    )?;
    let entries = config
        .object()
        .state
        .as_ref()
        .and_then(PyValue::entries)
        .ok_or_else(|| config.error(None, "its state is not a dict of attributes"))?;
    let mut json = Map::new();
    for (key, value) in entries {
        if let PyValue::Str(key) = key {
            json.insert(key.clone(), json_scalar(value));
        }
    }
    let source_name = format!("{} (`{}`)", config.source(), config.path());
    BertConfig::from_json_str(&Value::Object(json).to_string(), &source_name)
}

/// A JSON stand-in for an attribute: scalars as themselves, anything else as a string
/// describing it (so that a key the config reads is reported as wrongly typed, not missing).
fn json_scalar(value: &PyValue) -> Value {
    match value {
        PyValue::None => Value::Null,
        PyValue::Bool(v) => Value::Bool(*v),
        PyValue::Int(v) => Value::from(*v),
        PyValue::Float(v) => Number::from_f64(*v).map_or(Value::Null, Value::Number),
        PyValue::Str(v) => Value::String(v.clone()),
        other => Value::String(format!("<{}>", describe(other))),
    }
}

/// The tokenizer of a pickled slow `transformers` `BertTokenizer`, producing rows of `seq_len`
/// tokens: its vocabulary (the `vocab` mapping token → id), and its basic tokenizer's
/// `do_lower_case`, `strip_accents`, `tokenize_chinese_chars` and its WordPiece tokenizer's
/// `max_input_chars_per_word`.
///
/// # Errors
/// [`ModelError::Config`] naming the file and attribute for a missing or wrongly typed
/// attribute, or settings this tokenizer cannot follow: `do_basic_tokenize = False`, a
/// non-empty `never_split`, `do_split_on_punc = False`, special tokens other than BERT's five
/// (`[UNK]`, `[SEP]`, `[PAD]`, `[CLS]`, `[MASK]`) or added tokens;
/// [`ModelError::Tokenizer`] when the vocabulary lacks a special token or `seq_len < 2`.
pub fn bert_tokenizer(
    tokenizer: &Pickled<'_>,
    seq_len: usize,
) -> Result<WordPieceTokenizer, ModelError> {
    let tokenizer = tokenizer.clone().expect_class(
        "transformers.models.bert.tokenization_bert.BertTokenizer",
        true,
    )?;
    let vocab = read_vocab(&tokenizer)?;
    if !tokenizer.bool_or("do_basic_tokenize", true)? {
        return Err(tokenizer.error(
            Some("do_basic_tokenize"),
            "only True (lower-casing and punctuation splitting before WordPiece) is supported",
        ));
    }
    let basic = tokenizer.attr_object("basic_tokenizer")?;
    let strip_accents = match basic.value("strip_accents")? {
        PyValue::None => None,
        PyValue::Bool(v) => Some(*v),
        _ => return Err(basic.wrong_type("strip_accents", "None, True or False")),
    };
    let never_split = set_items(&basic, "never_split")?;
    if !never_split.is_empty() {
        return Err(basic.error(
            Some("never_split"),
            format!("only an empty set is supported, got {never_split:?}"),
        ));
    }
    if !basic.bool_or("do_split_on_punc", true)? {
        return Err(basic.error(Some("do_split_on_punc"), "only True is supported"));
    }
    let wordpiece = tokenizer.attr_object("wordpiece_tokenizer")?;
    if wordpiece.str("unk_token")? != "[UNK]" {
        return Err(wordpiece.error(Some("unk_token"), "only \"[UNK]\" is supported"));
    }
    let options = WordPieceOptions {
        lowercase: basic.bool("do_lower_case")?,
        strip_accents,
        tokenize_chinese_chars: basic.bool_or("tokenize_chinese_chars", true)?,
        max_input_chars_per_word: match wordpiece.optional("max_input_chars_per_word") {
            None => WordPieceOptions::default().max_input_chars_per_word,
            Some(_) => wordpiece.usize("max_input_chars_per_word")?,
        },
    };
    check_special_tokens(&tokenizer)?;
    let source_name = format!("{} (`{}`)", tokenizer.source(), tokenizer.path());
    WordPieceTokenizer::from_vocab(vocab, &options, seq_len, &source_name)
}

/// The `vocab` mapping token → id of a pickled BERT tokenizer.
fn read_vocab(tokenizer: &Pickled<'_>) -> Result<Vec<(String, u32)>, ModelError> {
    let entries = tokenizer
        .value("vocab")?
        .entries()
        .ok_or_else(|| tokenizer.wrong_type("vocab", "a dict or OrderedDict token → id"))?;
    entries
        .iter()
        .map(|(token, id)| match (token, id) {
            (PyValue::Str(token), PyValue::Int(id)) => u32::try_from(*id)
                .map(|id| (token.clone(), id))
                .map_err(|_| {
                    tokenizer.error(
                        Some("vocab"),
                        format!("token {token:?} has id {id}, expected 0..2^32"),
                    )
                }),
            _ => Err(tokenizer.error(
                Some("vocab"),
                format!(
                    "expected str → int entries, got {} → {}",
                    describe(token),
                    describe(id)
                ),
            )),
        })
        .collect()
}

/// The items of a set attribute (pickled as `builtins.set(list)`), a list or tuple; `None`
/// and a missing attribute are empty.
fn set_items<'a>(object: &Pickled<'a>, name: &str) -> Result<Vec<&'a PyValue>, ModelError> {
    let items = match object.optional(name) {
        None | Some(PyValue::None) => return Ok(Vec::new()),
        Some(PyValue::List(items) | PyValue::Tuple(items)) => items,
        Some(PyValue::Object(set))
            if matches!(set.class.rsplit('.').next(), Some("set" | "frozenset")) =>
        {
            match set.args.first() {
                None => return Ok(Vec::new()),
                Some(PyValue::List(items) | PyValue::Tuple(items)) => items,
                Some(other) => {
                    return Err(object.error(
                        Some(name),
                        format!("expected a set built from a list, got {}", describe(other)),
                    ));
                }
            }
        }
        Some(_) => return Err(object.wrong_type(name, "a set")),
    };
    Ok(items.iter().collect())
}

/// The text of a special token: a `str`, or an `AddedToken` object's `content`.
fn token_text(value: &PyValue) -> Option<&str> {
    match value {
        PyValue::Str(s) => Some(s),
        PyValue::Object(object) => match object.attr("content") {
            Some(PyValue::Str(s)) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// Refuses special tokens other than BERT's own and added tokens, both of which would change
/// how text is split (`_special_tokens_map` and `_added_tokens_encoder`, where present).
fn check_special_tokens(tokenizer: &Pickled<'_>) -> Result<(), ModelError> {
    if let Some(map) = tokenizer.optional("_special_tokens_map") {
        for (name, expected) in SPECIAL_TOKEN_NAMES {
            match map.get(name) {
                None | Some(PyValue::None) => {}
                Some(value) if token_text(value) == Some(expected) => {}
                Some(value) => {
                    return Err(tokenizer.error(
                        Some(&format!("_special_tokens_map.{name}")),
                        format!("only {expected:?} is supported, got {}", describe(value)),
                    ));
                }
            }
        }
        if let Some(PyValue::List(extra)) = map.get("additional_special_tokens")
            && !extra.is_empty()
        {
            return Err(tokenizer.error(
                Some("_special_tokens_map.additional_special_tokens"),
                format!(
                    "additional special tokens are not supported ({} found)",
                    extra.len()
                ),
            ));
        }
    }
    if let Some(added) = tokenizer.optional("_added_tokens_encoder") {
        let entries = added
            .entries()
            .ok_or_else(|| tokenizer.wrong_type("_added_tokens_encoder", "a dict"))?;
        let specials = SPECIAL_TOKEN_NAMES.map(|(_, token)| token);
        for (token, _) in entries {
            if !token_text(token).is_some_and(|t| specials.contains(&t)) {
                return Err(tokenizer.error(
                    Some("_added_tokens_encoder"),
                    format!(
                        "added token {} is not supported (only BERT's five special tokens)",
                        describe(token)
                    ),
                ));
            }
        }
    }
    Ok(())
}
