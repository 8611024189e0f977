//! What the `predict` and `missing_modalities` examples share: a trained run to open.

use std::path::PathBuf;

use cider::prelude::*;

/// The run named on the command line, else `runs/demo` when `cider demo` has written it,
/// else a small run trained now ([`TrainConfig::quick`], about a minute on 2 cores) in a
/// temporary folder, which the caller removes with [`RunDir::remove_if_temporary`].
pub struct RunDir {
    /// The run directory.
    pub path: PathBuf,
    temporary: bool,
}

impl RunDir {
    /// Finds or trains the run (see [`RunDir`]).
    pub fn find_or_train() -> Result<Self, cider::Error> {
        if let Some(path) = std::env::args().nth(1) {
            return Ok(Self {
                path: path.into(),
                temporary: false,
            });
        }
        let demo = PathBuf::from("runs/demo");
        if demo.join("best").is_dir() {
            return Ok(Self {
                path: demo,
                temporary: false,
            });
        }
        let path = std::env::temp_dir().join(format!("cider-example-{}", std::process::id()));
        eprintln!(
            "no run given and no runs/demo: training a small one in {} (about a minute)",
            path.display()
        );
        let run = Self {
            path,
            temporary: true,
        };
        let trained = Trainer::<DefaultTrainingBackend>::open(
            TrainConfig::quick(&run.path),
            Default::default(),
            false,
        )
        .and_then(|mut trainer| trainer.run(|_| {}));
        match trained {
            Ok(_) => Ok(run),
            Err(error) => {
                run.remove_if_temporary();
                Err(error.into())
            }
        }
    }

    /// Removes the run if this program trained it.
    pub fn remove_if_temporary(&self) {
        if self.temporary {
            // Best effort: a folder that cannot be removed stays in the temporary directory.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
