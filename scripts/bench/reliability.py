#!/usr/bin/env python3
"""Overload and soak figures for RELIABILITY.md, with the load-test harness.

    scripts/bench/reliability.py overload [--scenario search-dense] [--slo 100]
    scripts/bench/reliability.py soak [--minutes 10] [--share 0.8]

Both start the release `mnemos` on a fresh data directory (the demo collection), find the
sustainable rate of the scenario with the harness's step mode (p99 <= SLO), and then:

overload: 30 s at 3x that rate (and any other --factors) with admission control on, the same
    with it off (side by side, each on a fresh server), and a run of 3x for 20 s dropping to 0.5x for 20 s, whose
    per-second series gives the recovery time: from the drop to the first second after which
    every second has no errors and p99 <= SLO.
soak: the mixed read/write scenario at `share` of its sustainable rate for `minutes` (the
    sustainable rate under --slo, e.g. 1000 ms: upserts retrain memory-bank blocks), sampling
    the server's RSS every 5 s: growth of the per-minute floor and peak from the second minute
    to the last, p99 of the first and last minute, errors.

Binaries: $CARGO_TARGET_DIR/release/{mnemos,mnemos-loadtest} (default target/). Writes JSON
reports and a summary under --out (default /tmp/mnemos-reliability).
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
MNEMOS = os.path.join(TARGET, "release", "mnemos")
# Overload runs keep hundreds of requests in flight (a shed one holds its
# connection for the longest queue wait): with the harness's default 64
# connections, requests queued in the harness itself and that wait was
# reported as admitted latency (1,160 req/s: p99 0.9-3.3 s, all of it the
# client's). HTTP/1.1 carries one request per connection at a time.
CONNECTIONS = "1024"
HARNESS = os.path.join(TARGET, "release", "mnemos-loadtest")
TOKEN = "reliability-bench-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The release server on a fresh copy of the demo data directory."""

    def __init__(self, out, name, env=None):
        self.data = tempfile.mkdtemp(prefix="mnemos-rel-")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(out, f"{name}.server.log"), "w")
        e = dict(os.environ, MNEMOS_ADMIN_TOKEN=TOKEN, RUST_LOG="warn")
        e.update(env or {})
        self.proc = subprocess.Popen(
            [MNEMOS, "serve", "--bind", f"127.0.0.1:{self.port}", "--data-dir", self.data],
            env=e, stdout=subprocess.DEVNULL, stderr=self.log, cwd=ROOT)
        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                sys.exit(f"server exited; see {self.log.name}")
            time.sleep(0.5)
        sys.exit("server not ready in 300 s")

    def rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=120)
        shutil.rmtree(self.data, ignore_errors=True)


def harness(server, scenario, out, name, *args):
    report = os.path.join(out, f"{name}.json")
    cmd = [HARNESS, "--target", server.base, "--scenario",
           os.path.join(ROOT, "loadtest", "scenarios", f"{scenario}.toml"),
           "--json-report", report, "--quiet", *map(str, args)]
    subprocess.run(cmd, env=dict(os.environ, MNEMOS_ADMIN_TOKEN=TOKEN), check=False,
                   stdout=subprocess.DEVNULL)
    with open(report) as f:
        return json.load(f)


def sustainable(server, scenario, out, slo, start):
    # Warm-up: the first requests after start pay one-time costs (allocations, page faults)
    # that would otherwise decide the first step's p99.
    harness(server, scenario, out, f"{scenario}-warmup", "--rate", start, "--duration", "10s")
    r = harness(server, scenario, out, f"{scenario}-step", "--step", "--rate", start,
                "--step-factor", "1.25", "--step-duration", "10s", "--slo-p99-ms", slo,
                "--max-rate", 100000)
    rate = r["sustainable_rate"]
    if not rate:
        sys.exit(f"no step of {scenario} met p99 <= {slo} ms starting at {start}/s")
    return rate, r


def type_of(report):
    (label, stats), = report["requests"].items()
    return label, stats


def recovery_s(series, change_s, slo):
    """Seconds from the rate drop until every later second is error-free within the SLO."""
    seconds = [p for p in series if p["t_s"] >= change_s and p["count"] > 0]
    good_from = None
    for p in seconds:
        ok = p["errors"] == 0 and p["p99_ms"] <= slo
        if ok and good_from is None:
            good_from = p["t_s"]
        elif not ok:
            good_from = None
    return None if good_from is None else good_from - change_s


def overload(args):
    out = args.out
    s = Server(out, "overload-step")
    rate, _ = sustainable(s, args.scenario, out, args.slo, args.start)
    s.stop()
    over = 3 * rate
    summary = {"scenario": args.scenario, "slo_p99_ms": args.slo, "sustainable_rate": rate,
               "overload_rate": over}
    runs = [(f, mode, env) for f in args.factors
            for mode, env in [("admission_on", {}),
                              ("admission_off", {"MNEMOS__ADMISSION__ENABLED": "false"})]]
    for factor, mode, env in runs:
        s = Server(out, mode, env)
        harness(s, args.scenario, out, "warmup", "--rate", rate, "--duration", "10s")
        r = harness(s, args.scenario, out, f"overload-{factor}x-{mode}", "--rate", factor * rate,
                    "--duration", "30s", "--timeout", "30s", "--connections", CONNECTIONS)
        s.stop()
        _, t = type_of(r)
        shed = t["status_counts"].get("503", 0)
        summary[f"{factor}x_{mode}"] = {
            "offered_per_s": factor * rate,
            "sent": t["sent"], "ok": t["ok"], "shed_503": shed,
            "shed_share": round(shed / max(t["sent"], 1), 4),
            "timeouts": t["timeouts"],
            "goodput_per_s": round(t["ok"] / r["duration_s"], 1),
            "admitted_p50_ms": t["ok_p50_ms"], "admitted_p99_ms": t["ok_p99_ms"],
            "admitted_max_ms": t["ok_max_ms"], "all_p99_ms": t["p99_ms"],
            "harness_peak_in_flight": r["harness"]["peak_in_flight"],
            "harness_warnings": r["harness"]["warnings"],
        }
    s = Server(out, "recovery")
    harness(s, args.scenario, out, "warmup", "--rate", rate, "--duration", "10s")
    r = harness(s, args.scenario, out, "recovery", "--rate", over, "--then-rate", rate / 2,
                "--then-after", "20s", "--duration", "40s", "--timeout", "30s",
                "--connections", CONNECTIONS)
    s.stop()
    label, _ = type_of(r)
    summary["recovery_s"] = recovery_s(r["series"][label], 20, args.slo)
    summary["recovery_series"] = [
        {k: p[k] for k in ("t_s", "count", "errors", "p99_ms")} for p in r["series"][label]]
    return summary


def soak(args):
    out = args.out
    s = Server(out, "soak-step")
    rate, _ = sustainable(s, "mixed", out, args.slo, args.start)
    s.stop()
    s = Server(out, "soak")
    harness(s, "mixed", out, "warmup", "--rate", args.start, "--duration", "10s", "--cleanup")
    run_rate = round(args.share * rate, 1)
    samples = []
    report = os.path.join(out, "soak.json")
    cmd = [HARNESS, "--target", s.base, "--scenario",
           os.path.join(ROOT, "loadtest", "scenarios", "mixed.toml"), "--rate", str(run_rate),
           "--duration", f"{args.minutes}m", "--json-report", report, "--quiet", "--cleanup"]
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=dict(os.environ, MNEMOS_ADMIN_TOKEN=TOKEN),
                            stdout=subprocess.DEVNULL)
    while proc.poll() is None:
        samples.append((round(time.time() - t0, 1), round(s.rss_mb(), 1)))
        time.sleep(5)
    s.stop()
    with open(report) as f:
        r = json.load(f)
    # RSS swings by the size of a memory-bank retraining job's buffers, so a single sample
    # says little: compare the per-minute floor (between jobs) and peak of the minute after
    # warm-up with the last minute's.
    def window(a, b):
        v = [m for t, m in samples if a <= t < b]
        return min(v), max(v)

    end_s = args.minutes * 60
    (floor0, peak0), (floor1, peak1) = window(60, 120), window(end_s - 60, end_s + 30)
    def minute_p99(first):
        pts = []
        for series in r["series"].values():
            pts += [p for p in series if (p["t_s"] < 60 if first else
                                          p["t_s"] >= args.minutes * 60 - 60)]
        vals = sorted(p["p99_ms"] for p in pts if p["count"])
        return {"median_of_second_p99_ms": vals[len(vals) // 2], "max_second_p99_ms": vals[-1]}

    return {
        "sustainable_rate_mixed": rate, "rate": run_rate, "minutes": args.minutes,
        "sent": r["sent"], "ok": r["ok"], "errors": r["errors"],
        "violations": r["violations"], "missing_after_upsert": r["missing_after_upsert"],
        "p50_ms": r["totals"]["p50_ms"], "p99_ms": r["totals"]["p99_ms"],
        "rss_mb_floor_minute2": floor0, "rss_mb_floor_last": floor1,
        "rss_mb_peak_minute2": peak0, "rss_mb_peak_last": peak1,
        "rss_floor_growth_pct": round(100 * (floor1 - floor0) / floor0, 2),
        "rss_peak_growth_pct": round(100 * (peak1 - peak0) / peak0, 2),
        "first_minute": minute_p99(True), "last_minute": minute_p99(False),
        "rss_samples": samples,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["overload", "soak"])
    p.add_argument("--scenario", default="search-dense")
    p.add_argument("--slo", type=float, default=100.0)
    p.add_argument("--start", type=float, default=20.0, help="first step's rate")
    p.add_argument("--minutes", type=int, default=10)
    p.add_argument("--share", type=float, default=0.8)
    p.add_argument("--factors", type=lambda s: [float(x) for x in s.split(",")], default=[3.0],
                   help="overload rates as multiples of the sustainable rate, e.g. 3,5")
    p.add_argument("--out", default="/tmp/mnemos-reliability")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for b in (MNEMOS, HARNESS):
        if not os.path.exists(b):
            sys.exit(f"missing {b}: cargo build --release -p mnemos-gateway -p mnemos-loadtest")
    summary = overload(args) if args.what == "overload" else soak(args)
    path = os.path.join(args.out, f"{args.what}-summary.json")
    with open(path, "w") as f:
        json.dump(summary, f, indent=1)
    brief = {k: v for k, v in summary.items() if k not in ("recovery_series", "rss_samples")}
    print(json.dumps(brief, indent=1))
    print(f"summary: {path}")


if __name__ == "__main__":
    main()
