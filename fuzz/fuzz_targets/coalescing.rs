//! The write-buffer machine against the one-by-one application of its writes; the checks are in `fuzz/checks/coalescing.rs`.
//!
//! Run: `cargo +nightly fuzz run coalescing` from `fuzz/`.
#![no_main]

#[path = "../checks/coalescing.rs"]
mod coalescing;

libfuzzer_sys::fuzz_target!(|input: coalescing::Input| coalescing::check(input));
