#!/usr/bin/env python3
"""Tables of docs/results.md from the runs of scripts/results.sh (standard library only).

    python3 scripts/results_table.py runs/results 1111 1112 1113
"""
import json
import statistics
import sys
from pathlib import Path

METRIC = "Non0_acc_2"
MODELS = [("cider", "CIDer"), ("no-mssd", "w/o MSSD"), ("no-maci", "w/o MACI")]


def load(path):
    with open(path) as f:
        return json.load(f)


def mean_std(values):
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {std:.3f}"


def main():
    out = Path(sys.argv[1])
    seeds = sys.argv[2:]
    print(f"AUILC of {METRIC} over the rates 0, 0.1, …, 1 (τ chosen on validation), "
          f"mean ± std over seeds {', '.join(seeds)}\n")
    print("| model | IID | OOD |")
    print("|---|---|---|")
    for key, name in MODELS:
        cells = []
        for variant in ["iid", "ood"]:
            values = [load(out / f"{key}-{s}" / f"eval-{variant}" / "results.json")["auilc"][METRIC]
                      for s in seeds]
            cells.append(mean_std(values))
        print(f"| {name} | {cells[0]} | {cells[1]} |")

    print(f"\nCIDer, OOD test split, {METRIC} at missing rate 0\n")
    print("| τ rule | value | τ per seed |")
    print("|---|---|---|")
    tau0, chosen, oracle, taus = [], [], [], []
    for s in seeds:
        run = out / f"cider-{s}"
        tau0.append(load(run / "eval-ood-tau0" / "results.json")["metrics"][METRIC][0])
        full = load(run / "eval-ood" / "results.json")
        chosen.append(full["metrics"][METRIC][0])
        oracle.append(full["oracle"]["metrics"][METRIC][0])
        taus.append(f"{full['tau'].get('value', full['tau'].get('validation')):.1f}")
    print(f"| τ = 0 (no counterfactual debiasing) | {mean_std(tau0)} | 0 |")
    print(f"| τ chosen on validation | {mean_std(chosen)} | {', '.join(taus)} |")
    print(f"| oracle τ (max over τ on the test labels) | {mean_std(oracle)} | per metric |")

    print(f"\n{METRIC} per missing rate (τ chosen on validation), mean over seeds\n")
    rates = load(out / f"cider-{seeds[0]}" / "eval-iid" / "results.json")["rates"]
    print("| model | split | " + " | ".join(f"{r:g}" for r in rates) + " |")
    print("|---|---|" + "---|" * len(rates))
    for key, name in MODELS:
        for variant in ["iid", "ood"]:
            series = [load(out / f"{key}-{s}" / f"eval-{variant}" / "results.json")["metrics"][METRIC]
                      for s in seeds]
            means = [statistics.mean(col) for col in zip(*series)]
            print(f"| {name} | {variant.upper()} | " + " | ".join(f"{m:.3f}" for m in means) + " |")


if __name__ == "__main__":
    main()
