"""Meta Additive Models: sparse additive models whose per-sample weights are learned on a
clean meta set, as scikit-learn estimators on the Rust library `metaadd`.

>>> from metaadd import MetaAdditiveRegressor
>>> model = MetaAdditiveRegressor(lambda_=0.01).fit(X, y)          # doctest: +SKIP
>>> model.predict(X_new), model.selected_features_                 # doctest: +SKIP

Preparation, fitting, scoring and the model file are the Rust library's: a model saved here
is the file `metaadd fit` writes, and the command line reads it.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _core

__all__ = ["MetaAdditiveRegressor", "MetaAdditiveClassifier", "load", "__version__"]
__version__ = _core.__version__


def _names(X, n_columns):
    """Feature names: a DataFrame's columns, else x0, x1, …"""
    if hasattr(X, "columns"):
        return [str(c) for c in X.columns]
    return [f"x{j}" for j in range(n_columns)]


def _labels(y):
    """Targets as text for the Rust side (numbers keep their exact value)."""
    y = np.asarray(y)
    if y.ndim != 1:
        y = y.reshape(-1)
    return [repr(float(v)) if np.issubdtype(type(v), np.floating) else str(v) for v in y.tolist()]


class _MetaAdditive(BaseEstimator):
    """Settings shared by both estimators; every one is a constructor argument with the
    library's default (`curve_shape` is the library's `weight_curve`: free, decreasing or
    increasing; `weight_curve(losses)` is the fitted curve)."""

    _task = "regression"

    def __init__(
        self,
        *,
        k=5,
        hypergradient="exact",
        lambda_=0.01,
        lambdas=12,
        basis="bspline",
        n_basis=6,
        orthonormal=True,
        weighting="meta",
        hidden=100,
        learning_rate=1e-3,
        weight_decay=1e-4,
        iterations=1000,
        inner_steps=1,
        eta=None,
        ridge=0.0,
        detach_weight_input=False,
        normalize_weights=None,
        meta_objective=None,
        curve_shape="free",
        class_aware=False,
        train_batch=None,
        meta_batch=None,
        dtype="f32",
        standardize_target=True,
        final_solve=True,
        solver_tolerance=1e-4,
        solver_epochs=20000,
        meta_fraction=0.2,
        seed=0,
    ):
        self.k = k
        self.hypergradient = hypergradient
        self.lambda_ = lambda_
        self.lambdas = lambdas
        self.basis = basis
        self.n_basis = n_basis
        self.orthonormal = orthonormal
        self.weighting = weighting
        self.hidden = hidden
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.iterations = iterations
        self.inner_steps = inner_steps
        self.eta = eta
        self.ridge = ridge
        self.detach_weight_input = detach_weight_input
        self.normalize_weights = normalize_weights
        self.meta_objective = meta_objective
        self.curve_shape = curve_shape
        self.class_aware = class_aware
        self.train_batch = train_batch
        self.meta_batch = meta_batch
        self.dtype = dtype
        self.standardize_target = standardize_target
        self.final_solve = final_solve
        self.solver_tolerance = solver_tolerance
        self.solver_epochs = solver_epochs
        self.meta_fraction = meta_fraction
        self.seed = seed

    def _settings(self):
        """The settings as the library reads them (its model-file keys and text); `None`
        leaves the library's task default."""

        def flag(value):
            return "true" if value else "false"

        settings = {
            "k": str(int(self.k)),
            "hypergradient": str(self.hypergradient),
            "lambda": "auto" if self.lambda_ == "auto" else repr(float(self.lambda_)),
            "basis": f"{self.basis}(m={int(self.n_basis)},orthonormal={flag(self.orthonormal)})",
            "weighting": str(self.weighting),
            "hidden": str(int(self.hidden)),
            "learning_rate": repr(float(self.learning_rate)),
            "weight_decay": repr(float(self.weight_decay)),
            "iterations": str(int(self.iterations)),
            "inner_steps": str(int(self.inner_steps)),
            "ridge": repr(float(self.ridge)),
            "detach_weight_input": flag(self.detach_weight_input),
            "weight_curve": str(self.curve_shape),
            "class_aware": flag(self.class_aware),
            "dtype": str(self.dtype),
            "standardize_target": flag(self.standardize_target),
            "final_solve": flag(self.final_solve),
            "solver_tolerance": repr(float(self.solver_tolerance)),
            "solver_epochs": str(int(self.solver_epochs)),
            "seed": str(int(self.seed)),
        }
        for key, value in [
            ("eta", self.eta),
            ("normalize_weights", self.normalize_weights),
            ("meta_objective", self.meta_objective),
            ("train_batch", self.train_batch),
            ("meta_batch", self.meta_batch),
        ]:
            if value is not None:
                settings[key] = flag(value) if isinstance(value, bool) else str(value)
        return settings

    def __sklearn_is_fitted__(self):
        return hasattr(self, "model_file_bytes_")

    def _validate_fit(self, X, y, classifier):
        names_source = X
        self._target = str(getattr(y, "name", None) or "y")
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=not classifier)
        if classifier:
            check_classification_targets(y)
        if X.shape[0] < 2:
            raise ValueError(
                f"n_samples = {X.shape[0]}: a fit needs training rows and meta rows"
            )
        return _names(names_source, X.shape[1]), np.ascontiguousarray(X), y

    def _fit(self, names, x, y, X_meta, y_meta, task):
        labels = _labels(y)
        meta = (None, None)
        fraction = None
        if X_meta is not None or y_meta is not None:
            if X_meta is None or y_meta is None:
                raise ValueError("give both X_meta and y_meta, or neither")
            xm = validate_data(self, X_meta, reset=False, dtype=np.float64)
            meta = (np.ascontiguousarray(xm), _labels(np.asarray(y_meta)))
        else:
            fraction = float(self.meta_fraction)
        self.model_file_bytes_ = bytes(
            _core.fit(
                names,
                x,
                labels,
                self._target,
                task,
                self._settings(),
                meta[0],
                meta[1],
                fraction,
                int(self.lambdas),
            )
        )
        self._names = names
        self.selected_features_ = _core.selected_features(self.model_file_bytes_)
        return self

    def _x(self, X):
        check_is_fitted(self)
        x = validate_data(self, X, reset=False, dtype=np.float64)
        return self._names, np.ascontiguousarray(x)

    def weight_curve(self, losses):
        """The learned weight at each training loss in `losses`."""
        check_is_fitted(self)
        return _core.weight_curve(self.model_file_bytes_, [float(v) for v in losses])

    def weights_table(self, X, y, down_threshold=0.5):
        """Each labelled row's target, prediction, training loss, learned weight and weight
        rank (1 = the smallest), with `down_weighted` true below `down_threshold` times the mean
        weight: the table of `metaadd weights`. A pandas DataFrame when pandas is installed,
        else a dict of columns."""
        names, x = self._x(X)
        columns = ("row", "target", "prediction", "loss", "weight", "rank", "down_weighted")
        values = _core.weights_table(
            self.model_file_bytes_, names, x, _labels(np.asarray(y)), float(down_threshold)
        )
        table = {name: np.asarray(v) for name, v in zip(columns, values)}
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover
            return table
        return pd.DataFrame(table)

    def sample_weights(self, X, y):
        """The learned weight of each labelled row (the `weight` column of `weights_table`)."""
        return np.asarray(self.weights_table(X, y)["weight"], dtype=np.float64)

    def shape_function(self, feature, grid):
        """The shape function f_j of `feature` (a name) at the raw values `grid`: one column per
        output (the target's units for regression, logits for classification)."""
        check_is_fitted(self)
        return _core.shape_function(
            self.model_file_bytes_, str(feature), [float(v) for v in grid]
        )

    def save(self, path):
        """Writes the model file (the file `metaadd fit` writes) as the command line does:
        whole or not at all, a link kept with its target replaced, a read-only file refused."""
        check_is_fitted(self)
        _core.write_model(self.model_file_bytes_, str(path))


class MetaAdditiveRegressor(RegressorMixin, _MetaAdditive):
    """A sparse additive regression model with meta-learned sample weights."""

    def fit(self, X, y, X_meta=None, y_meta=None):
        names, x, y = self._validate_fit(X, y, classifier=False)
        return self._fit(names, x, y, X_meta, y_meta, "regression")

    def predict(self, X):
        names, x = self._x(X)
        return _core.predict(self.model_file_bytes_, names, x)


class MetaAdditiveClassifier(ClassifierMixin, _MetaAdditive):
    """A sparse additive classifier (binary or multi-class) with meta-learned sample weights."""

    def fit(self, X, y, X_meta=None, y_meta=None):
        names, x, y = self._validate_fit(X, y, classifier=True)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"y has 1 class ({classes[0]!r}): a classifier needs two or more")
        task = "binary" if len(classes) == 2 else "multiclass"
        self._fit(names, x, y, X_meta, y_meta, task)
        order = _core.classes(self.model_file_bytes_)
        by_text = {str(c) if not isinstance(c, float) else repr(c): c for c in classes.tolist()}
        self.classes_ = np.asarray([by_text.get(t, t) for t in order], dtype=classes.dtype)
        return self

    def predict_proba(self, X):
        names, x = self._x(X)
        return _core.predict_proba(self.model_file_bytes_, names, x)

    def predict(self, X):
        names, x = self._x(X)
        index = _core.predict(self.model_file_bytes_, names, x).astype(int)
        return self.classes_[index]


def load(path):
    """A fitted estimator from a model file written by `metaadd fit` or `save`."""
    with open(path, "rb") as f:
        data = f.read()
    classes = _core.classes(data)
    model = MetaAdditiveRegressor() if classes is None else MetaAdditiveClassifier()
    model.model_file_bytes_ = data
    names = _core.feature_names(data) if hasattr(_core, "feature_names") else None
    if names is None:
        raise ValueError(f"{path}: cannot read the feature names")
    model._names = names
    model.n_features_in_ = len(names)
    model.selected_features_ = _core.selected_features(data)
    if classes is not None:
        model.classes_ = np.asarray(classes, dtype=object)
    return model
