//! The fuzz targets' checks on stable: every input in `fuzz/seeds/<target>/`
//! (committed, must not be empty) and in `fuzz/corpus/<target>/` (the local
//! fuzzing corpus, if any) is decoded as libFuzzer's `fuzz_target!` decodes it
//! and run through the same check the fuzz target runs (`fuzz/checks/*.rs`).

use arbitrary::{Arbitrary, Unstructured};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

#[path = "../../fuzz/checks/cache.rs"]
mod cache;
#[path = "../../fuzz/checks/coalescing.rs"]
mod coalescing;
#[path = "../../fuzz/checks/sqlite_roundtrip.rs"]
mod sqlite_roundtrip;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Runs every input of `target`'s seed directory and local corpus through
/// `check`; returns how many inputs decoded and ran.
fn replay<T: for<'a> Arbitrary<'a>>(target: &str, check: fn(T)) -> usize {
    let seeds = fuzz_dir().join("seeds").join(target);
    let seed_files = files(&seeds);
    assert!(
        !seed_files.is_empty(),
        "no seed inputs in {}",
        seeds.display()
    );
    let corpus = fuzz_dir().join("corpus").join(target);
    let corpus_files = if corpus.is_dir() {
        files(&corpus)
    } else {
        Vec::new()
    };
    let mut ran = 0;
    let mut seeds_ran = 0;
    let mut failed = Vec::new();
    for (i, path) in seed_files.iter().chain(&corpus_files).enumerate() {
        let bytes = std::fs::read(path).expect("readable input");
        // What libfuzzer-sys's fuzz_target! does with a typed input.
        if bytes.len() < T::size_hint(0).0 {
            continue;
        }
        let Ok(input) = T::arbitrary_take_rest(Unstructured::new(&bytes)) else {
            continue;
        };
        ran += 1;
        if i < seed_files.len() {
            seeds_ran += 1;
        }
        if catch_unwind(AssertUnwindSafe(|| check(input))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target}: failing inputs: {failed:#?}");
    assert!(seeds_ran > 0, "{target}: no seed input decodes");
    eprintln!(
        "{target}: {ran} inputs ran ({seeds_ran} of {} seeds, {} corpus files)",
        seed_files.len(),
        corpus_files.len()
    );
    ran
}

#[test]
fn cache_inputs_pass() {
    assert!(replay("cache", cache::check) > 0);
}

#[test]
fn coalescing_inputs_pass() {
    assert!(replay("coalescing", coalescing::check) > 0);
}

#[test]
fn sqlite_roundtrip_inputs_pass() {
    assert!(replay("sqlite_roundtrip", sqlite_roundtrip::check) > 0);
}
