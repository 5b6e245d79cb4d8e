//! What the property tests share.

use proptest::test_runner::Config;

/// A proptest config with `TOKENSTORE_PROPTEST_CASES` cases if set, else
/// `default`, and no failure persistence (a failing case prints itself).
///
/// # Panics
///
/// When the variable is set to something other than a number.
pub fn config(default: u32) -> Config {
    let cases = match std::env::var("TOKENSTORE_PROPTEST_CASES") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("TOKENSTORE_PROPTEST_CASES must be a number, not {v:?}")),
        Err(_) => default,
    };
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}
