//! Integration tests of `SqliteTokenStore`, one binary (STYLE.md, point 9).
//!
//! The connection thread makes the store runtime-agnostic, so a plain
//! `futures_lite::future::block_on` drives every test.

mod batch;
mod bulk;
mod common;
mod corrupt;
mod encryption;
mod feed;
mod feed_poll;
mod model;
mod readers;
mod schema;
mod semantics;
mod writes;
