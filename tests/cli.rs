//! End-to-end tests of the `cider` program: real-format fixtures in, reports and files out.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::{tiny_run, train_tiny};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cider(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cider"))
        .args(args)
        .output()
        .expect("the cider binary runs")
}

/// Runs `cider` and asserts that it succeeded (showing its stderr otherwise).
fn cider_ok(args: &[&str]) -> Output {
    let output = cider(args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "cider failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

#[test]
fn inspect_reproduces_every_fact_of_the_fixture_manifest() {
    let dir = workspace().join("testdata/mmsa");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let files = manifest["files"].as_object().unwrap();
    assert_eq!(files.len(), 3);
    for (name, facts) in files {
        let path = dir.join(name);
        let report = json_of(&cider(&[
            "data",
            "inspect",
            path.to_str().unwrap(),
            "--json",
        ]));
        assert_eq!(report["aligned"], facts["aligned"], "{name}");
        for split in ["train", "valid", "test"] {
            let want = &facts["splits"][split];
            let got = &report["splits"][split];
            let context = format!("{name} / {split}");
            assert_eq!(got["n"], want["audio"]["shape"][0], "{context}");
            for key in ["text_bert", "audio", "vision"] {
                assert_eq!(got[key], want[key]["shape"], "{context}: {key} shape");
            }
            assert_eq!(
                got["three_way_counts"], want["three_way_counts"],
                "{context}"
            );
            assert_eq!(
                got["audio_nonfinite"], want["audio"]["neg_inf"],
                "{context}"
            );
            for (ours, theirs) in [("audio_sum", "audio"), ("vision_sum", "vision")] {
                let (a, b) = (
                    got[ours].as_f64().unwrap(),
                    want[theirs]["sum_finite"].as_f64().unwrap(),
                );
                assert!(close(a, b), "{context}: {ours} {a} vs manifest {b}");
            }
        }
    }
}

#[test]
fn synthetic_data_written_as_a_pickle_reads_back_with_the_same_facts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("synth.pkl");
    let status = cider(&[
        "data",
        "synth",
        "--layout",
        "mosi-aligned",
        "--variant",
        "ood",
        "--seed",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let report = json_of(&cider(&[
        "data",
        "inspect",
        out.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(report["aligned"], true);
    let train = &report["splits"]["train"];
    let n = train["n"].as_u64().unwrap();
    assert!(n > 0);
    assert_eq!(train["audio"], serde_json::json!([n, 50, 5]));
    assert_eq!(train["vision"], serde_json::json!([n, 50, 20]));
    let counts: u64 = train["three_way_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(counts, n);
}

fn assert_one_line_error(output: &Output, needles: &[&str]) {
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "`{needle}` in {stderr}");
    }
}

#[test]
fn a_foreign_file_gives_one_clear_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("notes.pkl");
    std::fs::write(&bogus, b"this is not a pickle").unwrap();
    let output = cider(&["data", "inspect", bogus.to_str().unwrap()]);
    assert_one_line_error(&output, &["notes.pkl"]);
    let missing: &Path = &dir.path().join("absent.pkl");
    let output = cider(&["data", "inspect", missing.to_str().unwrap()]);
    assert_one_line_error(&output, &["absent.pkl"]);
}

#[test]
fn mask_writes_the_reference_masks_of_the_fixtures() {
    let cases = [
        ("mosi_unaligned", "rmfm", "0.3", "RMFM_0.3"),
        (
            "mosi_aligned",
            "rmfm-same",
            "0.2,0.5,0.8",
            "RMFM_same_0.2-0.5-0.8",
        ),
        ("mosi_aligned", "stmfm", "0.4", "STMFM_0.4"),
    ];
    for (layout, mode, rate, case) in cases {
        let dir = tempfile::tempdir().unwrap();
        let file = workspace().join(format!("testdata/mmsa/{layout}_50_tiny.pkl"));
        cider_ok(&[
            "data",
            "mask",
            file.to_str().unwrap(),
            "--split",
            "test",
            "--mode",
            mode,
            "--rate",
            rate,
            "--seed",
            "1111",
            "--task",
            "binary",
            "--out",
            dir.path().to_str().unwrap(),
        ]);
        let reference = workspace().join(format!("testdata/masks/{layout}"));
        let read = |path: PathBuf| cider_data::npy::from_path(path).unwrap();
        for name in [
            "text_m_ids",
            "text_cf_ids",
            "text_missing_mask",
            "audio_missing_mask",
            "vision_missing_mask",
            "audio_m",
            "vision_m",
        ] {
            let ours = read(dir.path().join(format!("{name}.npy")));
            let theirs = read(reference.join(format!("{case}.{name}.npy")));
            assert_eq!(ours, theirs, "{layout} {case} {name}");
        }
        let ours = read(dir.path().join("bias_word_ids.npy"));
        assert_eq!(
            ours,
            read(reference.join("bias_word_ids.npy")),
            "{layout} bias words"
        );
    }
}

#[test]
fn mask_refuses_a_rate_outside_the_unit_interval() {
    let dir = tempfile::tempdir().unwrap();
    let file = workspace().join("testdata/mmsa/mosi_aligned_50_tiny.pkl");
    let output = cider(&[
        "data",
        "mask",
        file.to_str().unwrap(),
        "--mode",
        "rmfm",
        "--rate",
        "1.5",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_one_line_error(&output, &["1.5", "[0, 1]"]);
}

#[test]
fn check_golden_passes_on_both_reference_folders_and_fails_at_a_tiny_tolerance() {
    for config in ["mosi-aligned-small", "mosi-unaligned-small"] {
        let dir = workspace().join("testdata/torch-golden").join(config);
        let dir = dir.to_str().unwrap();
        let report = json_of(&cider(&["check-golden", dir, "--json"]));
        assert_eq!(report["passed"], true, "{config}");
        let forward = report["forward"].as_array().unwrap();
        assert_eq!(forward.len(), 19, "{config}: every forward output compared");
        for entry in forward {
            let error = entry["max_abs_error"].as_f64().unwrap();
            assert!(error <= 1e-4, "{config} {}: {error}", entry["name"]);
        }
        let files = report["training_step"]["files"].as_array().unwrap();
        let names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["grads_pass1", "grads_pass2_accumulated", "model_after_step"]
        );

        let table = cider(&["check-golden", dir]);
        assert!(table.status.success());
        let text = String::from_utf8_lossy(&table.stdout);
        assert!(text.contains("forward_test_cf_pred_m") && text.contains("grads_pass1"));

        let strict = cider(&["check-golden", dir, "--tol", "1e-12"]);
        assert_eq!(strict.status.code(), Some(1), "{config}");
        assert_one_line_error(&strict, &["golden check failed", "--tol 1e-12"]);
    }
}

#[test]
fn check_golden_takes_the_weights_from_the_authors_pt_files() {
    for (config, whole) in [
        (
            "mosi-aligned-small",
            "mosi_aligned_iid_binary_CIDER_trial_0.pt",
        ),
        (
            "mosi-unaligned-small",
            "mosi_unaligned_iid_binary_CIDER_trial_0.pt",
        ),
    ] {
        let dir = workspace().join("testdata/torch-golden").join(config);
        let checkpoints = workspace().join("testdata/torch-checkpoints").join(config);
        for file in [whole, "state_dict.pt"] {
            let weights = checkpoints.join(file);
            let report = json_of(&cider(&[
                "check-golden",
                dir.to_str().unwrap(),
                "--weights",
                weights.to_str().unwrap(),
                "--json",
            ]));
            assert_eq!(report["passed"], true, "{config} {file}");
            assert_eq!(report["forward"].as_array().unwrap().len(), 19);
            for entry in report["forward"].as_array().unwrap() {
                let error = entry["max_abs_error"].as_f64().unwrap();
                assert!(error <= 1e-4, "{config} {file} {}: {error}", entry["name"]);
            }
            assert_eq!(
                report["training_step"]["files"].as_array().unwrap().len(),
                3,
                "{config} {file}: gradients and weights after the step compared"
            );
        }
    }
    // The weights of the other folder's model: the mis-shaped parameters are named.
    let aligned = workspace().join("testdata/torch-golden/mosi-aligned-small");
    let other = workspace().join("testdata/torch-checkpoints/mosi-unaligned-small/state_dict.pt");
    let output = cider(&[
        "check-golden",
        aligned.to_str().unwrap(),
        "--weights",
        other.to_str().unwrap(),
    ]);
    assert_one_line_error(&output, &["state_dict.pt"]);
}

#[test]
fn import_makes_a_run_that_eval_and_infer_accept() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = workspace().join(
        "testdata/torch-checkpoints/mosi-aligned-small/mosi_aligned_iid_binary_CIDER_trial_0.pt",
    );
    let data = common::tiny_bert_data(dir.path(), true);
    let out = dir.path().join("imported");
    let (checkpoint, data_arg, out_arg) = (
        checkpoint.to_str().unwrap(),
        data.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let output = cider_ok(&["import", checkpoint, "--data", data_arg, "--out", out_arg]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("3 classes, aligned, D = 32, 2 MCT layers, 8 heads"),
        "{text}"
    );
    assert!(text.trim_end().ends_with(out_arg), "{text}");
    for file in [
        "config.toml",
        "import.json",
        "best/model.json",
        "bert/tokenizer.json",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
    let results = dir.path().join("results");
    cider_ok(&[
        "eval",
        "--checkpoint",
        out_arg,
        "--rates",
        "0,0.5",
        "--out",
        results.to_str().unwrap(),
    ]);
    assert!(results.join("results.json").is_file());
    let frames = |name: &str, width: usize| {
        use cider_data::{ArrayData, NumpyArray};
        let path = dir.path().join(name);
        let array = NumpyArray::new(vec![16, width], ArrayData::F32(vec![0.1; 16 * width]));
        cider_data::npy::to_path(&array.unwrap(), &path).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (audio, vision) = (frames("a.npy", 5), frames("v.npy", 20));
    let infer = cider_ok(&[
        "infer",
        "--checkpoint",
        out_arg,
        "--text",
        "w104 w512",
        "--audio",
        &audio,
        "--vision",
        &vision,
        "--json",
    ]);
    let infer = String::from_utf8_lossy(&infer.stdout);
    assert!(infer.contains("\"debiased\""), "{infer}");

    // Importing again into the same directory, and importing a state dict, are refused.
    let again = cider(&["import", checkpoint, "--data", data_arg, "--out", out_arg]);
    assert_one_line_error(&again, &["imported", "already exists"]);
    let state = workspace().join("testdata/torch-checkpoints/mosi-aligned-small/state_dict.pt");
    let other = dir.path().join("other");
    let output = cider(&[
        "import",
        state.to_str().unwrap(),
        "--data",
        data_arg,
        "--out",
        other.to_str().unwrap(),
    ]);
    assert_one_line_error(
        &output,
        &["state_dict.pt", "a state dict", "holds no configuration"],
    );
    assert!(!other.exists());
    // Data of another layout: nothing is written.
    let unaligned = common::tiny_bert_data(dir.path(), false);
    let output = cider(&[
        "import",
        checkpoint,
        "--data",
        unaligned.to_str().unwrap(),
        "--out",
        other.to_str().unwrap(),
    ]);
    assert_one_line_error(&output, &["tiny_bert_unaligned.pkl", "does not fit"]);
    assert!(!other.exists());
    // The authors' prototype files: theirs are MOSI's (793 wide), this model's MCM reads 89.
    let theirs = workspace().join("testdata/reference-maci");
    let output = cider(&[
        "import",
        checkpoint,
        "--data",
        data_arg,
        "--prototypes",
        theirs.to_str().unwrap(),
        "--out",
        other.to_str().unwrap(),
    ]);
    assert_one_line_error(
        &output,
        &[
            "mosi_train_binary_aligned_0.npy",
            "expected an array of shape [89]",
        ],
    );
    assert!(!other.exists());
    // Files of the right width, in the reference's layout, end up in maci.json.
    let repo = dir.path().join("repo");
    let feats = repo.join("mosi_feats/iid/binary");
    let probs = repo.join("mosi_probs/iid/binary");
    std::fs::create_dir_all(&feats).unwrap();
    std::fs::create_dir_all(&probs).unwrap();
    let write = |path: PathBuf, values: Vec<f64>| {
        use cider_data::{ArrayData, NumpyArray};
        let array = NumpyArray::new(vec![values.len()], ArrayData::F64(values)).unwrap();
        cider_data::npy::to_path(&array, &path).unwrap();
    };
    for class in 0..3 {
        let z: Vec<f64> = (0..89).map(|j| (class * 100 + j) as f64 / 64.0).collect();
        write(
            feats.join(format!("mosi_train_binary_aligned_{class}.npy")),
            z,
        );
    }
    write(
        probs.join("mosi_train_binary.npy"),
        vec![0.25, 0.125, 0.625],
    );
    cider_ok(&[
        "import",
        checkpoint,
        "--data",
        data_arg,
        "--prototypes",
        repo.to_str().unwrap(),
        "--out",
        other.to_str().unwrap(),
    ]);
    let maci: Value =
        serde_json::from_str(&std::fs::read_to_string(other.join("best/maci.json")).unwrap())
            .unwrap();
    assert_eq!(maci["priors"], serde_json::json!([0.25, 0.125, 0.625]));
    assert_eq!(maci["prototypes"][2][1], serde_json::json!(201.0 / 64.0));
    cider_ok(&[
        "infer",
        "--checkpoint",
        other.to_str().unwrap(),
        "--data",
        data_arg,
        "--json",
    ]);
    // A file renamed away from the reference's pattern: dataset and variant are asked for.
    let renamed = dir.path().join("model.pt");
    std::fs::copy(checkpoint, &renamed).unwrap();
    let third = dir.path().join("third");
    let import_renamed = |extra: &[&str]| {
        let mut args = vec![
            "import",
            renamed.to_str().unwrap(),
            "--data",
            data_arg,
            "--prototypes",
            repo.to_str().unwrap(),
            "--out",
            third.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        cider(&args)
    };
    assert_one_line_error(&import_renamed(&[]), &["model.pt", "--dataset"]);
    assert_one_line_error(&import_renamed(&["--dataset", "mosi"]), &["--variant"]);
    let output = import_renamed(&["--dataset", "mosi", "--variant", "iid"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(third.join("best/maci.json").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("importing"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn eval_refuses_bad_rate_strings_with_one_line() {
    for (rates, needle) in [
        ("0:1.5:0.1", "1.5"),
        ("0.2,x", "`x` is not a number"),
        ("0.5,0.1", "increase strictly"),
        ("0:1:0", "step"),
    ] {
        let output = cider(&["eval", "--checkpoint", "no-such-run", "--rates", rates]);
        assert_one_line_error(&output, &["--rates", rates, needle]);
    }
}

#[test]
fn eval_plot_and_infer_on_a_trained_run() {
    let dir = tempfile::tempdir().unwrap();
    let (run, pickle) = tiny_run(dir.path());
    let run_arg = run.to_str().unwrap();

    // Two evaluations with the same settings write byte-identical results.
    let eval = |out: &str, extra: &[&str]| {
        let out = dir.path().join(out);
        let mut args = vec![
            "eval",
            "--checkpoint",
            run_arg,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        cider_ok(&args);
        out
    };
    let a = eval("eval-a", &["--rates", "0:1:0.25"]);
    let b = eval("eval-b", &["--rates", "0:1:0.25"]);
    for file in ["results.json", "results.csv"] {
        assert_eq!(
            std::fs::read(a.join(file)).unwrap(),
            std::fs::read(b.join(file)).unwrap(),
            "{file}"
        );
    }
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["mode"], "RMFM");
    assert_eq!(results["seed"], 1111);
    assert_eq!(
        results["rates"],
        serde_json::json!([0.0, 0.25, 0.5, 0.75, 1.0])
    );
    let series = results["metrics"]["Non0_acc_2"].as_array().unwrap();
    assert_eq!(series.len(), 5);
    let values: Vec<f64> = series.iter().map(|v| v.as_f64().unwrap()).collect();
    let trapezoid: f64 = values.windows(2).map(|w| (w[0] + w[1]) / 2.0 * 0.25).sum();
    let auilc = results["auilc"]["Non0_acc_2"].as_f64().unwrap();
    assert!((auilc - trapezoid).abs() < 1e-12, "{auilc} vs {trapezoid}");
    let tau = results["tau"]["value"].as_f64().unwrap();
    assert_eq!(results["tau"]["rule"], "shift-gated");
    assert!((0.0..=3.0).contains(&tau));
    for (m, o) in values.iter().zip(
        results["oracle"]["metrics"]["Non0_acc_2"]
            .as_array()
            .unwrap(),
    ) {
        assert!(*m <= o.as_f64().unwrap(), "the oracle maximises over τ");
    }
    assert_eq!(results["config"]["split"], "test");
    assert_eq!(results["config"]["task"], "binary");

    // SMM: a table of seven subsets.
    let smm = eval("eval-smm", &["--mode", "smm"]);
    let smm: Value =
        serde_json::from_str(&std::fs::read_to_string(smm.join("results.json")).unwrap()).unwrap();
    assert_eq!(smm["mode"], "SMM");
    assert_eq!(smm["smm"].as_object().unwrap().len(), 7);
    assert!(smm["smm"]["TAV"]["Non0_acc_2"].is_f64());

    // Plot both evaluations with explicit labels.
    let plots = dir.path().join("plots");
    cider_ok(&[
        "plot",
        a.join("results.json").to_str().unwrap(),
        dir.path().join("eval-b/results.json").to_str().unwrap(),
        "--labels",
        "first,second",
        "--out",
        plots.to_str().unwrap(),
    ]);
    let svg = std::fs::read_to_string(plots.join("Non0_acc_2.svg")).unwrap();
    for needle in [
        "first (τ = ",
        "second (τ = ",
        "missing rate p (RMFM)",
        "Non0_acc_2 (fraction)",
    ] {
        assert!(svg.contains(needle), "{needle}");
    }
    assert_eq!(std::fs::read_dir(&plots).unwrap().count(), 6);
    let wrong = cider(&[
        "plot",
        a.join("results.json").to_str().unwrap(),
        "--labels",
        "x,y",
        "--out",
        plots.to_str().unwrap(),
    ]);
    assert_one_line_error(&wrong, &["--labels", "2 label(s) for 1 results file(s)"]);

    // Inference on every test sample: one JSON line each, probabilities summing to 1.
    let output = cider_ok(&[
        "infer",
        "--checkpoint",
        run_arg,
        "--data",
        pickle.to_str().unwrap(),
        "--json",
    ]);
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 24);
    for line in &lines {
        for key in ["probs", "debiased"] {
            let total: f64 = line[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_f64().unwrap())
                .sum();
            assert!((total - 1.0).abs() < 1e-5, "{key}: {line}");
        }
        let prediction = line["prediction"].as_u64().unwrap() as usize;
        let debiased = line["debiased"].as_array().unwrap();
        let best = debiased[prediction].as_f64().unwrap();
        assert!(debiased.iter().all(|p| p.as_f64().unwrap() <= best));
        assert!(line["label"].as_u64().unwrap() < 3);
    }

    // `--variant` belongs to runs on the built-in synthetic data.
    let output = cider(&["eval", "--checkpoint", run_arg, "--variant", "iid"]);
    assert_one_line_error(
        &output,
        &["--variant", "was trained on the file", "use --data"],
    );

    // Raw text needs a BERT checkpoint: this one reads precomputed features.
    let npy = dir.path().join("frames.npy");
    let frames =
        cider_data::NumpyArray::new(vec![4, 5], cider_data::ArrayData::F32(vec![0.5; 20])).unwrap();
    cider_data::npy::to_path(&frames, &npy).unwrap();
    let output = cider(&[
        "infer",
        "--checkpoint",
        run_arg,
        "--text",
        "a fine film",
        "--audio",
        npy.to_str().unwrap(),
        "--vision",
        npy.to_str().unwrap(),
    ]);
    assert_one_line_error(
        &output,
        &["precomputed text features", "raw text cannot be encoded"],
    );
}

/// A run on the built-in synthetic data evaluates the test split of either variant; the
/// default is the run's own variant, and the results name the variant evaluated.
#[test]
fn eval_variant_selects_the_synthetic_test_split() {
    use cider_data::synth::SynthConfig;
    use cider_train::train_config::DataConfig;

    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_tiny(
        &run,
        DataConfig::Synthetic(SynthConfig {
            n_train: 48,
            n_valid: 20,
            n_test: 40,
            ..SynthConfig::default()
        }),
    );
    let eval = |out: &str, extra: &[&str]| -> Value {
        let out = dir.path().join(out);
        let mut args = vec!["eval", "--checkpoint", run.to_str().unwrap()];
        args.extend_from_slice(&["--rates", "0,0.5", "--out", out.to_str().unwrap()]);
        args.extend_from_slice(extra);
        cider_ok(&args);
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
    };
    let own = eval("own", &[]);
    let ood = eval("ood", &["--variant", "ood"]);
    let iid = eval("iid", &["--variant", "iid"]);
    assert_eq!(own["config"]["variant"], "ood");
    assert_eq!(own, ood);
    assert_eq!(iid["config"]["variant"], "iid");
    assert_ne!(iid["metrics"], ood["metrics"], "the two test splits differ");
    assert_eq!(
        iid["tau"]["rules"]["validation"], ood["tau"]["rules"]["validation"],
        "validation's τ comes from the shared validation split"
    );
    assert_eq!(ood["tau"]["rule"], "shift-gated");
    assert_eq!(ood["config"]["shift"], "both");

    // A rule that reads the evaluated split: its τ is one the file lists for every rule, and
    // the metrics are the sweep's column at that τ.
    let label = eval(
        "label",
        &[
            "--variant",
            "ood",
            "--shift",
            "label",
            "--tau",
            "prior-matching",
        ],
    );
    assert_eq!(label["config"]["shift"], "label");
    assert_eq!(label["tau"]["rule"], "prior-matching");
    assert!(
        label["tau"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("EM prior estimate ["),
        "{}",
        label["tau"]
    );
    let tau = label["tau"]["value"].as_f64().unwrap();
    assert_eq!(label["tau"]["rules"]["prior-matching"].as_f64(), Some(tau));
    let column = (tau * 10.0).round() as usize;
    for (k, row) in label["sweep"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert_eq!(row[column], label["metrics"]["Non0_acc_2"][k]);
    }
    assert_ne!(label["metrics"], ood["metrics"], "another test split");
    let output = cider(&[
        "eval",
        "--checkpoint",
        run.to_str().unwrap(),
        "--variant",
        "iid",
        "--shift",
        "label",
    ]);
    assert_one_line_error(&output, &["--shift", "use it with --variant ood"]);
    // A fixed τ.
    let fixed = eval("fixed", &["--tau", "0.7"]);
    assert_eq!(
        (&fixed["tau"]["rule"], &fixed["tau"]["value"]),
        (&Value::from("fixed"), &Value::from(0.7))
    );
}

/// A run directory by hand whose model reads a tiny BERT (random weights), with the tokenizer
/// folder the run's configuration names: raw text goes through the tokenizer, and the printed
/// probabilities equal a direct forward pass of the same model.
#[test]
fn infer_encodes_raw_text_with_the_run_tokenizer() {
    use burn::tensor::{Int, Tensor, TensorData};
    use cider_data::bias::counterfactual_ids;
    use cider_maci::full_model::{CiderConfig, Confounders};
    use cider_model::bert::BertConfig;
    use cider_model::network::{InputMasks, TextInput, ViewInput};
    use cider_model::network_config::TextSource;
    use cider_model::network_config::{Alignment, NetworkConfig, NetworkOptions};
    use cider_model::tokenize::WordPieceTokenizer;
    use cider_train::backend::Selected;
    use cider_train::checkpoint::{save_model, write_json_atomically};
    use cider_train::run_state::MaciState;
    use cider_train::train_config::TrainConfig;

    let dir = tempfile::tempdir().unwrap();
    // The tokenizer folder: config.json, vocab.txt and a weight file (only opened, not read).
    let bert_dir = dir.path().join("bert");
    std::fs::create_dir_all(&bert_dir).unwrap();
    std::fs::copy(
        workspace().join("testdata/wordpiece/vocab.txt"),
        bert_dir.join("vocab.txt"),
    )
    .unwrap();
    std::fs::write(
        bert_dir.join("config.json"),
        r#"{"vocab_size": 200, "hidden_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 16}"#,
    )
    .unwrap();
    std::fs::write(bert_dir.join("model.safetensors"), b"unused").unwrap();

    // vocab_size 200 covers the reference's special ids ([MASK] = 103) of the counterfactual.
    let (t_l, t_a, t_v, d_a, d_v) = (12, 30, 40, 5, 20);
    let bert = BertConfig::new(200, 16, 1, 2, 32, 16);
    let network = NetworkConfig::new(16, d_a, d_v, t_l, t_a, t_v, Alignment::Unaligned)
        .with_options(NetworkOptions {
            embed_dim: 8,
            num_heads: 2,
            multimodal_layers: 1,
            ..NetworkOptions::default()
        })
        .with_bert_encoder(bert);
    let model_config = CiderConfig::new(network, 3);
    let device = Default::default();
    let model = model_config.init::<Selected>(&device).unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(run.join("best")).unwrap();
    save_model(&model, &model_config, &run.join("best")).unwrap();
    let mut config = TrainConfig::default();
    config.model.text_encoder = TextSource::Bert;
    config.model.bert_dir = Some(bert_dir.clone());
    std::fs::write(run.join("config.toml"), config.to_toml_string().unwrap()).unwrap();
    // Prototypes [C, d_l + d_a + d_v] and priors; "movie" (id 6) is the one bias word.
    let maci = MaciState {
        bias_words: vec![6],
        prototypes: (0..3)
            .map(|c| vec![0.1 * c as f32; 16 + d_a + d_v])
            .collect(),
        priors: vec![0.2, 0.3, 0.5],
    };
    write_json_atomically(&run.join("best/maci.json"), &maci).unwrap();

    // Audio: 7 frames (padded to T_a); vision: 50 frames (truncated to T_v).
    let write = |name: &str, frames: usize, d: usize| {
        let values: Vec<f32> = (0..frames * d)
            .map(|i| ((i % 13) as f32 - 6.0) / 7.0)
            .collect();
        let path = dir.path().join(name);
        let array = cider_data::NumpyArray::new(
            vec![frames, d],
            cider_data::ArrayData::F32(values.clone()),
        )
        .unwrap();
        cider_data::npy::to_path(&array, &path).unwrap();
        (path, values)
    };
    let (audio_path, audio) = write("audio.npy", 7, d_a);
    let (vision_path, vision) = write("vision.npy", 50, d_v);
    let text = "I loved the movie!";
    let output = cider_ok(&[
        "infer",
        "--checkpoint",
        run.to_str().unwrap(),
        "--text",
        text,
        "--audio",
        audio_path.to_str().unwrap(),
        "--vision",
        vision_path.to_str().unwrap(),
        "--tau",
        "0.5",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("50 frames"), "truncation note: {stderr}");
    let line: Value = serde_json::from_slice(&output.stdout).unwrap();

    // The same pass by hand.
    let tokenizer =
        WordPieceTokenizer::from_vocab_txt(&bert_dir.join("vocab.txt"), true, t_l).unwrap();
    let rows = tokenizer.encode(text).unwrap();
    assert_eq!(&rows.ids[..7], &[2, 13, 14, 5, 6, 12, 3]);
    let ints = |v: Vec<u32>| {
        let v: Vec<i64> = v.into_iter().map(i64::from).collect();
        Tensor::<Selected, 2, Int>::from_data(TensorData::new(v, [1, t_l]), &device)
    };
    let floats = |v: Vec<f32>, shape: Vec<usize>| {
        Tensor::<Selected, 2>::from_data(TensorData::new(v, shape), &device)
    };
    let mask: Vec<f32> = rows.attention_mask.iter().map(|&m| f32::from(m)).collect();
    let tokens = |ids: Vec<u32>| TextInput::Tokens {
        ids: ints(ids),
        attention_mask: floats(mask.clone(), vec![1, t_l]),
        token_types: ints(rows.segments.iter().map(|&s| u32::from(s)).collect()),
    };
    let padded = |values: &[f32], keep: usize, t: usize, d: usize| {
        let mut out = vec![0.0f32; t * d];
        out[..keep * d].copy_from_slice(&values[..keep * d]);
        Tensor::<Selected, 3>::from_data(TensorData::new(out, [1, t, d]), &device)
    };
    let prefix = |len: usize, t: usize| {
        floats(
            (0..t).map(|j| f32::from(u8::from(j < len))).collect(),
            vec![1, t],
        )
    };
    let masks = InputMasks {
        text: floats(mask.clone(), vec![1, t_l]),
        audio: prefix(7, t_a),
        vision: prefix(t_v, t_v),
        text_len: Tensor::<Selected, 1, Int>::from_data(TensorData::new(vec![7i64], [1]), &device),
    };
    // Test-time confounder: every z_i = the mean prototype (0.1), uniform priors.
    let confounders = Confounders {
        feats: Tensor::<Selected, 3>::from_data(
            TensorData::new(vec![0.1f32; 3 * (16 + d_a + d_v)], [3, 1, 16 + d_a + d_v]),
            &device,
        ),
        probs: floats(vec![1.0 / 3.0; 3], vec![1, 3]),
    };
    let cf = counterfactual_ids(&rows.ids, &[6]);
    assert_eq!(&cf[..7], &[103, 103, 103, 103, 6, 103, 103]);
    let out = model
        .test(
            ViewInput {
                text: tokens(rows.ids.clone()),
                audio: padded(&audio, 7, t_a, d_a),
                vision: padded(&vision, t_v, t_v, d_v),
            },
            tokens(cf),
            &masks,
            &confounders,
        )
        .unwrap();
    let values = |t: Tensor<Selected, 2>| -> Vec<f64> {
        t.into_data().iter::<f32>().map(f64::from).collect()
    };
    let (pred, cf_pred) = (values(out.factual.pred), values(out.counterfactual.pred));
    let scores: Vec<f64> = pred
        .iter()
        .zip(&cf_pred)
        .map(|(l, c)| l - 0.5 * c)
        .collect();
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let total: f64 = scores.iter().map(|s| (s - max).exp()).sum();
    let got = |key: &str| -> Vec<f64> {
        line[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    for (k, (p, d)) in got("probs").iter().zip(got("debiased")).enumerate() {
        assert!((p - pred[k].exp()).abs() < 1e-5, "probs {k}");
        assert!(
            (d - (scores[k] - max).exp() / total).abs() < 1e-5,
            "debiased {k}"
        );
    }
    assert!(line.get("label").is_none());
}

/// Edits one file of a run, runs `cider infer` on it, restores the file and returns the output.
fn infer_with_edit(run: &Path, pickle: &Path, file: &str, edit: impl FnOnce(&Path)) -> Output {
    let path = run.join(file);
    let keep = std::fs::read(&path).unwrap();
    edit(&path);
    let output = cider(&[
        "infer",
        "--checkpoint",
        run.to_str().unwrap(),
        "--data",
        pickle.to_str().unwrap(),
    ]);
    std::fs::write(&path, keep).unwrap();
    output
}

/// Sets `key` of the JSON file at `path` to `value`.
fn set_json(path: &Path, key: &str, value: Value) {
    let mut json: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    json[key] = value;
    std::fs::write(path, json.to_string()).unwrap();
}

#[test]
fn tampered_run_files_are_refused_with_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let (run, pickle) = tiny_run(dir.path());
    let best = run.join("best");
    let cases: [(&str, &str, Value, String); 5] = [
        (
            "state.json",
            "tau",
            Value::from(-5.0),
            "state.json: `tau` = -5, expected a τ of the grid 0, 0.1, …, 3".into(),
        ),
        (
            "state.json",
            "tau",
            Value::from(1e308),
            "state.json: `tau` = 1e308, expected a τ of the grid".into(),
        ),
        (
            "state.json",
            "epoch",
            Value::from(1_000_000_000_000u64),
            "state.json: `epoch` = 1000000000000, expected an epoch in 1..=1".into(),
        ),
        (
            "maci.json",
            "priors",
            serde_json::json!([0.0, 0.0, 0.0]),
            "maci.json: `priors` = [0.0, 0.0, 0.0], expected class frequencies in [0, 1] that \
             sum to 1"
                .into(),
        ),
        (
            "maci.json",
            "bias_words",
            serde_json::json!([4294967295u64]),
            "maci.json: `bias_words[0]` = 4294967295, expected a word-piece id below the \
             vocabulary size 30522"
                .into(),
        ),
    ];
    for (file, key, value, needle) in cases {
        let output = infer_with_edit(&best, &pickle, file, |p| set_json(p, key, value));
        assert_one_line_error(&output, &[&needle]);
    }
    let output = infer_with_edit(&best, &pickle, "model.json", |p| {
        set_json(p, "num_classes", Value::from(1000))
    });
    let needle = format!(
        "model.json: `num_classes` = 1000, expected 3 (the task of {})",
        run.join("config.toml").display()
    );
    assert_one_line_error(&output, &[&needle]);
    for (key, value, term) in [
        ("embed_dim", 65536u64, "`model.embed_dim`"),
        ("max_positions", 100_000_000_000, "`model.max_positions`"),
    ] {
        let output = infer_with_edit(&best, &pickle, "model.json", |p| {
            let mut json: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            json["network"]["options"][key] = Value::from(value);
            std::fs::write(p, json.to_string()).unwrap();
        });
        let needle = format!(
            "{}: {term}: the model would need about ",
            best.join("model.json").display()
        );
        assert_one_line_error(
            &output,
            &[&needle, "GiB (set CIDER_MAX_MEMORY_GIB to raise it)"],
        );
    }
    for bad_limit in ["abc", "0", "-2"] {
        let output = Command::new(env!("CARGO_BIN_EXE_cider"))
            .args(["infer", "--checkpoint", run.to_str().unwrap()])
            .args(["--data", pickle.to_str().unwrap()])
            .env("CIDER_MAX_MEMORY_GIB", bad_limit)
            .output()
            .expect("the cider binary runs");
        let needle = format!(
            "CIDER_MAX_MEMORY_GIB: bad configuration: \"{bad_limit}\" is not a positive number of GiB"
        );
        assert_one_line_error(&output, &[&needle]);
    }
    cider_ok(&[
        "infer",
        "--checkpoint",
        run.to_str().unwrap(),
        "--data",
        pickle.to_str().unwrap(),
    ]);
}

#[test]
fn weights_of_another_model_name_the_parameter() {
    use cider_maci::full_model::CiderConfig;
    use cider_model::bert::BertConfig;
    use cider_train::backend::Selected;
    use cider_train::checkpoint::save_model;

    let dir = tempfile::tempdir().unwrap();
    let (run, pickle) = tiny_run(dir.path());
    let best = run.join("best");
    let config: CiderConfig =
        serde_json::from_slice(&std::fs::read(best.join("model.json")).unwrap()).unwrap();
    let foreign = |name: &str, change: &dyn Fn(&mut CiderConfig)| {
        let mut other = config.clone();
        change(&mut other);
        let out = dir.path().join(name);
        std::fs::create_dir_all(&out).unwrap();
        let model = other.init::<Selected>(&Default::default()).unwrap();
        save_model(&model, &other, &out).unwrap();
        out.join("model.mpk")
    };
    let wide = foreign("wide", &|c| c.network.options.embed_dim = 16);
    let output = infer_with_edit(&best, &pickle, "model.mpk", |p| {
        std::fs::copy(&wide, p).unwrap();
    });
    let needle = format!(
        "{}: weights of another model than {}: `network.",
        best.join("model.mpk").display(),
        best.join("model.json").display()
    );
    assert_one_line_error(
        &output,
        &[&needle, "in the file, the configuration expects ["],
    );

    let bert = foreign("bert", &|c| {
        c.network = c
            .network
            .clone()
            .with_bert_encoder(BertConfig::new(200, 768, 1, 2, 32, 64));
    });
    let output = infer_with_edit(&best, &pickle, "model.mpk", |p| {
        std::fs::copy(&bert, p).unwrap();
    });
    assert_one_line_error(
        &output,
        &[
            "`network.Cider.text_encoder` is `Bert` in the file, the configuration expects `Precomputed`",
        ],
    );

    let output = infer_with_edit(&best, &pickle, "model.mpk", |p| {
        let bytes = std::fs::read(p).unwrap();
        std::fs::write(p, &bytes[..bytes.len() / 3]).unwrap();
    });
    assert_one_line_error(
        &output,
        &[
            "model.mpk: cannot read the record: not a complete Burn record (truncated or corrupt file)",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("0.14"), "{stderr}");
}

#[test]
fn data_of_another_layout_names_the_file_and_the_sizes() {
    use cider_data::synth::{Layout, SynthConfig, Variant, generate};

    let dir = tempfile::tempdir().unwrap();
    let (run, _) = tiny_run(dir.path());
    let data = generate(&SynthConfig {
        layout: Layout::MosiUnaligned,
        variant: Variant::Ood,
        n_train: 8,
        n_valid: 4,
        n_test: 4,
        text_features: true,
        ..SynthConfig::default()
    })
    .unwrap();
    let trained: Value =
        serde_json::from_slice(&std::fs::read(run.join("best/model.json")).unwrap()).unwrap();
    let unaligned = dir.path().join("unaligned.pkl");
    cider_data::pickle_write::to_path(&data.to_pyvalue().unwrap(), &unaligned).unwrap();
    let needle = format!(
        "{}: does not fit the model of {}: the run was trained on aligned data (T_a = {}, T_v = \
         {}) and the file is unaligned (T_a = {}, T_v = {})",
        unaligned.display(),
        run.join("best").display(),
        trained["network"]["t_a"],
        trained["network"]["t_v"],
        data.dims.t_a,
        data.dims.t_v
    );
    for command in ["infer", "eval"] {
        let output = cider(&[
            command,
            "--checkpoint",
            run.to_str().unwrap(),
            "--data",
            unaligned.to_str().unwrap(),
        ]);
        assert_one_line_error(&output, &[&needle]);
    }
}

/// stdout's lines after the split table of `cider data verify`: `ok: …` or the mismatches.
fn verify_verdict(output: &Output) -> Vec<String> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let table = lines
        .iter()
        .position(|l| l.starts_with("split "))
        .expect("a split table");
    let is_row = |l: &&&str| {
        ["train ", "valid ", "test "]
            .iter()
            .any(|s| l.starts_with(s))
    };
    lines[table + 1..]
        .iter()
        .skip_while(is_row)
        .map(|l| l.to_string())
        .collect()
}

#[test]
fn verify_chooses_the_entry_and_names_every_size_that_differs_from_the_real_file() {
    let path = workspace().join("testdata/mmsa/mosi_aligned_50_tiny.pkl");
    let output = cider(&["data", "verify", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(
            "pickle file, sha256 a639858a2fee8c8977411f2ba282a7c6369c94bdc4f239f50126ad935bc0039a"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("catalog entry: mosi-aligned (from the file name and its layout)"),
        "{stdout}"
    );
    let train_row: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with("train "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        train_row[..6],
        ["train", "24", "24x3x50", "24x50x768", "24x50x5", "24x50x20"]
    );
    assert_eq!(
        verify_verdict(&output),
        [
            "file: sha256 a639858a2fee8c8977411f2ba282a7c6369c94bdc4f239f50126ad935bc0039a, \
             expected d3994fd25681f9c7ad6e9c6596a6fe9b4beb85ff7d478ba978b124139002e5f9 (the \
             publisher's hash of MOSI/Processed/aligned_50.pkl)",
            "train: 24 samples, expected 1284",
            "valid: 8 samples, expected 229",
            "test: 8 samples, expected 686",
        ]
    );
    assert_one_line_error(
        &output,
        &["mosi_aligned_50_tiny.pkl: 4 mismatch(es) against catalog entry mosi-aligned"],
    );
}

#[test]
fn verify_passes_the_fixtures_against_a_catalog_sized_from_their_manifest() {
    use cider::data::catalog::{Catalog, Samples};
    let dir = workspace().join("testdata/mmsa");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let cases = [
        ("mosi_aligned_50_tiny.pkl", "mosi-aligned"),
        ("mosi_unaligned_50_tiny.pkl", "mosi-unaligned"),
        (
            "ood_mosi_unaligned_50_tiny.joblib.pkl",
            "mosi-unaligned-ood-binary",
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (file, name) in cases {
        let facts = &manifest["files"][file];
        let n = |split: &str| {
            facts["splits"][split]["audio"]["shape"][0]
                .as_u64()
                .map(|n| n as usize)
        };
        let mut catalog = Catalog::builtin().unwrap();
        for entry in catalog.entries.iter_mut().filter(|e| e.name == name) {
            entry.samples = Samples {
                train: n("train"),
                valid: n("valid"),
                test: n("test"),
            };
            entry.sha256 = facts["sha256"].as_str().map(str::to_string);
        }
        let catalog_path = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&catalog_path, catalog.to_toml_string().unwrap()).unwrap();
        let path = dir.join(file);
        let output = cider_ok(&[
            "data",
            "verify",
            path.to_str().unwrap(),
            "--catalog",
            catalog_path.to_str().unwrap(),
        ]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains(&format!(
                "catalog entry: {name} (from the file name and its layout"
            )),
            "{stdout}"
        );
        let verdict = verify_verdict(&output);
        assert_eq!(verdict.len(), 1, "{stdout}");
        assert!(
            verdict[0].starts_with(&format!("ok: every split and key matches {name}")),
            "{stdout}"
        );
    }
}

#[test]
fn verify_gives_one_line_per_field_of_a_file_of_another_layout() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("features.pkl");
    cider_ok(&[
        "data",
        "synth",
        "--layout",
        "mosei-unaligned",
        "--text-features",
        "--out",
        out.to_str().unwrap(),
    ]);
    let sizes = cider::SynthConfig::default();
    // The file name says nothing, so the layout chooses: a MOSEI unaligned file.
    let output = cider(&["data", "verify", out.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(
            "catalog entry: mosei-unaligned (from the file's layout; its name points to no entry \
             of that layout)"
        ),
        "{stdout}"
    );
    let mut expected = Vec::new();
    for (split, n, want) in [
        ("train", sizes.n_train, 16326),
        ("valid", sizes.n_valid, 1871),
        ("test", sizes.n_test, 4659),
    ] {
        expected.push(format!("{split}: {n} samples, expected {want}"));
    }
    let verdict = verify_verdict(&output);
    let hash = "(the publisher's hash of MOSEI/Processed/unaligned_50.pkl)";
    assert!(
        verdict[0].starts_with("file: sha256 ") && verdict[0].ends_with(hash),
        "{}",
        verdict[0]
    );
    assert_eq!(verdict[1..], expected);

    // Against MOSI's unaligned entry every feature size and length differs, key by key.
    let output = cider(&[
        "data",
        "verify",
        out.to_str().unwrap(),
        "--dataset",
        "mosi-unaligned",
    ]);
    let mut expected = Vec::new();
    for (split, n, want) in [
        ("train", sizes.n_train, 1284),
        ("valid", sizes.n_valid, 229),
        ("test", sizes.n_test, 686),
    ] {
        expected.push(format!("{split}: {n} samples, expected {want}"));
        expected.push(format!(
            "{split}/audio: shape [{n}, 500, 74], expected [{n}, 375, 5] = [N, T_a, d_a]"
        ));
        expected.push(format!(
            "{split}/vision: shape [{n}, 500, 35], expected [{n}, 500, 20] = [N, T_v, d_v]"
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("catalog entry: mosi-unaligned (given with --dataset)"),
        "{stdout}"
    );
    let verdict = verify_verdict(&output);
    let hash = "(the publisher's hash of MOSI/Processed/unaligned_50.pkl)";
    assert!(verdict[0].ends_with(hash), "{}", verdict[0]);
    // Lengths above 375 in the audio_lengths of a MOSEI file are reported too, when there are.
    let (lengths, rest): (Vec<String>, Vec<String>) = verdict[1..]
        .iter()
        .cloned()
        .partition(|l| l.contains("/audio_lengths: "));
    assert_eq!(rest, expected);
    for line in &lengths {
        assert!(
            line.ends_with("length(s) that are not integers in 0..=375, expected none"),
            "{line}"
        );
    }
    assert_one_line_error(
        &output,
        &[&format!(
            "features.pkl: {} mismatch(es) against catalog entry mosi-unaligned",
            1 + expected.len() + lengths.len()
        )],
    );

    let output = cider(&["data", "verify", out.to_str().unwrap(), "--dataset", "mosi"]);
    assert_one_line_error(&output, &["no catalog entry `mosi` (known: mosi-aligned, "]);
}

/// MulT through the command line (docs/method.md §13): `model.backbone = "mult"` trains (the
/// single missing-view pass), and the run evaluates, predicts and plots like a CIDer run; MMSA's
/// MulT golden folder is recognised and checked; a typo in `[model.mult]` is one line.
#[test]
fn mult_trains_evaluates_and_predicts_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("mult");
    let run_str = run.to_str().unwrap();
    let sets = [
        "model.backbone=\"mult\"",
        "model.mult.width=8",
        "model.mult.num_heads=2",
        "model.mult.levels=1",
        "data.n_train=48",
        "data.n_valid=20",
        "data.n_test=40",
    ];
    let mut args = vec!["train", "--epochs", "1", "--batch-size", "16", "--quiet"];
    args.extend(["--out", run_str]);
    for set in &sets {
        args.extend(["--set", set]);
    }
    cider_ok(&args);
    let model: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("best/model.json")).unwrap())
            .unwrap();
    assert_eq!(model["network"]["options"]["backbone"], "mult");
    assert_eq!(model["network"]["options"]["mult"]["width"], 8);
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    let epoch = &metrics[0];
    assert!(epoch["train_loss"].as_f64().unwrap().is_finite());
    assert!(
        epoch["attn_loss"].is_null(),
        "MulT trains without distillation"
    );

    let out = dir.path().join("eval");
    cider_ok(&[
        "eval",
        "--checkpoint",
        run_str,
        "--rates",
        "0,0.5",
        "--variant",
        "ood",
        "--out",
        out.to_str().unwrap(),
    ]);
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let values = results["metrics"]["Non0_acc_2"].as_array().unwrap();
    assert_eq!(values.len(), 2);
    assert!(
        values
            .iter()
            .all(|v| (0.0..=1.0).contains(&v.as_f64().unwrap()))
    );
    let plots = dir.path().join("plots");
    cider_ok(&[
        "plot",
        out.join("results.json").to_str().unwrap(),
        "--out",
        plots.to_str().unwrap(),
    ]);
    assert!(plots.join("Non0_acc_2.svg").is_file());

    let pickle = dir.path().join("data.pkl");
    cider_ok(&[
        "data",
        "synth",
        "--layout",
        "mosi-aligned",
        "--text-features",
        "--out",
        pickle.to_str().unwrap(),
    ]);
    let infer = cider_ok(&[
        "infer",
        "--checkpoint",
        run_str,
        "--data",
        pickle.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&infer.stdout);
    assert!(text.contains("synth_test_0"), "{text}");

    let golden = workspace().join("testdata/mult-golden/mult-mosi-aligned-small");
    let report = json_of(&cider(&[
        "check-golden",
        golden.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(report["passed"], true);
    assert_eq!(report["forward"].as_array().unwrap().len(), 5);
    let strict = cider(&["check-golden", golden.to_str().unwrap(), "--tol", "1e-12"]);
    assert_one_line_error(&strict, &["golden check failed", "--tol 1e-12"]);

    let typo = cider(&[
        "train",
        "--out",
        dir.path().join("typo").to_str().unwrap(),
        "--set",
        "model.mult.widht=8",
    ]);
    assert_one_line_error(&typo, &["widht"]);
    let heads = cider(&[
        "train",
        "--out",
        dir.path().join("heads").to_str().unwrap(),
        "--set",
        "model.backbone=\"mult\"",
        "--set",
        "model.mult.num_heads=7",
    ]);
    assert_one_line_error(&heads, &["model.mult.num_heads", "= 7 does not divide"]);
}
