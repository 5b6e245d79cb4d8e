//! The child of the cross-process feed tests (`tests/replicas_*.rs`):
//! validates tokens through a cache that follows the store's invalidation
//! feed. See `tokenstore_tests::replica`.

fn main() -> std::process::ExitCode {
    tokenstore_tests::replica::child_main()
}
