//! Block keys: relative, slash-separated names that map one-to-one to a
//! file under the warm directory and an object under the cold prefix.
//! Anything that could escape either (`..`, absolute paths, NUL,
//! backslashes) is refused here, once, so no caller-supplied string
//! reaches the filesystem as a path.

use crate::{Result, TierError};

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 512;

/// Checks that `key` is a valid block key: 1–512 bytes of ASCII letters,
/// digits, `.`, `_`, `-` and `/`, split by `/` into non-empty segments
/// none of which is `.` or `..` or starts with `.` (hidden names are the
/// warm tier's temporary files).
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(TierError::InvalidKey {
            key: key.chars().take(80).collect(),
            reason: reason.into(),
        })
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return bad("longer than 512 bytes");
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')))
    {
        return bad(&format!("character {c:?} is not allowed"));
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return bad("empty path segment (leading, trailing or double '/')");
        }
        if segment.starts_with('.') {
            return bad("a segment starts with '.'");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_could_escape_are_refused() {
        for good in ["a", "blocks/n1.2.safetensors", "x-y_z/0/1"] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_KEY_BYTES + 1);
        for bad in [
            "",
            "/abs",
            "a//b",
            "a/",
            "../x",
            "a/../b",
            ".hidden",
            "a/.tmp",
            "a\\b",
            "a\0b",
            "é",
            "a b",
            long.as_str(),
        ] {
            let e = validate_key(bad).unwrap_err();
            assert!(matches!(e, TierError::InvalidKey { .. }), "{bad:?}: {e}");
        }
    }
}
