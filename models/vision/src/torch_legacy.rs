//! Reader for PyTorch's legacy (pre-1.6, non-zip) `torch.save` format.
//!
//! Why read it here rather than convert it to safetensors at install time:
//! serving then needs no Python at all, the installer stays a plain
//! download-and-unpack, and the file that was hash-pinned is the file that
//! is loaded. The format is small enough to read safely without Python:
//!
//! ```text
//! pickle   magic number 0x1950a86a20f9469cfc6c
//! pickle   protocol version 1001
//! pickle   sys info: {"little_endian": True, "type_sizes": {...}}
//! pickle   the object (a state dict); each tensor is
//!          _rebuild_tensor_v2(storage, offset, size, stride, ...) where
//!          storage is the persistent id
//!          ("storage", torch.FloatStorage, key, location, numel, None)
//! pickle   the storage keys, in the order their data follows
//! then, per key: int64 element count, then the raw little-endian elements
//! ```
//!
//! (`torch/serialization.py`, `_legacy_save` / `_legacy_load`.) Nothing in
//! the file is executed: see [`crate::pickle`]. Tensors may be strided (this
//! package's weights were converted from TensorFlow and keep TF's memory
//! order), so each is gathered into a contiguous row-major copy.

use std::collections::HashMap;

use crate::pickle::{self, Id, Object, Pickle};
use crate::weights::RawTensor;

const MAGIC: i128 = 0x1950_a86a_20f9_469c_fc6c;
const PROTOCOL_VERSION: i128 = 1001;

/// Element types of torch storages that can hold weights we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Element {
    F32,
    F64,
    /// A storage we can skip over but not use as weights (integer
    /// counters such as BatchNorm's `num_batches_tracked`, half floats).
    Other {
        size: usize,
    },
}

impl Element {
    fn from_storage_type(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
            "HalfStorage" | "BFloat16Storage" | "ShortStorage" => Self::Other { size: 2 },
            "LongStorage" => Self::Other { size: 8 },
            "IntStorage" => Self::Other { size: 4 },
            "CharStorage" | "ByteStorage" | "BoolStorage" => Self::Other { size: 1 },
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F64 => 8,
            Self::Other { size } => size,
        }
    }
}

/// One storage as the persistent id describes it.
struct StorageRef {
    key: String,
    element: Element,
    numel: u64,
}

/// Whether `bytes` look like this format rather than, say, a zip archive.
pub(crate) fn is_legacy(bytes: &[u8]) -> bool {
    // Protocol 2 pickle opening with LONG1 of 10 bytes: the magic number.
    bytes.starts_with(b"\x80\x02\x8a\x0a")
}

/// Reads every floating-point tensor of the state dict in `bytes`, in the
/// file's order, as contiguous f32 arrays. Integer tensors (BatchNorm's
/// step counters) are skipped. Errors are messages for the caller to
/// attach to the file name.
pub(crate) fn read_state_dict(bytes: &[u8]) -> Result<Vec<(String, RawTensor)>, String> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Err(
            "this is the zip-based torch.save format (PyTorch ≥ 1.6), not the legacy \
                    one; convert it to model.safetensors"
                .into(),
        );
    }
    let mut rest = bytes;
    let mut next = || -> Result<Pickle, String> {
        let (p, used) = pickle::read(rest).map_err(|e| e.to_string())?;
        rest = &rest[used..];
        Ok(p)
    };

    let magic = next()?;
    if magic.int(magic.root) != Some(MAGIC) {
        return Err("not a legacy torch.save file (magic number missing)".into());
    }
    let version = next()?;
    if version.int(version.root) != Some(PROTOCOL_VERSION) {
        return Err("unsupported legacy torch.save protocol version".into());
    }
    let sys_info = next()?;
    if !little_endian(&sys_info) {
        return Err("weights were saved on a big-endian machine".into());
    }
    let state = next()?;
    let keys = next()?;
    let keys: Vec<String> = keys
        .sequence(keys.root)
        .ok_or("storage key list is not a list")?
        .iter()
        .map(|&id| keys.str(id).map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or("storage key is not a string")?;

    let storages = split_storages(&state, &keys, rest)?;
    let dict = state_dict_root(&state)?;
    let mut tensors = Vec::new();
    for &(name, value) in dict {
        let Some(name) = state.str(name) else {
            continue;
        };
        if let Some(tensor) = materialise(&state, value, &storages)
            .map_err(|message| format!("tensor {name}: {message}"))?
        {
            tensors.push((name.to_owned(), tensor));
        }
    }
    if tensors.is_empty() {
        return Err("the state dict holds no floating-point tensors".into());
    }
    Ok(tensors)
}

fn little_endian(sys_info: &Pickle) -> bool {
    let Object::Dict(entries) = sys_info.get(sys_info.root) else {
        return false;
    };
    entries
        .iter()
        .any(|&(k, v)| sys_info.str(k) == Some("little_endian") && sys_info.int(v) == Some(1))
}

/// The state dict's entries: the root dict, or, for a training checkpoint,
/// the dict under its `state_dict` or `model` key.
fn state_dict_root(state: &Pickle) -> Result<&[(Id, Id)], String> {
    let Object::Dict(entries) = state.get(state.root) else {
        return Err("the saved object is not a dict".into());
    };
    let is_tensor = |id: Id| matches!(state.get(id), Object::Tensor { .. });
    if entries.iter().any(|&(_, v)| is_tensor(v)) {
        return Ok(entries);
    }
    for &(k, v) in entries {
        if let (Some("state_dict" | "model"), Object::Dict(inner)) = (state.str(k), state.get(v)) {
            return Ok(inner);
        }
    }
    Err("the saved dict holds no tensors".into())
}

/// The storages' data, by key, each checked against the size and type its
/// persistent id declared.
fn split_storages<'a>(
    state: &Pickle,
    keys: &[String],
    mut data: &'a [u8],
) -> Result<HashMap<String, (Element, &'a [u8])>, String> {
    let declared: HashMap<String, StorageRef> = state
        .objects
        .iter()
        .filter_map(|obj| match obj {
            Object::Persistent(pid) => Some(storage_ref(state, *pid)),
            _ => None,
        })
        .map(|r| r.map(|r| (r.key.clone(), r)))
        .collect::<Result<_, _>>()?;

    let mut storages = HashMap::new();
    for key in keys {
        let Some(decl) = declared.get(key) else {
            return Err(format!("storage {key} is listed but never used"));
        };
        if data.len() < 8 {
            return Err(format!("file ends before storage {key}"));
        }
        let (count, tail) = data.split_at(8);
        let count = u64::from_le_bytes(count.try_into().map_err(|_| "short count")?);
        if count != decl.numel {
            return Err(format!(
                "storage {key} holds {count} elements but was declared with {}",
                decl.numel
            ));
        }
        let len = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(decl.element.size()))
            .filter(|&len| len <= tail.len())
            .ok_or_else(|| format!("file ends inside storage {key}"))?;
        let (bytes, tail) = tail.split_at(len);
        storages.insert(key.clone(), (decl.element, bytes));
        data = tail;
    }
    Ok(storages)
}

fn storage_ref(state: &Pickle, pid: Id) -> Result<StorageRef, String> {
    let bad = || "unexpected persistent id (not a torch storage)".to_string();
    let items = state.sequence(pid).ok_or_else(bad)?;
    let [tag, kind, key, _location, numel, view, ..] = items else {
        return Err(bad());
    };
    if state.str(*tag) != Some("storage") {
        return Err(bad());
    }
    let Object::Global { name, .. } = state.get(*kind) else {
        return Err(bad());
    };
    let element = Element::from_storage_type(name)
        .ok_or_else(|| format!("unsupported storage type {name}"))?;
    if !matches!(state.get(*view), Object::None) {
        return Err("storage views (PyTorch < 0.4 files) are not supported".into());
    }
    Ok(StorageRef {
        key: state.str(*key).ok_or_else(bad)?.to_owned(),
        element,
        numel: state
            .int(*numel)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(bad)?,
    })
}

/// Gathers a (possibly strided) tensor into row-major f32s; `None` for
/// values that are not floating-point tensors.
fn materialise(
    state: &Pickle,
    value: Id,
    storages: &HashMap<String, (Element, &[u8])>,
) -> Result<Option<RawTensor>, String> {
    let Object::Tensor {
        storage,
        offset,
        size,
        stride,
    } = state.get(value)
    else {
        return Ok(None);
    };
    let Object::Persistent(pid) = state.get(*storage) else {
        return Err("storage is not a persistent id".into());
    };
    let decl = storage_ref(state, *pid)?;
    let Some(&(element, bytes)) = storages.get(&decl.key) else {
        return Err(format!("storage {} has no data", decl.key));
    };
    if let Element::Other { .. } = element {
        return Ok(None);
    }

    let shape: Vec<usize> = size
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| "dimension too large".to_string()))
        .collect::<Result<_, _>>()?;
    let numel = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or("element count overflows")?;
    let available = (bytes.len() / element.size()) as u64;
    if numel > 0 {
        // The furthest element the view reaches must lie in the storage.
        let last = size
            .iter()
            .zip(stride)
            .try_fold(*offset, |acc, (&d, &s)| {
                (d - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
            })
            .ok_or("strides overflow")?;
        if last >= available {
            return Err(format!(
                "view reaches element {last} of a {available}-element storage"
            ));
        }
    }

    let read = |i: u64| -> f32 {
        // In range: checked above. `as` narrows f64 weights on purpose.
        let i = i as usize;
        match element {
            Element::F64 => {
                let b = &bytes[i * 8..i * 8 + 8];
                f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32
            }
            _ => {
                let b = &bytes[i * 4..i * 4 + 4];
                f32::from_le_bytes(b.try_into().unwrap_or([0; 4]))
            }
        }
    };
    let mut data = Vec::with_capacity(numel);
    if numel > 0 {
        // Odometer over the indices, last dimension fastest.
        let mut index = vec![0u64; shape.len()];
        let mut at = *offset;
        for _ in 0..numel {
            data.push(read(at));
            for d in (0..shape.len()).rev() {
                index[d] += 1;
                at += stride[d];
                if index[d] < size[d] {
                    break;
                }
                at -= stride[d] * size[d];
                index[d] = 0;
            }
        }
    }
    Ok(Some(RawTensor { shape, data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by `tests/fixtures/make_reference.py` with
    /// `torch.save(..., _use_new_zipfile_serialization=False)`: `w` is a
    /// 2×3 view with stride (1, 2) of the storage [1, 4, 2, 5, 3, 6] (as the
    /// TF-converted weights are stored), `n` an int64 counter, `d` float64,
    /// and `w_row` a second view of `w`'s storage at offset 1.
    const TINY: &[u8] = include_bytes!("../tests/fixtures/tiny_legacy.pth");

    #[test]
    fn reads_strided_tensors_and_skips_integers() {
        assert!(is_legacy(TINY));
        let tensors = read_state_dict(TINY).expect("valid file");
        let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["w", "d", "w_row"]);
        assert_eq!(tensors[0].1.shape, [2, 3]);
        assert_eq!(tensors[0].1.data, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(tensors[1].1.shape, [2]);
        assert_eq!(tensors[1].1.data, [0.5, -1.25]);
        assert_eq!(tensors[2].1.shape, [3]);
        assert_eq!(tensors[2].1.data, [4.0, 5.0, 6.0]);
    }

    #[test]
    fn truncated_or_corrupt_files_are_errors() {
        let bytes = TINY.to_vec();
        for cut in [0, 10, 30, 200, bytes.len() - 30, bytes.len() - 1] {
            assert!(read_state_dict(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // The first storage's element count (6), 72 bytes from the end
        // (8 + 24 for w, 8 + 8 for n, 8 + 16 for d), made to disagree with
        // the size its persistent id declared.
        let mut bad = bytes.clone();
        let at = bytes.len() - 72;
        assert_eq!(bad[at], 6);
        bad[at] = 99;
        let err = read_state_dict(&bad).expect_err("count mismatch");
        assert!(err.contains("declared"), "{err}");
        assert!(read_state_dict(b"PK\x03\x04rest").is_err());
    }
}
