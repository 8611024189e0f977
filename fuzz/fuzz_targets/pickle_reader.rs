//! Fuzzes the restricted pickle machine, the joblib reader, the `.npy` reader and the PyTorch
//! checkpoint reader (on the input as a file, and as the `data.pkl` of a zip, which runs the
//! pickle dialect that keeps objects) with arbitrary bytes: each must return a value or a typed `DataError`, never panic, hang or exhaust memory.
//!
//! The reader modules of `crates/cider-data` are compiled into this target directly (`#[path]`)
//! rather than through the `cider-data` crate, whose Burn dependency would otherwise be built
//! with sanitizer instrumentation for every fuzzing session. They only use each other,
//! `elements`, `atomic_write`, `excerpt`, `value` and `error`. Run with `cargo +nightly fuzz run
//! pickle_reader` (docs/fuzzing.md).

#![no_main]

#[path = "../../crates/cider-data/src/atomic_write.rs"]
#[allow(dead_code)]
mod atomic_write;
/// `error.rs` names the dataset catalog's error type, which no reader here returns: a stand-in
/// keeps the catalog (and its TOML dependency) out of the target.
mod catalog {
    #[derive(Debug, thiserror::Error)]
    #[error("dataset catalog")]
    pub struct CatalogError;
}
#[path = "../../crates/cider-data/src/elements.rs"]
#[allow(dead_code)]
mod elements;
#[path = "../../crates/cider-data/src/error.rs"]
#[allow(dead_code)]
mod error;
#[path = "../../crates/cider-data/src/excerpt.rs"]
#[allow(dead_code)]
mod excerpt;
#[path = "../../crates/cider-data/src/joblib.rs"]
#[allow(dead_code)]
mod joblib;
#[path = "../../crates/cider-data/src/npy.rs"]
#[allow(dead_code)]
mod npy;
#[path = "../../crates/cider-data/src/pickle/mod.rs"]
#[allow(dead_code)]
mod pickle;
#[path = "../../crates/cider-data/src/pickle_write.rs"]
#[allow(dead_code)]
mod pickle_write;
#[path = "../../crates/cider-data/src/torch_file/mod.rs"]
#[allow(dead_code, unused_imports)]
mod torch_file;
#[path = "../../crates/cider-data/src/value.rs"]
#[allow(dead_code)]
mod value;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A value that reads back must also survive a write / read round trip.
    if let Ok(value) = pickle::from_bytes(data, "fuzz-input") {
        let bytes = pickle_write::to_bytes(&value).expect("a read value can be written");
        match pickle::from_bytes(&bytes, "fuzz-roundtrip") {
            Ok(again) => assert_eq!(format!("{again:?}"), format!("{value:?}")),
            // Written without memo sharing, a value of many small containers can need more
            // than the budget of its written size (docs/fuzzing.md): refused, not misread.
            Err(error::DataError::Pickle { message, .. }) if message.contains("more than 64x") => {}
            Err(e) => panic!("the written pickle does not read: {e}"),
        }
    }
    let _ = joblib::from_bytes(data, "fuzz-input");
    let _ = npy::from_bytes(data, "fuzz-input");
    let _ = torch_file::TorchCheckpoint::from_bytes(data, "fuzz-input");
    let _ = torch_file::TorchCheckpoint::from_bytes(&stored_zip(data), "fuzz-input");
});

/// `data` as `archive/data.pkl` of an uncompressed zip, as `torch.save` writes it.
fn stored_zip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", options).expect("zip entry");
    zip.write_all(data).expect("zip write");
    zip.finish().expect("zip finish").into_inner()
}
