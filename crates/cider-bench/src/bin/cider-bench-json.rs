//! Side-by-side figures for the reference comparison (docs/performance.md): for each
//! configuration, the median seconds per MSSD training step (both passes, two Adam updates)
//! and per inference batch (one complete-view forward in eval mode, as the reference harness's
//! `forward_once`), and the peak resident memory, as JSON on stdout.
//!
//! Each configuration and phase runs in a fresh child process (this same program with
//! `--child`), so that the peak memory (`VmHWM` of `/proc/self/status`) of one does not mix
//! with another's. The reference's figures come from `../shared/tools/side_by_side.sh`, which
//! runs the reference and this program alternately in one sitting and prints the ratios.
//!
//! ```sh
//! cargo run --release -p cider-bench --bin cider-bench-json                # every configuration
//! cargo run --release -p cider-bench --bin cider-bench-json -- \
//!     --configs mosi-unaligned/b32/precomputed --steps 10
//! cargo run --release -p cider-bench --no-default-features --features cuda \
//!     --bin cider-bench-json                                               # GPU backends
//! ```

use std::process::{Command, ExitCode};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use cider_bench::{TextMode, mssd_batch, random_inputs, reference_model};
use cider_data::synth::Layout;
use cider_train::backend::{NAME, Selected, SelectedAutodiff};
use cider_train::mssd::{MssdConfig, mssd_step};
use cider_train::optim::CiderAdamConfig;
use clap::Parser;
use serde::Serialize;
use serde_json::{Value, json};

/// Measures training steps, inference batches and peak memory per configuration; prints JSON.
#[derive(Parser, Debug)]
#[command(name = "cider-bench-json")]
struct Args {
    /// Configurations `LAYOUT/bBATCH/TEXT`, comma-separated (TEXT: precomputed, bert-base,
    /// bert-base-frozen). Default: MOSI aligned and unaligned, batch 32 and 128, precomputed
    /// and bert-base, plus bert-base-frozen for MOSI unaligned batch 32.
    #[arg(long, value_delimiter = ',')]
    configs: Vec<String>,
    /// Timed iterations per phase (precomputed text).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Timed iterations per phase with a BERT-base encoder.
    #[arg(long, default_value_t = 3)]
    bert_steps: usize,
    /// Untimed iterations before the timed ones.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Phases to run: train, infer.
    #[arg(long, value_delimiter = ',', default_values_t = [Phase::Train.name().to_string(), Phase::Infer.name().to_string()])]
    phases: Vec<String>,
    /// Run the compositions of Burn ops instead of the fused kernels (the "before" of
    /// docs/performance.md, in the same build).
    #[arg(long)]
    composed: bool,
    /// Internal: run one phase of one configuration in this process and print its JSON.
    #[arg(long, num_args = 2, value_names = ["PHASE", "CONFIG"])]
    child: Option<Vec<String>>,
}

/// What a child process measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// One MSSD step: complete pass, backward, Adam, missing pass, backward, Adam.
    Train,
    /// One complete-view forward in eval mode, no autodiff.
    Infer,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Train => "train",
            Phase::Infer => "infer",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Phase::Train, Phase::Infer]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

/// One configuration: layout, batch size, text mode.
#[derive(Debug, Clone, Copy)]
struct BenchConfig {
    layout: Layout,
    batch: usize,
    text: TextMode,
}

impl BenchConfig {
    fn id(&self) -> String {
        format!(
            "{}/b{}/{}",
            self.layout.name(),
            self.batch,
            self.text.name()
        )
    }

    fn parse(id: &str) -> Result<Self, String> {
        let parts: Vec<&str> = id.split('/').collect();
        let [layout, batch, text] = parts[..] else {
            return Err(format!("configuration `{id}`: expected LAYOUT/bBATCH/TEXT"));
        };
        let layout = layout
            .parse::<Layout>()
            .map_err(|e| format!("configuration `{id}`: {e}"))?;
        let batch = batch
            .strip_prefix('b')
            .and_then(|b| b.parse::<usize>().ok())
            .filter(|&b| b > 0)
            .ok_or_else(|| format!("configuration `{id}`: batch must look like b32"))?;
        let text = TextMode::from_name(text).ok_or_else(|| {
            format!(
                "configuration `{id}`: text must be one of {}",
                TextMode::NAMES.join(", ")
            )
        })?;
        Ok(Self {
            layout,
            batch,
            text,
        })
    }

    fn defaults() -> Vec<Self> {
        let mut all = Vec::new();
        for text in [TextMode::Precomputed, TextMode::BertBase] {
            for layout in [Layout::MosiUnaligned, Layout::MosiAligned] {
                for batch in [32, 128] {
                    all.push(Self {
                        layout,
                        batch,
                        text,
                    });
                }
            }
        }
        all.push(Self {
            layout: Layout::MosiAligned,
            batch: 32,
            text: TextMode::BertBaseFrozen,
        });
        all
    }
}

/// What a child reports.
#[derive(Debug, Serialize)]
struct PhaseReport {
    config: String,
    phase: &'static str,
    backend: &'static str,
    /// Median seconds per iteration.
    median_s: f64,
    min_s: f64,
    all_s: Vec<f64>,
    /// Process CPU seconds (user + system) per timed iteration divided by its wall seconds:
    /// about 2 when both cores work throughout.
    cpu_per_wall: Option<f64>,
    /// `VmHWM`: the process's peak resident memory, MiB.
    peak_rss_mib: Option<f64>,
    /// OS threads of the process at the end (the rayon pool plus the main thread).
    os_threads: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.child {
        Some(child) => run_child(&args, &child[0], &child[1]),
        None => run_parent(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every configuration and phase in its own child and prints one JSON document.
fn run_parent(args: &Args) -> Result<(), String> {
    let configs = if args.configs.is_empty() {
        BenchConfig::defaults()
    } else {
        args.configs
            .iter()
            .map(|c| BenchConfig::parse(c))
            .collect::<Result<_, _>>()?
    };
    let phases = args
        .phases
        .iter()
        .map(|p| Phase::from_name(p).ok_or_else(|| format!("unknown phase `{p}` (train, infer)")))
        .collect::<Result<Vec<_>, _>>()?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate this program: {e}"))?;
    let machine_start = machine_info();
    let mut results = Vec::new();
    for config in &configs {
        for &phase in &phases {
            eprintln!("{NAME} {} {} ...", config.id(), phase.name());
            let mut command = Command::new(&exe);
            if args.composed {
                command.arg("--composed");
            }
            let output = command
                .arg("--steps")
                .arg(args.steps.to_string())
                .arg("--bert-steps")
                .arg(args.bert_steps.to_string())
                .arg("--warmup")
                .arg(args.warmup.to_string())
                .arg("--child")
                .arg(phase.name())
                .arg(config.id())
                .output()
                .map_err(|e| format!("cannot start a child: {e}"))?;
            let stdout = String::from_utf8_lossy(&output.stdout);
            let entry: Value = if output.status.success() {
                serde_json::from_str(stdout.trim()).map_err(|e| {
                    format!("child for {} gave no JSON ({e}): {stdout}", config.id())
                })?
            } else {
                json!({
                    "config": config.id(),
                    "phase": phase.name(),
                    "error": String::from_utf8_lossy(&output.stderr).trim().to_string(),
                })
            };
            eprintln!("  {entry}");
            results.push(entry);
        }
    }
    let document = json!({
        "backend": NAME,
        "machine_start": machine_start,
        "machine_end": machine_info(),
        "steps": args.steps,
        "bert_steps": args.bert_steps,
        "warmup": args.warmup,
        "kernels": if args.composed { "composed" } else { "fused" },
        "results": results,
    });
    let text = serde_json::to_string_pretty(&document).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

/// Measures one phase of one configuration in this process and prints its [`PhaseReport`].
fn run_child(args: &Args, phase: &str, config: &str) -> Result<(), String> {
    cider_model::kernels::set_fused(!args.composed);
    let phase = Phase::from_name(phase).ok_or_else(|| format!("unknown phase `{phase}`"))?;
    let config = BenchConfig::parse(config)?;
    let steps = if config.text.uses_bert() {
        args.bert_steps
    } else {
        args.steps
    }
    .max(1);
    let times = match phase {
        Phase::Train => time_training(&config, args.warmup, steps)?,
        Phase::Infer => time_inference(&config, args.warmup, steps)?,
    };
    let mut sorted = times.iter().map(|(wall, _)| *wall).collect::<Vec<_>>();
    sorted.sort_by(f64::total_cmp);
    let wall: f64 = times.iter().map(|(wall, _)| wall).sum();
    let cpu: Option<f64> = times.iter().map(|(_, cpu)| *cpu).sum();
    let report = PhaseReport {
        config: config.id(),
        phase: phase.name(),
        backend: NAME,
        median_s: median(&sorted),
        min_s: sorted[0],
        all_s: times.iter().map(|(wall, _)| *wall).collect(),
        cpu_per_wall: cpu.map(|c| c / wall),
        peak_rss_mib: proc_status_field("VmHWM").map(|kib| kib as f64 / 1024.0),
        os_threads: proc_status_field("Threads"),
    };
    println!(
        "{}",
        serde_json::to_string(&report).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// Wall seconds and process CPU seconds of each timed MSSD step.
fn time_training(
    config: &BenchConfig,
    warmup: usize,
    steps: usize,
) -> Result<Vec<(f64, Option<f64>)>, String> {
    type B = SelectedAutodiff;
    let device = Default::default();
    <B as Backend>::seed(&device, 1111);
    let mut model =
        reference_model::<B>(config.layout, config.text, &device).map_err(|e| e.to_string())?;
    let mut optimizer = CiderAdamConfig::default().init();
    let mssd = MssdConfig::default();
    let batch = mssd_batch::<B>(config.layout, config.text, config.batch, &device);
    let mut times = Vec::with_capacity(steps);
    for i in 0..warmup + steps {
        let start = Instant::now();
        let cpu_start = process_cpu_seconds();
        // The step reads its losses back from the device, so it has finished when it returns.
        let (next, _losses) =
            mssd_step(model, &mut optimizer, batch.clone(), &mssd).map_err(|e| e.to_string())?;
        model = next;
        let wall = start.elapsed().as_secs_f64();
        let cpu = cpu_start.zip(process_cpu_seconds()).map(|(a, b)| b - a);
        if i >= warmup {
            times.push((wall, cpu));
        }
    }
    Ok(times)
}

/// Wall seconds and process CPU seconds of each timed complete-view forward (eval mode).
fn time_inference(
    config: &BenchConfig,
    warmup: usize,
    steps: usize,
) -> Result<Vec<(f64, Option<f64>)>, String> {
    type B = Selected;
    let device = Default::default();
    <B as Backend>::seed(&device, 1111);
    // Built on the autodiff backend and turned into its inference form, as after training.
    let model = reference_model::<SelectedAutodiff>(config.layout, config.text, &device)
        .map_err(|e| e.to_string())?
        .valid();
    let inputs = random_inputs::<B>(config.layout, config.text, config.batch, &device);
    let mut times = Vec::with_capacity(steps);
    for i in 0..warmup + steps {
        let start = Instant::now();
        let cpu_start = process_cpu_seconds();
        let (out, _) = model
            .forward_view(inputs.view.clone(), &inputs.masks, &inputs.confounders)
            .map_err(|e| e.to_string())?;
        // Reading the prediction back waits for the device.
        let pred = out.pred.into_data();
        std::hint::black_box(pred);
        let wall = start.elapsed().as_secs_f64();
        let cpu = cpu_start.zip(process_cpu_seconds()).map(|(a, b)| b - a);
        if i >= warmup {
            times.push((wall, cpu));
        }
    }
    Ok(times)
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// A numeric field of `/proc/self/status` (`VmHWM` in KiB, `Threads`), on Linux.
fn proc_status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// User + system CPU seconds of this process so far, from `/proc/self/stat` (clock ticks of
/// 1/100 s, the Linux `USER_HZ`).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// Cores, CPU model, memory, load and the thread settings that decide parallelism.
fn machine_info() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string());
    let mem_total_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0);
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    json!({
        "available_parallelism": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "cpu_model": model,
        "mem_total_mib": mem_total_mib,
        "loadavg": loadavg,
        "rayon_num_threads_env": std::env::var("RAYON_NUM_THREADS").ok(),
    })
}
