//! Every statement, written once per store with its schema's name in it.

use crate::{client, code, feed, session, state};

/// The statements of one store.
pub(crate) struct Sql {
    pub(crate) states: state::Statements,
    pub(crate) codes: code::Statements,
    pub(crate) sessions: session::Statements,
    pub(crate) clients: client::Statements,
    pub(crate) feed: feed::Statements,
}

impl Sql {
    /// The statements for the quoted schema name `s`; with `logs`, the writes
    /// append to the invalidation log.
    pub(crate) fn new(s: &str, logs: bool) -> Self {
        Self {
            states: state::Statements::new(s),
            codes: code::Statements::new(s, logs),
            sessions: session::Statements::new(s, logs),
            clients: client::Statements::new(s, logs),
            feed: feed::Statements::new(s),
        }
    }
}

/// `$first, $first+1, ..., $first+n-1`.
pub(crate) fn params(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `col = EXCLUDED.col, ...` for every column after the key.
pub(crate) fn excluded(columns: &str) -> String {
    columns
        .split(',')
        .map(str::trim)
        .skip(1)
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_write_what_they_say() {
        assert_eq!(params(2, 3), "$2, $3, $4");
        assert_eq!(excluded("k, a, b"), "a = EXCLUDED.a, b = EXCLUDED.b");
    }
}
