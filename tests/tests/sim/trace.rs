//! The trace of a run: every event as a line of text, hashed as it is
//! recorded. The hash shows that a seed replays the same run; the tail is
//! printed when an invariant fails. `TOKENSTORE_SIM_TRACE=1` prints every line.
//!
//! Lines name clients, operations and counters, never a token's value.

use super::rng::Fnv;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

const TAIL: usize = 400;

struct Buf {
    hash: Fnv,
    lines: u64,
    tail: VecDeque<String>,
    print: bool,
}

/// A shared trace (clones write to the same one).
#[derive(Clone)]
pub(crate) struct Trace(Arc<Mutex<Buf>>);

impl Trace {
    pub(crate) fn new(print: bool) -> Self {
        Self(Arc::new(Mutex::new(Buf {
            hash: Fnv::new(),
            lines: 0,
            tail: VecDeque::new(),
            print,
        })))
    }

    pub(crate) fn line(&self, line: String) {
        let mut buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        buf.hash.write(line.as_bytes());
        buf.hash.write(b"\n");
        buf.lines += 1;
        if buf.print {
            println!("{line}");
        }
        if buf.tail.len() == TAIL {
            buf.tail.pop_front();
        }
        buf.tail.push_back(line);
    }

    pub(crate) fn hash(&self) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .hash
            .finish()
    }

    pub(crate) fn lines(&self) -> u64 {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).lines
    }

    pub(crate) fn tail(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tail
            .iter()
            .cloned()
            .collect()
    }
}
