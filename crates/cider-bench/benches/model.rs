//! Model benches of the reference configuration (D 32, 3 MCT layers, 8 heads), MOSI aligned and
//! unaligned, batch 32 and 128, with precomputed text features and with a `bert-base`-shaped
//! text encoder (random weights):
//!
//! - `<backend>/forward/…`: one complete-view forward in eval mode (the reference harness's
//!   inference batch, `forward_once`);
//! - `<backend>/test_pass/…`: the test pass, factual and counterfactual views;
//! - `<backend>/mssd_step/…`: one MSSD training step (docs/method.md §6.1: both passes, both backward
//!   passes, both Adam updates).
//!
//! Run: `cargo bench -p cider-bench --bench model` (ids start with the backend name); select
//! with a filter, e.g. `cargo bench -p cider-bench --bench model -- precomputed`. A BERT-base
//! step at batch 128 takes about a minute on two cores, so the whole suite takes long; models
//! are built only for the benches the filter selects.

use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use cider_bench::{BenchInputs, TextMode, mssd_batch, random_inputs, reference_model};
use cider_data::synth::Layout;
use cider_maci::full_model::Cider;
use cider_train::backend::{NAME, SelectedAutodiff};
use cider_train::mssd::{MssdConfig, mssd_step};
use cider_train::optim::CiderAdamConfig;
use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};

const LAYOUTS: [Layout; 2] = [Layout::MosiAligned, Layout::MosiUnaligned];
const BATCHES: [usize; 2] = [32, 128];
const TEXTS: [TextMode; 2] = [TextMode::Precomputed, TextMode::BertBase];

fn id(layout: Layout, batch: usize, text: TextMode) -> String {
    format!("{}/b{batch}/{}", layout.name(), text.name())
}

/// Few samples: one iteration takes from a tenth of a second to about a minute.
fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(format!("{NAME}/{name}"));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(100));
    group.measurement_time(Duration::from_secs(5));
    group
}

/// The reference model in eval mode (built through autodiff, as training would, then
/// `valid()`) and one batch of random inputs.
fn eval_setup<B: AutodiffBackend>(
    layout: Layout,
    text: TextMode,
    batch: usize,
    device: &B::Device,
) -> (Cider<B::InnerBackend>, BenchInputs<B::InnerBackend>) {
    let model = reference_model::<B>(layout, text, device)
        .expect("reference configuration is valid")
        .valid();
    (model, random_inputs(layout, text, batch, device))
}

fn forward(c: &mut Criterion) {
    let device = Default::default();
    let mut group = group(c, "forward");
    for text in TEXTS {
        for layout in LAYOUTS {
            for batch in BATCHES {
                group.bench_function(id(layout, batch, text), |b| {
                    let (model, inputs) =
                        eval_setup::<SelectedAutodiff>(layout, text, batch, &device);
                    b.iter(|| {
                        let (out, _) = model
                            .forward_view(inputs.view.clone(), &inputs.masks, &inputs.confounders)
                            .expect("inputs fit the model");
                        // Reading the result back waits for the device.
                        black_box(out.pred.into_data())
                    })
                });
            }
        }
    }
    group.finish();
}

fn test_pass(c: &mut Criterion) {
    let device = Default::default();
    let mut group = group(c, "test_pass");
    for layout in LAYOUTS {
        for batch in BATCHES {
            let text = TextMode::Precomputed;
            group.bench_function(id(layout, batch, text), |b| {
                let (model, inputs) = eval_setup::<SelectedAutodiff>(layout, text, batch, &device);
                b.iter(|| {
                    let out = model
                        .test(
                            inputs.view.clone(),
                            inputs.view.text.clone(),
                            &inputs.masks,
                            &inputs.confounders,
                        )
                        .expect("inputs fit the model");
                    black_box(out.counterfactual.pred.into_data())
                })
            });
        }
    }
    group.finish();
}

fn training_step(c: &mut Criterion) {
    let device = Default::default();
    let mut group = group(c, "mssd_step");
    let config = MssdConfig::default();
    for text in TEXTS {
        for layout in LAYOUTS {
            for batch in BATCHES {
                group.bench_function(id(layout, batch, text), |b| {
                    let model = reference_model::<SelectedAutodiff>(layout, text, &device)
                        .expect("reference configuration is valid");
                    let state = RefCell::new(Some(model));
                    let mut optimizer = CiderAdamConfig::default().init();
                    let inputs = mssd_batch::<SelectedAutodiff>(layout, text, batch, &device);
                    // Each step consumes the model and returns the updated one.
                    b.iter_custom(|iterations| {
                        let start = Instant::now();
                        for _ in 0..iterations {
                            let model = state.borrow_mut().take().expect("model present");
                            let (model, losses) =
                                mssd_step(model, &mut optimizer, inputs.clone(), &config)
                                    .expect("batch fits the model");
                            black_box(losses);
                            *state.borrow_mut() = Some(model);
                        }
                        start.elapsed()
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, forward, test_pass, training_step);
criterion_main!(benches);
