#!/usr/bin/env bash
# Reproduces every number of docs/results.md: CIDer, the no-MSSD ablation and the no-MACI
# ablation, trained with 3 seeds on the built-in synthetic data (the settings of `cider demo`),
# each evaluated over the 11 missing rates on the IID and on the OOD test split; CIDer's OOD
# test split also with τ fixed at 0. Then prints the tables of docs/results.md.
#
#   cargo build --release && scripts/results.sh            # about an hour on 2 cores
#   OUT=runs/results EPOCHS=6 SEEDS="1111 1112 1113" scripts/results.sh
#
# A finished run (its eval-ood/results.json exists) is not run again.
set -euo pipefail
cd "$(dirname "$0")/.."
CIDER=${CIDER:-target/release/cider}
OUT=${OUT:-runs/results}
EPOCHS=${EPOCHS:-6}
SEEDS=${SEEDS:-"1111 1112 1113"}

for seed in $SEEDS; do
  for model in cider no-mssd no-maci; do
    case $model in
      cider) extra=() ;;
      no-mssd) extra=(--set 'loss.distillation="none"') ;;
      no-maci) extra=(--set 'maci.classifier="linear"') ;;
    esac
    run="$OUT/$model-$seed"
    if [[ -f "$run/eval-ood/results.json" ]]; then
      continue
    fi
    rm -rf "$run"
    echo "== $model, seed $seed" >&2
    "$CIDER" train --quiet --epochs "$EPOCHS" --set "patience=$EPOCHS" --batch-size 32 \
      --seed "$seed" --out "$run" "${extra[@]}"
    if [[ $model == cider ]]; then
      "$CIDER" eval --checkpoint "$run" --variant ood --rates 0 --debiasing no-maci \
        --out "$run/eval-ood-tau0" > "$run/eval-ood-tau0.txt"
    fi
    for variant in iid ood; do
      "$CIDER" eval --checkpoint "$run" --variant "$variant" --tau validation \
        --out "$run/eval-$variant" \
        > "$run/eval-$variant.txt"
    done
  done
done
python3 scripts/results_table.py "$OUT" $SEEDS
