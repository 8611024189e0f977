//! The readers' promises measured from the outside, with an allocator that counts what each
//! call allocates (docs/fuzzing.md): hostile inputs stay within the memory bound (64 × the
//! input's size + 64 MiB), and a seeded random-mutation loop over the fixtures of
//! `testdata/pickles` and `testdata/corrupt` and the pickles of `testdata/torch-checkpoints` — a
//! stable-toolchain stand-in for the cargo-fuzz target — finds no panic, no result that fails
//! to round-trip and no call above the bound. Each input is also read as a PyTorch checkpoint,
//! whole and as the `data.pkl` of a zip (the pickle dialect that keeps objects).
//!
//! `CIDER_FUZZ_EXECS=N` sets the number of mutated inputs (default 2000) and
//! `CIDER_FUZZ_SEED=S` the seed (default 1); run with `--nocapture` to see the tally.
//! `CIDER_FUZZ_REPLAY=FILE` checks that one input instead.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cider_data::splitmix::SplitMix64;
use cider_data::torch_file::TorchCheckpoint;
use cider_data::{DataError, joblib, npy, pickle, pickle_write};

/// The System allocator, counting the live bytes of each thread and their peak.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to `System` unchanged; the counters are thread-local cells
// without destructors, so counting neither allocates nor blocks.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            track(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) };
        track(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's pointer, layout and size.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // Both blocks may exist for a moment: count the new one first.
            track(new_size as isize);
            track(-(layout.size() as isize));
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f`, returning its result and the most bytes it had allocated at once.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(start));
    let out = f();
    let peak = PEAK.with(Cell::get);
    (out, (peak - start).max(0) as usize)
}

/// The bound of docs/fuzzing.md for an input of `len` bytes.
fn bound(len: usize) -> usize {
    64 * len + (64 << 20)
}

fn testdata(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(dir)
}

/// The joblib reader's result (pickles are joblib dumps too).
fn read_joblib(bytes: &[u8]) -> Result<(), DataError> {
    joblib::from_bytes(bytes, "input").map(|_| ())
}

#[test]
fn hostile_inputs_stay_within_the_memory_bound() {
    const N: usize = 2 << 20;
    let framed = |body: &[u8], tail: &[u8]| [&b"\x80\x04"[..], body, tail].concat();
    let mut gzip_bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
    gzip_bomb.write_all(&vec![b'N'; 1 << 20]).unwrap();
    let member = gzip_bomb.finish().unwrap();
    // Whether each is refused, and the input.
    let cases = [
        (
            "a list of Nones",
            true,
            framed(&[&b"]("[..], &vec![b'N'; N]].concat(), b"e."),
        ),
        ("empty lists", true, framed(&vec![b']'; N], b".")),
        ("a gzip bomb", true, member.repeat(200)),
        ("marks", false, framed(&vec![b'('; N], b"N.")),
        (
            "memoized Nones",
            false,
            framed(&b"N\x94".repeat(N / 2), b"."),
        ),
    ];
    for (what, refused, bytes) in cases {
        let (result, peak) = peak_of(|| read_joblib(&bytes));
        if refused {
            let message = result.expect_err(what).to_string();
            assert!(
                message.contains("64x") && message.contains("refusing"),
                "{what}: {message}"
            );
        }
        assert!(
            peak <= bound(bytes.len()),
            "{what}: {peak} bytes allocated at once, the bound is {}",
            bound(bytes.len())
        );
    }
}

/// SplitMix64 with the draws the mutations need.
struct Rng(SplitMix64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Opcodes and values that reach the machine's edge cases.
const OPCODES: &[u8] =
    b"(.012NaAbcdeEhjqrstu}]\x80\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x93\x94\x95\x96\x97\x98";
const INTERESTING: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    u64::MAX,
];

/// Applies one to four random mutations to `input` (`seeds` for splicing).
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        let at = rng.below(len + 1);
        match rng.below(9) {
            0 if len > 0 => input[at.min(len - 1)] ^= 1 << rng.below(8),
            1 if len > 0 => input[at.min(len - 1)] = INTERESTING[rng.below(5)] as u8,
            2 => {
                let width = [1, 2, 4, 8][rng.below(4)];
                let value = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                for (k, byte) in value[..width].iter().enumerate() {
                    if let Some(slot) = input.get_mut(at + k) {
                        *slot = *byte;
                    }
                }
            }
            3 => {
                let end = (at + 1 + rng.below(16)).min(len);
                input.drain(at.min(end)..end);
            }
            4 => {
                let end = (at + 1 + rng.below(64)).min(len);
                let chunk = input[at.min(end)..end].to_vec();
                let to = rng.below(len + 1);
                input.splice(to..to, chunk);
            }
            5 => {
                let bytes: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                input.splice(at..at, bytes);
            }
            6 => input.truncate(at),
            7 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
            _ => input.insert(at, OPCODES[rng.below(OPCODES.len())]),
        }
    }
}

/// Every fixture of the pickle and corrupt folders (not the scripts and manifests).
fn seeds() -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = ["pickles", "corrupt"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(testdata(dir)).unwrap())
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            !matches!(ext, "py" | "json" | "md")
        })
        .collect();
    files.sort();
    let mut seeds: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    for folder in ["mosi-aligned-small", "mosi-unaligned-small"] {
        let path = testdata(&format!("torch-checkpoints/{folder}/state_dict.pt"));
        let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
        let mut pickle = Vec::new();
        std::io::Read::read_to_end(
            &mut zip.by_name("state_dict/data.pkl").unwrap(),
            &mut pickle,
        )
        .unwrap();
        seeds.push(pickle);
    }
    seeds
}

/// A zip holding `bytes` as `name`, stored uncompressed as `torch.save` does.
fn stored_zip(name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file(name, options).unwrap();
    zip.write_all(bytes).unwrap();
    zip.finish().unwrap().into_inner()
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs the three readers on one input, each under the memory bound, and checks the round
/// trip of a pickle that reads; `Ok` holds the first error's variant, `Err` a failure.
fn check(input: &[u8]) -> Result<Option<String>, String> {
    let bounded = |name: &str, peak: usize| {
        if peak > bound(input.len()) {
            return Err(format!(
                "the {name} reader allocated {peak} bytes at once, bound {}",
                bound(input.len())
            ));
        }
        Ok(())
    };
    let panicked = |name: &str| format!("the {name} reader panicked");
    let (pickled, peak) =
        peak_of(|| std::panic::catch_unwind(|| pickle::from_bytes(input, "input")));
    bounded("pickle", peak)?;
    let pickled = pickled.map_err(|_| panicked("pickle"))?;
    let (joblib, peak) = peak_of(|| std::panic::catch_unwind(|| read_joblib(input)));
    bounded("joblib", peak)?;
    let joblib = joblib.map_err(|_| panicked("joblib"))?;
    let (npy, peak) =
        peak_of(|| std::panic::catch_unwind(|| npy::from_bytes(input, "input").map(|_| ())));
    bounded("npy", peak)?;
    let npy = npy.map_err(|_| panicked("npy"))?;
    let wrapped = stored_zip("archive/data.pkl", input);
    for (name, bytes) in [("checkpoint", input), ("checkpoint pickle", &wrapped[..])] {
        let (result, peak) = peak_of(|| {
            std::panic::catch_unwind(|| TorchCheckpoint::from_bytes(bytes, "input").map(|_| ()))
        });
        bounded(name, peak)?;
        if result.is_err() {
            return Err(panicked(name));
        }
    }
    if let Ok(value) = &pickled {
        let written = std::panic::catch_unwind(|| pickle_write::to_bytes(value))
            .map_err(|_| "the pickle writer panicked".to_string())?
            .map_err(|e| format!("a value read cannot be written: {e}"))?;
        let again = match pickle::from_bytes(&written, "again") {
            Ok(again) => again,
            // Written without memo sharing, a value of many small containers can need more than
            // the budget of its written size (docs/fuzzing.md): refused, not misread.
            Err(DataError::Pickle { message, .. }) if message.contains("more than 64x") => {
                return Ok(Some("written copy over the budget".into()));
            }
            Err(e) => return Err(format!("reread: {e}")),
        };
        // Debug text compares NaN floats equal.
        if again != *value && format!("{again:?}") != format!("{value:?}") {
            return Err("the value changed in a write / read round trip".to_string());
        }
    }
    Ok(pickled
        .err()
        .or(joblib.err())
        .or(npy.err())
        .map(|e| kind(&e)))
}

/// The variant of an error, for the tally.
fn kind(error: &DataError) -> String {
    format!("{error:?}")
        .split([' ', '{', '('])
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn mutated_fixtures_never_panic_or_exceed_the_bound() {
    if let Ok(path) = std::env::var("CIDER_FUZZ_REPLAY") {
        let input = std::fs::read(&path).unwrap();
        eprintln!(
            "{path}: {:?}",
            check(&input).unwrap_or_else(|e| panic!("{path}: {e}"))
        );
        return;
    }
    let execs = env_number("CIDER_FUZZ_EXECS", 2000);
    let mut rng = Rng(SplitMix64(env_number("CIDER_FUZZ_SEED", 1)));
    let seeds = seeds();
    assert!(seeds.len() > 40, "fixtures found: {}", seeds.len());
    let (mut tally, mut slowest) = (BTreeMap::<String, u64>::new(), Duration::ZERO);
    let started = Instant::now();
    for exec in 0..execs {
        let mut input = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut input, &seeds);
        if rng.below(8) == 0 {
            // Through the joblib reader's decompression too.
            let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            zlib.write_all(&input).unwrap();
            input = zlib.finish().unwrap();
        }
        let at = Instant::now();
        let outcome = check(&input);
        slowest = slowest.max(at.elapsed());
        match outcome {
            Ok(kind) => {
                *tally
                    .entry(kind.unwrap_or_else(|| "read".into()))
                    .or_default() += 1
            }
            Err(failure) => {
                let path = std::env::temp_dir().join(format!("cider-fuzz-failure-{exec}.bin"));
                std::fs::write(&path, &input).unwrap();
                panic!("input {exec} ({}): {failure}", path.display());
            }
        }
    }
    eprintln!(
        "{execs} mutated inputs in {:.1} s (slowest {:.3} s): {tally:?}",
        started.elapsed().as_secs_f64(),
        slowest.as_secs_f64()
    );
    assert!(
        slowest < Duration::from_secs(10),
        "an input took {slowest:?}"
    );
}
