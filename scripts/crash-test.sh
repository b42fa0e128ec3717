#!/usr/bin/env bash
# The long form of the crash-consistency test: the real server is kill -9ed
# N times (default 200) at random moments while documents and visual-memory
# samples are upserted and removed; after each restart every acknowledged
# operation is checked. Prints one summary line:
#   crash test: N kills, W acknowledged writes (D of documents), C checks, 0 lost, 0 resurrected
# Usage: scripts/crash-test.sh [KILLS]
set -euo pipefail
cd "$(dirname "$0")/.."
kills="${1:-200}"
MNEMOS_CRASH_KILLS="$kills" cargo test -p mnemos-gateway --test integration -- \
  crash::acknowledged_writes_survive_random_kill_9 --exact --nocapture 2>&1 |
  grep -E "crash test:|panicked|test result|left|right|assert"
