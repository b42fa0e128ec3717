//! A minimal, non-executing reader for Python pickles, enough for PyTorch
//! state dicts.
//!
//! Python's `pickle` is a small stack machine (opcodes documented in
//! CPython's `Lib/pickletools.py`). A real unpickler imports and calls
//! whatever globals the stream names, which is why loading an untrusted
//! `.pth` file in Python can run arbitrary code. This reader calls nothing:
//! globals stay names, and `REDUCE` (calling a global) is interpreted only
//! for the handful of constructors a state dict uses
//! (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, …); any
//! other callable is an error. Persistent ids — how `torch.save` refers to
//! tensor storages outside the pickle — are handed back as values for the
//! caller ([`crate::torch_legacy`]) to interpret.
//!
//! Objects live in an arena and are referred to by index, so the sharing
//! that pickle's memo expresses (one storage used by several tensors, a dict
//! filled after it was memoised) is kept without reference counting.

mod machine;

/// Index of an object in [`Pickle::objects`].
pub(crate) type Id = usize;

/// A value built by the pickle stream.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Object {
    None,
    Bool(bool),
    /// Integers up to 128 bits: `torch.save`'s magic number needs 80.
    Int(i128),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    /// Insertion-ordered, as both `dict` and `OrderedDict` are.
    Dict(Vec<(Id, Id)>),
    /// A module attribute named by `GLOBAL`, never imported.
    Global {
        module: String,
        name: String,
    },
    /// The object a `BINPERSID` referred to: the persistent id itself.
    Persistent(Id),
    /// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`, not yet
    /// materialised: `storage` is a [`Object::Persistent`].
    Tensor {
        storage: Id,
        offset: u64,
        size: Vec<u64>,
        stride: Vec<u64>,
    },
}

/// What went wrong, with the byte offset of the opcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PickleError {
    pub offset: usize,
    pub message: String,
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pickle at byte {}: {}", self.offset, self.message)
    }
}

pub(crate) type Result<T> = std::result::Result<T, PickleError>;

/// The objects one pickle produced, and which of them is the result.
#[derive(Debug, Default)]
pub(crate) struct Pickle {
    pub objects: Vec<Object>,
    pub root: Id,
}

impl Pickle {
    pub fn get(&self, id: Id) -> &Object {
        &self.objects[id]
    }

    /// The integer `id` names, if it is one.
    pub fn int(&self, id: Id) -> Option<i128> {
        match self.get(id) {
            Object::Int(v) => Some(*v),
            Object::Bool(b) => Some(i128::from(*b)),
            _ => None,
        }
    }

    /// The string `id` names, if it is one.
    pub fn str(&self, id: Id) -> Option<&str> {
        match self.get(id) {
            Object::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The items of a tuple or list.
    pub fn sequence(&self, id: Id) -> Option<&[Id]> {
        match self.get(id) {
            Object::Tuple(items) | Object::List(items) => Some(items),
            _ => None,
        }
    }
}

/// Reads one pickle from the start of `data`; returns it and the number of
/// bytes it used, so that several pickles written back to back (as
/// `torch.save`'s legacy format does) can be read in turn.
pub(crate) fn read(data: &[u8]) -> Result<(Pickle, usize)> {
    machine::run(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pickle.dumps({'a': [1, -2, 70000], 'b': (True, None, 'é')}, protocol=2)`
    const SAMPLE: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffJp\x11\x01\x00eX\x01\x00\x00\x00bq\x03\x88NX\x02\x00\x00\x00\xc3\xa9q\x04\x87q\x05u.";

    #[test]
    fn reads_python_containers() {
        let (p, used) = read(SAMPLE).expect("valid pickle");
        assert_eq!(used, SAMPLE.len());
        let Object::Dict(entries) = p.get(p.root) else {
            panic!("root is {:?}", p.get(p.root));
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(p.str(entries[0].0), Some("a"));
        let list: Vec<i128> = p
            .sequence(entries[0].1)
            .expect("list")
            .iter()
            .map(|&i| p.int(i).expect("int"))
            .collect();
        assert_eq!(list, [1, -2, 70000]);
        let tuple = p.sequence(entries[1].1).expect("tuple");
        assert_eq!(p.get(tuple[0]), &Object::Bool(true));
        assert_eq!(p.get(tuple[1]), &Object::None);
        assert_eq!(p.str(tuple[2]), Some("é"));
    }

    #[test]
    fn long_integers_are_sign_extended() {
        // LONG1 with 10 bytes (torch's magic number) and a negative one.
        let magic = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.";
        let (p, _) = read(magic).expect("valid");
        assert_eq!(p.int(p.root), Some(0x1950a86a20f9469cfc6c));
        let (p, _) = read(b"\x80\x02\x8a\x01\xff.").expect("valid");
        assert_eq!(p.int(p.root), Some(-1));
        // pickle.dumps(-1 << 70, protocol=2)
        let (p, _) = read(b"\x80\x02\x8a\x09\0\0\0\0\0\0\0\0\xc0.").expect("valid");
        assert_eq!(p.int(p.root), Some(-1 << 70));
    }

    #[test]
    fn refuses_arbitrary_calls() {
        // cos\nsystem\n(S'ls'\ntR.  — the classic pickle exploit.
        let evil = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";
        let err = read(evil).expect_err("must not call os.system");
        assert!(err.message.contains("os.system"), "{err}");
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\x80\x02",
            b"\x80\x02X\xff\xff\xff\xff",
            b"\x80\x02h\x05.",
            b"\x80\x02s.",
            b"\x80\x02(u.",
            b"\x80\x02\xfe",
            b"\x80\x02\x8a\x20",
        ] {
            assert!(read(bad).is_err(), "{bad:?}");
        }
    }
}
