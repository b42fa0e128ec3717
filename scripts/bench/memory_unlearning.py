#!/usr/bin/env python3
"""Unlearning and latency figures of the anchor's memory bank, through the
HTTP API of a running `mnemos serve` (standard library only).

    python3 scripts/bench/memory_unlearning.py --target http://127.0.0.1:8080 \
        --bank data/memory-bank --token "$MNEMOS_ADMIN_TOKEN" [--remove 3] [--repeats 5]

1. Picks `--remove` documents of the served bank and, for each, the bank's
   other documents whose memory path shares no block with it.
2. Scores every one of them with `"memory": "auto"` and `"none"`.
3. Removes the chosen documents with `DELETE /v1/admin/documents/{id}` and
   scores again at once (their blocks are disabled), then again after the
   background retraining (`GET /v1/admin/lm/memory/jobs` settles).
4. Measures the latency of a scored request with memory and without,
   interleaved, and reports medians.

Texts are the bank's own (`texts.json`), cut to the bank's `max_tokens`
by the server's tokenizer on the client side is not possible, so whole
texts are scored; the comparison is between memory and none on the same
text, which is what the targets ask.
"""
import argparse
import json
import pathlib
import statistics
import time
import urllib.request

from mnemos_http import call


def read_checksummed_json(path):
    raw = pathlib.Path(path).read_bytes()
    return json.loads(raw[:-4])  # mnemos appends a 4-byte CRC32




def score(target, text, memory):
    t = time.perf_counter()
    r = call(target, "POST", "/v1/lm/score", {"model": "smollm2-135m", "text": text, "memory": memory})
    return r, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="http://127.0.0.1:8080")
    ap.add_argument("--bank", default="data/memory-bank")
    ap.add_argument("--token", required=True)
    ap.add_argument("--remove", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--chars", type=int, default=600, help="characters of each text scored")
    a = ap.parse_args()

    texts = read_checksummed_json(pathlib.Path(a.bank) / "texts.json")
    ids = sorted(texts)
    clip = lambda i: texts[i][: a.chars]
    paths = {}
    before = {}
    for i in ids[: 4 * a.remove + 16]:
        r, _ = score(a.target, clip(i), "auto")
        paths[i] = r["memory"]["path"]
        before[i] = r["perplexity"]
    # Documents to remove: those whose text routes to a full path.
    chosen = [i for i in paths if len(paths[i]) >= 2][: a.remove]
    removed_blocks = {n for i in chosen for n in paths[i]}
    others = [i for i in paths if i not in chosen and not set(paths[i]) & removed_blocks and paths[i]]
    anchor = {i: score(a.target, clip(i), "none")[0]["perplexity"] for i in chosen + others}

    for i in chosen:
        call(a.target, "DELETE", f"/v1/admin/documents/{i}", token=a.token)
    at_once = {i: score(a.target, clip(i), "auto")[0]["perplexity"] for i in chosen + others}
    t0 = time.time()
    while True:
        jobs = call(a.target, "GET", "/v1/admin/lm/memory/jobs", token=a.token)
        if not jobs["pending"] and jobs["running"] is None:
            break
        time.sleep(2)
    retrain_s = time.time() - t0
    retrained = {i: score(a.target, clip(i), "auto")[0]["perplexity"] for i in chosen + others}

    def pct(x, y):
        return 100.0 * (x / y - 1.0)

    print(f"removed {len(chosen)} documents: {chosen}; {len(others)} documents in other subtrees")
    print(f"{'doc':<12} {'anchor':>8} {'memory':>8} {'at once':>8} {'retrained':>10}")
    for i in chosen + others:
        tag = "removed" if i in chosen else "other"
        print(f"{i:<12} {anchor[i]:>8.2f} {before[i]:>8.2f} {at_once[i]:>8.2f} {retrained[i]:>10.2f}  {tag}")
    for name, group in (("removed", chosen), ("other", others)):
        if not group:
            continue
        print(f"{name}: at once vs anchor alone {statistics.mean(pct(at_once[i], anchor[i]) for i in group):+.2f}% (mean), "
              f"change vs before {statistics.mean(pct(at_once[i], before[i]) for i in group):+.2f}%; "
              f"after retraining vs before {statistics.mean(pct(retrained[i], before[i]) for i in group):+.2f}%")
    print(f"retraining jobs: {retrain_s:.0f} s; finished: {[(j['node'], j['state'], round(j['secs'], 1)) for j in jobs['finished']]}")

    # Latency with and without memory, interleaved, same text.
    text = clip(others[0] if others else ids[0])
    with_m, without = [], []
    for _ in range(a.repeats):
        with_m.append(score(a.target, text, "auto")[1])
        without.append(score(a.target, text, "none")[1])
    print(f"score latency (median of {a.repeats}): memory auto {1e3 * statistics.median(with_m):.0f} ms, "
          f"none {1e3 * statistics.median(without):.0f} ms")


if __name__ == "__main__":
    main()
