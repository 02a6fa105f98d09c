//! `metaadd._core`: the Rust library behind the Python package. It only converts between
//! numpy/Python values and the library's types; preparation, fitting, scoring and the model
//! file are the library's (the same code path as the command line, so the same data, settings
//! and seed give the same model file bytes).

use metaadd::candle_core::Device;
use metaadd::data::table::Column;
use metaadd::params::SETTINGS;
use metaadd::path::PathParams;
use metaadd::prepare::{Preparation, TaskKind};
use metaadd::{FitParams, MetaAdditiveModel, Table, Task};
use numpy::{PyArray1, PyArray2, PyReadonlyArray2};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::collections::HashMap;

// The command line's allocator: with the system one a fit took three times as long.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A library error as the Python exception a user expects, with the same message.
fn py_err(e: metaadd::Error) -> PyErr {
    match e {
        metaadd::Error::Io { .. } => PyOSError::new_err(e.to_string()),
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

/// Fits a model and returns its model file's bytes; `target` names the target column (the
/// name `metaadd fit --target` would be given).
///
/// `task` is `regression`, `binary` or `multiclass`; `settings` maps setting keys to values
/// as text (`lambda` may be `auto`: a λ path chosen on the meta set, with `lambdas` values).
/// The meta set is `x_meta`/`y_meta`, or a `meta_fraction` of the training rows.
#[pyfunction]
#[pyo3(signature = (names, x, y, target, task, settings, x_meta=None, y_meta=None, meta_fraction=None, lambdas=12))]
#[allow(clippy::too_many_arguments)]
fn fit<'py>(
    py: Python<'py>,
    names: Vec<String>,
    x: PyReadonlyArray2<'py, f64>,
    y: Vec<String>,
    target: &str,
    task: &str,
    mut settings: HashMap<String, String>,
    x_meta: Option<PyReadonlyArray2<'py, f64>>,
    y_meta: Option<Vec<String>>,
    meta_fraction: Option<f64>,
    lambdas: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let kind = match task {
        "regression" => TaskKind::Regression,
        "binary" => TaskKind::Binary,
        "multiclass" => TaskKind::Multiclass,
        other => {
            return Err(PyValueError::new_err(format!(
                "task `{other}`: expected regression, binary or multiclass"
            )))
        }
    };
    let auto = settings.get("lambda").is_some_and(|v| v == "auto");
    if auto {
        settings.remove("lambda");
    }
    let train = table("X", &names, &x, Some((target, &y)))?;
    let meta = match (&x_meta, &y_meta) {
        (Some(xm), Some(ym)) => Some(table("X_meta", &names, xm, Some((target, ym)))?),
        (None, None) => None,
        _ => {
            return Err(PyValueError::new_err(
                "give both X_meta and y_meta, or neither",
            ))
        }
    };
    let base = fit_params(Task::Regression, &settings)?;
    let mut preparation = Preparation::new(target, kind).features(names.clone());
    if let Some(fraction) = meta_fraction {
        preparation = preparation.meta_fraction(fraction);
    }
    let bytes = py.allow_threads(|| -> metaadd::Result<Vec<u8>> {
        let prepared = preparation.prepare(&train, meta.as_ref(), None, &base)?;
        let params = prepared.params(&base);
        let encoding = prepared.full_encoding(&params)?;
        let model = if auto {
            PathParams::new(params.clone().iterations(100))
                .lambdas(lambdas)
                .encoding(encoding)
                .final_iterations(params.iterations)
                .fit(&prepared.train, &prepared.meta)?
                .model
        } else {
            params
                .fit_encoded(&prepared.train, &prepared.meta, encoding)?
                .model
        };
        model.to_bytes()
    });
    Ok(PyBytes::new(py, &bytes.map_err(py_err)?))
}

/// A model from its file's bytes.
fn load(bytes: &[u8]) -> PyResult<MetaAdditiveModel> {
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

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // One thread setting for rayon's and candle's pools, as the command line makes it: left
    // to their own defaults, the two pools disagree and a fit took four times as long. A pool
    // another extension already started keeps its size.
    let _ = metaadd::runtime::set_threads(metaadd::runtime::default_threads());
    m.add_function(wrap_pyfunction!(fit, m)?)?;
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
