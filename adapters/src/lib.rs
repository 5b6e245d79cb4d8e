//! tokenstore (being built).
pub use tokenstore_core::*;
