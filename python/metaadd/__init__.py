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
    except ImportError:
        return columns
    return pd.DataFrame(columns)


class _Progress:
    """A one-line progress display on stderr, redrawn at most ten times a second (the Rust
    side calls it that often): outer iterations of a fit, steps of a λ path or sweep."""

    def __init__(self, what):
        self.what = what
        self.step = ""
        self.start = time.monotonic()
        # A terminal or a notebook redraws the line in place; a log gets a plain line every
        # ten seconds instead.
        self.live = sys.stderr.isatty() or "ipykernel" in sys.modules
        self.logged = None

    def __call__(self, kind, done, total, meta_loss):
        if kind == "step":
            self.step = f"step {done}/{total}  "
            line = self.step
        elif kind == "iteration":
            width = 24
            filled = min(width, int(width * done / max(total, 1)))
            bar = "#" * filled + "-" * (width - filled)
            line = f"{self.step}[{bar}] {done}/{total}  meta loss {meta_loss:.4g}"
        else:
            line = f"{self.step}solving the inner problem: {done} epochs"
        elapsed = time.monotonic() - self.start
        if self.live:
            sys.stderr.write(f"\r{self.what}: {line}  {elapsed:.1f} s\x1b[K")
        elif self.logged is None or elapsed - self.logged >= 10.0:
            self.logged = elapsed
            sys.stderr.write(f"{self.what}: {line}  {elapsed:.1f} s\n")
        sys.stderr.flush()

    def close(self, finished):
        elapsed = time.monotonic() - self.start
        outcome = "done in" if finished else "stopped after"
        if self.live:
            sys.stderr.write(f"\r{self.what}: {outcome} {elapsed:.1f} s\x1b[K\n")
        else:
            sys.stderr.write(f"{self.what}: {outcome} {elapsed:.1f} s\n")
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


def _numeric_columns(X):
    """Refuses a DataFrame column that is not numbers, by name (the library reads numbers;
    encode categories first, e.g. with pandas.get_dummies)."""
    dtypes = getattr(X, "dtypes", None)
    if dtypes is None or not hasattr(dtypes, "items"):
        return
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    for name, dtype in dtypes.items():
        if not (is_numeric_dtype(dtype) or is_bool_dtype(dtype)):
            raise ValueError(
                f"column `{name}` holds {dtype} values, not numbers: encode it first "
                "(e.g. pandas.get_dummies)"
            )


def _labels(y):
    """Targets as text for the Rust side (numbers keep their exact value)."""
    y = np.asarray(y)
    if y.ndim != 1:
        y = y.reshape(-1)
    return [repr(float(v)) if np.issubdtype(type(v), np.floating) else str(v) for v in y.tolist()]


_PARAMETERS = """
    Parameters
    ----------
    k : int, default 5
        Unroll depth: inner proximal gradient steps differentiated through per hypergradient.
    hypergradient : str, default "exact"
        Hypergradient mode: "exact", "exact-recompute", "truncated(t)", "one-step" or
        "implicit".
    lambda_ : float or "auto", default 0.01
        Group-lasso strength (on the standardised target); "auto" chooses it on a path of
        `lambdas` values by the meta loss, then refits on the chosen support.
    lambdas : int, default 12
        Values on the λ path with `lambda_="auto"`.
    min_ratio : float, default 0.01
        The path's smallest λ as a fraction of λ_max.
    path_iterations : int, default 100
        Outer iterations at each λ of the path (the chosen support's final fit then takes
        `iterations`).
    select_by : str, default "loss"
        What chooses λ on the path: the meta loss, or (classification) the meta error rate
        ("error").
    basis : str, default "bspline"
        Spline basis per feature: "bspline" (cubic B-splines, knots at data quantiles).
    n_basis : int, default 6
        Basis functions per feature.
    orthonormal : bool, default True
        Orthonormalise each feature's columns, so that the group norm is ‖f_j‖.
    weighting : str, default "meta"
        "meta" (learned weights), "uniform", "huber(δ)", "tilted(t)", "huber(auto)",
        "tilted(auto)" (fixed rules, the auto ones tuned on the meta set).
    hidden : int, default 100
        Units of the weight net's hidden layer.
    learning_rate, weight_decay : float, default 1e-3, 1e-4
        AdamW on the weight net's parameters.
    iterations : int, default 1000
        Outer iterations (hypergradient step on the weight net, then real inner steps).
    inner_steps : int, default 1
        Real inner steps per outer iteration.
    eta : float or None
        Inner step size; None: 1/L by power iteration.
    ridge : float, default 0.0
        Ridge term of the inner problem.
    detach_weight_input : bool, default False
        Treat the weight net's input (the losses) as constants in the hypergradient.
    normalize_weights : bool or None
        Divide the weights by their mean in every step; None: true for classification and
        monotone curves.
    meta_objective : str or None
        What the meta loss averages: "mean" or "balanced" (per class); None: the task's.
    curve_shape : str, default "free"
        Shape of the learned weight curve: "free", "decreasing" or "increasing".
    class_aware : bool, default False
        Give the weight net the class as well as the loss (classification).
    train_batch, meta_batch : int or None
        Mini-batch sizes; None: all rows.
    dtype : str, default "f32"
        "f32" or "f64" (gradient checks run in f64 whatever this says).
    standardize_target : bool, default True
        Scale a regression target by the training targets' median and MAD.
    final_solve : bool, default True
        Solve the weighted inner problem at the end (KKT violation below
        `solver_tolerance`·λ, at most `solver_epochs` epochs): the selected features are the
        solution's support.
    solver_tolerance, solver_epochs : float, int, default 1e-4, 20000
    design : str, default "auto"
        The form of the design the unrolled steps multiply by: "auto" (the sparse B-spline
        form where it was measured faster: m ≥ 9 columns per feature, or m ≥ 6 on a design
        above 32 MiB; CPU only; its steps fused from 20 000 rows), "dense", "sparse" or
        "fused" (the sparse form, each step one pass over the rows forward and one backward).
        The model is the same to rounding.
    meta_fraction : float, default 0.2
        Share of the rows held out as the meta set when `fit` gets none.
    seed : int, default 0
        Seed of every random step: the same seed gives the same model file, byte for byte.
    device : str, default "cpu"
        "cpu", "cuda" or "cuda:N" (a package built with `--features cuda`).
    threads : int or None
        Threads of this process's computations, set by its first one and fixed from then on
        (the thread pool cannot be resized); None: the process's (at first, the idle cores or
        RAYON_NUM_THREADS).
    verbose : bool, default False
        A progress line on stderr (redrawn in place on a terminal or in a notebook).

    Attributes
    ----------
    model_file_bytes_ : bytes
        The model file (`save` writes it; `metaadd fit` writes the same bytes).
    selected_features_ : list of str
        The solution's support, largest group norm first.
    history_ : DataFrame (dict of arrays without pandas)
        One row per outer iteration: meta_loss, train_loss, hypergrad_norm, active_groups
        (of the iterate; the final solve may drop more), mean_weight (1 when the weights are
        normalised). With `lambda_="auto"`, of the final fit on the chosen support.
    lambda_path_ : DataFrame
        With `lambda_="auto"`: each λ, its meta loss and score, and the chosen one.
    weighting_candidates_ : dict
        With "huber(auto)" or "tilted(auto)": each candidate's meta objective.
    n_features_in_, feature_names_in_ : int, array
        As scikit-learn's (names from a DataFrame's columns).

    A fit runs without the GIL; Ctrl-C stops it within a second with KeyboardInterrupt. The
    library's errors arrive as ValueError (OSError for files) and its warnings (a small meta
    set) as UserWarning.
"""


class _MetaAdditive(BaseEstimator):
    """Settings shared by both estimators (see `_PARAMETERS`)."""

    def __init__(
        self,
        *,
        k=5,
        hypergradient="exact",
        lambda_=0.01,
        lambdas=12,
        min_ratio=0.01,
        path_iterations=100,
        select_by="loss",
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
        design="auto",
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
        self.min_ratio = min_ratio
        self.path_iterations = path_iterations
        self.select_by = select_by
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
        self.design = design
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
            "design": str(self.design),
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
        _numeric_columns(X)
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

    def _path(self):
        """The λ path's settings with `lambda_="auto"` (`metaadd fit --lambda auto`'s)."""
        return {
            "lambdas": int(self.lambdas),
            "min_ratio": float(self.min_ratio),
            "path_iterations": int(self.path_iterations),
            "select_by": str(self.select_by),
        }

    def _fit(self, names, x, y, X_meta, y_meta, task):
        inputs = self._inputs(names, x, y, X_meta, y_meta, task)
        fitted = _watched(
            self.verbose,
            f"{type(self).__name__}.fit",
            lambda progress: _core.fit(inputs, self._path(), progress),
        )
        for message in fitted["warnings"]:
            warnings.warn(message, UserWarning, stacklevel=3)
        # An earlier fit's λ path does not describe this one.
        self.__dict__.pop("lambda_path_", None)
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
        _numeric_columns(X)
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
        except ImportError:
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
    """A sparse additive regression model, f(x) = b + Σ_j f_j(x_j), whose per-row loss
    weights are learned on a clean meta set (`fit(X, y, X_meta, y_meta)`, or a
    `meta_fraction` of the rows held out).
"""

    __doc__ = (__doc__ or "") + _PARAMETERS

    def _task_of(self, y):
        return "regression"

    def fit(self, X, y, X_meta=None, y_meta=None):
        names, x, y = self._validate_fit(X, y, classifier=False)
        return self._fit(names, x, y, X_meta, y_meta, "regression")

    def predict(self, X):
        names, x = self._x(X)
        return _core.predict(self.model_file_bytes_, names, x)


class MetaAdditiveClassifier(ClassifierMixin, _MetaAdditive):
    """A sparse additive classifier (binary or multi-class, logits additive in the features)
    whose per-row loss weights are learned on a clean meta set; `classes_` holds the labels.
"""

    __doc__ = (__doc__ or "") + _PARAMETERS

    def _task_of(self, y):
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(
                f"y has 1 class ({classes[0].item()!r}): a classifier needs two or more"
            )
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
    try:
        classes = _core.classes(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
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
