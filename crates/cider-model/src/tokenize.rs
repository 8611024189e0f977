//! WordPiece tokenisation of raw text into the MMSA `text_bert` rows (docs/method.md §2.2, §5.1): word-
//! piece ids, attention mask and segment ids, each `T_l` long, as the MMSA feature extractor
//! makes them with a HuggingFace BERT tokenizer (`[CLS] … [SEP]`, truncated on the right to
//! `T_l`, padded on the right with `[PAD]`).
//!
//! Built on HuggingFace's `tokenizers` crate, from a `tokenizer.json`, a `vocab.txt` or a
//! vocabulary in memory such as a pickled `BertTokenizer`'s ([`crate::hf_pickle`]) (BERT
//! normaliser, BERT pre-tokeniser, `[CLS]`/`[SEP]` post-processor).

use std::path::Path;

use cider_data::atomic_write::write_atomically;

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    AddedToken, PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

use crate::error::ModelError;

/// BERT's special tokens, kept whole when they appear in the text.
const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// One utterance as the three MMSA `text_bert` rows, each of length `T_l`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextBertRows {
    /// Word-piece ids: `[CLS]`, the pieces, `[SEP]`, then `[PAD]` (row 0).
    pub ids: Vec<u32>,
    /// 1 on `[CLS]`, pieces and `[SEP]`, 0 on padding (row 1).
    pub attention_mask: Vec<u8>,
    /// Segment (token type) ids, all 0 for a single sentence (row 2).
    pub segments: Vec<u8>,
}

/// The settings of HuggingFace's BERT basic and WordPiece tokenizers that
/// [`WordPieceTokenizer::from_vocab`] honours; the default is `bert-base-uncased`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WordPieceOptions {
    /// Lower-case the text (`do_lower_case`).
    pub lowercase: bool,
    /// Strip accents (`strip_accents`); `None` strips them exactly when `lowercase`.
    pub strip_accents: Option<bool>,
    /// Put spaces around CJK characters (`tokenize_chinese_chars`).
    pub tokenize_chinese_chars: bool,
    /// Longer words become `[UNK]` (`max_input_chars_per_word`).
    pub max_input_chars_per_word: usize,
}

impl Default for WordPieceOptions {
    fn default() -> Self {
        Self {
            lowercase: true,
            strip_accents: None,
            tokenize_chinese_chars: true,
            max_input_chars_per_word: 100,
        }
    }
}

/// A BERT WordPiece tokenizer producing fixed-length `text_bert` rows of length `T_l`.
#[derive(Debug)]
pub struct WordPieceTokenizer {
    tokenizer: Tokenizer,
    source_name: String,
    seq_len: usize,
}

impl WordPieceTokenizer {
    /// Loads a HuggingFace `tokenizer.json`; its own truncation and padding settings are
    /// replaced by truncation/padding to `seq_len` (`T_l`, at least 2 for `[CLS]` and `[SEP]`).
    pub fn from_tokenizer_json(path: &Path, seq_len: usize) -> Result<Self, ModelError> {
        let source_name = path.display().to_string();
        let tokenizer = Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer {
            source_name: source_name.clone(),
            message: format!("cannot load tokenizer.json: {e}"),
        })?;
        Self::with_fixed_length(tokenizer, source_name, seq_len)
    }

    /// Builds a BERT tokenizer from a `vocab.txt` (one token per line, id = line number):
    /// BERT normaliser (clean text, Chinese characters split, accents stripped when
    /// `lowercase`, as HuggingFace does by default), BERT pre-tokeniser, WordPiece with
    /// `[UNK]` and `##` continuations, `[CLS] … [SEP]` around the pieces.
    pub fn from_vocab_txt(
        path: &Path,
        lowercase: bool,
        seq_len: usize,
    ) -> Result<Self, ModelError> {
        let source_name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::Tokenizer {
            source_name: source_name.clone(),
            message: format!("cannot read vocab.txt: {e}"),
        })?;
        // As the `tokenizers` crate reads a vocab.txt: trailing whitespace trimmed, a token
        // listed twice keeps its last line.
        let vocab = text
            .lines()
            .enumerate()
            .map(|(id, token)| (token.trim_end().to_string(), id as u32))
            .collect();
        let options = WordPieceOptions {
            lowercase,
            ..WordPieceOptions::default()
        };
        Self::from_vocab(vocab, &options, seq_len, &source_name)
    }

    /// Builds a BERT tokenizer from a vocabulary of `(token, id)` pairs (a later pair for the
    /// same token wins) and the basic tokenizer's `options`, with the pipeline of
    /// [`WordPieceTokenizer::from_vocab_txt`]; `source_name` names the vocabulary in errors.
    ///
    /// # Errors
    /// [`ModelError::Tokenizer`] when the vocabulary lacks `[PAD]`, `[UNK]`, `[CLS]` or
    /// `[SEP]`, or `seq_len < 2`.
    pub fn from_vocab(
        vocab: Vec<(String, u32)>,
        options: &WordPieceOptions,
        seq_len: usize,
        source_name: &str,
    ) -> Result<Self, ModelError> {
        let error = |message: String| ModelError::Tokenizer {
            source_name: source_name.to_string(),
            message,
        };
        // The map type WordPiece takes is private to `tokenizers`: start from an empty one.
        let mut map = WordPiece::read_bytes(&[]).map_err(|e| error(e.to_string()))?;
        map.extend(vocab);
        let model = WordPiece::builder()
            .vocab(map)
            .unk_token("[UNK]".into())
            .max_input_chars_per_word(options.max_input_chars_per_word)
            .build()
            .map_err(|e| error(format!("cannot build the WordPiece model: {e}")))?;
        let mut tokenizer = Tokenizer::new(model);
        let special = |token: &str| {
            tokenizer
                .token_to_id(token)
                .map(|id| (token.to_string(), id))
                .ok_or_else(|| error(format!("vocabulary has no `{token}` token")))
        };
        let (sep, cls) = (special("[SEP]")?, special("[CLS]")?);
        special("[UNK]")?;
        // Special tokens written in the text stay whole, as in HuggingFace's BERT tokenizers.
        let specials: Vec<AddedToken> = SPECIAL_TOKENS
            .iter()
            .filter(|t| tokenizer.token_to_id(t).is_some())
            .map(|t| AddedToken::from(*t, true))
            .collect();
        tokenizer
            .with_normalizer(Some(BertNormalizer::new(
                true,
                options.tokenize_chinese_chars,
                options.strip_accents,
                options.lowercase,
            )))
            .map_err(|e| error(e.to_string()))?
            .with_pre_tokenizer(Some(BertPreTokenizer))
            .with_post_processor(Some(BertProcessing::new(sep, cls)));
        tokenizer
            .add_special_tokens(specials)
            .map_err(|e| error(e.to_string()))?;
        Self::with_fixed_length(tokenizer, source_name.to_string(), seq_len)
    }

    /// Sets right truncation to `seq_len` tokens (special tokens included) and right padding
    /// with `[PAD]` to exactly `seq_len`.
    fn with_fixed_length(
        mut tokenizer: Tokenizer,
        source_name: String,
        seq_len: usize,
    ) -> Result<Self, ModelError> {
        let error = |message: String| ModelError::Tokenizer {
            source_name: source_name.clone(),
            message,
        };
        if seq_len < 2 {
            return Err(error(format!(
                "sequence length T_l = {seq_len} leaves no room for [CLS] and [SEP]"
            )));
        }
        let pad_id = tokenizer
            .token_to_id("[PAD]")
            .ok_or_else(|| error("vocabulary has no `[PAD]` token".into()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: seq_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| error(e.to_string()))?
            .with_padding(Some(PaddingParams {
                strategy: PaddingStrategy::Fixed(seq_len),
                direction: PaddingDirection::Right,
                pad_to_multiple_of: None,
                pad_id,
                pad_type_id: 0,
                pad_token: "[PAD]".into(),
            }));
        Ok(Self {
            tokenizer,
            source_name,
            seq_len,
        })
    }

    /// `T_l`, the length of every row.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Writes the tokenizer as a HuggingFace `tokenizer.json` (read back by
    /// [`WordPieceTokenizer::from_tokenizer_json`]), atomically ([`write_atomically`]).
    ///
    /// # Errors
    /// [`ModelError::Tokenizer`] naming `path` when the tokenizer cannot be serialised;
    /// [`ModelError::Data`] naming it when the file cannot be written.
    pub fn save_json(&self, path: &Path) -> Result<(), ModelError> {
        let json = self
            .tokenizer
            .to_string(false)
            .map_err(|e| ModelError::Tokenizer {
                source_name: path.display().to_string(),
                message: format!("cannot write tokenizer.json: {e}"),
            })?;
        Ok(write_atomically(path, json.as_bytes())?)
    }

    /// The id of `token` in the vocabulary, if present.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    /// Tokenises one utterance into its `text_bert` rows.
    pub fn encode(&self, text: &str) -> Result<TextBertRows, ModelError> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| ModelError::Tokenizer {
                source_name: self.source_name.clone(),
                message: format!("cannot encode {text:?}: {e}"),
            })?;
        let narrow = |values: &[u32], row: &str| {
            values
                .iter()
                .map(|&v| u8::try_from(v))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| ModelError::Tokenizer {
                    source_name: self.source_name.clone(),
                    message: format!("{row} of {text:?} does not fit in 0..=255"),
                })
        };
        Ok(TextBertRows {
            ids: encoding.get_ids().to_vec(),
            attention_mask: narrow(encoding.get_attention_mask(), "attention mask")?,
            segments: narrow(encoding.get_type_ids(), "segment ids")?,
        })
    }

    /// Tokenises several utterances; see [`WordPieceTokenizer::encode`].
    pub fn encode_all(&self, texts: &[&str]) -> Result<Vec<TextBertRows>, ModelError> {
        texts.iter().map(|t| self.encode(t)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// testdata/wordpiece/vocab.txt, ids by line: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4,
    /// the 5, movie 6, was 7, un 8, ##believ 9, ##able 10, `,` 11, `!` 12, i 13, loved 14,
    /// it 15, `.` 16.
    fn tiny(seq_len: usize) -> WordPieceTokenizer {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/wordpiece/vocab.txt");
        WordPieceTokenizer::from_vocab_txt(&path, true, seq_len).unwrap()
    }

    #[test]
    fn encodes_lowercased_word_pieces_with_cls_sep_and_padding() {
        let rows = tiny(16)
            .encode("The movie was UNBELIEVABLE, I loved it!")
            .unwrap();
        assert_eq!(
            rows.ids,
            [2, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 12, 3, 0, 0, 0]
        );
        assert_eq!(
            rows.attention_mask,
            [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
        );
        assert_eq!(rows.segments, [0; 16]);
    }

    #[test]
    fn truncates_on_the_right_keeping_sep() {
        let rows = tiny(6)
            .encode("The movie was UNBELIEVABLE, I loved it!")
            .unwrap();
        assert_eq!(rows.ids, [2, 5, 6, 7, 8, 3]);
        assert_eq!(rows.attention_mask, [1; 6]);
        let empty = tiny(4).encode("").unwrap();
        assert_eq!(
            (empty.ids, empty.attention_mask),
            (vec![2, 3, 0, 0], vec![1, 1, 0, 0])
        );
    }

    #[test]
    fn strips_accents_maps_unknown_words_and_keeps_special_tokens() {
        // "Thé" → "the"; "zebra" has no pieces → [UNK]; "[MASK]" stays one token.
        let rows = tiny(8).encode("Thé zebra [MASK] .").unwrap();
        assert_eq!(rows.ids, [2, 5, 1, 4, 16, 3, 0, 0]);
        let all = tiny(8).encode_all(&["it", "loved"]).unwrap();
        assert_eq!(all[0].ids, [2, 15, 3, 0, 0, 0, 0, 0]);
        assert_eq!(all[1].ids, [2, 14, 3, 0, 0, 0, 0, 0]);
        assert_eq!(tiny(8).token_id("##able"), Some(10));
    }

    #[test]
    fn builds_from_a_vocabulary_in_memory_with_the_basic_tokenizer_options() {
        let vocab: Vec<(String, u32)> = [
            ("[PAD]", 0),
            ("[UNK]", 7),
            ("[CLS]", 8),
            ("[SEP]", 9),
            ("café", 20),
            ("cafe", 21),
            ("abc", 30),
            ("##de", 31),
            ("中", 40),
            ("abc", 33), // a later pair for the same token wins
        ]
        .into_iter()
        .map(|(t, id)| (t.to_string(), id))
        .collect();
        let build = |options: WordPieceOptions| {
            WordPieceTokenizer::from_vocab(vocab.clone(), &options, 8, "mem").unwrap()
        };
        let default = build(WordPieceOptions::default());
        // Lower-cased, accents stripped; `abcde` → abc ##de; CJK split off.
        assert_eq!(
            default.encode("CAFÉ abcde x中").unwrap().ids,
            [8, 21, 33, 31, 7, 40, 9, 0]
        );
        let keep_accents = build(WordPieceOptions {
            strip_accents: Some(false),
            ..WordPieceOptions::default()
        });
        assert_eq!(keep_accents.encode("CAFÉ").unwrap().ids[..3], [8, 20, 9]);
        let short_words = build(WordPieceOptions {
            max_input_chars_per_word: 4,
            ..WordPieceOptions::default()
        });
        assert_eq!(
            short_words.encode("abcde abc").unwrap().ids[..4],
            [8, 7, 33, 9]
        );
        let err =
            WordPieceTokenizer::from_vocab(Vec::new(), &WordPieceOptions::default(), 8, "mem")
                .err()
                .unwrap();
        assert_eq!(
            err.to_string(),
            "mem: tokenizer: vocabulary has no `[SEP]` token"
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        let vocab =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/wordpiece/vocab.txt");
        let short = WordPieceTokenizer::from_vocab_txt(&vocab, true, 1)
            .err()
            .unwrap();
        assert!(short.to_string().contains("T_l = 1"), "{short}");
        let missing =
            WordPieceTokenizer::from_vocab_txt(Path::new("/nonexistent/vocab.txt"), true, 8)
                .err()
                .unwrap();
        assert!(
            missing
                .to_string()
                .starts_with("/nonexistent/vocab.txt: tokenizer:"),
            "{missing}"
        );
        let dir = std::env::temp_dir().join(format!("cider-tokenize-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let no_sep = dir.join("vocab.txt");
        std::fs::write(&no_sep, "[PAD]\n[UNK]\n[CLS]\nthe\n").unwrap();
        let err = WordPieceTokenizer::from_vocab_txt(&no_sep, true, 8)
            .err()
            .unwrap();
        assert!(err.to_string().contains("`[SEP]`"), "{err}");
        let bad_json = dir.join("tokenizer.json");
        std::fs::write(&bad_json, "{\"version\": ").unwrap();
        let err = WordPieceTokenizer::from_tokenizer_json(&bad_json, 8)
            .err()
            .unwrap();
        assert!(err.to_string().contains("tokenizer.json"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
