//! Every reader of this crate (pickle, joblib, `.npy`, `.npz`) against the corrupt-file corpus
//! of `testdata/corrupt/`: each file gives its expected typed error, and no reader panics on
//! any of them.

use crate::error::DataError;
use crate::testkit::{json, testdata};

#[test]
fn corrupt_corpus_gives_the_expected_typed_errors() {
    let expected = json("corrupt/expected.json");
    let entries = expected.as_object().unwrap();
    assert!(entries.len() >= 25);
    for (name, entry) in entries {
        let path = testdata(&format!("corrupt/{name}"));
        let error = match entry["reader"].as_str().unwrap() {
            "pickle" => crate::pickle::from_path(&path).err(),
            "joblib" => crate::joblib::from_path(&path).err(),
            "npy" => crate::npy::from_path(&path).err(),
            "npz" => crate::npy::npz_from_path(&path).err(),
            other => panic!("{name}: reader {other}"),
        };
        let error = error.unwrap_or_else(|| panic!("{name} was accepted"));
        let variant = match &error {
            DataError::Pickle { .. } => "Pickle",
            DataError::ForbiddenGlobal { .. } => "ForbiddenGlobal",
            DataError::Joblib { .. } => "Joblib",
            DataError::Npy { .. } => "Npy",
            other => panic!("{name}: unexpected {other:?}"),
        };
        assert_eq!(variant, entry["error"], "{name}: {error}");
        assert!(error.to_string().contains(name.as_str()), "{name}: {error}");
        // Every reader refuses every file of the corpus without panicking.
        let bytes = std::fs::read(&path).unwrap();
        assert!(crate::pickle::from_bytes(&bytes, name).is_err(), "{name}");
        assert!(crate::joblib::from_bytes(&bytes, name).is_err(), "{name}");
        assert!(crate::npy::from_bytes(&bytes, name).is_err(), "{name}");
        assert!(crate::npy::npz_from_bytes(&bytes, name).is_err(), "{name}");
    }
}
