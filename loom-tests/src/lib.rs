//! loom models (being built).
