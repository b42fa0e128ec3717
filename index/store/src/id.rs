//! What the store accepts as a document id.

use crate::error::{Result, StoreError};

/// Longest accepted document id, in bytes. Ids travel in URLs, logs and
/// every index's keys; a bound keeps all of those cheap.
pub const MAX_ID_BYTES: usize = 512;

/// Checks that `id` is a usable document id: not empty, at most
/// [`MAX_ID_BYTES`] bytes, and free of control characters (which break
/// logs, URLs and terminal output).
pub fn validate_id(id: &str) -> Result<()> {
    let shown = || {
        let mut s: String = id.chars().take(64).collect::<String>();
        if s.len() < id.len() {
            s.push('…');
        }
        format!("{s:?}")
    };
    if id.is_empty() {
        return Err(StoreError::InvalidId("id is empty".into()));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(StoreError::InvalidId(format!(
            "{} is {} bytes, more than {MAX_ID_BYTES}",
            shown(),
            id.len()
        )));
    }
    if id.chars().any(char::is_control) {
        return Err(StoreError::InvalidId(format!(
            "{} contains a control character",
            shown()
        )));
    }
    Ok(())
}
