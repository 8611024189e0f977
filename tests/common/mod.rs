//! Helpers shared by the integration tests: a tiny trained run. Each test binary uses a
//! subset of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A run directory trained for one epoch on a small synthetic pickle (with text features), and
/// that pickle.
pub fn tiny_run(dir: &Path) -> (PathBuf, PathBuf) {
    use cider_data::synth::{Layout, SynthConfig, Variant, generate};
    use cider_train::train_config::{DataConfig, FileData};

    let data = generate(&SynthConfig {
        layout: Layout::MosiAligned,
        variant: Variant::Ood,
        n_train: 48,
        n_valid: 20,
        n_test: 24,
        text_features: true,
        ..SynthConfig::default()
    })
    .unwrap();
    let pickle = dir.join("tiny.pkl");
    cider_data::pickle_write::to_path(&data.to_pyvalue().unwrap(), &pickle).unwrap();
    let run = dir.join("run");
    let data = DataConfig::File(FileData {
        path: pickle.clone(),
    });
    train_tiny(&run, data);
    (run, pickle)
}

/// Trains a tiny model (D 8, one layer, two heads) for one epoch into `run`.
pub fn train_tiny(run: &Path, data: cider_train::train_config::DataConfig) {
    use cider_train::backend::SelectedAutodiff;
    use cider_train::train_config::TrainConfig;
    use cider_train::trainer::Trainer;

    let mut config = TrainConfig {
        out_dir: run.to_path_buf(),
        epochs: 1,
        batch_size: 16,
        data,
        ..TrainConfig::default()
    };
    config.model.embed_dim = 8;
    config.model.multimodal_layers = 1;
    config.model.num_heads = 2;
    Trainer::<SelectedAutodiff>::open(config, Default::default(), false)
        .unwrap()
        .run(|_| {})
        .unwrap();
}
