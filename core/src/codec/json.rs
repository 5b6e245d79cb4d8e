//! The JSON text columns of the SQL backends: lists as Python's `json.dumps`
//! writes them, and `user_info` as pydantic's `model_dump_json()` writes
//! mxcp's `UserInfo`, so a value reads the same in mxcp, `tokenstore-sqlite`
//! and `tokenstore-postgres`.
//!
//! ```
//! use tokenstore_core::UserInfo;
//! use tokenstore_core::codec::json::{decode_list, decode_user_info, encode_list, encode_user_info};
//!
//! let list = encode_list(&["openid".to_owned(), "caf\u{e9}".to_owned()]);
//! assert_eq!(list, r#"["openid", "caf\u00e9"]"#);
//! assert_eq!(decode_list(&list).map(|l| l.len()), Some(2));
//!
//! let user = UserInfo::new("github", "42", "octocat");
//! let text = encode_user_info(&user).unwrap();
//! assert_eq!(decode_user_info(&text), Some(user));
//! ```

use crate::{StoreError, UserInfo};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// A list of strings as `json.dumps(list)` writes it: `", "` between items and
/// every character outside printable ASCII escaped.
pub fn encode_list(items: &[String]) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_ascii_string(&mut out, item);
    }
    out.push(']');
    out
}

/// A JSON string literal in Python's `ensure_ascii` form.
fn push_ascii_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => push_utf16_escapes(out, c),
        }
    }
    out.push('"');
}

fn push_utf16_escapes(out: &mut String, c: char) {
    for unit in c.encode_utf16(&mut [0; 2]) {
        // Writing to a String cannot fail.
        let _ = write!(out, "\\u{unit:04x}");
    }
}

/// A JSON list of strings; `None` for anything else.
pub fn decode_list(text: &str) -> Option<Vec<String>> {
    serde_json::from_str(text).ok()
}

/// mxcp's `UserInfo`, field for field and in its order, for writing.
#[derive(Serialize)]
struct UserInfoOut<'a> {
    provider: &'a str,
    user_id: &'a str,
    username: &'a str,
    email: Option<&'a str>,
    name: Option<&'a str>,
    avatar_url: Option<&'a str>,
    raw_profile: Option<&'a Map<String, Value>>,
    provider_scopes_granted: &'a [String],
    capabilities: &'a [String],
}

/// mxcp's `UserInfo` for reading: unknown keys are refused (mxcp's
/// `extra="forbid"`), missing optional ones take mxcp's defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserInfoIn {
    provider: String,
    user_id: String,
    username: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    avatar_url: Option<String>,
    #[serde(default)]
    raw_profile: Option<Map<String, Value>>,
    #[serde(default)]
    provider_scopes_granted: Vec<String>,
    #[serde(default)]
    capabilities: Vec<String>,
}

/// `user_info` as pydantic's `model_dump_json()` writes it.
pub fn encode_user_info(user: &UserInfo) -> Result<String, StoreError> {
    let out = UserInfoOut {
        provider: &user.provider,
        user_id: &user.user_id,
        username: &user.username,
        email: user.email.as_deref(),
        name: user.name.as_deref(),
        avatar_url: user.avatar_url.as_deref(),
        raw_profile: user.raw_profile.as_ref(),
        provider_scopes_granted: &user.provider_scopes_granted,
        capabilities: &user.capabilities,
    };
    serde_json::to_string(&out)
        .map_err(|_| StoreError::Backend("user_info could not be written as JSON".to_owned()))
}

/// `user_info` from its JSON text; `None` when it is not mxcp's `UserInfo`.
pub fn decode_user_info(text: &str) -> Option<UserInfo> {
    let input: UserInfoIn = serde_json::from_str(text).ok()?;
    Some(UserInfo {
        provider: input.provider,
        user_id: input.user_id,
        username: input.username,
        email: input.email,
        name: input.name,
        avatar_url: input.avatar_url,
        raw_profile: input.raw_profile,
        provider_scopes_granted: input.provider_scopes_granted,
        capabilities: input.capabilities,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn lists_match_python_json_dumps() {
        // Expected values printed by CPython 3.11's json.dumps.
        assert_eq!(encode_list(&[]), "[]");
        let tricky = strings(&["a", "\u{e9}\u{7f}\u{1}\n\"/\u{1F600}", ""]);
        assert_eq!(
            encode_list(&tricky),
            r#"["a", "\u00e9\u007f\u0001\n\"/\ud83d\ude00", ""]"#
        );
        assert_eq!(decode_list(&encode_list(&tricky)), Some(tricky));
    }

    #[test]
    fn lists_refuse_other_json() {
        for bad in ["", "null", "{}", "[1]", "[\"a\", null]", "[\"a\""] {
            assert_eq!(decode_list(bad), None, "{bad}");
        }
    }

    #[test]
    fn user_info_matches_pydantic_model_dump_json() {
        let mut user = UserInfo::new("github", "42", "octo\u{e9}\u{7f}\n\u{1}\"/\u{1F600}");
        let profile = serde_json::json!({"b": 1, "a": [1.0, 2.5, null, true]});
        user.raw_profile = profile.as_object().cloned();
        // Printed by pydantic 2.13 for mxcp's UserInfo (raw_profile keys sorted here).
        let expected = "{\"provider\":\"github\",\"user_id\":\"42\",\
            \"username\":\"octo\u{e9}\u{7f}\\n\\u0001\\\"/\u{1F600}\",\
            \"email\":null,\"name\":null,\"avatar_url\":null,\
            \"raw_profile\":{\"a\":[1.0,2.5,null,true],\"b\":1},\
            \"provider_scopes_granted\":[],\"capabilities\":[]}";
        let text = encode_user_info(&user).expect("encoded");
        assert_eq!(text, expected);
        assert_eq!(decode_user_info(&text), Some(user));
    }

    #[test]
    fn user_info_takes_mxcp_defaults_and_refuses_extras() {
        let minimal = r#"{"provider":"p","user_id":"u","username":"n"}"#;
        assert_eq!(
            decode_user_info(minimal),
            Some(UserInfo::new("p", "u", "n"))
        );
        for bad in [
            r#"{"provider":"p","user_id":"u","username":"n","extra":1}"#,
            r#"{"provider":"p","user_id":"u"}"#,
            r#"{"provider":"p","user_id":7,"username":"n"}"#,
            r#"{"provider":"p","user_id":"u","username":"n","capabilities":null}"#,
            r#"{"provider":"p","user_id":"u","username":"n","raw_profile":[1]}"#,
            "[]",
            "not json",
        ] {
            assert_eq!(decode_user_info(bad), None, "{bad}");
        }
    }

    #[test]
    fn profile_numbers_read_back_exactly() {
        // Found by the sqlite_roundtrip fuzz target: without serde_json's
        // float_roundtrip, 1.1125036537071191e-306 read back one ulp off.
        let numbers = [
            1.1125036537071191e-306,
            2.2250738585072014e-308,
            0.1,
            1e300,
            -5e-324,
        ];
        let mut user = UserInfo::new("p", "u", "n");
        let profile = numbers
            .iter()
            .enumerate()
            .map(|(i, &x)| (format!("n{i}"), Value::from(x)))
            .collect();
        user.raw_profile = Some(profile);
        let back = decode_user_info(&encode_user_info(&user).unwrap()).expect("decoded");
        assert_eq!(back.raw_profile, user.raw_profile);
    }
}
