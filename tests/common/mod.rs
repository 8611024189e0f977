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

/// A small synthetic MOSI pickle cut to the layout of the golden folders' tiny BERT models
/// (`T_l = 16`; `T_a = T_v = 16` aligned, 40 and 48 unaligned; `d_a` 5, `d_v` 20, token ids below their vocabulary of 1000), with
/// precomputed text features cut to the first 64 dimensions (`orig_d_l`, what MACI's
/// prototypes read); returns its path.
pub fn tiny_bert_data(dir: &Path, aligned: bool) -> PathBuf {
    use cider_data::dataset::Split;
    use cider_data::synth::{Layout, SynthConfig, generate};

    const T: usize = 16;
    let (layout, t_a, t_v) = match aligned {
        true => (Layout::MosiAligned, T, T),
        false => (Layout::MosiUnaligned, 40, 48),
    };
    let mut data = generate(&SynthConfig {
        layout,
        n_train: 48,
        n_valid: 20,
        n_test: 24,
        text_features: true,
        ..SynthConfig::default()
    })
    .unwrap();
    const D_L: usize = 64;
    let cut = |split: &mut Split| {
        let d = split.dims;
        let rows = |values: &[f32], t: usize, keep: usize, width: usize| -> Vec<f32> {
            values
                .chunks(t * width)
                .flat_map(|sample| sample[..keep * width].to_vec())
                .collect()
        };
        let ids: Vec<u32> = split
            .text_ids
            .chunks(d.t_l)
            .flat_map(|row| row[..T].to_vec())
            .map(|id| if id < 104 { id } else { 104 + id % 896 })
            .collect();
        split.text_ids = ids;
        split.text_mask = split
            .text_mask
            .chunks(d.t_l)
            .flat_map(|r| r[..T].to_vec())
            .collect();
        split.text_segment = split
            .text_segment
            .chunks(d.t_l)
            .flat_map(|r| r[..T].to_vec())
            .collect();
        split.text_features = split.text_features.as_ref().map(|features| {
            features
                .chunks(d.t_l * d.d_l)
                .flat_map(|sample| {
                    sample[..T * d.d_l]
                        .chunks(d.d_l)
                        .flat_map(|row| row[..D_L].to_vec())
                        .collect::<Vec<f32>>()
                })
                .collect()
        });
        split.audio = rows(&split.audio, d.t_a, t_a, d.d_a);
        split.vision = rows(&split.vision, d.t_v, t_v, d.d_v);
        for (lengths, keep) in [
            (&mut split.text_len, T),
            (&mut split.audio_len, t_a),
            (&mut split.vision_len, t_v),
        ] {
            for len in lengths.iter_mut() {
                *len = (*len).clamp(1, keep);
            }
        }
        // The last kept token closes the text: `[SEP]` where the row was cut.
        for (i, &len) in split.text_len.iter().enumerate() {
            split.text_ids[i * T + len - 1] = cider_data::dataset::special::SEP;
        }
        split.dims.d_l = D_L;
        split.dims.t_l = T;
        split.dims.t_a = t_a;
        split.dims.t_v = t_v;
    };
    for split in [&mut data.train, &mut data.valid, &mut data.test] {
        cut(split);
    }
    data.dims = data.train.dims;
    let path = dir.join(if aligned {
        "tiny_bert_aligned.pkl"
    } else {
        "tiny_bert_unaligned.pkl"
    });
    cider_data::pickle_write::to_path(&data.to_pyvalue().unwrap(), &path).unwrap();
    path
}
