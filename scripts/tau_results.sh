#!/usr/bin/env bash
# Reproduces the τ-rule tables of docs/results.md: CIDer trained with 3 seeds on the built-in
# synthetic data (the settings of `cider demo`), each evaluated over the 11 RMFM rates on four
# test splits of the same generator: IID, OOD (both biases reversed), the label shift alone and
# the language shift alone. Training and validation are the same for all four. One evaluation
# per split is enough: its results.json records the τ of every rule (tau.rules) and the
# headline metric at every τ of the grid (sweep). Then prints the tables.
#
#   cargo build --release && scripts/tau_results.sh        # about 20 minutes on 2 cores
#   OUT=runs/tau EPOCHS=6 SEEDS="1111 1112 1113" scripts/tau_results.sh
#
# A finished training (it leaves train.done) or evaluation is not run again.
set -euo pipefail
cd "$(dirname "$0")/.."
CIDER=${CIDER:-target/release/cider}
OUT=${OUT:-runs/tau}
EPOCHS=${EPOCHS:-6}
SEEDS=${SEEDS:-"1111 1112 1113"}

for seed in $SEEDS; do
  run="$OUT/cider-$seed"
  if [[ ! -f "$run/train.done" ]]; then
    rm -rf "$run"
    echo "== training seed $seed" >&2
    "$CIDER" train --quiet --epochs "$EPOCHS" --set "patience=$EPOCHS" --batch-size 32 \
      --seed "$seed" --out "$run"
    touch "$run/train.done"
  fi
  for split in iid ood label language; do
    case $split in
      iid) args=(--variant iid) ;;
      ood) args=(--variant ood) ;;
      *) args=(--variant ood --shift "$split") ;;
    esac
    if [[ ! -f "$run/eval-$split/results.json" ]]; then
      echo "== seed $seed, $split test split" >&2
      "$CIDER" eval --checkpoint "$run" "${args[@]}" --out "$run/eval-$split" \
        > "$run/eval-$split.txt"
    fi
  done
done
python3 scripts/tau_table.py "$OUT" $SEEDS
