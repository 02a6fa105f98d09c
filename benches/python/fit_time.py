"""A fit from Python against the same fit by the command line, on the same data, settings and
seed: wall-clock seconds of each (median of 5, alternating), their ratio, and whether the two
model files are the same bytes.

    cargo build --release && bash scripts/python-tests.sh   # builds both
    ~/.cache/metaadd-py-venv/bin/python benches/python/fit_time.py [CSV] [TARGET]

The CLI's time is the whole command (start, reading the CSV, fit, writing the file); the
Python time is `fit` on a DataFrame already read plus `save` (reading the CSV with pandas is
timed apart).
"""

import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import pandas as pd

from metaadd import MetaAdditiveRegressor, _core

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI = ROOT / "target" / "release" / "metaadd"
ROUNDS = 5


def main(csv, target):
    settings = ["--meta-frac", "0.2", "--iterations", "1000", "--seed", "0"]
    timings = {"cli": [], "python": [], "read_csv": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for _ in range(ROUNDS):
            start = time.perf_counter()
            subprocess.run(
                [str(CLI), "fit", "--train", str(csv), "--target", target, *settings, "--quiet",
                 "--out", str(tmp / "cli.safetensors")],
                check=True, capture_output=True,
            )
            timings["cli"].append(time.perf_counter() - start)
            start = time.perf_counter()
            frame = pd.read_csv(csv)
            timings["read_csv"].append(time.perf_counter() - start)
            start = time.perf_counter()
            model = MetaAdditiveRegressor(meta_fraction=0.2, iterations=1000, seed=0)
            model.fit(frame.drop(columns=target), frame[target])
            model.save(tmp / "python.safetensors")
            timings["python"].append(time.perf_counter() - start)
        same = (tmp / "cli.safetensors").read_bytes() == (tmp / "python.safetensors").read_bytes()
    median = {k: statistics.median(v) for k, v in timings.items()}
    print(f"{csv.name}, 1000 iterations, {_core.threads()} threads, median of {ROUNDS}:")
    print(f"  command line  {median['cli']:.3f} s  (all runs: "
          + ", ".join(f"{t:.3f}" for t in timings["cli"]) + ")")
    print(f"  Python        {median['python']:.3f} s  (all runs: "
          + ", ".join(f"{t:.3f}" for t in timings["python"]) + ")"
          + f"; pandas.read_csv {median['read_csv'] * 1000:.1f} ms")
    print(f"  Python / command line  {median['python'] / median['cli']:.2f}")
    print(f"  same model file bytes  {same}")


if __name__ == "__main__":
    csv = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "examples/data/diabetes.csv"
    main(csv, sys.argv[2] if len(sys.argv) > 2 else "target")
