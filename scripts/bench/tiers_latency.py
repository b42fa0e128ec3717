#!/usr/bin/env python3
"""End-to-end latency of scored LM requests with the memory bank read
through the tiers from object storage, against the same bank all in RAM
(issue 8). Standard library only.

    cargo build --release --bin mnemos && scripts/install-seaweedfs.sh
    python3 scripts/bench/tiers_latency.py [--hot-mb 12] [--requests 200]

1. Starts SeaweedFS on loopback and publishes the shipped bank
   (`mnemos tiers publish`).
2. Starts two servers from empty data directories: A reads the bank from
   the bucket through the tiers (`tiers.cold_url`, a RAM budget of
   `--hot-mb`, level 1 pinned); B has `tiers.enabled = false` (every block
   decoded once from its local file and kept: the all-in-RAM bank).
3. Scores the bank's own texts (first `--chars` characters), picked by
   Zipf(`--s`) over the documents, on A and B alternately; the first
   `--warmup` requests are not counted. Prints one JSON object: latency
   percentiles of each, their ratios, and A's hot hit rate over the
   counted requests (from `GET /v1/admin/tiers`).
"""
import argparse
import json
import os
import pathlib
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from mnemos_http import call

TOKEN = "tiers-bench-token"
KEY, SECRET = "mnemos-bench", "mnemos-bench-secret"


def free_port(pair=False):
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        if not pair:
            return p
        if p < 55000:
            t = socket.socket()
            try:
                t.bind(("127.0.0.1", p + 10000))
                return p
            except OSError:
                pass
            finally:
                t.close()




def wait_ready(base, proc, what):
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(base + "/readyz", timeout=2)
            return
        except Exception:
            time.sleep(0.5)
    sys.exit(f"{what} not ready")


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/mnemos")
    ap.add_argument("--weed", default="tools/seaweedfs/weed")
    ap.add_argument("--bank", default="models/trained/memory-bank")
    ap.add_argument("--hot-mb", type=int, default=12)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=40)
    ap.add_argument("--s", type=float, default=1.1)
    ap.add_argument("--chars", type=int, default=600)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    binary = os.environ.get("CARGO_TARGET_DIR") and not pathlib.Path(a.binary).exists() \
        and str(pathlib.Path(os.environ["CARGO_TARGET_DIR"]) / "release/mnemos") or a.binary

    work = pathlib.Path(tempfile.mkdtemp(prefix="mnemos-tiers-bench."))
    procs = []
    try:
        # SeaweedFS on loopback.
        ports = [free_port(pair=True) for _ in range(4)]
        sw = work / "seaweed"
        sw.mkdir()
        (sw / "s3.json").write_text(json.dumps({"identities": [{"name": "bench", "credentials": [
            {"accessKey": KEY, "secretKey": SECRET}], "actions": ["Admin", "Read", "Write", "List"]}]}))
        weed = subprocess.Popen([a.weed, "server", f"-dir={sw}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                                 f"-master.port={ports[0]}", f"-volume.port={ports[1]}", "-filer",
                                 f"-filer.port={ports[2]}", "-s3", f"-s3.port={ports[3]}",
                                 "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={sw / 's3.json'}",
                                 "-master.volumeSizeLimitMB=64"],
                                stdout=open(sw / "weed.log", "w"), stderr=subprocess.STDOUT)
        procs.append(weed)
        endpoint = f"http://127.0.0.1:{ports[3]}"
        env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET,
                   MNEMOS_ADMIN_TOKEN=TOKEN)
        for _ in range(120):
            r = subprocess.run([binary, "tiers", "publish", "--bank", a.bank, "--url", "s3://mnemos/bank",
                                "--endpoint", endpoint], env=env, capture_output=True, text=True)
            if r.returncode == 0:
                print(r.stdout.strip(), file=sys.stderr)
                break
            time.sleep(0.5)
        else:
            sys.exit("cannot publish: " + r.stderr)

        def server(name, extra):
            port = free_port()
            e = dict(env, **extra)
            p = subprocess.Popen([binary, "serve", "--bind", f"127.0.0.1:{port}", "--data-dir",
                                  str(work / name)], env=e, stdout=open(work / f"{name}.log", "w"),
                                 stderr=subprocess.STDOUT)
            procs.append(p)
            return f"http://127.0.0.1:{port}", p

        tiered, pa = server("tiered", {
            "MNEMOS__TIERS__COLD_URL": '"s3://mnemos/bank"',
            "MNEMOS__TIERS__S3_ENDPOINT": f'"{endpoint}"',
            "MNEMOS__TIERS__HOT_BUDGET_MB": str(a.hot_mb),
            "MNEMOS__LM__MEMORY_BANK_DIR": f'"{work / "no-local-bank"}"',
        })
        wait_ready(tiered, pa, "tiered server")
        in_ram, pb = server("in_ram", {"MNEMOS__TIERS__ENABLED": "false"})
        wait_ready(in_ram, pb, "all-in-RAM server")

        raw = (work / "tiered/memory-bank/texts.json").read_bytes()
        texts = json.loads(raw[:-4])
        ids = sorted(texts)
        rng = random.Random(a.seed)
        rng.shuffle(ids)
        weights = [(k + 1) ** -a.s for k in range(len(ids))]
        picks = rng.choices(ids, weights=weights, k=a.warmup + a.requests)

        lat = {"tiered": [], "in_ram": []}
        reads = {}
        before = None
        for n, doc in enumerate(picks):
            if n == a.warmup:
                before = call(tiered, "GET", "/v1/admin/tiers", token=TOKEN)["summary"]
            body = {"model": "smollm2-135m", "text": texts[doc][: a.chars]}
            order = [("tiered", tiered), ("in_ram", in_ram)]
            if n % 2:
                order.reverse()
            for name, base in order:
                t = time.perf_counter()
                r = call(base, "POST", "/v1/lm/score", body)
                dt = time.perf_counter() - t
                if n >= a.warmup:
                    lat[name].append(dt * 1000)
                    if name == "tiered":
                        for tier in r["memory"].get("tiers", []):
                            reads[tier] = reads.get(tier, 0) + 1
                        assert not r["memory"]["degraded"], r
        after = call(tiered, "GET", "/v1/admin/tiers", token=TOKEN)
        hot = lambda s: next(t for t in s["tiers"] if t["tier"] == "hot")
        hits = hot(after["summary"])["hits"] - hot(before)["hits"]
        misses = hot(after["summary"])["misses"] - hot(before)["misses"]
        out = {
            "requests": a.requests, "warmup": a.warmup, "zipf_s": a.s, "hot_budget_mb": a.hot_mb,
            "bank_documents": len(ids),
            "hot_hit_rate": hits / max(1, hits + misses),
            "block_reads_by_tier": reads,
            "tiered_ms": {"p50": statistics.median(lat["tiered"]), "p90": pct(lat["tiered"], 0.9),
                          "p99": pct(lat["tiered"], 0.99)},
            "in_ram_ms": {"p50": statistics.median(lat["in_ram"]), "p90": pct(lat["in_ram"], 0.9),
                          "p99": pct(lat["in_ram"], 0.99)},
            "tiers_summary": after["summary"],
        }
        out["ratio_p50"] = out["tiered_ms"]["p50"] / out["in_ram_ms"]["p50"]
        out["ratio_p99"] = out["tiered_ms"]["p99"] / out["in_ram_ms"]["p99"]
        print(json.dumps(out, indent=2))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
