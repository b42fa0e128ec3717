//! The pickle stack machine: one opcode at a time, building [`Object`]s
//! in an arena (see the parent module for what is and is not supported).

use std::collections::HashMap;

use super::{Id, Object, Pickle, PickleError, Result};

enum Slot {
    Mark,
    Obj(Id),
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of the opcode being executed, for error messages.
    op_at: usize,
    stack: Vec<Slot>,
    memo: HashMap<u32, Id>,
    objects: Vec<Object>,
}

pub(super) fn run(data: &[u8]) -> Result<(Pickle, usize)> {
    let mut m = Machine {
        data,
        pos: 0,
        op_at: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
        objects: Vec::new(),
    };
    let root = m.run()?;
    Ok((
        Pickle {
            objects: m.objects,
            root,
        },
        m.pos,
    ))
}

impl Machine<'_> {
    fn fail<T>(&self, message: impl Into<String>) -> Result<T> {
        Err(PickleError {
            offset: self.op_at,
            message: message.into(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len());
        let Some(end) = end else {
            return self.fail(format!("truncated: {n} more bytes needed"));
        };
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A length prefix, checked against what is left so that a corrupt
    /// file cannot ask for a huge allocation.
    fn len(&mut self, n: u64) -> Result<usize> {
        match usize::try_from(n) {
            Ok(n) if n <= self.data.len() - self.pos => Ok(n),
            _ => self.fail(format!("length {n} runs past the end of the data")),
        }
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return self.fail("unterminated text line");
        };
        let text = String::from_utf8(rest[..nl].to_vec());
        self.pos += nl + 1;
        text.or_else(|_| self.fail("text line is not UTF-8"))
    }

    fn utf8(&mut self, n: usize) -> Result<String> {
        let bytes = self.take(n)?.to_vec();
        String::from_utf8(bytes).or_else(|_| self.fail("string is not UTF-8"))
    }

    fn alloc(&mut self, obj: Object) -> Id {
        self.objects.push(obj);
        self.objects.len() - 1
    }

    fn push(&mut self, obj: Object) {
        let id = self.alloc(obj);
        self.stack.push(Slot::Obj(id));
    }

    fn pop(&mut self) -> Result<Id> {
        match self.stack.pop() {
            Some(Slot::Obj(id)) => Ok(id),
            Some(Slot::Mark) => self.fail("unexpected mark on the stack"),
            None => self.fail("stack underflow"),
        }
    }

    fn top(&self) -> Result<Id> {
        match self.stack.last() {
            Some(Slot::Obj(id)) => Ok(*id),
            _ => self.fail("expected an object on the stack"),
        }
    }

    /// Pops everything down to the topmost mark, in push order.
    fn pop_to_mark(&mut self) -> Result<Vec<Id>> {
        let Some(mark) = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)) else {
            return self.fail("no mark on the stack");
        };
        let items = self
            .stack
            .drain(mark..)
            .skip(1)
            .filter_map(|s| match s {
                Slot::Obj(id) => Some(id),
                Slot::Mark => None,
            })
            .collect();
        Ok(items)
    }

    fn memo_put(&mut self, key: u32) -> Result<()> {
        let id = self.top()?;
        self.memo.insert(key, id);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<()> {
        match self.memo.get(&key) {
            Some(&id) => {
                self.stack.push(Slot::Obj(id));
                Ok(())
            }
            None => self.fail(format!("memo key {key} was never stored")),
        }
    }

    fn append(&mut self, list: Id, items: Vec<Id>) -> Result<()> {
        match &mut self.objects[list] {
            Object::List(existing) => {
                existing.extend(items);
                Ok(())
            }
            _ => self.fail("APPEND to something that is not a list"),
        }
    }

    fn set_items(&mut self, dict: Id, items: &[Id]) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            return self.fail("SETITEMS with an odd number of items");
        }
        match &mut self.objects[dict] {
            Object::Dict(entries) => {
                entries.extend(items.chunks_exact(2).map(|kv| (kv[0], kv[1])));
                Ok(())
            }
            _ => self.fail("SETITEM on something that is not a dict"),
        }
    }

    fn run(&mut self) -> Result<Id> {
        loop {
            self.op_at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return self.fail(format!("unknown pickle protocol {proto}"));
                    }
                }
                0x95 => {
                    // FRAME: a length hint for buffered readers; the data is
                    // all in memory already.
                    self.take(8)?;
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Slot::Mark),
                b'0' => {
                    self.stack.pop();
                }
                b'1' => {
                    self.pop_to_mark()?;
                }
                b'2' => {
                    let id = self.top()?;
                    self.stack.push(Slot::Obj(id));
                }
                b'N' => self.push(Object::None),
                0x88 => self.push(Object::Bool(true)),
                0x89 => self.push(Object::Bool(false)),
                b'K' => {
                    let v = self.u8()?;
                    self.push(Object::Int(v.into()));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Object::Int(v.into()));
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Object::Int(v.into()));
                }
                0x8a => {
                    let n = usize::from(self.u8()?);
                    if n > 16 {
                        return self.fail(format!("{n}-byte integer is too large"));
                    }
                    let bytes = self.take(n)?;
                    // Little-endian two's complement, sign-extended.
                    let mut buf = if bytes.last().is_some_and(|&b| b & 0x80 != 0) {
                        [0xff; 16]
                    } else {
                        [0; 16]
                    };
                    buf[..n].copy_from_slice(bytes);
                    self.push(Object::Int(i128::from_le_bytes(buf)));
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut buf = [0; 8];
                    buf.copy_from_slice(b);
                    self.push(Object::Float(f64::from_be_bytes(buf)));
                }
                b'X' => {
                    let n = self.u32()?;
                    let n = self.len(n.into())?;
                    let s = self.utf8(n)?;
                    self.push(Object::Str(s));
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    let s = self.utf8(n)?;
                    self.push(Object::Str(s));
                }
                // BINSTRING / SHORT_BINSTRING: Python 2 byte strings, which
                // old torch versions wrote for ASCII text.
                b'T' | b'U' => {
                    let n = if op == b'T' {
                        let n = self.u32()?;
                        self.len(n.into())?
                    } else {
                        usize::from(self.u8()?)
                    };
                    let s = self.utf8(n)?;
                    self.push(Object::Str(s));
                }
                b'B' | b'C' => {
                    let n = if op == b'B' {
                        let n = self.u32()?;
                        self.len(n.into())?
                    } else {
                        usize::from(self.u8()?)
                    };
                    let bytes = self.take(n)?.to_vec();
                    self.push(Object::Bytes(bytes));
                }
                b')' => self.push(Object::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_to_mark()?;
                    self.push(Object::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>>>()?;
                    items.reverse();
                    self.push(Object::Tuple(items));
                }
                b']' => self.push(Object::List(Vec::new())),
                b'l' => {
                    let items = self.pop_to_mark()?;
                    self.push(Object::List(items));
                }
                b'a' => {
                    let item = self.pop()?;
                    let list = self.top()?;
                    self.append(list, vec![item])?;
                }
                b'e' => {
                    let items = self.pop_to_mark()?;
                    let list = self.top()?;
                    self.append(list, items)?;
                }
                b'}' => self.push(Object::Dict(Vec::new())),
                b'd' => {
                    let items = self.pop_to_mark()?;
                    self.push(Object::Dict(Vec::new()));
                    let dict = self.top()?;
                    self.set_items(dict, &items)?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    let dict = self.top()?;
                    self.set_items(dict, &[key, value])?;
                }
                b'u' => {
                    let items = self.pop_to_mark()?;
                    let dict = self.top()?;
                    self.set_items(dict, &items)?;
                }
                b'q' => {
                    let key = self.u8()?;
                    self.memo_put(key.into())?;
                }
                b'r' => {
                    let key = self.u32()?;
                    self.memo_put(key)?;
                }
                0x94 => {
                    let key = u32::try_from(self.memo.len())
                        .or_else(|_| self.fail("memo is too large"))?;
                    self.memo_put(key)?;
                }
                b'h' => {
                    let key = self.u8()?;
                    self.memo_get(key.into())?;
                }
                b'j' => {
                    let key = self.u32()?;
                    self.memo_get(key)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Object::Global { module, name });
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.push(Object::Persistent(pid));
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let obj = self.reduce(callable, args)?;
                    self.push(obj);
                }
                0x81 => {
                    // NEWOBJ: `cls.__new__(cls, *args)`; only used for
                    // classes we also accept in REDUCE.
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let obj = self.reduce(cls, args)?;
                    self.push(obj);
                }
                b'b' => {
                    // BUILD sets instance state (OrderedDict's `_metadata`
                    // attribute in a state dict); tensors do not need it.
                    self.pop()?;
                    self.top()?;
                }
                other => {
                    return self.fail(format!(
                        "unsupported opcode 0x{other:02x}; only what torch.save \
                         writes for a state dict is understood"
                    ))
                }
            }
        }
    }

    /// Interprets a call of a global: the only way a pickle could run code,
    /// so anything not listed here is refused.
    fn reduce(&mut self, callable: Id, args: Id) -> Result<Object> {
        let Object::Global { module, name } = &self.objects[callable] else {
            return self.fail("REDUCE of something that is not a global");
        };
        let Object::Tuple(args) = &self.objects[args] else {
            return self.fail("REDUCE arguments are not a tuple");
        };
        match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") if args.is_empty() => Ok(Object::Dict(Vec::new())),
            ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") if args.len() >= 4 => {
                let args = args.clone();
                self.rebuild_tensor(&args)
            }
            ("torch._utils", "_rebuild_parameter") if !args.is_empty() => {
                // A Parameter is its data tensor plus flags we do not need.
                Ok(self.objects[args[0]].clone())
            }
            (module, name) => {
                let message = format!("refusing to call {module}.{name}: not part of a state dict");
                self.fail(message)
            }
        }
    }

    fn rebuild_tensor(&self, args: &[Id]) -> Result<Object> {
        let storage = args[0];
        if !matches!(self.objects[storage], Object::Persistent(_)) {
            return self.fail("tensor storage is not a persistent id");
        }
        let offset = self.non_negative(args[1])?;
        let size = self.int_tuple(args[2])?;
        let stride = self.int_tuple(args[3])?;
        if size.len() != stride.len() {
            return self.fail("tensor size and stride differ in length");
        }
        Ok(Object::Tensor {
            storage,
            offset,
            size,
            stride,
        })
    }

    fn non_negative(&self, id: Id) -> Result<u64> {
        match &self.objects[id] {
            Object::Int(v) => u64::try_from(*v).or_else(|_| self.fail("negative tensor index")),
            _ => self.fail("expected an integer"),
        }
    }

    fn int_tuple(&self, id: Id) -> Result<Vec<u64>> {
        match &self.objects[id] {
            Object::Tuple(items) => items.iter().map(|&i| self.non_negative(i)).collect(),
            _ => self.fail("expected a tuple of integers"),
        }
    }
}
