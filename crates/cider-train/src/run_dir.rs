//! The files a run directory holds besides `checkpoint/` and `best/`, and the checks made on
//! it before a run starts or resumes (docs/method.md §6.3: resuming is exact). The layout and
//! the crash-safe writes are described in [`crate::checkpoint`].

use std::io::Write as _;

use crate::checkpoint::{self, BEST_DIR, CHECKPOINT_DIR, CheckpointError, STATE_FILE};
use crate::train_config::TrainConfig;
use crate::trainer::TrainError;

/// The resolved configuration of a run, in its directory (TOML, for people).
pub const CONFIG_TOML: &str = "config.toml";
/// The resolved configuration of a run (JSON, compared on resume).
pub const CONFIG_JSON: &str = "config.json";
/// Per-epoch records, CSV.
pub const METRICS_CSV: &str = "metrics.csv";
/// Per-epoch records, JSON array.
pub const METRICS_JSON: &str = "metrics.json";
/// Bias words, training prototypes and priors, in `best/`.
pub const MACI_FILE: &str = "maci.json";

/// Finishes interrupted directory swaps, then checks that a fresh run finds no checkpoint and
/// a resumed one finds its checkpoint and the same configuration.
pub(crate) fn check_run_dir(config: &TrainConfig, resume: bool) -> Result<(), TrainError> {
    let run_dir = &config.out_dir;
    let checkpoint_dir = run_dir.join(CHECKPOINT_DIR);
    checkpoint::recover_dir(&checkpoint_dir)?;
    checkpoint::recover_dir(&run_dir.join(BEST_DIR))?;
    let has_checkpoint = checkpoint_dir.join(STATE_FILE).is_file();
    let refuse = |message: &str| {
        Err(TrainError::RunDir {
            dir: run_dir.clone(),
            message: message.to_string(),
        })
    };
    match (resume, has_checkpoint) {
        (true, false) => return refuse("no checkpoint to resume from"),
        (false, true) => {
            return refuse(
                "already holds a run; resume it with --resume or choose another output directory",
            );
        }
        _ => {}
    }
    if resume {
        let saved: TrainConfig = checkpoint::read_json(&run_dir.join(CONFIG_JSON))?;
        if let Some(key) = saved.first_difference(config)? {
            return Err(TrainError::Mismatch {
                dir: run_dir.clone(),
                saved: saved.value_at(&key),
                requested: config.value_at(&key),
                key,
            });
        }
    }
    Ok(())
}

/// Creates the run directory and writes the resolved configuration.
pub(crate) fn start_run_dir(config: &TrainConfig) -> Result<(), TrainError> {
    let run_dir = &config.out_dir;
    std::fs::create_dir_all(run_dir).map_err(|source| CheckpointError::Io {
        path: run_dir.clone(),
        source,
    })?;
    let text = config.to_toml_string()?;
    checkpoint::write_file_atomically(&run_dir.join(CONFIG_TOML), |f| {
        f.write_all(text.as_bytes())
    })?;
    checkpoint::write_json_atomically(&run_dir.join(CONFIG_JSON), config)?;
    Ok(())
}
