//! Model benches: one inference forward pass (factual + counterfactual, as at test time) of the
//! reference configuration (D 32, 3 MCT layers, 8 heads) for MOSI aligned and unaligned, batch
//! 32 and 128, with precomputed text features.
//!
//! Run: `cargo bench -p cider-bench --bench model` (ids start with the backend name).

use std::hint::black_box;

use cider_bench::{TextMode, random_inputs, reference_model};
use cider_data::synth::Layout;
use cider_train::backend::{NAME, Selected};
use criterion::{Criterion, criterion_group, criterion_main};

fn forward(c: &mut Criterion) {
    let device = Default::default();
    let mut group = c.benchmark_group(format!("{NAME}/forward"));
    group.sample_size(10);
    for layout in [Layout::MosiAligned, Layout::MosiUnaligned] {
        let model = reference_model::<Selected>(layout, TextMode::Precomputed, &device)
            .expect("reference configuration is valid");
        for batch in [32, 128] {
            let inputs = random_inputs::<Selected>(layout, TextMode::Precomputed, batch, &device);
            let id = format!(
                "{}/b{batch}/{}",
                layout.name(),
                TextMode::Precomputed.name()
            );
            group.bench_function(id, |b| {
                b.iter(|| {
                    let out = model
                        .test(
                            inputs.view.clone(),
                            inputs.view.text.clone(),
                            &inputs.masks,
                            &inputs.confounders,
                        )
                        .expect("inputs fit the model");
                    // Reading the result back waits for the device.
                    let pred = out.factual.pred.into_data();
                    black_box(pred)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
