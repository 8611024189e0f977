#!/usr/bin/env bash
# Reproduces the backbone tables of docs/results.md: CIDer, CIDer without MACI, MulT (MMSA's
# MOSI settings) with MACI, and MulT with its plain head, each trained with 3 seeds on the
# built-in synthetic data (the settings of `cider demo`) and evaluated over the 11 RMFM rates on
# the IID and the OOD test split, τ by the default rule (shift-gated, no test labels; each
# results.json also holds the oracle). MulT trains with the single missing-view pass (MSSD is
# CIDer's own, docs/method.md §13). Then prints the tables, with the parameter counts and the
# seconds per training step of the first seed (the others may share the machine).
#
#   cargo build --release && scripts/backbone_results.sh      # about 50 minutes on 2 cores
#   OUT=runs/backbones EPOCHS=6 SEEDS="1111 1112 1113" scripts/backbone_results.sh
#
# A finished training (it leaves train.done) or evaluation is not run again.
set -euo pipefail
cd "$(dirname "$0")/.."
CIDER=${CIDER:-target/release/cider}
OUT=${OUT:-runs/backbones}
EPOCHS=${EPOCHS:-6}
SEEDS=${SEEDS:-"1111 1112 1113"}

settings() {
  case $1 in
    cider) echo "" ;;
    cider-linear) echo "--set maci.classifier=\"linear\"" ;;
    mult) echo "--set model.backbone=\"mult\"" ;;
    mult-linear) echo "--set model.backbone=\"mult\" --set maci.classifier=\"linear\"" ;;
  esac
}

for seed in $SEEDS; do
  for model in cider cider-linear mult mult-linear; do
    run="$OUT/$model-$seed"
    if [[ ! -f "$run/train.done" ]]; then
      rm -rf "$run"
      mkdir -p "$OUT"
      echo "== training $model, seed $seed" >&2
      # shellcheck disable=SC2046
      "$CIDER" train --epochs "$EPOCHS" --set "patience=$EPOCHS" --batch-size 32 \
        --seed "$seed" --out "$run" $(settings "$model") 2> "$OUT/$model-$seed.train.log" \
        | tail -1
      touch "$run/train.done"
    fi
    for split in iid ood; do
      if [[ ! -f "$run/eval-$split/results.json" ]]; then
        echo "== $model, seed $seed, $split test split" >&2
        "$CIDER" eval --checkpoint "$run" --variant "$split" --out "$run/eval-$split" \
          > "$run/eval-$split.txt"
      fi
    done
  done
done
python3 scripts/backbone_table.py "$OUT" $SEEDS
