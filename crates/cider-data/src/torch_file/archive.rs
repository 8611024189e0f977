//! The zip layout `torch.save` writes (PyTorch ≥ 1.6): one top folder holding `data.pkl` (the
//! pickled object), `data/<key>` (one record per tensor storage, raw little-endian elements),
//! `byteorder` and `version`. Records are read whole, after their declared size is checked
//! against what the pickle says they hold and against the compression ratio deflate can reach.

use std::io::{Cursor, Read};

use zip::ZipArchive;
use zip::result::ZipError;

use crate::error::DataError;

/// Largest ratio of a record's size to its compressed size: deflate cannot do better than
/// about 1032:1, so a larger claim is a zip bomb (`torch.save` stores records uncompressed).
const MAX_DEFLATE_RATIO: u64 = 1032;

/// The records of a `torch.save` zip.
pub(super) struct Archive<'a> {
    zip: ZipArchive<Cursor<&'a [u8]>>,
    /// The top folder, with its trailing `/` (`"state_dict/"`, `"archive/"`, …).
    prefix: String,
    source: &'a str,
}

impl<'a> Archive<'a> {
    /// Opens the zip in `bytes` and finds its `*/data.pkl`; refuses the pre-1.6 pickle format
    /// and TorchScript archives with a message that says what they are.
    pub(super) fn open(bytes: &'a [u8], source: &'a str) -> Result<Self, DataError> {
        let fail = |message: String| DataError::Checkpoint {
            file: source.to_string(),
            message,
        };
        if bytes.starts_with(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19") {
            return Err(fail(
                "the legacy format of PyTorch before 1.6 (a bare pickle stream) is not \
                 supported; re-save it with a newer torch.save"
                    .into(),
            ));
        }
        if !bytes.starts_with(b"PK") {
            let what = if bytes.first() == Some(&0x80) {
                "a bare pickle"
            } else {
                "not a zip archive"
            };
            return Err(fail(format!(
                "{what}; expected the zip that torch.save writes (`<name>/data.pkl`, \
                 `<name>/data/<key>`)"
            )));
        }
        let zip = ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| fail(format!("not a readable zip archive: {e}")))?;
        let mut pickles = zip
            .file_names()
            .filter_map(|name| name.strip_suffix("data.pkl"))
            .filter(|prefix| prefix.ends_with('/') && prefix.matches('/').count() == 1)
            .map(str::to_string)
            .collect::<Vec<_>>();
        pickles.sort_unstable();
        let prefix = match pickles.as_slice() {
            [one] => one.clone(),
            [] if zip.file_names().any(|name| name.ends_with("constants.pkl")) => {
                return Err(fail(
                    "a TorchScript archive (torch.jit.save); expected a torch.save file".into(),
                ));
            }
            [] => return Err(fail("the zip has no `<name>/data.pkl`".into())),
            many => {
                return Err(fail(format!(
                    "the zip has {} `data.pkl` files ({}); expected one",
                    many.len(),
                    many.join(", ")
                )));
            }
        };
        Ok(Archive {
            zip,
            prefix,
            source,
        })
    }

    fn fail(&self, message: String) -> DataError {
        DataError::Checkpoint {
            file: self.source.to_string(),
            message,
        }
    }

    /// The record `<prefix><name>`, whole; `None` if the zip has no such record. When
    /// `expected_len` is given, a record of another size is an error, found before reading.
    pub(super) fn record(
        &mut self,
        name: &str,
        expected_len: Option<u64>,
    ) -> Result<Option<Vec<u8>>, DataError> {
        let full = format!("{}{name}", self.prefix);
        let source = self.source;
        let fail = |message: String| DataError::Checkpoint {
            file: source.to_string(),
            message,
        };
        let mut file = match self.zip.by_name(&full) {
            Ok(file) => file,
            Err(ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(fail(format!("record `{full}`: {e}"))),
        };
        let size = file.size();
        if let Some(expected) = expected_len
            && size != expected
        {
            return Err(fail(format!(
                "record `{full}` holds {size} bytes, the pickle says {expected}"
            )));
        }
        let ratio_limit = file.compressed_size().saturating_mul(MAX_DEFLATE_RATIO) + 1024;
        if size > ratio_limit {
            return Err(fail(format!(
                "record `{full}` claims {size} bytes from {} compressed; refusing",
                file.compressed_size()
            )));
        }
        let mut out = Vec::new();
        out.try_reserve_exact(usize::try_from(size).unwrap_or(usize::MAX))
            .map_err(|_| fail(format!("record `{full}` of {size} bytes does not fit")))?;
        let read = (&mut file)
            .take(size)
            .read_to_end(&mut out)
            .map_err(|e| fail(format!("record `{full}`: {e}")))?;
        if read as u64 != size {
            return Err(fail(format!(
                "record `{full}` is truncated: {read} of {size} bytes"
            )));
        }
        Ok(Some(out))
    }

    /// The pickle, `<prefix>data.pkl`.
    pub(super) fn pickle(&mut self) -> Result<Vec<u8>, DataError> {
        self.record("data.pkl", None)?
            .ok_or_else(|| self.fail("the zip has no `data.pkl`".into()))
    }

    /// Checks `<prefix>byteorder` (absent in files of PyTorch before 1.10, which wrote
    /// little-endian): big-endian storages are refused.
    pub(super) fn check_byte_order(&mut self) -> Result<(), DataError> {
        match self.record("byteorder", None)?.as_deref() {
            None | Some(b"little") => Ok(()),
            Some(b"big") => Err(self.fail(
                "storages are big-endian (saved on a big-endian machine); not supported".into(),
            )),
            Some(other) => Err(self.fail(format!(
                "`byteorder` is `{}`, expected little or big",
                crate::excerpt::excerpt(&String::from_utf8_lossy(other))
            ))),
        }
    }
}
