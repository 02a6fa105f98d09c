"""Meta Additive Models: sparse additive models whose per-sample weights are learned on a
clean meta set, as scikit-learn estimators on the Rust library `metaadd`.

>>> from metaadd import MetaAdditiveRegressor
>>> model = MetaAdditiveRegressor(lambda_=0.01).fit(X, y)          # doctest: +SKIP
>>> model.predict(X_new), model.selected_features_                 # doctest: +SKIP

Preparation, fitting, scoring and the model file are the Rust library's: a model saved here
is the file `metaadd fit` writes, and the command line reads it.
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _core

__all__ = [
    "MetaAdditiveRegressor",
    "MetaAdditiveClassifier",
    "load",
    "check_gradient",
    "sweep_k",
    "__version__",
]
__version__ = _core.__version__


def _names(X, n_columns):
    """Feature names: a DataFrame's columns, else x0, x1, …"""
    if hasattr(X, "columns"):
        return [str(c) for c in X.columns]
    return [f"x{j}" for j in range(n_columns)]


def _frame(columns):
    """A pandas DataFrame of `columns` (a dict), or the dict of numpy arrays without pandas."""
    columns = {name: np.asarray(values) for name, values in columns.items()}
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        return columns
    return pd.DataFrame(columns)


class _Progress:
    """A one-line progress display on stderr, redrawn at most ten times a second (the Rust
    side calls it that often): outer iterations of a fit, steps of a λ path or sweep."""

    def __init__(self, what):
        self.what = what
        self.step = ""
        self.drawn = False
        self.start = time.monotonic()

    def __call__(self, kind, done, total, meta_loss):
        if kind == "step":
            self.step = f"step {done}/{total}  "
            line = self.step
        elif kind == "iteration":
            width = 24
            filled = int(width * done / max(total, 1))
            bar = "#" * filled + "-" * (width - filled)
            line = f"{self.step}[{bar}] {done}/{total}  meta loss {meta_loss:.4g}"
        else:
            line = f"{self.step}solving the inner problem: {done} epochs"
        elapsed = time.monotonic() - self.start
        sys.stderr.write(f"\r{self.what}: {line}  {elapsed:.1f} s\x1b[K")
        sys.stderr.flush()
        self.drawn = True

    def close(self, finished):
        if self.drawn:
            elapsed = time.monotonic() - self.start
            outcome = "done in" if finished else "stopped after"
            sys.stderr.write(f"\r{self.what}: {outcome} {elapsed:.1f} s\x1b[K\n")
            sys.stderr.flush()


def _watched(verbose, what, call):
    """Runs `call(progress)` with a progress display when `verbose`."""
    progress = _Progress(what) if verbose else None
    finished = False
    try:
        result = call(progress)
        finished = True
        return result
    finally:
        if progress is not None:
            progress.close(finished)


def _labels(y):
    """Targets as text for the Rust side (numbers keep their exact value)."""
    y = np.asarray(y)
    if y.ndim != 1:
        y = y.reshape(-1)
    return [repr(float(v)) if np.issubdtype(type(v), np.floating) else str(v) for v in y.tolist()]


class _MetaAdditive(BaseEstimator):
    """Settings shared by both estimators; every one is a constructor argument with the
    library's default (`curve_shape` is the library's `weight_curve`: free, decreasing or
    increasing; `weight_curve(losses)` is the fitted curve).

    `device` is "cpu", "cuda" or "cuda:N" (CUDA needs a build with the `cuda` feature).
    `threads` is the number of threads of this process's computations, set by its first one
    and fixed from then on (the thread pool cannot be resized): None takes the process's (at
    first, the idle cores or RAYON_NUM_THREADS). `verbose=True` draws a progress line on
    stderr. A fit runs without the GIL; Ctrl-C stops it within a tenth of a second with
    KeyboardInterrupt."""

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
        device="cpu",
        threads=None,
        verbose=False,
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
        self.device = device
        self.threads = threads
        self.verbose = verbose

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

    def _inputs(self, names, x, y, X_meta, y_meta, task, X_test=None, y_test=None):
        """What the Rust side reads: the rows as float64 arrays, targets as text, the
        settings, the meta set (or the fraction held out for it), a test set."""

        def rows(X, y, what):
            if X is None and y is None:
                return None, None
            if X is None or y is None:
                raise ValueError(f"give both X_{what} and y_{what}, or neither")
            xv = validate_data(self, X, reset=False, dtype=np.float64)
            return np.ascontiguousarray(xv), _labels(np.asarray(y))

        x_meta, y_meta = rows(X_meta, y_meta, "meta")
        x_test, y_test = rows(X_test, y_test, "test")
        return {
            "names": names,
            "x": x,
            "y": _labels(y),
            "target": self._target,
            "task": task,
            "settings": self._settings(),
            "x_meta": x_meta,
            "y_meta": y_meta,
            "meta_fraction": None if x_meta is not None else float(self.meta_fraction),
            "x_test": x_test,
            "y_test": y_test,
            "device": str(self.device),
            "threads": None if self.threads is None else int(self.threads),
        }

    def _fit(self, names, x, y, X_meta, y_meta, task):
        inputs = self._inputs(names, x, y, X_meta, y_meta, task)
        fitted = _watched(
            self.verbose,
            f"{type(self).__name__}.fit",
            lambda progress: _core.fit(inputs, int(self.lambdas), progress),
        )
        for message in fitted["warnings"]:
            warnings.warn(message, UserWarning, stacklevel=3)
        self.model_file_bytes_ = bytes(fitted["model"])
        self._names = names
        self.selected_features_ = _core.selected_features(self.model_file_bytes_)
        history = dict(fitted["history"])
        history["iteration"] = np.asarray(history["iteration"], dtype=np.int64)
        history["active_groups"] = np.asarray(history["active_groups"], dtype=np.int64)
        self.history_ = _frame(history)
        if fitted["path"] is not None:
            path = fitted["path"]
            self.lambda_path_ = _frame(
                {
                    "lambda": path["lambda"],
                    "meta_loss": path["meta_loss"],
                    "score": path["score"],
                    "chosen": np.arange(len(path["lambda"])) == path["best"],
                }
            )
        self.weighting_candidates_ = dict(fitted["candidates"])
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
    """A sparse additive regression model with meta-learned sample weights.

    Fitted attributes: `model_file_bytes_` (the model file), `selected_features_` (largest
    group norm first), `history_` (one row per outer iteration: meta loss, training loss,
    hypergradient norm, active groups, mean weight; with `lambda_="auto"`, of the final fit
    on the chosen support), `lambda_path_` (with `lambda_="auto"`: each λ, its meta loss and
    score, the chosen one), `weighting_candidates_` (with `weighting="huber(auto)"` or
    `"tilted(auto)"`: each candidate's meta objective), `n_features_in_`,
    `feature_names_in_` (from a DataFrame).
    """

    def _task_of(self, y):
        return "regression"

    def fit(self, X, y, X_meta=None, y_meta=None):
        names, x, y = self._validate_fit(X, y, classifier=False)
        return self._fit(names, x, y, X_meta, y_meta, "regression")

    def predict(self, X):
        names, x = self._x(X)
        return _core.predict(self.model_file_bytes_, names, x)


class MetaAdditiveClassifier(ClassifierMixin, _MetaAdditive):
    """A sparse additive classifier (binary or multi-class) with meta-learned sample weights.

    Fitted attributes as `MetaAdditiveRegressor`'s, and `classes_`."""

    def _task_of(self, y):
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"y has 1 class ({classes[0]!r}): a classifier needs two or more")
        return "binary" if len(classes) == 2 else "multiclass"

    def fit(self, X, y, X_meta=None, y_meta=None):
        names, x, y = self._validate_fit(X, y, classifier=True)
        classes = np.unique(y)
        task = self._task_of(y)
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


def _research_inputs(estimator, X, y, X_meta, y_meta, X_test=None, y_test=None):
    """The Rust side's inputs for `estimator`'s settings (a copy is validated, the
    estimator itself is left as it was) and the rows."""
    if not isinstance(estimator, _MetaAdditive):
        raise TypeError(
            "estimator: expected a MetaAdditiveRegressor or MetaAdditiveClassifier, got "
            f"{type(estimator).__name__}"
        )
    copy = clone(estimator)
    classifier = isinstance(copy, MetaAdditiveClassifier)
    names, x, y = copy._validate_fit(X, y, classifier=classifier)
    task = copy._task_of(y)
    return copy, copy._inputs(names, x, y, X_meta, y_meta, task, X_test, y_test)


def check_gradient(estimator, X, y, X_meta=None, y_meta=None, *, step=1e-5, entries=None):
    """The hypergradient of `estimator`'s mode (`hypergradient`, `k`) against central finite
    differences of the function it differentiates, at the point a fit of `estimator` on these
    rows starts from, in float64 (the command line's `metaadd check-grad`).

    One row per weight-net tensor and a last row `all` over every entry: entries checked and
    in all, the norms of the analytic and finite-difference gradients, their relative error
    and largest absolute difference; `step` is the central-difference step, `entries` the
    entries drawn per tensor (all when None). A DataFrame, or a dict of numpy arrays without
    pandas. `attrs["objective"]` (a DataFrame's) holds the objective's value.

    >>> table = metaadd.check_gradient(MetaAdditiveRegressor(k=5), X, y)  # doctest: +SKIP
    >>> table.set_index("tensor").loc["all", "relative_error"] < 1e-6      # doctest: +SKIP
    """
    copy, inputs = _research_inputs(estimator, X, y, X_meta, y_meta)
    rows, objective, overall = _watched(
        copy.verbose,
        "check_gradient",
        lambda progress: _core.check_gradient(
            inputs, float(step), None if entries is None else int(entries), progress
        ),
    )
    columns = {
        "tensor": [r[0] for r in rows] + ["all"],
        "checked": [r[1] for r in rows] + [sum(r[1] for r in rows)],
        "total": [r[2] for r in rows] + [sum(r[2] for r in rows)],
        "analytic_norm": [r[3] for r in rows] + [float(np.hypot.reduce([r[3] for r in rows]))],
        "difference_norm": [r[4] for r in rows]
        + [float(np.hypot.reduce([r[4] for r in rows]))],
        "relative_error": [r[5] for r in rows] + [overall],
        "max_abs_error": [r[6] for r in rows] + [max(r[6] for r in rows)],
    }
    table = _frame(columns)
    if hasattr(table, "attrs"):
        table.attrs["objective"] = objective
    return table


def sweep_k(
    estimator,
    X,
    y,
    X_test,
    y_test,
    X_meta=None,
    y_meta=None,
    *,
    ks=(1, 2, 5, 10, 20),
    modes=("exact",),
    snapshots=3,
):
    """The unroll-depth study (the command line's `metaadd sweep-k`) with `estimator`'s
    settings: for each K in `ks` and each mode in `modes` (exact, exact-recompute,
    truncated(t), one-step, implicit; those without a depth once), the hypergradient's
    relative error and cosine against the implicit one at `snapshots` states of a reference
    run at the estimator's `k`, then a training run's meta loss, test error (mean squared
    error, or error rate) and seconds per outer iteration. A DataFrame (K is None for modes
    without a depth), or a dict of numpy arrays without pandas.

    >>> metaadd.sweep_k(MetaAdditiveRegressor(iterations=200), X, y, X_test, y_test,
    ...                 ks=[1, 5, 20])                                   # doctest: +SKIP
    """
    copy, inputs = _research_inputs(estimator, X, y, X_meta, y_meta, X_test, y_test)
    rows = _watched(
        copy.verbose,
        "sweep_k",
        lambda progress: _core.sweep_k(
            inputs, [int(k) for k in ks], [str(m) for m in modes], int(snapshots), progress
        ),
    )
    names = (
        "k",
        "mode",
        "relative_error",
        "cosine",
        "meta_loss",
        "test_error",
        "seconds_per_iteration",
    )
    columns = {name: [r[i] for r in rows] for i, name in enumerate(names)}
    columns["k"] = np.asarray(columns["k"], dtype=object)
    return _frame(columns)
