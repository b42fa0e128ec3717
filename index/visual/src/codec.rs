//! The payload of one log record: an [`Op`] as bytes and back (the format
//! is described in [`crate::log`]).

use crate::log::{Op, Row, MAX_METADATA, MAX_NAME};

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

pub(crate) fn encode(op: &Op) -> Vec<u8> {
    let mut b = Vec::new();
    match op {
        Op::Upsert(items) => {
            // Kind 1 was the same without metadata; it is still read.
            b.push(5);
            b.extend_from_slice(&(items.len() as u32).to_le_bytes());
            for row in items {
                put_str(&mut b, &row.id);
                put_str(&mut b, &row.label);
                put_str(&mut b, row.metadata.as_deref().unwrap_or(""));
                for x in &row.vector {
                    b.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
        Op::Remove(ids) => {
            b.push(2);
            b.extend_from_slice(&(ids.len() as u32).to_le_bytes());
            for id in ids {
                put_str(&mut b, id);
            }
        }
        Op::Multipliers(ms) => {
            b.push(4);
            b.extend_from_slice(&(ms.len() as u32).to_le_bytes());
            for (id, m) in ms {
                put_str(&mut b, id);
                b.extend_from_slice(&m.to_le_bytes());
            }
        }
    }
    b
}

/// A cursor over a payload; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    fn f32(&mut self) -> Option<f32> {
        self.take(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    fn string(&mut self) -> Option<String> {
        self.string_up_to(MAX_NAME)
    }

    fn string_up_to(&mut self, max: usize) -> Option<String> {
        let n = self.u32()? as usize;
        if n > max {
            return None;
        }
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

pub(crate) fn decode(payload: &[u8], dim: usize) -> Option<Op> {
    let (&kind, rest) = payload.split_first()?;
    let mut r = Reader(rest);
    let op = match kind {
        1 | 5 => {
            let n = r.u32()? as usize;
            let mut items = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let id = r.string()?;
                let label = r.string()?;
                let metadata = if kind == 5 {
                    r.string_up_to(MAX_METADATA)?
                } else {
                    String::new()
                };
                let vector = (0..dim).map(|_| r.f32()).collect::<Option<Vec<f32>>>()?;
                items.push(Row {
                    id,
                    label,
                    vector,
                    metadata: (!metadata.is_empty()).then_some(metadata),
                });
            }
            Op::Upsert(items)
        }
        2 => {
            let n = r.u32()? as usize;
            Op::Remove((0..n).map(|_| r.string()).collect::<Option<_>>()?)
        }
        4 => {
            let n = r.u32()? as usize;
            Op::Multipliers(
                (0..n)
                    .map(|_| Some((r.string()?, r.f32()?)))
                    .collect::<Option<_>>()?,
            )
        }
        _ => return None,
    };
    r.0.is_empty().then_some(op)
}
