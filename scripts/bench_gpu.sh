#!/usr/bin/env bash
# The GPU figures of docs/performance.md in two steps: build the bench binary for cuda and for
# wgpu on a CPU machine (no GPU needed to build), then run them on the GPU machine.
#
#   scripts/bench_gpu.sh build              # here: target/gpu-bench/{cuda,wgpu}/cider-bench-json
#   scripts/bench_gpu.sh run [OUT]          # on the GPU machine, from the repository root:
#                                           # OUT/bench-cuda.json, OUT/bench-wgpu.json,
#                                           # OUT/gpu.txt (nvidia-smi), OUT/*.log
#
# With the device tool: build here, then one call per backend, since a carry holds 64 MiB and
# the two stripped binaries together are about 75 MiB (cuda 36, wgpu 41):
#   carry target/gpu-bench/cuda, run  BACKENDS=cuda scripts/bench_gpu.sh run "$OUT"
#   carry target/gpu-bench/wgpu, run  BACKENDS=wgpu scripts/bench_gpu.sh run "$OUT"
# A build replaces target/release/cider-bench-json; `cargo build --release` brings back flex's.
# CONFIGS, STEPS, BERT_STEPS and BACKENDS override the defaults below.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIGS=${CONFIGS:-mosi-aligned/b32/precomputed,mosi-unaligned/b32/precomputed,mosi-aligned/b128/precomputed,mosi-unaligned/b128/precomputed,mosi-aligned/b32/bert-base,mosi-unaligned/b32/bert-base}
STEPS=${STEPS:-10}
BERT_STEPS=${BERT_STEPS:-5}
BACKENDS=${BACKENDS:-"cuda wgpu"}
DIR=target/gpu-bench

build() {
  for backend in $BACKENDS; do
    echo "== $(date +%T) build $backend" >&2
    cargo build --release -p cider-bench --bin cider-bench-json \
      --no-default-features --features "$backend"
    mkdir -p "$DIR/$backend"
    strip -o "$DIR/$backend/cider-bench-json" target/release/cider-bench-json
  done
  du -sh "$DIR"
}

run() {
  local out=${1:-gpu-bench-out}
  mkdir -p "$out"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi > "$out/gpu.txt" 2>&1 || true
  else
    echo "nvidia-smi not found" > "$out/gpu.txt"
  fi
  # wgpu needs a writable runtime directory for its Vulkan loader.
  XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
  export XDG_RUNTIME_DIR
  local failed=0
  for backend in $BACKENDS; do
    local bin=$DIR/$backend/cider-bench-json
    if [[ ! -x "$bin" ]]; then
      echo "no $bin: run \`scripts/bench_gpu.sh build\` first" >&2
      failed=1
      continue
    fi
    echo "== $(date +%T) run $backend" >&2
    if ! "$bin" --configs "$CONFIGS" --steps "$STEPS" --bert-steps "$BERT_STEPS" --warmup 2 \
        > "$out/bench-$backend.json" 2> "$out/bench-$backend.log"; then
      echo "$backend failed: see $out/bench-$backend.log" >&2
      failed=1
    elif grep -q '"error":' "$out/bench-$backend.json"; then
      # cider-bench-json exits 0 and records a failed configuration as an "error" entry.
      echo "$backend: a configuration failed, see the \"error\" entries of $out/bench-$backend.json" >&2
      failed=1
    fi
  done
  return $failed
}

case "${1:-}" in
  build) build ;;
  run) shift; run "$@" ;;
  *) echo "usage: scripts/bench_gpu.sh build | run [OUT]" >&2; exit 2 ;;
esac
