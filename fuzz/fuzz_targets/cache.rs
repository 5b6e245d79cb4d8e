//! The cache machine against a model of what it may answer; the checks are in
//! `fuzz/checks/cache.rs`.
//!
//! Run: `cargo +nightly fuzz run cache` from `fuzz/`.
#![no_main]

#[path = "../checks/cache.rs"]
mod cache;

libfuzzer_sys::fuzz_target!(|input: cache::Input| cache::check(input));
