#!/usr/bin/env python3
"""One line per setting of `metaadd experiment real` results files: the best fixed rule
(uniform, huber(auto), tilted(auto)) against MAM, and, with a minority class, the class-aware
MAM's balanced accuracy against uniform weights'.

    python3 scripts/real_summary.py docs/results/real-*.csv

The score is the test MSE for regression (lower is better), the accuracy under label flips
and the balanced accuracy with a minority class (higher is better); mean ± sample sd over
seeds. MAM is mam(5), and the class-aware MAM where the setting has a minority class (the
method made for it). "within" is yes when MAM is better, or worse by at most the larger of
the two seed-to-seed sds. Standard library only.
"""
import csv
import statistics
import sys
from collections import defaultdict

FIXED = ["uniform", "huber(auto)", "tilted(auto)"]


def records(paths):
    for path in paths:
        with open(path, newline="") as f:
            lines = [l for l in f if not l.startswith("#")]
        for row in csv.DictReader(lines):
            yield row


def main(paths):
    scores = defaultdict(lambda: defaultdict(dict))
    balanced = defaultdict(lambda: defaultdict(dict))
    order = []
    for row in records(paths):
        setting = row["setting"]
        if setting not in order:
            order.append(setting)
        minority = "minority" in setting
        if row["test_mse"]:
            value = float(row["test_mse"])
        else:
            value = float(row["balanced_accuracy" if minority else "accuracy"])
        scores[setting][row["method"]][int(row["seed"])] = value
        if row.get("balanced_accuracy"):
            balanced[setting][row["method"]][int(row["seed"])] = float(row["balanced_accuracy"])

    def stats(values):
        v = list(values.values())
        return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0), len(v)

    print("| setting | score | best fixed rule | MAM | MAM − best | within | class-aware − uniform (bal. acc.) |")
    print("|---|---|---|---|---|---|---|")
    for setting in order:
        methods = scores[setting]
        regression = any(m in methods and setting.split()[0] in ("diabetes", "randhie") for m in methods)
        lower = regression
        minority = "minority" in setting
        fixed = [(m, *stats(methods[m])) for m in FIXED if m in methods]
        if not fixed:
            continue
        best = (min if lower else max)(fixed, key=lambda t: t[1])
        mam_name = "mam-class(5)" if minority and "mam-class(5)" in methods else "mam(5)"
        if mam_name not in methods:
            continue
        mean, sd, n = stats(methods[mam_name])
        diff = mean - best[1]
        worse = diff > 0 if lower else diff < 0
        within = "yes" if (not worse or abs(diff) <= max(sd, best[2])) else "no"
        score = "test MSE" if lower else ("balanced acc." if minority else "accuracy")
        gain = ""
        if minority and "mam-class(5)" in balanced[setting] and "uniform" in balanced[setting]:
            c = stats(balanced[setting]["mam-class(5)"])[0]
            u = stats(balanced[setting]["uniform"])[0]
            gain = f"{c - u:+.3f} ({c:.3f} vs {u:.3f})"
        digits = 4 if lower else 3
        print(
            f"| {setting} | {score} | {best[0]} {best[1]:.{digits}f} ± {best[2]:.{digits}f} | "
            f"{mam_name} {mean:.{digits}f} ± {sd:.{digits}f} | {diff:+.{digits}f} | {within} | {gain} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
