//! `metaadd._core`: the Rust library behind the Python package. It only converts between
//! numpy/Python values and the library's types; preparation, fitting, scoring and the model
//! file are the library's (the same code path as the command line, so the same data, settings
//! and seed give the same model file bytes).

use metaadd::candle_core::{DType, Device};
use metaadd::data::table::Column;
use metaadd::hypergrad::{check_gradient as check_gradient_at, CheckOptions};
use metaadd::params::SETTINGS;
use metaadd::path::{PathParams, SelectBy};
use metaadd::prepare::{Preparation, Prepared, TaskKind};
use metaadd::progress::{watch, Progress};
use metaadd::sweep::SweepParams;
use metaadd::{FitParams, HypergradMode, IterationMetrics, MetaAdditiveModel, Table, Task};
use numpy::{PyArray1, PyArray2, PyReadonlyArray2};
use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

// The command line's allocator: with the system one a fit took three times as long.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A library error as the Python exception a user expects, with the same message.
/// A parameter named as the library names it, in the estimators' spelling.
fn py_err(e: metaadd::Error) -> PyErr {
    match e {
        metaadd::Error::Io { .. } => PyOSError::new_err(e.to_string()),
        metaadd::Error::InvalidParameter { name, reason } => {
            let name = match name {
                "lambda" => "lambda_",
                "hypergradient mode" => "hypergradient",
                "meta_frac" => "meta_fraction",
                "weight_curve" => "curve_shape",
                other => other,
            };
            PyValueError::new_err(format!("invalid parameter `{name}`: {reason}"))
        }
        other => PyValueError::new_err(other.to_string()),
    }
}

/// A table of feature columns `names` from `x` (rows × columns), with the targets (as text:
/// numbers or labels) when given.
fn table(
    source: &str,
    names: &[String],
    x: &PyReadonlyArray2<'_, f64>,
    y: Option<(&str, &[String])>,
) -> PyResult<Table> {
    let x = x.as_array();
    if x.ncols() != names.len() {
        return Err(PyValueError::new_err(format!(
            "X has {} columns but {} feature names were given",
            x.ncols(),
            names.len()
        )));
    }
    let mut columns: Vec<(String, Column)> = names
        .iter()
        .enumerate()
        .map(|(j, name)| (name.clone(), Column::Numbers(x.column(j).to_vec())))
        .collect();
    if let Some((target, y)) = y {
        if names.iter().any(|n| n == target) {
            return Err(PyValueError::new_err(format!(
                "the target name `{target}` is also a feature name"
            )));
        }
        if y.len() != x.nrows() {
            return Err(PyValueError::new_err(format!(
                "X has {} rows but y has {}",
                x.nrows(),
                y.len()
            )));
        }
        columns.push((target.to_string(), Column::from_text(y)));
    }
    Table::from_columns(source, columns).map_err(py_err)
}

/// Fit settings from `settings` (keys of the model file's settings table, values as text), on
/// the library's defaults for `task`.
fn fit_params(task: Task, settings: &HashMap<String, String>) -> PyResult<FitParams> {
    let mut params = FitParams::new(task);
    for (key, value) in settings {
        let setting = SETTINGS.iter().find(|s| s.key == key).ok_or_else(|| {
            PyValueError::new_err(format!(
                "unknown setting `{key}`; the settings are {}",
                SETTINGS
                    .iter()
                    .map(|s| s.key)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        (setting.set)(&mut params, value).map_err(py_err)?;
    }
    Ok(params)
}

/// What a fit, a gradient check or a sweep reads, as the Python side passes it (a dict):
/// feature names, training rows and targets (as text: numbers or labels), the target's name,
/// the task, the settings (the model file's keys, values as text), the meta set or the
/// fraction held out for it, a test set, the device and the threads.
#[derive(FromPyObject)]
struct Inputs<'py> {
    #[pyo3(item)]
    names: Vec<String>,
    #[pyo3(item)]
    x: PyReadonlyArray2<'py, f64>,
    #[pyo3(item)]
    y: Vec<String>,
    #[pyo3(item)]
    target: String,
    #[pyo3(item)]
    task: String,
    #[pyo3(item)]
    settings: HashMap<String, String>,
    #[pyo3(item)]
    x_meta: Option<PyReadonlyArray2<'py, f64>>,
    #[pyo3(item)]
    y_meta: Option<Vec<String>>,
    #[pyo3(item)]
    meta_fraction: Option<f64>,
    #[pyo3(item)]
    x_test: Option<PyReadonlyArray2<'py, f64>>,
    #[pyo3(item)]
    y_test: Option<Vec<String>>,
    #[pyo3(item)]
    device: String,
    #[pyo3(item)]
    threads: Option<usize>,
}

/// Prepared data and the fit settings, with whether λ is `auto` (chosen on a path).
struct Setup {
    prepared: Prepared,
    params: FitParams,
    auto_lambda: bool,
}

impl Inputs<'_> {
    /// The labelled table of `x`/`y` (named `source` in messages), if both are given.
    fn labelled(
        &self,
        source: &str,
        x: &Option<PyReadonlyArray2<'_, f64>>,
        y: &Option<Vec<String>>,
        what: &str,
    ) -> PyResult<Option<Table>> {
        match (x, y) {
            (Some(x), Some(y)) => Ok(Some(table(
                source,
                &self.names,
                x,
                Some((&self.target, y)),
            )?)),
            (None, None) => Ok(None),
            _ => Err(PyValueError::new_err(format!(
                "give both {what}, or neither"
            ))),
        }
    }

    /// The library's preparation of the rows (the command line's), the settings on the task's
    /// defaults, the device opened and the threads set.
    fn setup(&self) -> PyResult<Setup> {
        let kind = match self.task.as_str() {
            "regression" => TaskKind::Regression,
            "binary" => TaskKind::Binary,
            "multiclass" => TaskKind::Multiclass,
            other => {
                return Err(PyValueError::new_err(format!(
                    "task `{other}`: expected regression, binary or multiclass"
                )))
            }
        };
        let mut settings = self.settings.clone();
        let auto_lambda = settings.get("lambda").is_some_and(|v| v == "auto");
        if auto_lambda {
            settings.remove("lambda");
        }
        let train = table("X", &self.names, &self.x, Some((&self.target, &self.y)))?;
        let meta = self.labelled("X_meta", &self.x_meta, &self.y_meta, "X_meta and y_meta")?;
        let test = self.labelled("X_test", &self.x_test, &self.y_test, "X_test and y_test")?;
        let mut base = fit_params(Task::Regression, &settings)?;
        let cpu = self.device.trim().eq_ignore_ascii_case("cpu");
        if !cpu && !cfg!(feature = "cuda") && self.device.trim().to_lowercase().starts_with("cuda")
        {
            return Err(PyValueError::new_err(format!(
                "device=`{}` needs the package built with CUDA support: `maturin develop \
                 --release --features cuda` in python/ (with the CUDA toolkit's nvcc on the \
                 PATH); this build computes on the CPU only",
                self.device
            )));
        }
        base.device = metaadd::runtime::device(&self.device).map_err(py_err)?;
        // The threads are set by the first computation, once its inputs are known good.
        start(self.threads)?;
        let mut preparation =
            Preparation::new(self.target.clone(), kind).features(self.names.clone());
        if let Some(fraction) = self.meta_fraction {
            preparation = preparation.meta_fraction(fraction);
        }
        let prepared = preparation
            .prepare(&train, meta.as_ref(), test.as_ref(), &base)
            .map_err(py_err)?;
        Ok(Setup {
            params: prepared.params(&base),
            prepared,
            auto_lambda,
        })
    }
}

impl Setup {
    /// This setup, refused when λ is `auto`: `what` (a gradient check, a sweep) needs a number.
    fn with_fixed_lambda(self, what: &str) -> PyResult<Self> {
        if self.auto_lambda {
            return Err(PyValueError::new_err(format!(
                "lambda_='auto' chooses λ on a path; {what} needs a number"
            )));
        }
        Ok(self)
    }
}

/// The threads this process computes with, set by its first computation: `requested` (else
/// the library's default, the idle cores) then, and refused later when it differs (rayon's
/// and candle's pools are started once per process).
fn start(requested: Option<usize>) -> PyResult<usize> {
    static THREADS: OnceLock<usize> = OnceLock::new();
    if requested == Some(0) {
        return Err(PyValueError::new_err("threads=0: must be at least 1"));
    }
    let threads = *THREADS.get_or_init(|| {
        let wanted = requested.unwrap_or_else(metaadd::runtime::default_threads);
        // A pool another extension already started keeps its size.
        match metaadd::runtime::set_threads(wanted) {
            Ok(()) => wanted,
            Err(_) => metaadd::runtime::threads(),
        }
    });
    match requested {
        Some(r) if r != threads => Err(PyValueError::new_err(format!(
            "threads={r}: this process computes with {threads} threads, set by its first \
             computation, and its thread pool cannot be resized; give every estimator the same \
             threads (None uses the process's) or start a new Python process"
        ))),
        _ => Ok(threads),
    }
}

/// Runs `f` without the GIL, watched: every tenth of a second it takes the GIL back to run
/// Python's signal handlers (Ctrl-C raises KeyboardInterrupt, which stops `f`) and, when
/// given, calls `progress(kind, done, total, meta_loss)` with kind `iteration`, `step` or
/// `solver`. Python's exception (KeyboardInterrupt, or the callback's) is what is raised.
fn watched<T: Send>(
    py: Python<'_>,
    progress: Option<PyObject>,
    f: impl FnOnce() -> metaadd::Result<T> + Send,
) -> PyResult<T> {
    let raised: Arc<Mutex<Option<PyErr>>> = Arc::new(Mutex::new(None));
    let slot = raised.clone();
    let mut last: Option<Instant> = None;
    let watcher = move |p: Progress| {
        // The first report, each step, and then a tenth of a second apart.
        let step = matches!(p, Progress::Step { .. });
        if !step && last.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) {
            return ControlFlow::Continue(());
        }
        last = Some(Instant::now());
        Python::with_gil(|py| {
            let outcome = py.check_signals().and_then(|()| match &progress {
                None => Ok(()),
                Some(callback) => {
                    let args = match p {
                        Progress::Iteration {
                            done,
                            total,
                            meta_loss,
                            ..
                        } => ("iteration", done, total, Some(meta_loss)),
                        Progress::Step { done, total } => ("step", done, total, None),
                        Progress::Solver { epochs } => ("solver", epochs, 0, None),
                    };
                    callback.call1(py, args).map(|_| ())
                }
            });
            match outcome {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    if let Ok(mut slot) = slot.lock() {
                        *slot = Some(e);
                    }
                    ControlFlow::Break(())
                }
            }
        })
    };
    let result = py.allow_threads(|| watch(watcher, f));
    match result {
        Ok(value) => Ok(value),
        Err(metaadd::Error::Interrupted) => {
            let raised = raised.lock().ok().and_then(|mut r| r.take());
            Err(raised.unwrap_or_else(|| PyKeyboardInterrupt::new_err("interrupted")))
        }
        Err(e) => Err(py_err(e)),
    }
}

/// The metrics of each outer iteration, one list per column.
fn history_columns(history: &[IterationMetrics]) -> Vec<(&'static str, Vec<f64>)> {
    type Column = (&'static str, fn(&IterationMetrics) -> f64);
    let columns: [Column; 6] = [
        ("iteration", |m| m.iteration as f64),
        ("meta_loss", |m| m.meta_loss),
        ("train_loss", |m| m.train_loss),
        ("hypergrad_norm", |m| m.hypergrad_norm),
        ("active_groups", |m| m.active_groups as f64),
        ("mean_weight", |m| m.mean_weight),
    ];
    columns
        .iter()
        .map(|(name, get)| (*name, history.iter().map(get).collect()))
        .collect()
}

/// The λ path of `lambda = auto`, as `metaadd fit --lambda auto` takes it: `lambdas` values
/// from λ_max down to `min_ratio`·λ_max, `path_iterations` outer iterations at each, chosen by
/// `select_by` (loss or error).
#[derive(FromPyObject)]
struct PathSettings {
    #[pyo3(item)]
    lambdas: usize,
    #[pyo3(item)]
    min_ratio: f64,
    #[pyo3(item)]
    path_iterations: usize,
    #[pyo3(item)]
    select_by: String,
}

/// Fits a model on `inputs` (see [`Inputs`]): a dict with the model file's bytes (`model`),
/// the outer iterations' metrics (`history`), the λ path when λ is `auto` (`path`: lambdas,
/// meta losses, scores, the chosen index), the candidates of an `auto` weighting and their
/// meta objectives, and the warnings of the preparation and the fit.
#[pyfunction]
#[pyo3(signature = (inputs, path, progress=None))]
fn fit<'py>(
    py: Python<'py>,
    inputs: Inputs<'py>,
    path: PathSettings,
    progress: Option<PyObject>,
) -> PyResult<Bound<'py, PyDict>> {
    let setup = inputs.setup()?;
    let select_by: SelectBy = path.select_by.parse().map_err(py_err)?;
    if setup.auto_lambda && path.path_iterations == 0 {
        return Err(PyValueError::new_err(
            "invalid parameter `path_iterations`: must be at least 1",
        ));
    }
    let (prepared, params) = (&setup.prepared, &setup.params);
    let auto = setup.auto_lambda;
    let (model, history, path, candidates, warnings) = watched(py, progress, || {
        let encoding = prepared.full_encoding(params)?;
        let (train, meta) = (&prepared.train, &prepared.meta);
        if auto {
            // `metaadd fit --lambda auto`'s path, so that the same settings give the same file.
            let path = PathParams::new(params.clone().iterations(path.path_iterations))
                .lambdas(path.lambdas)
                .min_ratio(path.min_ratio)
                .select_by(select_by)
                .encoding(encoding)
                .final_iterations(params.iterations)
                .fit(train, meta)?;
            let summary = (
                path.lambdas.clone(),
                path.meta_losses.clone(),
                path.scores.clone(),
                path.best,
            );
            Ok((
                path.model.to_bytes()?,
                path.history,
                Some(summary),
                path.candidates,
                path.warnings,
            ))
        } else {
            let fit = params.fit_encoded(train, meta, encoding)?;
            Ok((
                fit.model.to_bytes()?,
                fit.history,
                None,
                fit.candidates,
                fit.warnings,
            ))
        }
    })?;
    let out = PyDict::new(py);
    out.set_item("model", PyBytes::new(py, &model))?;
    let columns = PyDict::new(py);
    for (name, values) in history_columns(&history) {
        columns.set_item(name, values)?;
    }
    out.set_item("history", columns)?;
    match path {
        Some((lambdas, meta_losses, scores, best)) => {
            let p = PyDict::new(py);
            p.set_item("lambda", lambdas)?;
            p.set_item("meta_loss", meta_losses)?;
            p.set_item("score", scores)?;
            p.set_item("best", best)?;
            out.set_item("path", p)?;
        }
        None => out.set_item("path", py.None())?,
    }
    let candidates: Vec<(String, f64)> = candidates
        .into_iter()
        .map(|(w, score)| (w.to_string(), score))
        .collect();
    out.set_item("candidates", candidates)?;
    let mut all = prepared.warnings.clone();
    all.extend(warnings);
    out.set_item("warnings", all)?;
    Ok(out)
}

/// One row per weight-net tensor of the hypergradient against central finite differences
/// (`step`; at most `entries` entries per tensor, drawn with the seed), at the point a fit of
/// `inputs` starts from, in f64: (tensor, checked, total, analytic norm, difference norm,
/// relative error, largest absolute error); with the objective's value and the relative
/// error over all entries.
#[pyfunction]
#[pyo3(signature = (inputs, step=1e-5, entries=None, progress=None))]
fn check_gradient(
    py: Python<'_>,
    inputs: Inputs<'_>,
    step: f64,
    entries: Option<usize>,
    progress: Option<PyObject>,
) -> PyResult<CheckTable> {
    let setup = inputs.setup()?.with_fixed_lambda("a gradient check")?;
    let params = setup.params.clone().dtype(DType::F64);
    let check = watched(py, progress, || {
        let (problem, start, net) = setup.prepared.starting_point(&params)?;
        let options = CheckOptions {
            step,
            entries_per_tensor: entries,
            seed: params.seed,
        };
        check_gradient_at(&problem, &start, &net, params.hypergrad_options(), options)
    })?;
    let rows = check
        .tensors
        .iter()
        .map(|t| {
            (
                t.name.to_string(),
                t.checked,
                t.total,
                t.analytic_norm,
                t.difference_norm,
                t.relative_error,
                t.max_abs_error,
            )
        })
        .collect();
    Ok((rows, check.value, check.relative_error))
}

/// The rows of a gradient check, its objective's value and its overall relative error.
type CheckTable = (Vec<(String, usize, usize, f64, f64, f64, f64)>, f64, f64);

/// The unroll-depth study on `inputs` (a test set required): one row per (K, mode) of `ks` ×
/// `modes` (modes without a depth once): (K or None, mode, relative error and cosine against
/// the implicit hypergradient at `snapshots` states of a reference run at the settings' K,
/// meta loss, test error, seconds per outer iteration).
#[pyfunction]
#[pyo3(signature = (inputs, ks, modes, snapshots=3, progress=None))]
fn sweep_k(
    py: Python<'_>,
    inputs: Inputs<'_>,
    ks: Vec<usize>,
    modes: Vec<String>,
    snapshots: usize,
    progress: Option<PyObject>,
) -> PyResult<Vec<SweepTableRow>> {
    let setup = inputs
        .setup()?
        .with_fixed_lambda("the unroll-depth study")?;
    let modes = modes
        .iter()
        .map(|m| m.parse::<HypergradMode>())
        .collect::<metaadd::Result<Vec<_>>>()
        .map_err(py_err)?;
    let test =
        setup.prepared.test.as_ref().ok_or_else(|| {
            PyValueError::new_err("the study needs a test set: X_test and y_test")
        })?;
    let sweep = SweepParams::new(setup.params.clone())
        .ks(ks)
        .modes(modes)
        .snapshots(snapshots);
    if sweep.runs().is_empty() {
        return Err(PyValueError::new_err(
            "no (K, mode) pair to run: truncated(t) needs some K ≥ t",
        ));
    }
    let (train, meta) = (&setup.prepared.train, &setup.prepared.meta);
    let rows = watched(py, progress, || sweep.run(train, meta, test))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.k,
                r.mode.to_string(),
                r.relative_error,
                r.cosine,
                r.meta_loss,
                r.test_error,
                r.seconds_per_iteration,
            )
        })
        .collect())
}

/// One row of the unroll-depth study (see [`sweep_k`]).
type SweepTableRow = (Option<usize>, String, f64, f64, f64, f64, f64);

/// A model from its file's bytes.
fn load(bytes: &[u8]) -> PyResult<MetaAdditiveModel> {
    start(None)?;
    MetaAdditiveModel::from_bytes(bytes, &Device::Cpu).map_err(py_err)
}

/// A model from its file's bytes and its features of the rows of `x`.
fn model_and_rows(
    model: &[u8],
    names: &[String],
    x: &PyReadonlyArray2<'_, f64>,
) -> PyResult<(MetaAdditiveModel, metaadd::Dataset)> {
    let model = load(model)?;
    let data = model
        .read_features(&table("X", names, x, None)?)
        .map_err(py_err)?;
    Ok((model, data))
}

/// Predictions of the rows of `x`: values (regression) or class indices (classification).
#[pyfunction]
fn predict<'py>(
    py: Python<'py>,
    model: &[u8],
    names: Vec<String>,
    x: PyReadonlyArray2<'py, f64>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (model, data) = model_and_rows(model, &names, &x)?;
    let values = match model.classes() {
        None => model.predict_values(&data),
        Some(_) => model
            .additive()
            .dataset_class_indices(&data)
            .map(|c| c.into_iter().map(|c| c as f64).collect()),
    }
    .map_err(py_err)?;
    Ok(PyArray1::from_vec(py, values))
}

/// Class probabilities of the rows of `x` (rows × classes, in the model's class order).
#[pyfunction]
fn predict_proba<'py>(
    py: Python<'py>,
    model: &[u8],
    names: Vec<String>,
    x: PyReadonlyArray2<'py, f64>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let (model, data) = model_and_rows(model, &names, &x)?;
    let proba = model.predict_proba_rows(&data).map_err(py_err)?;
    PyArray2::from_vec2(py, &proba).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// The model's class labels (as text, in class order), or `None` for regression.
#[pyfunction]
fn classes(model: &[u8]) -> PyResult<Option<Vec<String>>> {
    Ok(load(model)?.classes().map(|c| c.names()))
}

/// The names of the selected features, largest group norm first.
#[pyfunction]
fn selected_features(model: &[u8]) -> PyResult<Vec<String>> {
    let model = load(model)?;
    let additive = model.additive();
    Ok(additive
        .selected_by_norm()
        .map_err(py_err)?
        .into_iter()
        .map(|j| additive.feature_names()[j].clone())
        .collect())
}

/// One column of the weights table each (see [`weights_table`]).
type WeightColumns = (
    Vec<usize>,
    Vec<String>,
    Vec<String>,
    Vec<f64>,
    Vec<f64>,
    Vec<usize>,
    Vec<bool>,
);

/// The weights table of labelled rows (`y` as text, in the model's target units or labels):
/// the columns row, target, prediction, loss, weight, rank and down_weighted, as the CLI's
/// `metaadd weights` writes them.
#[pyfunction]
#[pyo3(signature = (model, names, x, y, down_threshold=metaadd::model::DOWN_WEIGHT_THRESHOLD))]
fn weights_table(
    model: &[u8],
    names: Vec<String>,
    x: PyReadonlyArray2<'_, f64>,
    y: Vec<String>,
    down_threshold: f64,
) -> PyResult<WeightColumns> {
    let model = load(model)?;
    let target = model.encoding().target_name().to_string();
    let rows = table("X", &names, &x, Some((&target, &y)))?;
    let data = model.read_labelled(&rows).map_err(py_err)?;
    let t = model.weights_table(&data, down_threshold).map_err(py_err)?;
    Ok((
        t.rows.iter().map(|r| r.row).collect(),
        t.rows.iter().map(|r| r.target.clone()).collect(),
        t.rows.iter().map(|r| r.prediction.clone()).collect(),
        t.rows.iter().map(|r| r.loss).collect(),
        t.rows.iter().map(|r| r.weight).collect(),
        t.rows.iter().map(|r| r.rank).collect(),
        t.rows.iter().map(|r| r.down_weighted).collect(),
    ))
}

/// The shape function of feature `feature` at raw values `grid`: `len(grid) × C` values (in
/// the target's units for regression, logits for classification).
#[pyfunction]
fn shape_function<'py>(
    py: Python<'py>,
    model: &[u8],
    feature: &str,
    grid: Vec<f64>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let model = load(model)?;
    let additive = model.additive();
    let j = additive
        .feature_names()
        .iter()
        .position(|n| n == feature)
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "no feature `{feature}`; the model's features are {}",
                additive.feature_names().join(", ")
            ))
        })?;
    let outputs = additive.task().outputs();
    let sd = model.target_scale().map_or(1.0, |s| s.sd());
    let values = additive.shape_function(j, &grid).map_err(py_err)?;
    let rows: Vec<Vec<f64>> = values
        .chunks(outputs)
        .map(|c| c.iter().map(|v| v * sd).collect())
        .collect();
    PyArray2::from_vec2(py, &rows).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Writes a model file's bytes to `path` through the library's output writer (atomic for a
/// regular file, a link kept, a read-only file refused).
#[pyfunction]
fn write_model(py: Python<'_>, model: &[u8], path: &str) -> PyResult<()> {
    let path = std::path::Path::new(path);
    py.allow_threads(|| {
        metaadd::output::check_writable(path)?;
        metaadd::output::write_bytes(path, model)
    })
    .map_err(py_err)
}

/// The library's default of every fit setting (for `task`), as the model file writes them:
/// the estimators' constructor defaults are checked against these.
#[pyfunction]
fn defaults(task: &str) -> PyResult<HashMap<String, String>> {
    let task: Task = task.parse().map_err(py_err)?;
    let params = FitParams::new(task);
    Ok(SETTINGS
        .iter()
        .map(|s| (s.key.to_string(), (s.get)(&params)))
        .collect())
}

/// The model's feature column names, in its order.
#[pyfunction]
fn feature_names(model: &[u8]) -> PyResult<Vec<String>> {
    Ok(load(model)?.feature_names().to_vec())
}

/// The learned weights at training losses `losses`.
#[pyfunction]
fn weight_curve<'py>(
    py: Python<'py>,
    model: &[u8],
    losses: Vec<f64>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let w = load(model)?.weights(&losses).map_err(py_err)?;
    Ok(PyArray1::from_vec(py, w))
}

/// The threads this process computes with (set by its first computation, see [`start`]).
#[pyfunction]
fn threads() -> PyResult<usize> {
    start(None)
}

/// The optional features this build has (`cuda`).
#[pyfunction]
fn features() -> Vec<&'static str> {
    let mut features = Vec::new();
    if cfg!(feature = "cuda") {
        features.push("cuda");
    }
    features
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fit, m)?)?;
    m.add_function(wrap_pyfunction!(check_gradient, m)?)?;
    m.add_function(wrap_pyfunction!(sweep_k, m)?)?;
    m.add_function(wrap_pyfunction!(threads, m)?)?;
    m.add_function(wrap_pyfunction!(features, m)?)?;
    m.add_function(wrap_pyfunction!(predict, m)?)?;
    m.add_function(wrap_pyfunction!(predict_proba, m)?)?;
    m.add_function(wrap_pyfunction!(classes, m)?)?;
    m.add_function(wrap_pyfunction!(selected_features, m)?)?;
    m.add_function(wrap_pyfunction!(weight_curve, m)?)?;
    m.add_function(wrap_pyfunction!(feature_names, m)?)?;
    m.add_function(wrap_pyfunction!(weights_table, m)?)?;
    m.add_function(wrap_pyfunction!(shape_function, m)?)?;
    m.add_function(wrap_pyfunction!(defaults, m)?)?;
    m.add_function(wrap_pyfunction!(write_model, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
