//! Bad inputs, generated here: truncated, foreign and hostile pickle and joblib files, data of
//! the wrong shape or with NaN values, an empty split, configuration typos and unknown keys,
//! negative or out-of-range flag values. Each goes through the library API and through the
//! `cider` program, and must give a typed error, exit status 1 and exactly one line on stderr
//! naming the file or key: no panic, no abort, no silent acceptance.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cider::data::pickle_write;
use cider::data::synth::{self, SynthConfig};
use cider::data::{ArrayData, NumpyArray, PyValue};
use cider::{Dataset, TrainConfig};

/// A fresh scratch folder for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cider-bad-input-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `cider ARGS` in `dir`.
fn cider<S: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cider"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Asserts that `output` is a failure with status 1 and one stderr line `error: …` holding
/// every one of `needles`; returns the line.
fn one_error_line(output: &Output, needles: &[&str], what: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{what}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: exactly one line expected, got {stderr:?}"
    );
    let line = lines[0];
    assert!(line.starts_with("error: "), "{what}: {line}");
    for needle in needles {
        assert!(line.contains(needle), "{what}: `{needle}` not in {line:?}");
    }
    assert!(!line.contains("panicked"), "{what}: {line}");
    line.to_string()
}

/// A small synthetic dataset in the MMSA layout, as a pickle value.
fn mmsa_value() -> PyValue {
    let config = SynthConfig {
        n_train: 12,
        n_valid: 6,
        n_test: 6,
        ..SynthConfig::default()
    };
    synth::generate(&config).unwrap().to_pyvalue().unwrap()
}

/// The field `key` of split `split` in an MMSA value.
fn field<'v>(value: &'v mut PyValue, split: &str, key: &str) -> &'v mut PyValue {
    let PyValue::Dict(splits) = value else {
        panic!("an MMSA value is a dict")
    };
    let (_, split) = splits
        .iter_mut()
        .find(|(k, _)| *k == PyValue::Str(split.into()))
        .unwrap();
    let PyValue::Dict(fields) = split else {
        panic!("a split is a dict")
    };
    &mut fields
        .iter_mut()
        .find(|(k, _)| *k == PyValue::Str(key.into()))
        .unwrap()
        .1
}

/// `bytes` as `name` in `dir`.
fn file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    std::fs::write(dir.join(name), bytes).unwrap();
    name.to_string()
}

/// Bad data files: name, and what the one line must say besides the name.
fn bad_data_files(dir: &Path) -> Vec<(String, &'static str)> {
    let good = pickle_write::to_bytes(&mmsa_value()).unwrap();
    let mut wrong_shape = mmsa_value();
    *field(&mut wrong_shape, "train", "audio") =
        PyValue::Array(NumpyArray::new(vec![12, 3], ArrayData::F32(vec![0.0; 36])).unwrap());
    let mut nan = mmsa_value();
    if let PyValue::Array(array) = field(&mut nan, "valid", "vision") {
        let (shape, data) = array.clone().into_parts();
        let ArrayData::F32(mut values) = data else {
            panic!("vision is f32")
        };
        values[3] = f32::NAN;
        *array = NumpyArray::new(shape, ArrayData::F32(values)).unwrap();
    }
    let mut empty = mmsa_value();
    let PyValue::Dict(splits) = &mut empty else {
        panic!()
    };
    let (_, test) = splits
        .iter_mut()
        .find(|(k, _)| *k == PyValue::Str("test".into()))
        .unwrap();
    *test = PyValue::Dict(Vec::new());
    // l0 = ['x' * 255]; l(k+1) = [lk, lk]: 2^40 strings once expanded.
    let mut laughs = b"\x80\x04]\x94\x8c\xff".to_vec();
    laughs.extend([b'x'; 255]);
    laughs.push(b'a');
    for k in 0..40u8 {
        laughs.extend_from_slice(&[b']', 0x94, b'(', b'h', k, b'h', k, b'e']);
    }
    laughs.push(b'.');
    // 160 gzip members of 1 MiB of zeros each: 160 MiB from a file of about 160 kB.
    let mut member = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
    member.write_all(&vec![0u8; 1 << 20]).unwrap();
    let member = member.finish().unwrap();
    let bomb = member.repeat(160);
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(3));
    zlib.write_all(&good).unwrap();
    let zlib = zlib.finish().unwrap();
    vec![
        (file(dir, "empty.pkl", b""), "ends without a STOP opcode"),
        (
            file(dir, "truncated.pkl", &good[..good.len() / 2]),
            "truncated: a str needs",
        ),
        (
            file(dir, "foreign.pkl", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            "persistent ids are not supported",
        ),
        (
            file(dir, "text.pkl", b"train,valid,test\n1,2,3\n"),
            "no MARK on the stack",
        ),
        (
            file(dir, "os_system.pkl", b"cos\nsystem\n(S'echo hi'\ntR."),
            "refused pickle global `os.system`",
        ),
        (file(dir, "laughs.pkl", &laughs), "more than 64x its size"),
        (
            file(dir, "bomb.joblib", &bomb),
            "the gzip stream inflates to more than the file's memory budget (64x its size + 64 MiB = 77871104 bytes)",
        ),
        (
            file(dir, "cut.joblib", &zlib[..zlib.len() - 40]),
            "corrupt zlib stream",
        ),
        (
            file(
                dir,
                "wrong_shape.pkl",
                &pickle_write::to_bytes(&wrong_shape).unwrap(),
            ),
            "key `train/audio` has shape [12, 3]",
        ),
        (
            file(dir, "nan.pkl", &pickle_write::to_bytes(&nan).unwrap()),
            "key `valid/vision` at index 3: NaN",
        ),
        (
            file(
                dir,
                "empty_split.pkl",
                &pickle_write::to_bytes(&empty).unwrap(),
            ),
            "missing key `test/text_bert`",
        ),
        ("absent.pkl".to_string(), "No such file or directory"),
    ]
}

#[test]
fn bad_data_files_give_one_line_through_the_library_and_the_program() {
    let dir = scratch("data");
    for (name, needle) in bad_data_files(&dir) {
        let error = Dataset::from_path(&dir.join(&name))
            .map(|_| ())
            .map_err(cider::Error::from)
            .expect_err(&name);
        let line = error.to_string();
        assert!(!line.contains('\n'), "{name}: {line}");
        assert!(
            line.contains(&name) && line.contains(needle),
            "{name}: {line}"
        );
        one_error_line(
            &cider(&dir, &["data", "inspect", &name]),
            &[&name, needle],
            &name,
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_configurations_name_their_key() {
    let dir = scratch("config");
    let cases: [(&str, &str, &[&str]); 9] = [
        (
            "typo.toml",
            "epochs = 3\nepoch = 4\n",
            &["line 2", "unknown field `epoch`"],
        ),
        (
            "unknown.toml",
            "[model]\nheads = 4\n",
            &["unknown field `heads`"],
        ),
        (
            "table.toml",
            "[modle]\nnum_heads = 4\n",
            &["unknown field `modle`"],
        ),
        ("syntax.toml", "epochs = [\n", &["line"]),
        ("type.toml", "seed = \"many\"\n", &["line 1", "seed"]),
        (
            "patience.toml",
            "patience = 0\n",
            &["`patience` = 0, expected at least 1"],
        ),
        ("out_dir.toml", "out_dir = \"\"\n", &["`out_dir` is empty"]),
        (
            "no_path.toml",
            "[data]\nsource = \"file\"\n",
            &["`data.path` is required"],
        ),
        (
            "rate.toml",
            "[model]\nout_dropout = 1.5\n",
            &["`model.out_dropout` = 1.5"],
        ),
    ];
    for (name, text, needles) in cases {
        std::fs::write(dir.join(name), text).unwrap();
        let line = TrainConfig::from_file(&dir.join(name), &[])
            .unwrap_err()
            .to_string();
        assert!(!line.contains('\n'), "{name}: {line}");
        for needle in needles.iter().chain([&name]) {
            assert!(line.contains(needle), "{name}: `{needle}` not in {line}");
        }
        let output = cider(&dir, &["train", "--config", name, "--quiet"]);
        one_error_line(&output, &[&[name][..], needles].concat(), name);
        assert!(
            !dir.join("config.toml").exists(),
            "{name}: nothing is written"
        );
    }
    // A data file that does not exist is named when the data are loaded.
    let absent = dir.join("absent.pkl").display().to_string();
    let text = format!("[data]\nsource = \"file\"\npath = {absent:?}\n");
    std::fs::write(dir.join("absent.toml"), text).unwrap();
    let config = TrainConfig::from_file(&dir.join("absent.toml"), &[]).unwrap();
    let line = config.data.load().unwrap_err().to_string();
    assert!(
        line.starts_with(&format!("{absent}: No such file")),
        "{line}"
    );
    let output = cider(&dir, &["train", "--config", "absent.toml", "--quiet"]);
    one_error_line(&output, &["absent.pkl", "No such file"], "absent.toml");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn negative_and_out_of_range_flags_give_their_range() {
    let dir = scratch("flags");
    let data = file(
        &dir,
        "data.pkl",
        &pickle_write::to_bytes(&mmsa_value()).unwrap(),
    );
    let data: &str = &data;
    let mask = |extra: &[&'static str]| {
        let mut args = vec!["data", "mask", data, "--out", "m"];
        args.extend_from_slice(extra);
        args
    };
    let rates = (0..=2000)
        .map(|k| format!("{:.6}", k as f64 / 2000.0))
        .collect::<Vec<_>>();
    let rates = rates.join(",");
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            mask(&["--rate", "-0.1"]),
            vec!["'-0.1'", "--rate", "expected a rate in [0, 1]"],
        ),
        (
            mask(&["--rate", "1.5"]),
            vec!["'1.5'", "--rate", "expected a rate in [0, 1]"],
        ),
        (
            mask(&["--rate", "0.1", "--seed", "-1"]),
            vec!["--seed", "[0, 4294967295]"],
        ),
        (
            mask(&["--rate", "0.1", "--bias-thresh", "-3"]),
            vec!["--bias-thresh", "[0, "],
        ),
        (
            vec!["demo", "--epochs", "-1"],
            vec!["--epochs", "expected an integer in [1, "],
        ),
        (
            vec!["demo", "--seed", "-1"],
            vec!["--seed", "[0, 18446744073709551615]"],
        ),
        (vec!["train", "--epochs", "-1"], vec!["--epochs", "[1, "]),
        (vec!["train", "--epochs", "0"], vec!["--epochs", "[1, "]),
        (vec!["train", "--seed", "-1"], vec!["--seed", "[0, "]),
        (
            vec!["train", "--batch-size", "-8"],
            vec!["--batch-size", "[1, "],
        ),
        (
            vec![
                "infer",
                "--checkpoint",
                "run",
                "--data",
                &data,
                "--tau",
                "-1",
            ],
            vec!["--tau", "expected a finite number ≥ 0"],
        ),
        (
            vec!["eval", "--checkpoint", "run", "--seed", "-1"],
            vec!["--seed", "[0, "],
        ),
        (
            vec!["eval", "--checkpoint", "run", "--tau", "0.75"],
            vec![
                "--tau",
                "`0.75`: expected one of validation, balanced-validation",
            ],
        ),
        (
            vec!["eval", "--checkpoint", "run", "--tau", "valdation"],
            vec!["--tau", "`valdation`", "a τ of the grid 0, 0.1, …, 3"],
        ),
        (
            vec!["eval", "--checkpoint", "run", "--tau", "oracle"],
            vec!["--tau", "`--table oracle` prints them"],
        ),
        (
            vec!["eval", "--checkpoint", "run", "--shift", "label"],
            vec!["--variant"],
        ),
        (
            vec!["eval", "--checkpoint", "run", "--rates", "-0.1:1:0.1"],
            vec!["--rates", "-0.1"],
        ),
        (
            vec!["eval", "--checkpoint", "run", "--rates", &rates],
            vec!["--rates", "(18008 characters)", "2001 rates"],
        ),
        (
            vec!["check-golden", "golden", "--tol", "-1"],
            vec!["--tol", "≥ 0"],
        ),
        (
            vec!["train", "--epoch", "3"],
            vec!["unexpected argument '--epoch'"],
        ),
        (vec!["data", "mask", &data], vec!["required", "--rate"]),
    ];
    for (args, needles) in cases {
        let what = args.join(" ");
        let line = one_error_line(&cider(&dir, &args), &needles, &what[..what.len().min(80)]);
        assert!(line.chars().count() < 300, "{line}");
    }
    assert!(!dir.join("m").exists(), "no mask set is written");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The mask set of `dir/m`, file by file.
fn mask_set(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join("m"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_failed_mask_write_leaves_the_previous_set_whole() {
    let dir = scratch("mask");
    let data = file(
        &dir,
        "data.pkl",
        &pickle_write::to_bytes(&mmsa_value()).unwrap(),
    );
    let data: &str = &data;
    let mask = |rate: &'static str| ["data", "mask", data, "--rate", rate, "--out", "m"];
    let first = cider(&dir, &mask("0.1"));
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let before = mask_set(&dir);
    assert_eq!(before.len(), 8);
    // Files over 5 blocks (2.5 kB or 5 kB, as the shell counts) cannot be written:
    // RLIMIT_FSIZE binds root too, and with SIGXFSZ ignored the write fails with EFBIG. The
    // text arrays (2.5 kB) fit, `audio_m` (6 kB) does not.
    let script = format!(
        "trap '' XFSZ; ulimit -f 5; exec \"$0\" {}",
        mask("0.7").join(" ")
    );
    let output = Command::new("sh")
        .args(["-c", &script, env!("CARGO_BIN_EXE_cider")])
        .current_dir(&dir)
        .output()
        .unwrap();
    one_error_line(&output, &["m/audio_m.npy", "too large"], "limited write");
    assert_eq!(mask_set(&dir), before, "the previous mask set is untouched");
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temporary folders left: {left:?}");
    // A folder holding anything else is not replaced.
    std::fs::write(dir.join("m/notes.txt"), "mine").unwrap();
    one_error_line(
        &cider(&dir, &mask("0.3")),
        &["--out m", "notes.txt"],
        "foreign file",
    );
    assert_eq!(std::fs::read(dir.join("m/notes.txt")).unwrap(), b"mine");
    std::fs::remove_dir_all(&dir).unwrap();
}
