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
