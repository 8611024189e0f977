//! The library API (`cider::Run`, `Utterance`, `Prediction`) on a tiny trained run: the same
//! samples give the same predictions whether they come as a dataset split or as utterances
//! assembled by hand, a missing modality is the modality zeroed, and bad input is an error a
//! caller can match on.

use cider::prelude::*;
use cider_train::backend::Selected;

mod common;
use common::tiny_run;

fn assert_close(a: &[f64], b: &[f64], context: &str) {
    assert_eq!(a.len(), b.len(), "{context}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-6, "{context}: {a:?} vs {b:?}");
    }
}

#[test]
fn a_trained_run_predicts_splits_and_utterances_alike() {
    let dir = tempfile::tempdir().unwrap();
    let (run_dir, pickle) = tiny_run(dir.path());
    let device = Default::default();
    let run = Run::<Selected>::open(&run_dir, &device).unwrap();
    let dataset = Dataset::from_path(&pickle).unwrap();
    let test = dataset.split("test").unwrap();
    let tau = Some(1.5);

    let from_split = run.predict_split(test, tau, &device).unwrap();
    assert_eq!(from_split.len(), test.n);
    let utterances: Vec<Utterance> = (0..test.n)
        .map(|i| Utterance::from_sample(test, i).unwrap())
        .collect();
    let from_utterances = run.predict_many(&utterances, tau, &device).unwrap();
    for (i, (a, b)) in from_split.iter().zip(&from_utterances).enumerate() {
        assert_close(&a.probs, &b.probs, &format!("sample {i} probs"));
        assert_close(&a.debiased, &b.debiased, &format!("sample {i} debiased"));
        assert_eq!(a.label, b.label, "sample {i}");
        assert_eq!(b.tau, 1.5);
        let total: f64 = b.debiased.iter().sum();
        assert!(
            (total - 1.0).abs() < 1e-9,
            "sample {i}: debiased sums to {total}"
        );
        let best = (0..b.debiased.len())
            .max_by(|&x, &y| b.debiased[x].total_cmp(&b.debiased[y]))
            .unwrap();
        assert_eq!(
            b.label, best,
            "sample {i}: the label is the debiased argmax"
        );
        assert_eq!(b.label_name, ["negative", "neutral", "positive"][b.label]);
    }

    // At τ = 0 the debiased distribution is the classifier's own.
    let plain = run
        .predict_many(&utterances[..2], Some(0.0), &device)
        .unwrap();
    for p in &plain {
        assert_close(&p.probs, &p.debiased, "τ = 0");
    }

    // Audio marked missing is the same as audio zeroed: missing frames enter the model as
    // zeros, with the input lengths unchanged.
    let mut zeroed = test.clone();
    zeroed.audio.iter_mut().for_each(|x| *x = 0.0);
    let want = run.predict_split(&zeroed, tau, &device).unwrap();
    let without_audio: Vec<Utterance> = utterances
        .iter()
        .cloned()
        .map(Utterance::without_audio)
        .collect();
    let got = run.predict_many(&without_audio, tau, &device).unwrap();
    for (i, (a, b)) in want.iter().zip(&got).enumerate() {
        assert_close(
            &a.debiased,
            &b.debiased,
            &format!("sample {i} without audio"),
        );
    }
    assert!(
        got.iter()
            .zip(&from_utterances)
            .any(|(a, b)| a.probs != b.probs),
        "dropping the audio changes some prediction"
    );

    // Bad input: one matchable error each.
    let mut narrow = utterances[0].clone();
    narrow.audio.values.pop();
    let error = run.predict(&narrow, &device).unwrap_err();
    assert!(
        matches!(&error, Error::Input { what, .. } if what.contains("audio")),
        "{error}"
    );
    let error = run
        .predict_many(&utterances[..1], Some(-1.0), &device)
        .unwrap_err();
    assert!(
        matches!(&error, Error::Input { what, .. } if what == "tau"),
        "{error}"
    );
    let raw = Utterance::new(
        Text::Raw("a fine film".into()),
        utterances[0].audio.clone(),
        utterances[0].vision.clone(),
    );
    let error = run.predict(&raw, &device).unwrap_err();
    assert!(error.to_string().contains("precomputed"), "{error}");
    let mut short = utterances[0].clone();
    short.presence[2] = Presence::Positions(vec![true; 3]);
    let error = run.predict(&short, &device).unwrap_err();
    assert!(error.to_string().contains("vision presence"), "{error}");
    assert!(matches!(
        run.predict_many(&[], None, &device).unwrap_err(),
        Error::Input { .. }
    ));
    let mut not_finite = utterances[0].clone();
    not_finite.vision.values[1] = f32::NAN;
    let error = run.predict(&not_finite, &device).unwrap_err();
    assert!(
        matches!(&error, Error::Input { what, message } if what.contains("vision") && message.contains("non-finite")),
        "{error}"
    );
    let tokens = Utterance::new(
        Text::Tokens(vec![101, 2204, 102]),
        utterances[0].audio.clone(),
        utterances[0].vision.clone(),
    );
    let error = run.predict(&tokens, &device).unwrap_err();
    assert!(error.to_string().contains("precomputed"), "{error}");
    let error = Utterance::from_sample(test, test.n).unwrap_err();
    assert!(error.to_string().contains("out of range"), "{error}");
}

#[test]
fn a_folder_that_is_no_run_is_a_matchable_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = Run::<Selected>::open(dir.path(), &Default::default()).unwrap_err();
    assert!(matches!(error, Error::NotARun { .. }), "{error}");
    let line = error.to_string();
    assert!(
        line.contains("config.toml") && !line.contains('\n'),
        "{line}"
    );
}

/// Data of another layout and damaged run files are errors a caller can match on, naming the
/// file and what differs.
#[test]
fn data_of_another_layout_and_damaged_run_files_are_matchable_errors() {
    use cider::data::synth::{Layout, SynthConfig, generate};

    let dir = tempfile::tempdir().unwrap();
    let (run_dir, pickle) = tiny_run(dir.path());
    let device = Default::default();
    let run = Run::<Selected>::open(&run_dir, &device).unwrap();
    run.check_data(&Dataset::from_path(&pickle).unwrap())
        .unwrap();
    let seven = generate(&SynthConfig {
        layout: Layout::MoseiAligned,
        n_train: 8,
        n_valid: 4,
        n_test: 4,
        text_features: true,
        ..SynthConfig::default()
    })
    .unwrap();
    match run.check_data(&seven) {
        Err(cider::Error::DataMismatch { file, message, .. }) => {
            assert_eq!(file, seven.source);
            assert!(
                message.starts_with("the run was trained on aligned data with "),
                "{message}"
            );
        }
        other => panic!("expected a layout mismatch, got {other:?}"),
    }

    let state = run_dir.join("best/state.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    json["tau"] = serde_json::Value::from(-5.0);
    std::fs::write(&state, json.to_string()).unwrap();
    match Run::<Selected>::open(&run_dir, &device) {
        Err(cider::Error::Checkpoint(cider::train::checkpoint::CheckpointError::Format {
            path,
            message,
        })) => {
            assert_eq!(path, state);
            assert!(
                message.starts_with("`tau` = -5, expected a τ of the grid"),
                "{message}"
            );
        }
        other => panic!("expected a run-file error, got {:?}", other.err()),
    }
}

/// The golden folders and, for each, the whole module the reference code saved.
const REFERENCE_FILES: [(&str, &str, bool); 2] = [
    (
        "mosi-aligned-small",
        "mosi_aligned_iid_binary_CIDER_trial_0.pt",
        true,
    ),
    (
        "mosi-unaligned-small",
        "mosi_unaligned_iid_binary_CIDER_trial_0.pt",
        false,
    ),
];

#[test]
fn the_authors_pt_files_import_to_the_golden_model() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    for (folder, file, aligned) in REFERENCE_FILES {
        let checkpoint = root.join("torch-checkpoints").join(folder).join(file);
        let data = common::tiny_bert_data(dir.path(), aligned);
        let out = dir.path().join(format!("imported-{folder}"));
        let imported = cider::import_reference::<Selected>(
            &checkpoint,
            &data,
            &cider::PrototypeSource::default(),
            &out,
            &device,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(imported.reference.discrepancies.is_empty());
        let mut run = Run::<Selected>::open(&out, &device).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(run.task(), Task::Binary);
        // The run directory is the one written, and the data path works from anywhere.
        assert_eq!(run.config.out_dir, std::path::absolute(&out).unwrap());
        let cider::DataConfig::File(file) = &run.config.data else {
            panic!("{:?}", run.config.data)
        };
        assert!(file.path.is_absolute() && file.path.ends_with(data.file_name().unwrap()));
        let test = Dataset::from_path(&data).unwrap().test;
        let ours = run.predict_split(&test, Some(0.5), &device).unwrap();
        // The same data through the golden folder's own weights (safetensors).
        let golden_dir = root.join("torch-golden").join(folder);
        let golden = std::fs::read_to_string(golden_dir.join("golden.json")).unwrap();
        let config =
            cider::maci::golden::golden_config(&serde_json::from_str(&golden).unwrap(), folder)
                .unwrap();
        assert_eq!(
            format!("{config:?}"),
            format!("{:?}", run.model_config),
            "{folder}"
        );
        run.model = config
            .init::<Selected>(&device)
            .unwrap()
            .load_reference(&golden_dir.join("model.safetensors"), &device)
            .unwrap();
        let expected = run.predict_split(&test, Some(0.5), &device).unwrap();
        // Opened in memory, the `.pt` gives the golden weights bit for bit, so the same
        // numbers; the run directory's record holds them in another memory layout (Burn's
        // `[in, out]` Linear weights stored contiguously), which changes the rounding only.
        let (memory, _) =
            Run::<Selected>::from_reference_checkpoint(&checkpoint, &data, &device).unwrap();
        let direct = memory.predict_split(&test, Some(0.5), &device).unwrap();
        for ((a, b), c) in ours.iter().zip(&expected).zip(&direct) {
            assert_eq!((&c.probs, &c.debiased), (&b.probs, &b.debiased), "{folder}");
            assert_close(&a.probs, &b.probs, folder);
            assert_close(&a.debiased, &b.debiased, folder);
            assert_eq!(a.label, b.label, "{folder}");
        }
        // Raw text goes through the tokenizer pickled in the file (`w104` … `w999`).
        let (t_a, t_v) = if aligned { (16, 16) } else { (40, 48) };
        let with_text = |text: Text| {
            let audio = Frames {
                values: vec![0.1; t_a * 5],
                frames: t_a,
            };
            let vision = Frames {
                values: vec![0.2; t_v * 20],
                frames: t_v,
            };
            Utterance::new(text, audio, vision)
        };
        let utterance = with_text(Text::Raw("w104 w512 W999".into()));
        let tokens = with_text(Text::Tokens(vec![101, 104, 512, 999, 102]));
        let from_text = memory.predict(&utterance, &device).unwrap();
        assert_eq!(
            from_text.probs,
            memory.predict(&tokens, &device).unwrap().probs
        );
        assert_close(
            &from_text.probs,
            &run_open_predict(&out, &utterance),
            folder,
        );
    }
}

#[test]
fn an_import_that_fails_while_writing_leaves_nothing_behind() {
    use std::os::unix::ffi::OsStrExt;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let (folder, file, aligned) = REFERENCE_FILES[0];
    let dir = tempfile::tempdir().unwrap();
    // A data file under a name that is not UTF-8 reads fine but cannot go into config.toml,
    // which is written after the BERT folder and the model record.
    let odd = dir.path().join(std::ffi::OsStr::from_bytes(b"data-\xff"));
    std::fs::create_dir(&odd).unwrap();
    let data = common::tiny_bert_data(&odd, aligned);
    let out = dir.path().join("imported");
    let error = cider::import_reference::<Selected>(
        &root.join("torch-checkpoints").join(folder).join(file),
        &data,
        &cider::PrototypeSource::default(),
        &out,
        &Default::default(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("UTF-8"), "{error}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(left, [odd.file_name().unwrap()], "{left:?}");
}

/// The factual probabilities of one utterance through the imported run directory.
fn run_open_predict(out: &std::path::Path, utterance: &Utterance) -> Vec<f64> {
    let device = Default::default();
    let run = Run::<Selected>::open(out, &device).unwrap();
    run.predict(utterance, &device).unwrap().probs
}
