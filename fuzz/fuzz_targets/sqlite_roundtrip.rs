//! SQLite round trips of arbitrary records against the memory model; the checks are in `fuzz/checks/sqlite_roundtrip.rs`.
//!
//! Run: `cargo +nightly fuzz run sqlite_roundtrip` from `fuzz/`.
#![no_main]

#[path = "../checks/sqlite_roundtrip.rs"]
mod sqlite_roundtrip;

libfuzzer_sys::fuzz_target!(|input: sqlite_roundtrip::Input| sqlite_roundtrip::check(input));
