//! The child of the crash tests (`tests/crash_*.rs`): writes through a
//! `BufferedTokenStore` until its parent kills it. See
//! `tokenstore_tests::crash`.

fn main() -> std::process::ExitCode {
    tokenstore_tests::crash::child_main()
}
