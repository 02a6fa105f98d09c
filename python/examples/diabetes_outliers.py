"""Robust regression on diabetes with gross outliers, from Python: the protocol of the Rust
example `cargo run --release --example diabetes_outliers`, with its figures.

Diabetes (442 rows, 10 features) split 60/20/20 into training, meta and test rows; 20% of the
training targets replaced by gross outliers (the clean mean plus 5 to 10 clean standard
deviations); three fits per seed: MAM (weights learned on the clean meta rows), uniform
weights on the corrupted targets, and uniform weights on the clean targets (the reference).
Prints the markdown table (test MSE on clean targets, selected features, mean learned weight
of the outliers and of the clean rows) and writes three figures to OUT (default
`runs/python-diabetes`): shape functions, learned weights against training loss, and MAM's
meta loss and active features over the outer iterations.

    pip install ./python scikit-learn pandas matplotlib
    python python/examples/diabetes_outliers.py [OUT]

Run from the repository root (it reads examples/data/diabetes.csv).
"""

import pathlib
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from metaadd import MetaAdditiveRegressor  # noqa: E402

SEEDS = 5
OUTLIER_SHARE = 0.2
SETTINGS = dict(lambda_=0.02, iterations=1000)


def split(frame, seed):
    """60/20/20 training, meta and test rows, and the training rows made outliers."""
    rest, test = train_test_split(frame, test_size=0.2, random_state=seed)
    train, meta = train_test_split(rest, test_size=0.25, random_state=seed)
    rng = np.random.default_rng(100 + seed)
    y = train["target"].to_numpy(dtype=float)
    outliers = rng.choice(len(y), size=round(OUTLIER_SHARE * len(y)), replace=False)
    corrupted = y.copy()
    corrupted[outliers] = y.mean() + y.std() * rng.uniform(5.0, 10.0, size=len(outliers))
    is_outlier = np.zeros(len(y), dtype=bool)
    is_outlier[outliers] = True
    return train, meta, test, pd.Series(corrupted, index=train.index, name="target"), is_outlier


def features(frame):
    return frame.drop(columns="target")


def main(out):
    frame = pd.read_csv("examples/data/diabetes.csv")
    methods = ["MAM (K = 5)", "uniform weights", "uniform, clean targets (reference)"]
    mse = {m: [] for m in methods}
    selected = {m: [] for m in methods}
    weight_outliers, weight_clean = [], []
    start = time.monotonic()
    for seed in range(SEEDS):
        train, meta, test, corrupted, is_outlier = split(frame, seed)
        Xm, ym = features(meta), meta["target"]
        fits = {
            methods[0]: MetaAdditiveRegressor(**SETTINGS, seed=seed).fit(
                features(train), corrupted, Xm, ym
            ),
            methods[1]: MetaAdditiveRegressor(**SETTINGS, seed=seed, weighting="uniform").fit(
                features(train), corrupted, Xm, ym
            ),
            methods[2]: MetaAdditiveRegressor(**SETTINGS, seed=seed, weighting="uniform").fit(
                features(train), train["target"], Xm, ym
            ),
        }
        for name, model in fits.items():
            error = model.predict(features(test)) - test["target"].to_numpy()
            mse[name].append(np.mean(error**2))
            selected[name].append(len(model.selected_features_))
        weights = fits[methods[0]].sample_weights(features(train), corrupted)
        weight_outliers.append(weights[is_outlier].mean())
        weight_clean.append(weights[~is_outlier].mean())
        if seed == 0:
            figures(out, fits, methods, train, corrupted, is_outlier)
    seconds = time.monotonic() - start

    def mean_sd(values, digits):
        return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"

    print(
        f"diabetes: {len(frame)} rows, 10 features; 60/20/20 train/meta/test; "
        f"{100 * OUTLIER_SHARE:.0f}% of training targets replaced by gross outliers; "
        f"{SEEDS} seeds ({3 * SEEDS} fits in {seconds:.1f} s)\n"
    )
    print("| method | test MSE (clean targets) | selected features |")
    print("|---|---|---|")
    for name in methods:
        print(f"| {name} | {mean_sd(mse[name], 0)} | {mean_sd(selected[name], 1)} |")
    print(
        f"\nMAM's mean learned weight: outliers {mean_sd(weight_outliers, 3)}, "
        f"clean rows {mean_sd(weight_clean, 3)}"
    )
    print(f"figures: {', '.join(str(out / f) for f in FIGURES)}")


FIGURES = ("shapes.png", "weights.png", "history.png")


def figures(out, fits, methods, train, corrupted, is_outlier):
    """The three figures of the first seed's fits."""
    out.mkdir(parents=True, exist_ok=True)
    mam = fits[methods[0]]
    # Shape functions of the reference's four strongest features, each fit's curve.
    shown = fits[methods[2]].selected_features_[:4]
    figure, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 3.4), squeeze=False)
    for ax, feature in zip(axes[0], shown):
        grid = np.linspace(train[feature].min(), train[feature].max(), 100)
        for name, style in zip(methods, ("-", "--", ":")):
            ax.plot(grid, fits[name].shape_function(feature, grid)[:, 0], style, label=name)
        ax.set_xlabel(feature)
        ax.set_title(f"f({feature})")
    axes[0][0].set_ylabel("contribution to the prediction")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / FIGURES[0], dpi=120)
    plt.close(figure)

    # Learned weight of each training row against its training loss, and the weight curve.
    table = mam.weights_table(features(train), corrupted)
    figure, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.scatter(table["loss"][~is_outlier], table["weight"][~is_outlier], s=10, label="clean rows")
    ax.scatter(table["loss"][is_outlier], table["weight"][is_outlier], s=10, label="outliers")
    losses = np.geomspace(max(table["loss"].min(), 1e-4), table["loss"].max(), 200)
    ax.plot(losses, mam.weight_curve(losses), "k-", lw=1, label="learned weight curve")
    ax.set_xscale("log")
    ax.set_xlabel("training loss (standardised target)")
    ax.set_ylabel("learned weight")
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / FIGURES[1], dpi=120)
    plt.close(figure)

    # MAM's meta loss and selected features over the outer iterations (`history_`).
    history = mam.history_
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 4.4), sharex=True)
    top.plot(history["iteration"], history["meta_loss"])
    top.set_yscale("log")
    top.set_ylabel("meta loss")
    bottom.step(history["iteration"], history["active_groups"], where="post")
    bottom.set_ylabel("active features")
    bottom.set_xlabel("outer iteration")
    top.set_title("MAM's fit, outer iteration by iteration")
    figure.tight_layout()
    figure.savefig(out / FIGURES[2], dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "runs/python-diabetes"))
