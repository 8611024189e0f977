//! End-to-end tests of the `cider` program: real-format fixtures in, reports and files out.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cider(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cider"))
        .args(args)
        .output()
        .expect("the cider binary runs")
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
        let output = cider(&[
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
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
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
