"""The estimators against scikit-learn's conventions, the command line's model files and bad
input. Run from the repository root after building the package (see python/README.md):
`pytest python/tests`."""

import os
import pathlib
import subprocess

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import metaadd
from metaadd import MetaAdditiveClassifier, MetaAdditiveRegressor

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "data"
CLI = ROOT / "target" / "release" / "metaadd"


@parametrize_with_checks(
    [MetaAdditiveRegressor(iterations=20), MetaAdditiveClassifier(iterations=20)]
)
def test_scikit_learn_checks(estimator, check):
    check(estimator)


def diabetes():
    frame = pd.read_csv(DATA / "diabetes.csv")
    return frame.drop(columns="target"), frame["target"]


def test_pipeline_grid_search_and_cross_validation():
    X, y = diabetes()
    scores = cross_val_score(MetaAdditiveRegressor(iterations=50), X, y, cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.3)
    pipe = make_pipeline(StandardScaler(), MetaAdditiveRegressor(iterations=30))
    grid = GridSearchCV(pipe, {"metaadditiveregressor__k": [1, 3]}, cv=2).fit(X, y)
    assert grid.best_params_["metaadditiveregressor__k"] in (1, 3)


def test_dataframe_names_float32_and_classes():
    X, y = diabetes()
    model = MetaAdditiveRegressor(iterations=50).fit(X, y)
    assert list(model.feature_names_in_) == list(X.columns)
    assert set(model.selected_features_) <= set(X.columns)
    a = model.predict(X)
    b = model.predict(X.to_numpy(dtype=np.float32).astype(np.float64))
    assert np.allclose(a, b)
    frame = pd.read_csv(DATA / "breast_cancer.csv")
    labels = np.where(frame["target"] == 1, "benign", "malignant")
    clf = MetaAdditiveClassifier(iterations=50).fit(frame.drop(columns="target"), labels)
    assert sorted(clf.classes_) == ["benign", "malignant"]
    proba = clf.predict_proba(frame.drop(columns="target"))
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert set(clf.predict(frame.drop(columns="target"))) <= {"benign", "malignant"}
    assert clf.score(frame.drop(columns="target"), labels) > 0.9


def test_weight_curve_and_save_load(tmp_path):
    X, y = diabetes()
    model = MetaAdditiveRegressor(iterations=50).fit(X, y)
    weights = model.weight_curve([0.0, 1.0, 10.0])
    assert len(weights) == 3 and np.all(np.isfinite(weights))
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = metaadd.load(path)
    assert np.array_equal(loaded.predict(X.to_numpy()), model.predict(X.to_numpy()))
    # A read-only file is refused and left as it was, as by the command line.
    locked = tmp_path / "locked.safetensors"
    locked.write_bytes(b"mine")
    locked.chmod(0o444)
    with pytest.raises(OSError):
        model.save(locked)
    assert locked.read_bytes() == b"mine"


@pytest.mark.skipif(not CLI.exists(), reason="the metaadd binary is not built")
def test_cli_and_python_give_the_same_model_file(tmp_path):
    X, y = diabetes()
    X, y = X.iloc[:300], y.iloc[:300]
    csv = tmp_path / "train.csv"
    frame = X.copy()
    frame["target"] = y
    frame.to_csv(csv, index=False)
    out = tmp_path / "cli.safetensors"
    subprocess.run(
        [str(CLI), "fit", "--train", str(csv), "--target", "target", "--meta-frac", "0.2",
         "--iterations", "40", "--seed", "3", "--quiet", "--out", str(out)],
        check=True, capture_output=True,
    )
    model = MetaAdditiveRegressor(iterations=40, seed=3, meta_fraction=0.2).fit(X, y)
    assert model.model_file_bytes_ == out.read_bytes()
    # With λ chosen on the path, the CLI's path settings are the estimator's defaults.
    auto = tmp_path / "auto.safetensors"
    subprocess.run(
        [str(CLI), "fit", "--train", str(csv), "--target", "target", "--meta-frac", "0.2",
         "--lambda", "auto", "--lambdas", "3", "--path-iterations", "10", "--iterations", "20",
         "--seed", "3", "--quiet", "--out", str(auto)],
        check=True, capture_output=True,
    )
    model_auto = MetaAdditiveRegressor(
        lambda_="auto", lambdas=3, path_iterations=10, iterations=20, seed=3
    ).fit(X, y)
    assert model_auto.model_file_bytes_ == auto.read_bytes()
    # The CLI's file predicts identically from Python.
    loaded = metaadd.load(out)
    assert np.array_equal(loaded.predict(X.to_numpy()), model.predict(X.to_numpy()))


def test_bad_input_is_refused_with_the_librarys_message():
    X, y = diabetes()
    with pytest.raises(ValueError, match="NaN"):
        X2 = X.to_numpy().copy()
        X2[3, 2] = np.nan
        MetaAdditiveRegressor().fit(X2, y)
    with pytest.raises(ValueError, match="hidden"):
        MetaAdditiveRegressor(hidden=0).fit(X, y)
    with pytest.raises(ValueError, match="1 class"):
        MetaAdditiveClassifier().fit(X, np.zeros(len(y)))
    model = MetaAdditiveRegressor(iterations=20).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        model.predict(X.to_numpy()[:, :3])
    with pytest.raises(OSError if os.name else ValueError):
        metaadd.load("/nonexistent/model.safetensors")
    # Named as the estimators name things: the column, the parameter, the file.
    named = X.copy()
    named["sex"] = named["sex"].map({1.0: "F", 2.0: "M"})
    with pytest.raises(ValueError, match="column `sex` holds"):
        MetaAdditiveRegressor().fit(named, y)
    with pytest.raises(ValueError, match="invalid parameter `hypergradient`"):
        MetaAdditiveRegressor(hypergradient="nope").fit(X, y)
    with pytest.raises(ValueError, match="invalid parameter `meta_fraction`"):
        MetaAdditiveRegressor(meta_fraction=2.0).fit(X, y)
    with pytest.raises(ValueError, match="README.md: "):
        metaadd.load(ROOT / "README.md")


def test_design_forms_give_the_same_model_to_rounding():
    """`design="fused"` (one pass over the sparse design's rows per step each way) and
    `"sparse"` fit the dense model to rounding, in f64; an unknown form is refused by name."""
    X, y = diabetes()
    fit = lambda design: MetaAdditiveRegressor(
        iterations=30, n_basis=10, dtype="f64", design=design
    ).fit(X, y)
    dense = fit("dense").predict(X)
    for design in ("sparse", "fused"):
        assert np.allclose(fit(design).predict(X), dense, rtol=1e-8, atol=1e-8), design
    with pytest.raises(ValueError, match="expected auto, dense, sparse or fused"):
        MetaAdditiveRegressor(design="blocked").fit(X, y)


def test_weights_table_shape_functions_and_pickling():
    import pickle

    X_all, y_all = diabetes()
    # Training rows with gross outliers on a fifth of them; a clean meta set.
    X, y = X_all.iloc[:340], y_all.iloc[:340].copy()
    y.iloc[::5] += 1000.0
    model = MetaAdditiveRegressor(iterations=100).fit(X, y, X_all.iloc[340:], y_all.iloc[340:])
    table = model.weights_table(X, y)
    assert list(table.columns) == [
        "row", "target", "prediction", "loss", "weight", "rank", "down_weighted"
    ]
    assert len(table) == len(y) and sorted(table["rank"]) == list(range(1, len(y) + 1))
    moved = np.zeros(len(y), dtype=bool)
    moved[::5] = True
    flagged = table["down_weighted"].to_numpy(dtype=bool)
    assert flagged.sum() > 0 and (flagged & moved).sum() >= 0.8 * flagged.sum()
    assert np.array_equal(model.sample_weights(X, y), table["weight"].to_numpy())
    grid = np.linspace(X["bmi"].min(), X["bmi"].max(), 7)
    shape = model.shape_function("bmi", grid)
    assert shape.shape == (7, 1) and np.all(np.isfinite(shape))
    with pytest.raises(ValueError, match="no feature `nope`"):
        model.shape_function("nope", grid)
    again = pickle.loads(pickle.dumps(model))
    assert again.model_file_bytes_ == model.model_file_bytes_
    assert np.array_equal(again.predict(X), model.predict(X))


def test_constructor_defaults_are_the_librarys():
    from metaadd import _core

    library = _core.defaults("regression")
    ours = MetaAdditiveRegressor()._settings()
    for key, value in ours.items():
        try:
            assert float(value) == float(library[key]), (key, value, library[key])
        except ValueError:
            assert value == library[key], (key, value, library[key])
    # Settings left to the library's task default are not passed; every other setting is a
    # constructor argument (the task and its loss are the estimator's).
    task_defaults = {"eta", "normalize_weights", "meta_objective", "train_batch", "meta_batch"}
    assert not task_defaults & set(ours)
    assert set(library) - set(ours) == task_defaults | {"task", "loss"}


def test_history_lambda_path_and_warnings():
    X, y = diabetes()
    model = MetaAdditiveRegressor(iterations=30).fit(X, y)
    history = model.history_
    assert list(history.columns) == [
        "iteration", "meta_loss", "train_loss", "hypergrad_norm", "active_groups", "mean_weight"
    ]
    assert list(history["iteration"]) == list(range(30))
    assert np.all(np.isfinite(history["meta_loss"])) and history["hypergrad_norm"].iloc[-1] > 0
    assert not hasattr(model, "lambda_path_")
    auto = MetaAdditiveRegressor(lambda_="auto", lambdas=3, iterations=20).fit(X, y)
    path = auto.lambda_path_
    assert len(path) == 3 and path["chosen"].sum() == 1
    assert np.all(np.diff(path["lambda"]) < 0)
    assert len(auto.history_) == 20
    # A refit with a fixed λ has no path.
    auto.set_params(lambda_=0.01).fit(X, y)
    assert not hasattr(auto, "lambda_path_")
    # A meta set of 12 rows: the library's warning reaches Python as a UserWarning.
    with pytest.warns(UserWarning, match="meta set"):
        MetaAdditiveRegressor(iterations=5).fit(X.iloc[:60], y.iloc[:60])


def test_fit_releases_the_gil():
    import threading
    import time

    X, y = diabetes()
    model = MetaAdditiveRegressor(iterations=3000)
    worker = threading.Thread(target=model.fit, args=(X, y))
    gaps, last = [], time.perf_counter()
    start = last
    worker.start()
    while worker.is_alive():
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    worker.join()
    took = time.perf_counter() - start
    assert hasattr(model, "model_file_bytes_") and took > 0.3, took
    # With the GIL held for the fit, this loop would stop for the whole fit; without it, it
    # waits at most for a switch interval or the watcher's brief visits.
    assert max(gaps) < 0.1 * took, (max(gaps), took)


def test_ctrl_c_stops_a_fit_within_a_second():
    import signal
    import sys
    import time

    script = (
        "import pandas as pd\n"
        "from metaadd import MetaAdditiveRegressor\n"
        f"frame = pd.read_csv({str(DATA / 'diabetes.csv')!r})\n"
        "X, y = frame.drop(columns='target'), frame['target']\n"
        "print('fitting', flush=True)\n"
        "try:\n"
        "    MetaAdditiveRegressor(iterations=10**6).fit(X, y)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "fitting"
    time.sleep(1.0)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    line = child.stdout.readline().strip()
    elapsed = time.monotonic() - sent
    out, err = child.communicate(timeout=30)
    assert line == "interrupted", err
    assert child.returncode == 0 and elapsed < 1.0, elapsed


def test_verbose_draws_progress_only_when_asked(capsys):
    X, y = diabetes()
    MetaAdditiveRegressor(iterations=20).fit(X, y)
    assert capsys.readouterr().err == ""
    MetaAdditiveRegressor(iterations=20, verbose=True).fit(X, y)
    err = capsys.readouterr().err
    # The first iteration is drawn at once, whatever the machine's speed.
    assert "MetaAdditiveRegressor.fit: [" in err and "meta loss" in err
    assert "MetaAdditiveRegressor.fit: done in" in err


def test_without_pandas_tables_are_dicts_of_arrays(monkeypatch):
    import sys

    X, y = diabetes()
    X, y = X.to_numpy(), y.to_numpy()
    model = MetaAdditiveRegressor(iterations=20).fit(X, y)
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` raises ImportError
    table = model.weights_table(X, y)
    assert isinstance(table, dict) and len(table["weight"]) == len(y)
    again = MetaAdditiveRegressor(iterations=20).fit(X, y)
    assert isinstance(again.history_, dict) and len(again.history_["meta_loss"]) == 20


def test_threads_and_device_settings():
    X, y = diabetes()
    threads = metaadd._core.threads()
    MetaAdditiveRegressor(iterations=5, threads=threads).fit(X, y)
    with pytest.raises(ValueError, match="cannot be resized"):
        MetaAdditiveRegressor(iterations=5, threads=threads + 1).fit(X, y)
    with pytest.raises(ValueError, match="at least 1"):
        MetaAdditiveRegressor(iterations=5, threads=0).fit(X, y)
    with pytest.raises(ValueError, match="unknown device `tpu`"):
        MetaAdditiveRegressor(iterations=5, device="tpu").fit(X, y)
    if "cuda" not in metaadd._core.features():
        with pytest.raises(ValueError, match="needs the package built with CUDA support"):
            MetaAdditiveRegressor(iterations=5, device="cuda").fit(X, y)


@pytest.mark.parametrize("mode", ["exact", "exact-recompute", "truncated(2)", "one-step"])
def test_check_gradient_agrees_with_finite_differences(mode):
    X, y = diabetes()
    estimator = MetaAdditiveRegressor(k=4, hypergradient=mode, hidden=8)
    table = metaadd.check_gradient(estimator, X.iloc[:200], y.iloc[:200])
    assert list(table["tensor"])[-1] == "all"
    assert np.all(table["relative_error"] < 1e-6), table
    assert table.attrs["objective"] > 0
    # The estimator given is left unfitted.
    assert not hasattr(estimator, "n_features_in_")
    with pytest.raises(ValueError, match="auto"):
        metaadd.check_gradient(MetaAdditiveRegressor(lambda_="auto"), X, y)


def test_sweep_k_returns_one_row_per_depth_and_mode():
    X, y = diabetes()
    estimator = MetaAdditiveRegressor(iterations=20, hidden=8, k=3)
    table = metaadd.sweep_k(
        estimator, X.iloc[:300], y.iloc[:300], X.iloc[300:], y.iloc[300:],
        ks=[1, 2], modes=["exact", "one-step"], snapshots=1,
    )
    assert list(table["k"]) == [1, 2, None] and list(table["mode"]) == ["exact"] * 2 + ["one-step"]
    assert np.all(np.isfinite(table[["relative_error", "cosine", "test_error"]].to_numpy()))
    assert np.all(table["seconds_per_iteration"] > 0)
    with pytest.raises(ValueError, match="unknown mode"):
        metaadd.sweep_k(estimator, X, y, X, y, modes=["nope"])


def readme_python_blocks():
    """The ```python blocks of the README's Python section, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]


def test_readme_python_section_runs_as_written(tmp_path):
    import re
    import sys

    pytest.importorskip("matplotlib")
    (tmp_path / "examples" / "data").mkdir(parents=True)
    (tmp_path / "examples" / "data" / "diabetes.csv").write_bytes(
        (DATA / "diabetes.csv").read_bytes()
    )
    blocks = readme_python_blocks()
    assert len(blocks) == 2
    script = "import matplotlib\nmatplotlib.use('Agg')\n" + "\n".join(blocks)
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    lines = run.stdout.strip().splitlines()
    selected = eval(lines[0])  # noqa: S307 (our own printed list)
    r2 = float(lines[1])
    outliers, clean = (float(v) for v in lines[2].split())
    # The README's numbers: nine features, R² 0.315, weights 0.006 against 0.72.
    assert len(selected) == 9 and abs(r2 - 0.315) < 0.02, run.stdout
    assert outliers < 0.02 and clean > 0.5, run.stdout
    assert re.search(r"R² 0\.315", (ROOT / "README.md").read_text())
    assert (tmp_path / "diabetes.safetensors").exists() and (tmp_path / "shape_bmi.png").exists()


def test_diabetes_outlier_example_runs(tmp_path):
    import sys

    pytest.importorskip("matplotlib")
    out = tmp_path / "figures"
    run = subprocess.run(
        [sys.executable, str(ROOT / "python" / "examples" / "diabetes_outliers.py"), str(out)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    rows = [line for line in run.stdout.splitlines() if line.startswith("| ") and "±" in line]
    assert len(rows) == 3, run.stdout
    mse = [float(row.split("|")[2].split("±")[0]) for row in rows]
    # MAM near the clean reference, far below uniform weights on the corrupted targets.
    assert mse[0] < 0.3 * mse[1] and mse[0] < 1.2 * mse[2], run.stdout
    for name in ("shapes.png", "weights.png", "history.png"):
        assert (out / name).stat().st_size > 10_000
