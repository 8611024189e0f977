#!/usr/bin/env python3
"""τ-rule tables of docs/results.md from the runs of scripts/tau_results.sh (standard library
only). Each results.json holds the τ every rule picks (tau.rules) and the headline metric at
every τ of the grid for each rate (sweep), so every rule's figures come from one evaluation.

    python3 scripts/tau_table.py runs/tau 1111 1112 1113
"""
import statistics
import sys
from pathlib import Path

from results_table import load, mean_std

SPLITS = [
    ("iid", "IID test split"),
    ("ood", "OOD test split (mirrored priors and reversed shortcut words)"),
    ("label", "label shift only (mirrored priors)"),
    ("language", "language shift only (reversed shortcut words)"),
]
RULES = ["validation", "balanced-validation", "prior-matching", "bias-independence",
         "shift-gated"]


def auilc(rates, values):
    return sum((b - a) * (u + v) / 2 for a, b, u, v in zip(rates, rates[1:], values, values[1:]))


def column(result, tau):
    """Rate-0 value and AUILC of the headline at one τ of the grid."""
    k = round(tau * 10)
    series = [row[k] for row in result["sweep"]["values"]]
    return series[0], auilc(result["rates"], series)


def main():
    out = Path(sys.argv[1])
    seeds = sys.argv[2:]
    results = {split: [load(out / f"cider-{s}" / f"eval-{split}" / "results.json") for s in seeds]
               for split, _ in SPLITS}
    metric = results["iid"][0]["sweep"]["metric"]
    summary = {}
    for split, title in SPLITS:
        print(f"\n{title}: {metric} at missing rate 0 and AUILC, mean ± std over seeds "
              f"{', '.join(seeds)}\n")
        print("| τ rule | rate 0 | AUILC | τ per seed |")
        print("|---|---|---|---|")
        rows = [("τ = 0 (no counterfactual debiasing)", [0.0] * len(seeds))]
        rows += [(f"`{rule}`", [r["tau"]["rules"][rule] for r in results[split]]) for rule in RULES]
        for name, taus in rows:
            cells = [column(r, t) for r, t in zip(results[split], taus)]
            at_zero = [c[0] for c in cells]
            area = [c[1] for c in cells]
            summary[(split, name)] = statistics.mean(at_zero)
            print(f"| {name} | {mean_std(at_zero)} | {mean_std(area)} | "
                  f"{', '.join(f'{t:.1f}' for t in taus)} |")
        oracle0 = [r["oracle"]["metrics"][metric][0] for r in results[split]]
        oracle_area = [r["oracle"]["auilc"][metric] for r in results[split]]
        summary[(split, "oracle")] = statistics.mean(oracle0)
        print(f"| oracle (max over τ on the test labels, per rate) | {mean_std(oracle0)} | "
              f"{mean_std(oracle_area)} | per rate |")

    print(f"\nGain over τ = 0 in {metric} at rate 0 (mean of seeds); the target is ≥ half the "
          "oracle's OOD gain with at most 0.01 lost on IID\n")
    print("| τ rule | " + " | ".join(split.upper() if split in ("iid", "ood") else split
                                    for split, _ in SPLITS) + " |")
    print("|---|" + "---|" * len(SPLITS))
    base = "τ = 0 (no counterfactual debiasing)"
    for name in [f"`{rule}`" for rule in RULES] + ["oracle"]:
        gains = [summary[(split, name)] - summary[(split, base)] for split, _ in SPLITS]
        print(f"| {name} | " + " | ".join(f"{g:+.3f}" for g in gains) + " |")


if __name__ == "__main__":
    main()
