//! Helpers shared by the reader and writer tests of this crate: paths and JSON files under the
//! repository's `testdata/`, and checks of read values against the descriptions written by
//! `make_pickles.py`.

use std::path::PathBuf;

use serde_json::Value;

use crate::value::{ArrayData, NumpyArray, PyValue};

/// A path under the repository's `testdata/`.
pub(crate) fn testdata(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(relative)
}

/// A JSON file under `testdata/`.
pub(crate) fn json(relative: &str) -> Value {
    let text = std::fs::read_to_string(testdata(relative)).expect("read json fixture");
    serde_json::from_str(&text).expect("parse json fixture")
}

/// The fixture files of `testdata/pickles/manifest.json` read by `reader`, with the
/// description of the value each must hold.
pub(crate) fn fixtures(reader: &str) -> Vec<(PathBuf, Value)> {
    let manifest = json("pickles/manifest.json");
    let mut out = Vec::new();
    for (name, entry) in manifest["files"].as_object().expect("files") {
        if entry["reader"] != reader {
            continue;
        }
        let expected = match entry["value"].as_str() {
            Some(key) => manifest["values"][key].clone(),
            None => entry["expected"].clone(),
        };
        out.push((testdata(&format!("pickles/{name}")), expected));
    }
    assert!(!out.is_empty(), "no {reader} fixtures in the manifest");
    out
}

/// Checks a value against its description written by `make_pickles.py` (floats by IEEE
/// bits, arrays by dtype, shape and C-order elements).
pub(crate) fn check(value: &PyValue, expected: &Value, at: &str) -> Result<(), String> {
    let fail = |what: String| Err(format!("{at}: {what}; found {value:?}"));
    let items = |key: &str| expected[key].as_array().cloned().unwrap_or_default();
    match (expected["t"].as_str().unwrap_or("?"), value) {
        ("none", PyValue::None) => Ok(()),
        ("bool", PyValue::Bool(b)) if expected["v"].as_bool() == Some(*b) => Ok(()),
        ("int", PyValue::Int(v)) if expected["v"].as_i64() == Some(*v) => Ok(()),
        ("float", PyValue::Float(v)) if expected["bits"].as_u64() == Some(v.to_bits()) => Ok(()),
        ("str", PyValue::Str(s)) if expected["v"].as_str() == Some(s.as_str()) => Ok(()),
        ("bytes", PyValue::Bytes(b)) if expected["hex"].as_str() == Some(&hex(b)) => Ok(()),
        ("list", PyValue::List(values)) | ("tuple", PyValue::Tuple(values)) => {
            let wanted = items("items");
            if wanted.len() != values.len() {
                return fail(format!("expected {} items", wanted.len()));
            }
            for (i, (v, e)) in values.iter().zip(&wanted).enumerate() {
                check(v, e, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        ("dict", PyValue::Dict(pairs)) => {
            let wanted = items("items");
            if wanted.len() != pairs.len() {
                return fail(format!("expected {} pairs", wanted.len()));
            }
            for (i, ((k, v), e)) in pairs.iter().zip(&wanted).enumerate() {
                check(k, &e[0], &format!("{at}.key{i}"))?;
                check(v, &e[1], &format!("{at}[{k:?}]"))?;
            }
            Ok(())
        }
        ("array", PyValue::Array(array)) => check_array(array, expected, at),
        (t, _) => fail(format!("expected {t} {expected}")),
    }
}

fn check_array(array: &NumpyArray, expected: &Value, at: &str) -> Result<(), String> {
    let shape: Vec<usize> = expected["shape"]
        .as_array()
        .map(|dims| {
            dims.iter()
                .filter_map(|d| d.as_u64())
                .map(|d| d as usize)
                .collect()
        })
        .unwrap_or_default();
    if array.dtype().name() != expected["dtype"] || array.shape() != shape.as_slice() {
        return Err(format!(
            "{at}: expected {} {:?}, found {} {:?}",
            expected["dtype"],
            shape,
            array.dtype().name(),
            array.shape()
        ));
    }
    let data = expected["data"].as_array().cloned().unwrap_or_default();
    let as_json: Vec<Value> = match array.data() {
        ArrayData::F32(v) => v.iter().map(|x| x.to_bits().into()).collect(),
        ArrayData::F64(v) => v.iter().map(|x| x.to_bits().into()).collect(),
        ArrayData::I64(v) => v.iter().map(|&x| x.into()).collect(),
        ArrayData::I32(v) => v.iter().map(|&x| x.into()).collect(),
        ArrayData::U8(v) => v.iter().map(|&x| x.into()).collect(),
        ArrayData::Bool(v) => v.iter().map(|&x| x.into()).collect(),
        ArrayData::Object(items) => {
            if items.len() != data.len() {
                return Err(format!("{at}: expected {} objects", data.len()));
            }
            for (i, (v, e)) in items.iter().zip(&data).enumerate() {
                check(v, e, &format!("{at}.flat[{i}]"))?;
            }
            return Ok(());
        }
    };
    if as_json != data {
        return Err(format!("{at}: elements {as_json:?}, expected {data:?}"));
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks an unpickled MMSA file against its entry in `testdata/mmsa/manifest.json`:
/// dtypes, shapes, sums of finite values, `-inf` counts, first strings, length lists and
/// the per-class counts of `classification_labels`.
pub(crate) fn check_mmsa(value: &PyValue, entry: &Value, file: &str) {
    let splits = entry["splits"].as_object().expect("splits");
    assert_eq!(splits.len(), 3);
    for (split, keys) in splits {
        let data = value
            .get(split)
            .unwrap_or_else(|| panic!("{file}: no split {split}"));
        for (key, spec) in keys.as_object().expect("keys") {
            let at = format!("{file}[{split}][{key}]");
            if key == "three_way_counts" {
                let labels = match data.get("classification_labels") {
                    Some(PyValue::Array(a)) => a.to_f64().expect("numeric labels"),
                    other => panic!("{at}: labels {other:?}"),
                };
                let counts: Vec<u64> = (0..3)
                    .map(|c| labels.iter().filter(|&&l| l == f64::from(c)).count() as u64)
                    .collect();
                let wanted: Vec<u64> = spec
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_u64().unwrap())
                    .collect();
                assert_eq!(counts, wanted, "{at}");
                continue;
            }
            let got = data.get(key).unwrap_or_else(|| panic!("{at}: missing"));
            if let Some(len) = spec["len"].as_u64() {
                let PyValue::List(items) = got else {
                    panic!("{at}: {got:?}")
                };
                let sum: i64 = items
                    .iter()
                    .map(|v| match v {
                        PyValue::Int(i) => *i,
                        other => panic!("{at}: length {other:?}"),
                    })
                    .sum();
                assert_eq!(
                    (items.len() as u64, sum),
                    (len, spec["sum"].as_i64().unwrap()),
                    "{at}"
                );
                continue;
            }
            let PyValue::Array(array) = got else {
                panic!("{at}: {got:?}")
            };
            assert_eq!(array.dtype().name(), spec["dtype"], "{at}");
            let shape: Vec<usize> = spec["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(array.shape(), shape.as_slice(), "{at}");
            if let Some(first) = spec["first"].as_str() {
                let ArrayData::Object(items) = array.data() else {
                    panic!("{at}")
                };
                assert_eq!(items[0], PyValue::Str(first.to_string()), "{at}");
            }
            if let Some(sum) = spec["sum_finite"].as_f64() {
                let values = array.to_f64().expect("numeric");
                let got: f64 = values.iter().filter(|v| v.is_finite()).sum();
                let tolerance = 1e-9 * values.iter().map(|v| v.abs()).sum::<f64>().max(1.0);
                assert!((got - sum).abs() <= tolerance, "{at}: sum {got} vs {sum}");
                let neg_inf = values.iter().filter(|&&v| v == f64::NEG_INFINITY).count();
                assert_eq!(neg_inf as u64, spec["neg_inf"].as_u64().unwrap(), "{at}");
            }
        }
    }
}
