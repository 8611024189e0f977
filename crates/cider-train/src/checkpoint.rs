//! Run directories and crash-safe checkpoints.
//!
//! A run directory holds:
//!
//! ```text
//! config.toml, config.json   the resolved TrainConfig
//! metrics.csv, metrics.json  one row / object per finished epoch
//! checkpoint/                the last finished epoch: model.mpk, optim.mpk, state.json, model.json
//! best/                      the best epoch so far: model.mpk, state.json, model.json, maci.json
//! ```
//!
//! Nothing is ever written in place. A file is written next to its target under a temporary
//! name, synced, and renamed onto it; a directory is filled under a temporary name and swapped
//! in by two renames (old → `.NAME.old`, new → `NAME`). A crash therefore leaves either the old
//! or the new version visible, never a mixture; [`recover_dir`] finishes an interrupted swap.
//! Model and optimiser records use Burn's named MessagePack format at full precision, so a
//! resumed run continues from bit-identical weights and Adam moments. Records are encoded in
//! memory and written with [`write_file_atomically`] (read with `fs::read`), so that an I/O
//! failure names the file and the system's reason; before a record is loaded its structure is
//! compared with the module it is loaded into ([`load_module_record`],
//! [`load_optimizer_record`]), so that weights of another model are an error naming the
//! parameter, not a panic.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::config::Config;
use burn::module::{Module, ModuleVisitor, Param};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Record, Recorder};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};
use cider_maci::full_model::{Cider, CiderConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;

use cider_model::memory_estimate::check_memory;

use crate::record_check::{Node, first_difference, optimizer_difference, parameters};

/// The last epoch's checkpoint, inside a run directory.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// The best epoch's model, inside a run directory.
pub const BEST_DIR: &str = "best";
/// Model weights (Burn named MessagePack, full precision), without the `.mpk` extension.
pub const MODEL_RECORD: &str = "model";
/// Optimiser state, without the `.mpk` extension.
pub const OPTIM_RECORD: &str = "optim";
/// The model's architecture ([`CiderConfig`] as JSON).
pub const MODEL_CONFIG: &str = "model.json";
/// Trainer state (JSON).
pub const STATE_FILE: &str = "state.json";

/// A checkpoint or run directory that cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// An I/O failure on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A Burn record that cannot be written or read (missing, corrupt, or of another model).
    #[error("{path}: cannot {action} the record: {message}")]
    Record {
        /// The file or folder involved.
        path: PathBuf,
        /// `read` or `write`.
        action: &'static str,
        /// What is wrong, and what was expected.
        message: String,
    },

    /// A record of another model than the one it is loaded into (another configuration, data
    /// or run): the first parameter that does not fit.
    #[error("{path}: {what} of another model than {against}: {detail}")]
    OtherModel {
        /// The record file.
        path: PathBuf,
        /// `weights` or `optimiser state`.
        what: &'static str,
        /// What the model was built from (its `model.json`, or the training configuration).
        against: String,
        /// The first parameter that does not fit, with both shapes.
        detail: String,
    },

    /// A model configuration the network refuses, or too large for the memory limit.
    #[error(transparent)]
    Model(Box<cider_model::ModelError>),

    /// A JSON file that cannot be parsed as what we write.
    #[error("{path}: {message}")]
    Format {
        /// The file or folder involved.
        path: PathBuf,
        /// What is wrong, and what was expected.
        message: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A sibling of `path` named `.NAME.SUFFIX` (hidden, same directory, so renames stay atomic).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{suffix}"))
}

/// Flushes a directory entry (new names) to disk; ignored where directories cannot be opened.
fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `path` atomically: `write` fills `.NAME.tmp`, which is synced and renamed onto
/// `path`. Readers see the old content or the new, never a partial file; on error the
/// temporary file is removed and `path` is untouched.
pub fn write_file_atomically(
    path: &Path,
    write: impl FnOnce(&mut fs::File) -> std::io::Result<()>,
) -> Result<(), CheckpointError> {
    let tmp = sibling(path, "tmp");
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        write(&mut file)?;
        file.flush()?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        });
    }
    if let Some(parent) = path.parent() {
        sync_dir(parent);
    }
    Ok(())
}

/// [`write_file_atomically`] with a value serialised as pretty JSON.
pub fn write_json_atomically<T: Serialize>(path: &Path, value: &T) -> Result<(), CheckpointError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CheckpointError::Format {
        path: path.to_path_buf(),
        message: format!("cannot serialise: {e}"),
    })?;
    write_file_atomically(path, |f| f.write_all(text.as_bytes()))
}

/// Reads a JSON file written by [`write_json_atomically`].
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, CheckpointError> {
    let text = fs::read_to_string(path).map_err(io_error(path))?;
    serde_json::from_str(&text).map_err(|e| CheckpointError::Format {
        path: path.to_path_buf(),
        message: format!("not the expected JSON: {e}"),
    })
}

/// Replaces directory `target` atomically: `fill` writes the new content into the empty
/// directory `.NAME.tmp`; its files are synced, then `target` (if any) is renamed to
/// `.NAME.old`, the new directory to `target`, and the old one removed. On error `target` is
/// untouched and the temporary directory removed.
pub fn replace_dir(
    target: &Path,
    fill: impl FnOnce(&Path) -> Result<(), CheckpointError>,
) -> Result<(), CheckpointError> {
    let tmp = sibling(target, "tmp");
    let old = sibling(target, "old");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_error(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io_error(&tmp))?;
    let filled = fill(&tmp).and_then(|()| sync_files(&tmp));
    if let Err(e) = filled {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if old.exists() {
        fs::remove_dir_all(&old).map_err(io_error(&old))?;
    }
    if target.exists() {
        fs::rename(target, &old).map_err(io_error(target))?;
    }
    fs::rename(&tmp, target).map_err(io_error(target))?;
    if let Some(parent) = target.parent() {
        sync_dir(parent);
    }
    if old.exists() {
        fs::remove_dir_all(&old).map_err(io_error(&old))?;
    }
    Ok(())
}

/// Syncs every file directly inside `dir`.
fn sync_files(dir: &Path) -> Result<(), CheckpointError> {
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        if path.is_file() {
            fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io_error(&path))?;
        }
    }
    sync_dir(dir);
    Ok(())
}

/// Finishes or rolls back an interrupted [`replace_dir`] of `target`: a leftover temporary
/// directory is removed (it was never swapped in); if `target` is missing but `.NAME.old`
/// exists (crash between the two renames), the old directory is put back; otherwise a
/// leftover `.NAME.old` is removed.
pub fn recover_dir(target: &Path) -> Result<(), CheckpointError> {
    let tmp = sibling(target, "tmp");
    let old = sibling(target, "old");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_error(&tmp))?;
    }
    if old.exists() {
        if target.exists() {
            fs::remove_dir_all(&old).map_err(io_error(&old))?;
        } else {
            fs::rename(&old, target).map_err(io_error(target))?;
        }
    }
    Ok(())
}

/// Stack size of the thread that encodes and decodes records.
const RECORD_STACK: usize = 64 << 20;

/// Runs `f` on a thread with a [`RECORD_STACK`]-byte stack: serde's derived code for a record
/// as deep as a whole model needs more than the 2 MiB of a test thread in unoptimised builds.
/// A panic inside `f` (Burn refusing a record) becomes [`CheckpointError::Record`].
fn on_large_stack<T: Send>(
    path: &Path,
    action: &'static str,
    f: impl FnOnce() -> T + Send,
) -> Result<T, CheckpointError> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("cider-record".into())
            .stack_size(RECORD_STACK)
            .spawn_scoped(scope, f)
            .map_err(io_error(path))?;
        handle.join().map_err(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the record decoder failed".into());
            CheckpointError::Record {
                path: path.to_path_buf(),
                action,
                message: first_line(&message),
            }
        })
    })
}

/// The first non-empty line of a message (Burn appends advice about old record formats).
fn first_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(message)
        .to_string()
}

/// The bytes recorder: the same named MessagePack as [`NamedMpkFileRecorder`], in memory, so
/// that file I/O goes through [`write_file_atomically`] and `fs::read` and their errors name
/// the real cause (a full disk, a missing file).
fn bytes_recorder() -> NamedMpkBytesRecorder<FullPrecisionSettings> {
    NamedMpkBytesRecorder::new()
}

/// Writes a Burn record as `dir/NAME.mpk`.
pub fn save_record<B: Backend, R: Record<B>>(
    record: R,
    dir: &Path,
    name: &str,
) -> Result<(), CheckpointError> {
    let path = dir.join(name).with_extension("mpk");
    let bytes = on_large_stack(&path, "write", || {
        Recorder::<B>::record(&bytes_recorder(), record, ())
    })?
    .map_err(|e| CheckpointError::Record {
        path: path.clone(),
        action: "write",
        message: first_line(&e.to_string()),
    })?;
    write_file_atomically(&path, |f| f.write_all(&bytes))
}

/// The bytes of `dir/NAME.mpk` and their structure ([`Node`]).
fn read_record_file<B: Backend>(
    dir: &Path,
    name: &str,
) -> Result<(PathBuf, Vec<u8>, Node), CheckpointError> {
    let path = dir.join(name).with_extension("mpk");
    let mut bytes = fs::read(&path).map_err(io_error(&path))?;
    let tree = on_large_stack(&path, "read", || {
        Recorder::<B>::load_item::<Node>(&bytes_recorder(), &mut bytes)
    })?;
    let tree = tree.map_err(|e| CheckpointError::Record {
        path: path.clone(),
        action: "read",
        message: format!(
            "not a complete Burn record (truncated or corrupt file): {}",
            first_line(&e.to_string())
        ),
    })?;
    Ok((path, bytes, tree))
}

/// Decodes record bytes of `path` already checked by [`read_record_file`].
fn decode_record<B: Backend, R: Record<B>>(
    path: &Path,
    bytes: Vec<u8>,
    device: &B::Device,
) -> Result<R, CheckpointError> {
    on_large_stack(path, "read", || {
        Recorder::<B>::load(&bytes_recorder(), bytes, device)
    })?
    .map_err(|e| CheckpointError::Record {
        path: path.to_path_buf(),
        action: "read",
        message: first_line(&e.to_string()),
    })
}

/// Reads a Burn record written by [`save_record`].
pub fn load_record<B: Backend, R: Record<B>>(
    dir: &Path,
    name: &str,
    device: &B::Device,
) -> Result<R, CheckpointError> {
    let (path, bytes, _) = read_record_file::<B>(dir, name)?;
    decode_record::<B, R>(&path, bytes, device)
}

/// Loads the weights `dir/NAME.mpk` into `module` after checking that the file's parameters
/// (names, list lengths, variants, shapes) are those of `module`; `against` names what
/// `module` was built from, for the message.
///
/// # Errors
/// [`CheckpointError::OtherModel`] naming the first parameter that does not fit; unreadable,
/// truncated or corrupt files.
pub fn load_module_record<B: Backend, M: Module<B>>(
    module: M,
    dir: &Path,
    name: &str,
    against: &str,
    device: &B::Device,
) -> Result<M, CheckpointError> {
    let (path, bytes, tree) = read_record_file::<B>(dir, name)?;
    let fresh = module.clone().into_record();
    let expected = on_large_stack(&path, "read", || {
        let mut bytes = Recorder::<B>::record(&bytes_recorder(), fresh, ())?;
        Recorder::<B>::load_item::<Node>(&bytes_recorder(), &mut bytes)
    })?
    .map_err(|e| CheckpointError::Record {
        path: path.clone(),
        action: "read",
        message: first_line(&e.to_string()),
    })?;
    if let Some(detail) = first_difference(&tree, &expected) {
        return Err(CheckpointError::OtherModel {
            path,
            what: "weights",
            against: against.to_string(),
            detail,
        });
    }
    let record = decode_record::<B, M::Record>(&path, bytes, device)?;
    Ok(module.load_record(record))
}

/// Reads the optimiser state `dir/NAME.mpk` of `model` after checking that every Adam moment
/// belongs to a parameter of `model` (same id, same shape).
///
/// # Errors
/// [`CheckpointError::OtherModel`] naming the first moment that does not fit; unreadable,
/// truncated or corrupt files.
pub fn load_optimizer_record<B: Backend, M: Module<B>, R: Record<B>>(
    model: &M,
    dir: &Path,
    name: &str,
    against: &str,
    device: &B::Device,
) -> Result<R, CheckpointError> {
    let (path, bytes, tree) = read_record_file::<B>(dir, name)?;
    if let Some(detail) = optimizer_difference(&tree, &parameters(model)) {
        return Err(CheckpointError::OtherModel {
            path,
            what: "optimiser state",
            against: against.to_string(),
            detail,
        });
    }
    decode_record::<B, R>(&path, bytes, device)
}

/// Initialises every lazily initialised parameter of `module` in place, in visiting order.
///
/// Burn draws a parameter's initial values on first use, and a clone of an untouched
/// parameter draws its own. Materialising right after `init` fixes the values once, so that
/// records of clones hold exactly what the module computes with, and the random stream is
/// consumed in one deterministic order.
pub fn materialize<B: Backend, M: Module<B>>(module: &M) {
    struct Touch;
    impl<B: Backend> ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let _ = param.val();
        }
        fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<B, D, Int>>) {
            let _ = param.val();
        }
        fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<B, D, Bool>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
}

/// Writes a model and its architecture into `dir` (`model.mpk`, `model.json`).
pub fn save_model<B: Backend>(
    model: &Cider<B>,
    config: &CiderConfig,
    dir: &Path,
) -> Result<(), CheckpointError> {
    let path = dir.join(MODEL_CONFIG);
    config.save(&path).map_err(io_error(&path))?;
    materialize(model);
    save_record::<B, _>(model.clone().into_record(), dir, MODEL_RECORD)
}

/// Reads the model saved by [`save_model`] in `dir` (a run's `best/` or `checkpoint/`): its
/// architecture from `model.json`, then its weights. A pretrained BERT folder is not needed:
/// every weight comes from the record.
pub fn load_model<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(CiderConfig, Cider<B>), CheckpointError> {
    let path = dir.join(MODEL_CONFIG);
    let config = CiderConfig::load(&path).map_err(|e| CheckpointError::Format {
        path: path.clone(),
        message: format!("not a CIDer model configuration: {e}"),
    })?;
    let refuse = |e: cider_model::ModelError| CheckpointError::Format {
        path: path.clone(),
        message: e.to_string(),
    };
    config.network.validate().map_err(refuse)?;
    check_memory(
        &config.network,
        config.num_classes,
        1,
        &path.display().to_string(),
    )
    .map_err(|e| CheckpointError::Model(Box::new(e)))?;
    let model = config.init::<B>(device).map_err(refuse)?;
    let against = path.display().to_string();
    let model = load_module_record(model, dir, MODEL_RECORD, &against, device)?;
    Ok((config, model))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use burn::backend::Flex;
    use burn::nn::{Linear, LinearConfig};
    use cider_model::network_config::{Alignment, NetworkConfig, NetworkOptions};

    use super::*;

    /// A fresh, empty temporary directory per call.
    fn scratch(name: &str) -> PathBuf {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cider-ckpt-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_file_is_replaced_only_once_complete() {
        let dir = scratch("file");
        let path = dir.join("metrics.csv");
        fs::write(&path, "old\n").unwrap();
        write_file_atomically(&path, |f| {
            f.write_all(b"new, half")?;
            // Mid-write, readers of the target still see the complete old file.
            assert_eq!(fs::read_to_string(&path)?, "old\n");
            f.write_all(b" and rest\n")
        })
        .unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new, half and rest\n");

        let failed = write_file_atomically(&path, |f| {
            f.write_all(b"partial")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(matches!(failed, Err(CheckpointError::Io { .. })));
        assert_eq!(fs::read_to_string(&path).unwrap(), "new, half and rest\n");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["metrics.csv"], "no temporary file left behind");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_directory_is_swapped_whole_and_a_failed_fill_leaves_the_old_one() {
        let dir = scratch("dir");
        let target = dir.join("checkpoint");
        replace_dir(&target, |tmp| {
            fs::write(tmp.join("a"), "1").map_err(io_error(tmp))?;
            fs::write(tmp.join("b"), "1").map_err(io_error(tmp))
        })
        .unwrap();
        let failed = replace_dir(&target, |tmp| {
            fs::write(tmp.join("a"), "2").map_err(io_error(tmp))?;
            assert!(
                !target.join("a").exists() || fs::read_to_string(target.join("a")).unwrap() == "1"
            );
            Err(CheckpointError::Format {
                path: tmp.to_path_buf(),
                message: "simulated failure".into(),
            })
        });
        assert!(failed.is_err());
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "1");
        assert_eq!(fs::read_to_string(target.join("b")).unwrap(), "1");
        replace_dir(&target, |tmp| {
            fs::write(tmp.join("a"), "3").map_err(io_error(tmp))
        })
        .unwrap();
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "3");
        assert!(
            !target.join("b").exists(),
            "the new directory replaces the old whole"
        );
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["checkpoint"]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_interrupted_swap_is_recovered() {
        let dir = scratch("recover");
        let target = dir.join("best");
        // Crash between the two renames: only `.best.old` (complete) and `.best.tmp` exist.
        fs::create_dir_all(sibling(&target, "old")).unwrap();
        fs::write(sibling(&target, "old").join("a"), "old").unwrap();
        fs::create_dir_all(sibling(&target, "tmp")).unwrap();
        fs::write(sibling(&target, "tmp").join("a"), "half").unwrap();
        recover_dir(&target).unwrap();
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "old");
        // Crash after the swap, before removing `.best.old`: the new directory stays.
        fs::create_dir_all(sibling(&target, "old")).unwrap();
        recover_dir(&target).unwrap();
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "old");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["best"]);
        fs::remove_dir_all(dir).unwrap();
    }

    /// A record that cannot be written names the file and the operating system's reason
    /// (here the temporary name is taken by a directory; a full disk reads the same way).
    #[test]
    fn a_failed_record_write_names_the_file_and_the_cause() {
        let _rng = crate::testkit::backend_rng();
        type B = Flex;
        let dir = scratch("write-fail");
        let linear: Linear<B> = LinearConfig::new(3, 2).init(&Default::default());
        let path = dir.join("lin.mpk");
        fs::create_dir_all(sibling(&path, "tmp")).unwrap();
        let error = save_record::<B, _>(linear.into_record(), &dir, "lin").unwrap_err();
        let cause = fs::File::create(sibling(&path, "tmp")).unwrap_err();
        assert!(matches!(error, CheckpointError::Io { .. }), "{error:?}");
        assert_eq!(error.to_string(), format!("{}: {cause}", path.display()));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn records_round_trip_bit_for_bit() {
        let _rng = crate::testkit::backend_rng();
        type B = Flex;
        let device = Default::default();
        let dir = scratch("record");
        let linear: Linear<B> = LinearConfig::new(3, 2).init(&device);
        materialize(&linear);
        save_record::<B, _>(linear.clone().into_record(), &dir, "lin").unwrap();
        let fresh: Linear<B> = LinearConfig::new(3, 2).init(&device);
        let loaded = fresh.load_record(load_record::<B, _>(&dir, "lin", &device).unwrap());
        let values = |l: &Linear<B>| l.weight.val().into_data().into_vec::<f32>().unwrap();
        assert_eq!(values(&linear), values(&loaded));
        assert_eq!(linear.weight.id, loaded.weight.id, "parameter ids are kept");
        let missing = load_record::<B, <Linear<B> as Module<B>>::Record>(&dir, "nope", &device);
        assert!(matches!(
            &missing,
            Err(CheckpointError::Io { path, .. }) if path.ends_with("nope.mpk")
        ));

        let network =
            NetworkConfig::new(8, 2, 3, 4, 4, 4, Alignment::Aligned).with_options(NetworkOptions {
                multimodal_layers: 1,
                num_heads: 2,
                ..NetworkOptions::default()
            });
        let config = CiderConfig::new(network, 3);
        let model = config.init::<B>(&device).unwrap();
        save_model(&model, &config, &dir).unwrap();
        let (read_config, read_model) = load_model::<B>(&dir, &device).unwrap();
        assert_eq!(read_config.num_classes, 3);
        assert_eq!(read_model.num_params(), model.num_params());
        assert_eq!(
            values(&model.mcm.heads[0]),
            values(&read_model.mcm.heads[0])
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
