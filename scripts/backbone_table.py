#!/usr/bin/env python3
"""Backbone tables of docs/results.md from the runs of scripts/backbone_results.sh (standard
library only).

    python3 scripts/backbone_table.py runs/backbones 1111 1112 1113
"""
import re
import statistics
import sys
from pathlib import Path

from results_table import load, mean_std

MODELS = [("mult-linear", "MulT (plain head)"), ("mult", "MulT + MACI"),
          ("cider-linear", "CIDer w/o MACI"), ("cider", "CIDer")]
SPLITS = [("iid", "IID"), ("ood", "OOD")]


def main():
    out = Path(sys.argv[1])
    seeds = sys.argv[2:]
    first = load(out / f"cider-{seeds[0]}" / "eval-iid" / "results.json")
    metric = first["sweep"]["metric"]
    print(f"{metric}, mean ± std over seeds {', '.join(seeds)}; τ by the `{first['tau']['rule']}` "
          "rule (no test labels), the oracle τ (max over τ on the test labels) in brackets\n")
    print("| model | IID rate 0 | IID AUILC | OOD rate 0 | OOD AUILC |")
    print("|---|---|---|---|---|")
    for key, name in MODELS:
        cells = []
        for split, _ in SPLITS:
            results = [load(out / f"{key}-{s}" / f"eval-{split}" / "results.json") for s in seeds]
            rate0 = [r["metrics"][metric][0] for r in results]
            oracle0 = [r["oracle"]["metrics"][metric][0] for r in results]
            auilc = [r["auilc"][metric] for r in results]
            oracle_auilc = [r["oracle"]["auilc"][metric] for r in results]
            cells.append(f"{mean_std(rate0)} ({statistics.mean(oracle0):.3f})")
            cells.append(f"{mean_std(auilc)} ({statistics.mean(oracle_auilc):.3f})")
        print(f"| {name} | " + " | ".join(cells) + " |")

    print("\nτ chosen per seed (IID / OOD)\n")
    for key, name in MODELS:
        taus = []
        for s in seeds:
            pair = [load(out / f"{key}-{s}" / f"eval-{split}" / "results.json")["tau"]["value"]
                    for split, _ in SPLITS]
            taus.append("/".join(f"{t:.1f}" for t in pair))
        print(f"- {name}: {', '.join(taus)}")

    print("\nSize and training speed, from the first seed's run (its training log and "
          "metrics.json: the epochs' training seconds over their steps, mean over epochs)\n")
    print("| model | parameters | trained | s / step |")
    print("|---|---|---|---|")
    pattern = re.compile(r"(\d+) parameters \((\d+) trained\)")
    for key, name in MODELS:
        log = (out / f"{key}-{seeds[0]}.train.log").read_text()
        total, trained = pattern.search(log).groups()
        per_step = []
        config = load(out / f"{key}-{seeds[0]}" / "config.json")
        steps = -(-config["data"]["n_train"] // config["batch_size"])
        for epoch in load(out / f"{key}-{seeds[0]}" / "metrics.json"):
            per_step.append(epoch["train_seconds"] / steps)
        print(f"| {name} | {int(total):,} | {int(trained):,} | {statistics.mean(per_step):.3f} |")


if __name__ == "__main__":
    main()
