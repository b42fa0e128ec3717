#!/usr/bin/env python3
"""PyTorch sentence-transformers baseline for mnemos' embedding figures.

Not part of CI. Run in a throwaway virtualenv with torch and
sentence-transformers installed, on an otherwise idle machine:

    python3 scripts/bench/pytorch_embed.py --model-dir models/weights/all-MiniLM-L6-v2 \
        [--seconds 10] [--corpus ../shared/data/beir/scifact/corpus.jsonl]

Prints (1) sentences/s for batches of 8 ~40-token sentences on one thread,
the same sentences as `cargo run --release -p mnemos-text --example throughput`,
and (2) with --corpus, the time to embed a BEIR corpus (title + " " + text,
256-token truncation, batch 32) on one thread, to compare with the
embedding part of `mnemos ingest`.
"""
import argparse
import json
import time

import torch
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "Vitamin D supplementation was associated with a modest reduction in acute respiratory infections among adults with low baseline levels, according to a pooled analysis of randomised trials conducted in Europe and Asia.",
    "The search engine ranks documents by combining lexical matching scores with dense vector similarity, then reorders the top results with a slower but more accurate cross-encoder model for each query.",
    "Researchers measured the effect of sleep deprivation on memory consolidation in young adults and found that recall accuracy dropped significantly after a single night without any sleep at all, even in the fittest participants.",
    "A new battery chemistry based on sodium ions promises cheaper grid storage, although its energy density still falls short of the lithium cells used in most electric vehicles, laptops and phones today.",
    "Mutations in the tumour suppressor gene were found in nearly half of the sampled patients, suggesting that the pathway plays a central role in the progression of this particular cancer type in adults.",
    "The city council approved a plan to expand protected bicycle lanes across the downtown area, citing a sharp rise in cycling commuters and a decline in traffic injuries over the last two years.",
    "Large language models can memorise rare sequences from their training data, which raises privacy concerns when that data includes personal information scraped from public websites without consent or notice to users.",
    "Astronomers detected water vapour in the atmosphere of a planet orbiting a nearby red dwarf star, making it one of the most promising targets for future habitability studies with space telescopes.",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--corpus")
    ap.add_argument("--limit", type=int, default=0, help="embed only the first N corpus docs")
    args = ap.parse_args()

    torch.set_num_threads(1)
    model = SentenceTransformer(args.model_dir, device="cpu")
    model.max_seq_length = 256
    texts = (SENTENCES * (args.batch // len(SENTENCES) + 1))[: args.batch]
    with torch.inference_mode():
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 1.0:
            model.encode(texts, batch_size=args.batch)
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            model.encode(texts, batch_size=args.batch)
            n += 1
        dt = time.perf_counter() - t0
    print(json.dumps({"what": "pytorch_throughput", "batch": args.batch,
                      "sentences_per_s": n * args.batch / dt, "ms_per_batch": dt * 1e3 / n,
                      "torch": torch.__version__}))

    if args.corpus:
        docs = []
        with open(args.corpus) as f:
            for line in f:
                if line.strip():
                    d = json.loads(line)
                    title, text = d.get("title", ""), d.get("text", "")
                    docs.append(f"{title} {text}" if title else text)
        if args.limit:
            docs = docs[: args.limit]
        with torch.inference_mode():
            t0 = time.perf_counter()
            model.encode(docs, batch_size=32)
            dt = time.perf_counter() - t0
        print(json.dumps({"what": "pytorch_corpus", "docs": len(docs), "seconds": dt,
                          "docs_per_s": len(docs) / dt}))


if __name__ == "__main__":
    main()
