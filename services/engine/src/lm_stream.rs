//! Streamed generation: each new piece of text is sent as soon as the
//! model has chosen its token, for `"stream": true` on `/v1/lm/generate`
//! (the gateway turns the events into server-sent events).
//!
//! Everything that can fail before the first token (the checks, the
//! tokenized prompt's length, the memory blocks its text routes to) runs
//! before the stream starts, after a worker slot is taken, so bad input, a
//! full queue or a memory outage is still a plain 4xx / 503. The slot is
//! then held by the task that runs the generation, not by the HTTP
//! handler, and only while tokens are made: the channel has room for every
//! event a generation can send, so a client that stops reading never keeps
//! a worker waiting; a client that goes away closes the channel and
//! generation stops at the next token.

use std::sync::Arc;

use mnemos_api::{LmGenerateRequest, LmGenerateResponse};
use tokio::sync::mpsc;

use crate::lm::{LmService, Ready};
use crate::{EngineError, Result};

/// One event of a streamed generation.
#[derive(Debug)]
pub enum LmStreamEvent {
    /// Text that the last token(s) completed; the pieces concatenated are
    /// the final text.
    Token {
        /// Tokens generated so far.
        tokens: usize,
        text: String,
    },
    /// The whole generation, as a non-streamed request would have had it.
    Done(LmGenerateResponse),
    /// Generation failed after streaming began.
    Failed(EngineError),
}

impl LmService {
    /// Starts `req` and returns its events; ends with `Done` or `Failed`.
    pub async fn generate_stream(
        &self,
        req: LmGenerateRequest,
    ) -> Result<mpsc::Receiver<LmStreamEvent>> {
        let generation = self.prepare(req)?;
        let admitted = self.admit().await?;
        let generation = self.compute.run(move || generation.ready()).await?;
        // A piece per token at most, a last piece and the final event.
        let (tx, rx) = mpsc::channel(generation.max_tokens() + 2);
        let compute = Arc::clone(&self.compute);
        tokio::spawn(async move {
            let events = tx.clone();
            let result = compute.run(move || stream(generation, &events)).await;
            drop(admitted);
            let last = match result {
                Ok(done) => LmStreamEvent::Done(done),
                Err(err) => LmStreamEvent::Failed(err),
            };
            // Room is reserved; a client that has gone is not an error.
            let _ = tx.try_send(last);
        });
        Ok(rx)
    }
}

/// Runs `generation`, sending the text of each token as it is decoded,
/// and any text held back to the end.
fn stream(generation: Ready, events: &mpsc::Sender<LmStreamEvent>) -> Result<LmGenerateResponse> {
    let served = std::sync::Arc::clone(generation.served());
    let mut text = TextSoFar::default();
    let done = generation.run(&mut |token| {
        match text.push(token, |ids| served.decode(ids)) {
            // Never full (room for every event), so an error means the
            // client has gone.
            Some(piece) => events
                .try_send(LmStreamEvent::Token {
                    tokens: text.ids.len(),
                    text: piece,
                })
                .is_ok(),
            None => !events.is_closed(),
        }
    })?;
    // A character cut by `max_tokens`, or a last token that is U+FFFD.
    if let Some(rest) = done.text.strip_prefix(text.sent.as_str()) {
        if !rest.is_empty() {
            let _ = events.try_send(LmStreamEvent::Token {
                tokens: done.tokens,
                text: rest.to_string(),
            });
        }
    }
    Ok(done)
}

/// Incremental decoding. A byte-level BPE token can end inside a UTF-8
/// character, which decodes as U+FFFD until the next token completes it;
/// such text is held back. The tokens are decoded whole each time (a few
/// hundred at most), and only text that extends what was sent is sent;
/// [`stream`] sends what is left against the final text at the end.
#[derive(Default)]
struct TextSoFar {
    ids: Vec<u32>,
    sent: String,
}

impl TextSoFar {
    /// The new text after `token`, if any can be sent yet.
    fn push(&mut self, token: u32, decode: impl Fn(&[u32]) -> Result<String>) -> Option<String> {
        self.ids.push(token);
        let full = match decode(&self.ids) {
            Ok(full) => full,
            Err(err) => {
                tracing::debug!(%err, "streamed text held back: decoding failed");
                return None;
            }
        };
        if full.ends_with('\u{FFFD}')
            || !full.starts_with(&self.sent)
            || full.len() == self.sent.len()
        {
            return None;
        }
        let piece = full[self.sent.len()..].to_string();
        self.sent = full;
        Some(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens as raw bytes, decoded lossily like a byte-level BPE.
    fn decode(ids: &[u32]) -> Result<String> {
        let bytes: Vec<u8> = ids.iter().map(|&b| b as u8).collect();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    #[test]
    fn pieces_wait_for_whole_characters_and_add_up_to_the_text() {
        let word = "naïve café ☕";
        let mut text = TextSoFar::default();
        let mut pieces = Vec::new();
        for &b in word.as_bytes() {
            if let Some(piece) = text.push(u32::from(b), decode) {
                pieces.push(piece);
            }
        }
        assert_eq!(pieces.concat(), word);
        assert!(pieces.contains(&"ï".to_string()));
        assert!(pieces.contains(&"☕".to_string()));
        assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')));
    }
}
