//! Takes the TLS options out of a connection string before tokio-postgres
//! parses the rest.
//!
//! tokio-postgres 0.7 knows `sslmode=disable|prefer|require` only, and no
//! `sslrootcert`; libpq also has `verify-ca` and `verify-full`. So `sslmode`
//! and `sslrootcert` are removed here, from a URL's query
//! (`postgresql://...?sslmode=verify-full&sslrootcert=/ca.pem`) or from a
//! key-value string (`host=db sslmode=verify-full sslrootcert='/ca.pem'`), and
//! everything else is handed on verbatim. The boundaries are found the way
//! tokio-postgres finds them, so both parsers see the same parameters.
//!
//! Errors never quote the string: it may hold the password.

use crate::tls::TlsMode;
use std::path::PathBuf;
use std::str::FromStr;
use tokenstore_core::StoreError;

/// The TLS options a connection string set (the last of each wins, as in libpq).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TlsParams {
    pub(crate) mode: Option<TlsMode>,
    pub(crate) root_cert: Option<PathBuf>,
}

impl TlsParams {
    /// Records `key = value` if it is one of ours; whether it was.
    fn take(&mut self, key: &str, value: &str) -> Result<bool, StoreError> {
        match key {
            "sslmode" => self.mode = Some(TlsMode::from_str(value)?),
            "sslrootcert" => self.root_cert = Some(PathBuf::from(value)),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// `s` without its `sslmode` and `sslrootcert` options, and their values.
pub(crate) fn split_tls(s: &str) -> Result<(String, TlsParams), StoreError> {
    match url_query_start(s) {
        Some(query) => split_url(s, query),
        None if is_url(s) => Ok((s.to_owned(), TlsParams::default())),
        None => split_key_value(s),
    }
}

const URL_PREFIXES: [&str; 2] = ["postgres://", "postgresql://"];

fn is_url(s: &str) -> bool {
    URL_PREFIXES.iter().any(|p| s.starts_with(p))
}

/// Where a URL's query begins (the index of its `?`): the first `?` after the
/// credentials, which end at the first `@` (as tokio-postgres reads them).
fn url_query_start(s: &str) -> Option<usize> {
    let prefix = URL_PREFIXES.iter().find(|p| s.starts_with(**p))?;
    let rest = prefix.len();
    let after_credentials = s[rest..].find('@').map_or(rest, |at| rest + at + 1);
    s[after_credentials..]
        .find('?')
        .map(|q| after_credentials + q)
}

fn split_url(s: &str, query: usize) -> Result<(String, TlsParams), StoreError> {
    let mut params = TlsParams::default();
    let mut kept = Vec::new();
    for pair in s[query + 1..].split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(unparsable)?;
        if !params.take(&percent_decode(key)?, &percent_decode(value)?)? {
            kept.push(pair);
        }
    }
    let mut out = s[..query].to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    Ok((out, params))
}

/// `%XX` escapes decoded; the result must be UTF-8.
fn percent_decode(s: &str) -> Result<String, StoreError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(unparsable)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| unparsable())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| unparsable())
}

/// One `key = value` of a key-value string: the key, the unescaped value, and
/// the byte range the pair spans in the string.
struct Pair<'a> {
    key: &'a str,
    value: String,
    span: std::ops::Range<usize>,
}

fn split_key_value(s: &str) -> Result<(String, TlsParams), StoreError> {
    let mut params = TlsParams::default();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut at = 0;
    while let Some(pair) = next_pair(s, &mut at)? {
        if params.take(pair.key, &pair.value)? {
            out.push_str(&s[copied..pair.span.start]);
            copied = pair.span.end;
        }
    }
    out.push_str(&s[copied..]);
    Ok((out, params))
}

/// The pair starting at or after `*at` (skipping white space), if any.
fn next_pair<'a>(s: &'a str, at: &mut usize) -> Result<Option<Pair<'a>>, StoreError> {
    *at = skip_ws(s, *at);
    if *at == s.len() {
        return Ok(None);
    }
    let start = *at;
    let key_end = s[start..]
        .find(|c: char| c.is_whitespace() || c == '=')
        .map_or(s.len(), |i| start + i);
    if key_end == start {
        return Err(unparsable());
    }
    let mut i = skip_ws(s, key_end);
    if !s[i..].starts_with('=') {
        return Err(unparsable());
    }
    i = skip_ws(s, i + 1);
    let (value, end) = value_at(s, i)?;
    *at = end;
    Ok(Some(Pair {
        key: &s[start..key_end],
        value,
        span: start..end,
    }))
}

fn skip_ws(s: &str, at: usize) -> usize {
    s[at..]
        .find(|c: char| !c.is_whitespace())
        .map_or(s.len(), |i| at + i)
}

/// A value at `at`: single-quoted (up to the closing quote) or bare (up to
/// white space), with `\` escaping the next character; and where it ends.
fn value_at(s: &str, at: usize) -> Result<(String, usize), StoreError> {
    let quoted = s[at..].starts_with('\'');
    let mut chars = s[at..].char_indices().skip(usize::from(quoted));
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' if quoted => return Ok((value, at + i + 1)),
            c if c.is_whitespace() && !quoted => return Ok((value, at + i)),
            '\\' => value.extend(chars.next().map(|(_, c)| c)),
            c => value.push(c),
        }
    }
    if quoted || value.is_empty() {
        return Err(unparsable());
    }
    Ok((value, s.len()))
}

fn unparsable() -> StoreError {
    StoreError::InvalidConfig(
        "the PostgreSQL URL could not be parsed (expected postgresql://... or \
         key=value pairs)"
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> (String, TlsParams) {
        split_tls(s).expect("parses")
    }

    fn params(mode: TlsMode, root: Option<&str>) -> TlsParams {
        TlsParams {
            mode: Some(mode),
            root_cert: root.map(PathBuf::from),
        }
    }

    #[test]
    fn a_url_keeps_every_other_parameter() {
        let (rest, tls) = split(
            "postgresql://u:p@db:5433/app?connect_timeout=3&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fca%20x.pem&application_name=a",
        );
        assert_eq!(
            rest,
            "postgresql://u:p@db:5433/app?connect_timeout=3&application_name=a"
        );
        assert_eq!(tls, params(TlsMode::VerifyFull, Some("/etc/ca x.pem")));
    }

    #[test]
    fn a_url_with_only_tls_parameters_loses_its_query() {
        let (rest, tls) = split("postgres://db/app?sslmode=verify-ca");
        assert_eq!(rest, "postgres://db/app");
        assert_eq!(tls, params(TlsMode::VerifyCa, None));
    }

    #[test]
    fn a_url_without_query_is_untouched() {
        for url in [
            "postgresql://u:p@db/app",
            "postgresql://db",
            "postgresql://",
        ] {
            assert_eq!(split(url), (url.to_owned(), TlsParams::default()));
        }
    }

    #[test]
    fn a_question_mark_in_the_password_is_not_the_query() {
        let (rest, tls) = split("postgresql://u:p?w@db/app?sslmode=require");
        assert_eq!(rest, "postgresql://u:p?w@db/app");
        assert_eq!(tls, params(TlsMode::Require, None));
    }

    #[test]
    fn key_value_pairs_are_removed_with_their_quoting() {
        let (rest, tls) = split(
            "host=db sslmode = verify-full  sslrootcert='/a b/it\\'s.pem' password='x y' user=u",
        );
        assert_eq!(rest, "host=db    password='x y' user=u");
        assert_eq!(tls, params(TlsMode::VerifyFull, Some("/a b/it's.pem")));
        // What remains is still what tokio-postgres reads.
        let config = tokio_postgres::Config::from_str(&rest).expect("parses");
        assert_eq!(config.get_password(), Some(&b"x y"[..]));
        assert_eq!(config.get_user(), Some("u"));
    }

    #[test]
    fn the_last_sslmode_wins_and_libpq_names_all_parse() {
        let (_, tls) = split("sslmode=disable sslmode=prefer");
        assert_eq!(tls.mode, Some(TlsMode::Prefer));
        for (name, mode) in [
            ("disable", TlsMode::Disable),
            ("prefer", TlsMode::Prefer),
            ("require", TlsMode::Require),
            ("verify-ca", TlsMode::VerifyCa),
            ("verify-full", TlsMode::VerifyFull),
        ] {
            assert_eq!(split(&format!("host=h sslmode={name}")).1.mode, Some(mode));
            let url = format!("postgresql://h/?sslmode={name}");
            assert_eq!(split(&url).1.mode, Some(mode));
        }
    }

    #[test]
    fn an_unknown_sslmode_is_a_typed_error() {
        for s in [
            "host=h sslmode=verify_full",
            "postgresql://h/?sslmode=allow",
            "sslmode=",
        ] {
            let err = split_tls(s).expect_err(s);
            assert!(matches!(err, StoreError::InvalidConfig(_)), "{s}: {err:?}");
        }
        let err = split_tls("host=h sslmode=strict").expect_err("unknown");
        assert!(err.to_string().contains("sslmode"), "{err}");
    }

    #[test]
    fn malformed_strings_never_echo_the_password() {
        for s in [
            "password='hunter2",
            "host=h password=hunter2 =x",
            "postgresql://u:hunter2@h/?sslmode",
            "postgresql://u:hunter2@h/?sslrootcert=%zz",
        ] {
            let err = split_tls(s).expect_err(s);
            assert!(matches!(err, StoreError::InvalidConfig(_)), "{err:?}");
            assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
        }
    }

    #[test]
    fn other_strings_pass_through() {
        let (rest, tls) = split("host=/run/postgresql dbname=app");
        assert_eq!(rest, "host=/run/postgresql dbname=app");
        assert_eq!(tls, TlsParams::default());
        assert_eq!(split(""), (String::new(), TlsParams::default()));
    }
}
