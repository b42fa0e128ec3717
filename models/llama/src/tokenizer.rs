//! The tokenizer of a GGUF model, rebuilt from its metadata: GGUF files
//! carry no `tokenizer.json`, only the vocabulary (`tokenizer.ggml.tokens`,
//! with a type per token), the BPE merges and the name of the
//! pre-tokenizer (`tokenizer.ggml.pre`). From those we build the same
//! `tokenizers` pipeline the model was trained with.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{LlamaError, Result};

/// GGUF token type of control tokens (`<|im_start|>` and the like): never
/// produced by splitting text, only matched whole.
const TOKEN_TYPE_CONTROL: i64 = 3;
/// GGUF token type of user-defined tokens: matched whole, but ordinary text.
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Special token ids named in the metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence, if the model uses one.
    pub bos: Option<u32>,
    /// End of sequence (for an instruction model, the end of a turn).
    pub eos: Option<u32>,
    /// Whether the model expects `bos` before every text.
    pub add_bos: bool,
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::U8(x) => Some(i64::from(*x)),
        Value::I8(x) => Some(i64::from(*x)),
        Value::U16(x) => Some(i64::from(*x)),
        Value::I16(x) => Some(i64::from(*x)),
        Value::U32(x) => Some(i64::from(*x)),
        Value::I32(x) => Some(i64::from(*x)),
        Value::U64(x) => i64::try_from(*x).ok(),
        Value::I64(x) => Some(*x),
        _ => None,
    }
}

/// The pre-tokenizer a GGUF `tokenizer.ggml.pre` name stands for. Only the
/// GPT-2 family is built here; other names are refused rather than
/// tokenized subtly wrong.
fn pre_tokenizer(name: &str) -> Option<PreTokenizerWrapper> {
    // GPT-2's byte-level split, no prefix space (the text is taken as is).
    let byte_level = ByteLevel::new(false, true, true);
    match name {
        "gpt2" | "default" => Some(byte_level.into()),
        // SmolLM: every digit on its own first, then GPT-2's split.
        "smollm" => Some(Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()),
        _ => None,
    }
}

/// Builds the tokenizer of a GGUF file from its metadata.
pub fn from_gguf(
    metadata: &HashMap<String, Value>,
    path: &Path,
) -> Result<(Tokenizer, SpecialTokens)> {
    let bad = |message: String| LlamaError::Model {
        path: path.to_path_buf(),
        message,
    };
    let get = |key: &str| {
        metadata
            .get(key)
            .ok_or_else(|| bad(format!("metadata key {key} is missing")))
    };
    let model = get("tokenizer.ggml.model")?
        .to_string()
        .map_err(|e| bad(e.to_string()))?;
    if model != "gpt2" {
        return Err(bad(format!(
            "tokenizer model {model:?} is not supported (only gpt2-style byte-level BPE)"
        )));
    }
    let pre_name = metadata
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
        .unwrap_or("default");
    let pre = pre_tokenizer(pre_name)
        .ok_or_else(|| bad(format!("pre-tokenizer {pre_name:?} is not supported")))?;

    let tokens = get("tokenizer.ggml.tokens")?
        .to_vec()
        .map_err(|e| bad(e.to_string()))?;
    let mut vocab = tokenizers::models::bpe::Vocab::default();
    let mut names = Vec::with_capacity(tokens.len());
    for (id, t) in tokens.iter().enumerate() {
        let t = t.to_string().map_err(|e| bad(format!("token {id}: {e}")))?;
        vocab.insert(t.clone(), id as u32);
        names.push(t.clone());
    }
    let merges = get("tokenizer.ggml.merges")?
        .to_vec()
        .map_err(|e| bad(e.to_string()))?
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let m = m.to_string().map_err(|e| bad(format!("merge {i}: {e}")))?;
            let (a, b) = m
                .split_once(' ')
                .ok_or_else(|| bad(format!("merge {i} ({m:?}) is not two tokens")))?;
            Ok((a.to_string(), b.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| bad(format!("BPE: {e}")))?;

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(pre));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    // Control and user-defined tokens are matched whole before the split.
    if let Some(types) = metadata
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().ok())
    {
        let mut special = Vec::new();
        let mut added = Vec::new();
        for (id, ty) in types.iter().enumerate() {
            match int(ty) {
                Some(TOKEN_TYPE_CONTROL) => special.push(AddedToken::from(names[id].clone(), true)),
                Some(TOKEN_TYPE_USER_DEFINED) => {
                    added.push(AddedToken::from(names[id].clone(), false))
                }
                _ => {}
            }
        }
        tokenizer
            .add_special_tokens(special)
            .map_err(|e| bad(format!("control tokens: {e}")))?;
        tokenizer
            .add_tokens(added)
            .map_err(|e| bad(format!("user-defined tokens: {e}")))?;
    }

    let id = |key: &str| {
        metadata
            .get(key)
            .and_then(int)
            .and_then(|i| u32::try_from(i).ok())
            .filter(|&i| (i as usize) < names.len())
    };
    let specials = SpecialTokens {
        bos: id("tokenizer.ggml.bos_token_id"),
        eos: id("tokenizer.ggml.eos_token_id"),
        add_bos: metadata
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false),
    };
    Ok((tokenizer, specials))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Value {
        Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
    }

    /// A toy vocabulary in GPT-2's byte-level alphabet (`Ġ` is a space).
    fn metadata(pre: &str) -> HashMap<String, Value> {
        let tokens = [
            "<|end|>", "a", "b", "Ġ", "1", "2", "ab", "Ġab", "12", "<tool>",
        ];
        let mut m = HashMap::new();
        m.insert("tokenizer.ggml.model".into(), Value::String("gpt2".into()));
        m.insert("tokenizer.ggml.pre".into(), Value::String(pre.into()));
        m.insert("tokenizer.ggml.tokens".into(), strings(&tokens));
        m.insert(
            "tokenizer.ggml.merges".into(),
            strings(&["a b", "Ġ ab", "1 2"]),
        );
        let mut types = vec![Value::I32(1); tokens.len()];
        types[0] = Value::I32(3);
        types[9] = Value::I32(4);
        m.insert("tokenizer.ggml.token_type".into(), Value::Array(types));
        m.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(0));
        m
    }

    fn ids(t: &Tokenizer, text: &str) -> Vec<u32> {
        t.encode(text, false).expect("encode").get_ids().to_vec()
    }

    #[test]
    fn merges_apply_and_smollm_splits_digits() -> Result<()> {
        let p = Path::new("x.gguf");
        let (gpt2, specials) = from_gguf(&metadata("gpt2"), p)?;
        assert_eq!(specials.eos, Some(0));
        assert_eq!(specials.bos, None);
        // "ab ab": the merges build "ab" and "Ġab".
        assert_eq!(ids(&gpt2, "ab ab"), [6, 7]);
        // GPT-2 keeps a run of digits together, so "12" merges.
        assert_eq!(ids(&gpt2, "12"), [8]);
        // SmolLM splits digits first: "1", "2", never "12".
        let (smol, _) = from_gguf(&metadata("smollm"), p)?;
        assert_eq!(ids(&smol, "12"), [4, 5]);
        // Control tokens are matched whole and left out when decoding.
        assert_eq!(ids(&smol, "ab<|end|>"), [6, 0]);
        assert_eq!(smol.decode(&[6, 0, 7], true).expect("decode"), "ab ab");
        assert_eq!(ids(&smol, "<tool>"), [9]);
        Ok(())
    }

    #[test]
    fn other_tokenizers_are_refused_by_name() {
        let p = Path::new("x.gguf");
        let err = from_gguf(&metadata("llama-bpe"), p).unwrap_err();
        assert!(err.to_string().contains("llama-bpe"), "{err}");
        let mut m = metadata("gpt2");
        m.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
        assert!(from_gguf(&m, p).unwrap_err().to_string().contains("llama"));
        let mut m = metadata("gpt2");
        m.insert("tokenizer.ggml.merges".into(), strings(&["ab"]));
        assert!(from_gguf(&m, p)
            .unwrap_err()
            .to_string()
            .contains("merge 0"));
    }
}
