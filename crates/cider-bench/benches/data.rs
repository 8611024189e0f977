//! Data benches: reading a MOSI-size unaligned MMSA pickle (1284 / 229 / 686 samples, `T_a` 375,
//! `T_v` 500, with 768-d text features, as `cider data synth --mosi-size --text-features`
//! writes it), and generating the seed-1111 evaluation masks of its test split.
//!
//! Run: `cargo bench -p cider-bench --bench data`.

use std::hint::black_box;

use cider_data::dataset::Dataset;
use cider_data::missing::{self, EvalMissing};
use cider_data::synth::{self, Layout, SynthConfig, Variant};
use criterion::{Criterion, criterion_group, criterion_main};

fn mosi_size_unaligned() -> Dataset {
    let config = SynthConfig {
        layout: Layout::MosiUnaligned,
        variant: Variant::Iid,
        text_features: true,
        ..SynthConfig::mosi_size()
    };
    synth::generate(&config).expect("the synthetic MOSI-size layout is valid")
}

fn read_pickle(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("cider-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("mosi_unaligned_50.pkl");
    let value = mosi_size_unaligned()
        .to_pyvalue()
        .expect("dataset converts");
    cider_data::pickle_write::to_path(&value, &path).expect("pickle written");
    drop(value);
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    eprintln!("MOSI-size unaligned pickle: {:.1} MB", bytes as f64 / 1e6);

    let mut group = c.benchmark_group("data");
    group.sample_size(10);
    group.bench_function("read_mosi_unaligned_pickle", |b| {
        b.iter(|| black_box(Dataset::from_path(&path).expect("reads")))
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn eval_masks(c: &mut Criterion) {
    let data = mosi_size_unaligned();
    let mut group = c.benchmark_group("data");
    group.sample_size(10);
    group.bench_function("eval_masks_rmfm_0.5_mosi_unaligned_test", |b| {
        b.iter(|| {
            black_box(
                missing::eval_view(&data.test, EvalMissing::Rmfm { rate: 0.5 }, 1111)
                    .expect("valid mode"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, read_pickle, eval_masks);
criterion_main!(benches);
