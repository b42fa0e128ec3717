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
import pathlib
import time

import torch
from sentence_transformers import SentenceTransformer

# The same sentences as the Rust bench and example, from one file.
SENTENCES_FILE = pathlib.Path(__file__).resolve().parents[2] / "models/text/tests/fixtures/sentences40.txt"
SENTENCES = [line for line in SENTENCES_FILE.read_text().splitlines() if line]


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
