//! Model files: one safetensors file with every tensor needed for inference and string metadata.
//!
//! Layout (format version 1):
//!
//! | tensor | shape | dtype |
//! |---|---|---|
//! | `basis.mean`, `basis.scale` | `[p]` | f64 |
//! | `basis.knots` | `[p, L]` | f64 |
//! | `basis.centre` | `[p, m+1]` | f64 |
//! | `basis.transform` | `[p, m+1, m]` | f64 |
//! | `model.beta` | `[p·m, C]` | training dtype |
//! | `model.bias` | `[C]` | training dtype |
//! | `weightnet.fc1.weight`, `weightnet.fc1.bias` | `[h, 1]`, `[h]` | training dtype |
//! | `weightnet.fc2.weight`, `weightnet.fc2.bias` | `[1, h]`, `[1]` | training dtype |
//! | `optimizer.first.<weight-net tensor>`, `optimizer.second.<…>` | as the tensor | training dtype |
//!
//! The `optimizer.*` tensors (AdamW's moment estimates, with metadata `optimizer_steps`) are
//! optional: a model taken from a trainer has them, so training can resume exactly from its file.
//!
//! Metadata keys: `format` (= `metaadd`), `format_version`, `crate_version`, `feature_names`
//! (JSON array), `target_name`, `task`, `loss`, `basis`, `weighting`, `hypergradient`, `k`,
//! `detach_weight_input`, `normalize_weights`, `lambda`, `eta`, `ridge`, `hidden`, `learning_rate`, `weight_decay`,
//! `iterations`, `inner_steps`, `train_batch`, `meta_batch`, `seed`, `dtype`, `n_train`, `n_meta`,
//! for classification `class_labels` (JSON list of the original label values, class 0 first), and
//! for a regression model fitted on a standardised target `target_mean` and `target_sd`.

use crate::basis::{BasisParts, BasisSpec, SplineBasis};
use crate::data::targets::{ClassLabels, TargetScale};
use crate::error::{Error, Result};
use crate::hypergrad::{Bilevel, HypergradOptions, Hypergradient};
use crate::inner::Coefficients;
use crate::loss::{Loss, Task};
use crate::model::{AdditiveModel, MetaAdditiveModel};
use crate::optim::AdamWState;
use crate::trainer::{FitParams, Weighting};
use crate::weightnet::{WeightNet, PARAMETER_NAMES};
use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

/// The model-file format this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// Writes `model` to `path`.
pub fn save(model: &MetaAdditiveModel, path: &Path) -> Result<()> {
    let additive = model.additive();
    let basis = additive.basis();
    let spec = basis.spec();
    let (p, m) = (basis.n_features(), basis.n_basis());
    let parts = basis.to_parts();
    let host = |v: Vec<f64>, shape: &[usize]| -> Result<Tensor> {
        Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
    };
    let knots_len = BasisParts::knots_per_feature(spec);
    let coefficients = additive.coefficients();
    let mut tensors: Vec<(String, Tensor)> = vec![
        ("basis.mean".into(), host(parts.mean, &[p])?),
        ("basis.scale".into(), host(parts.scale, &[p])?),
        ("basis.knots".into(), host(parts.knots, &[p, knots_len])?),
        ("basis.centre".into(), host(parts.centre, &[p, m + 1])?),
        (
            "basis.transform".into(),
            host(parts.transform, &[p, m + 1, m])?,
        ),
        (
            "model.beta".into(),
            coefficients.beta.to_device(&Device::Cpu)?,
        ),
        (
            "model.bias".into(),
            coefficients.bias.to_device(&Device::Cpu)?,
        ),
    ];
    for (name, t) in PARAMETER_NAMES.iter().zip(model.weightnet().tensors()) {
        tensors.push((name.to_string(), t.to_device(&Device::Cpu)?));
    }
    if let Some(state) = model.optimizer_state() {
        for (i, name) in PARAMETER_NAMES.iter().enumerate() {
            for (kind, moments) in [("first", &state.first), ("second", &state.second)] {
                let t = moments
                    .get(i)
                    .ok_or_else(|| Error::invalid("optimizer state: a moment is missing"))?;
                tensors.push((
                    format!("optimizer.{kind}.{name}"),
                    t.to_device(&Device::Cpu)?,
                ));
            }
        }
    }
    let params = model.params();
    let optional = |v: Option<usize>| v.map_or("all".to_string(), |v| v.to_string());
    let metadata: HashMap<String, String> = [
        ("format", "metaadd".to_string()),
        ("format_version", FORMAT_VERSION.to_string()),
        ("crate_version", env!("CARGO_PKG_VERSION").to_string()),
        (
            "feature_names",
            serde_json::to_string(additive.feature_names())
                .map_err(|e| Error::invalid(format!("cannot encode feature names: {e}")))?,
        ),
        ("target_name", additive.target_name().to_string()),
        ("task", additive.task().to_string()),
        ("loss", params.resolved_loss().to_string()),
        ("basis", spec.to_string()),
        ("weighting", params.weighting.to_string()),
        ("hypergradient", params.hypergradient.to_string()),
        ("k", params.k.to_string()),
        (
            "detach_weight_input",
            params.detach_weight_input.to_string(),
        ),
        ("normalize_weights", params.normalize_weights.to_string()),
        ("lambda", params.lambda.to_string()),
        ("eta", model.eta().to_string()),
        ("ridge", params.ridge.to_string()),
        ("hidden", params.hidden.to_string()),
        ("learning_rate", params.learning_rate.to_string()),
        ("weight_decay", params.weight_decay.to_string()),
        ("iterations", params.iterations.to_string()),
        ("inner_steps", params.inner_steps.to_string()),
        ("train_batch", optional(params.train_batch)),
        ("meta_batch", optional(params.meta_batch)),
        ("seed", params.seed.to_string()),
        ("dtype", dtype_name(params.dtype).to_string()),
        ("n_train", model.data_sizes().0.to_string()),
        ("n_meta", model.data_sizes().1.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .chain(model.class_labels().map(|labels| {
        let values = serde_json::Value::from(labels.values().to_vec());
        ("class_labels".to_string(), values.to_string())
    }))
    .chain(
        model
            .optimizer_state()
            .map(|state| ("optimizer_steps".to_string(), state.steps.to_string())),
    )
    .chain(model.target_scale().into_iter().flat_map(|scale| {
        [
            ("target_mean".to_string(), scale.mean().to_string()),
            ("target_sd".to_string(), scale.sd().to_string()),
        ]
    }))
    .collect();
    write_file(path, tensors, metadata)
}

/// Serialises tensors and string metadata with a sorted header and writes them to `path`.
fn write_file(
    path: &Path,
    tensors: Vec<(String, Tensor)>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let bytes = safetensors::serialize(tensors, Some(metadata)).map_err(|e| Error::ModelFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let bytes = with_sorted_header(&bytes).map_err(|reason| Error::ModelFile {
        path: path.to_path_buf(),
        reason,
    })?;
    crate::atomic::write_bytes(path, &bytes)
}

/// A bilevel problem at one point and its hypergradient, for [`save_problem`].
#[derive(Debug, Clone, Copy)]
pub struct ProblemFile<'a> {
    /// Training and meta designs and targets, and the inner step.
    pub problem: &'a Bilevel,
    /// `β₀` and the intercept the unroll starts from.
    pub start: &'a Coefficients,
    /// The weight net `φ`.
    pub net: &'a WeightNet,
    /// The hypergradient at this point.
    pub hypergradient: &'a Hypergradient,
    /// How it was computed.
    pub options: HypergradOptions,
}

/// Writes a problem and its hypergradient so that it can be checked in any other framework.
///
/// f64 tensors `design.train` `[n, p·m]` (feature-major columns: feature j owns columns
/// `j·m … j·m+m−1`), `target.train` `[n]` (class index as a number for classification),
/// `design.meta`, `target.meta`, `beta` `[p·m, C]`, `bias` `[C]`, the four `weightnet.*`
/// tensors and `hypergrad.weightnet.*` with the same shapes; string metadata `loss`, `eta`,
/// `lambda`, `ridge`, `k`, `features`, `basis_size`, `outputs`, `mode`,
/// `detach_weight_input`, `normalize_weights` and `meta_loss` (`F_K`).
pub fn save_problem(path: &Path, file: ProblemFile<'_>) -> Result<()> {
    let f64_host =
        |t: &Tensor| -> Result<Tensor> { Ok(t.to_dtype(DType::F64)?.to_device(&Device::Cpu)?) };
    let loss = file.problem.train.loss();
    // Targets as the problem holds them ([n, C]) back to one number per row.
    let target = |p: &crate::inner::Problem| -> Result<Tensor> {
        let t = f64_host(p.target())?;
        Ok(match loss {
            Loss::Softmax => t.argmax(1)?.to_dtype(DType::F64)?,
            _ => t.flatten_all()?,
        })
    };
    let step = file.problem.step;
    let columns = file.problem.train.n_columns();
    let outputs = file.start.beta.dims().get(1).copied().unwrap_or(1);
    let mut tensors: Vec<(String, Tensor)> = vec![
        (
            "design.train".into(),
            f64_host(file.problem.train.design())?,
        ),
        ("target.train".into(), target(&file.problem.train)?),
        ("design.meta".into(), f64_host(file.problem.meta.design())?),
        ("target.meta".into(), target(&file.problem.meta)?),
        ("beta".into(), f64_host(&file.start.beta)?),
        ("bias".into(), f64_host(&file.start.bias)?),
    ];
    for ((name, t), g) in PARAMETER_NAMES
        .iter()
        .zip(file.net.tensors())
        .zip(&file.hypergradient.grads)
    {
        tensors.push((name.to_string(), f64_host(&t)?));
        tensors.push((format!("hypergrad.{name}"), f64_host(g)?));
    }
    let options = file.options;
    let metadata: HashMap<String, String> = [
        ("format", "metaadd-hypergradient".to_string()),
        ("loss", loss.to_string()),
        ("eta", step.eta.to_string()),
        ("lambda", step.lambda.to_string()),
        ("ridge", step.ridge.to_string()),
        ("k", options.k.to_string()),
        ("features", step.n_features.to_string()),
        ("basis_size", (columns / step.n_features.max(1)).to_string()),
        ("outputs", outputs.to_string()),
        ("mode", options.mode.to_string()),
        (
            "detach_weight_input",
            options.detach_weight_input.to_string(),
        ),
        ("normalize_weights", step.normalize_weights.to_string()),
        ("meta_loss", file.hypergradient.meta_loss.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    write_file(path, tensors, metadata)
}

/// Rewrites a safetensors header with every JSON object's keys sorted.
///
/// The `safetensors` crate writes the metadata from a `HashMap`, whose order changes from run
/// to run; sorting makes the same model give the same bytes. Tensor offsets are relative to the
/// end of the header, so only the header changes.
fn with_sorted_header(bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let header_len = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or("serialized model has no header")? as usize;
    let header = bytes
        .get(8..8 + header_len)
        .ok_or("serialized model header is truncated")?;
    let value: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| format!("serialized header: {e}"))?;
    let mut json = sorted_json(&value);
    // safetensors pads the header with spaces to a multiple of 8 bytes.
    json.extend(std::iter::repeat_n(b' ', (8 - json.len() % 8) % 8));
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&bytes[8 + header_len..]);
    Ok(out)
}

fn sorted_json(value: &serde_json::Value) -> Vec<u8> {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let mut out = b"{".to_vec();
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(
                    serde_json::Value::String(key.clone())
                        .to_string()
                        .into_bytes(),
                );
                out.push(b':');
                out.extend(sorted_json(v));
            }
            out.push(b'}');
            out
        }
        other => other.to_string().into_bytes(),
    }
}

/// Reads a model file onto `device`, checking format, version, every tensor and every shape.
///
/// Any damage is an [`Error::ModelFile`] naming the problem (a missing or unreadable metadata
/// key, a format version newer than [`FORMAT_VERSION`], a tensor that is missing or has the
/// wrong shape or dtype, a non-finite or inconsistent stored value, duplicate feature names),
/// never a panic: shapes and dtypes are checked on the header before any tensor data is read,
/// so a header declaring huge dimensions allocates nothing.
pub fn load(path: &Path, device: &Device) -> Result<MetaAdditiveModel> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |reason: String| Error::ModelFile {
        path: path.to_path_buf(),
        reason,
    };
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file ({e})")))?;
    let meta = header
        .metadata()
        .as_ref()
        .ok_or_else(|| bad("no metadata: not a metaadd model".into()))?;
    let get = |key: &str| -> Result<&str> {
        meta.get(key)
            .map(String::as_str)
            .ok_or_else(|| bad(format!("metadata key `{key}` is missing")))
    };
    if get("format").ok() != Some("metaadd") {
        return Err(bad(
            "not a metaadd model (metadata `format` is not `metaadd`)".into(),
        ));
    }
    let version: u32 = parse(get("format_version")?, "format_version", &bad)?;
    if version > FORMAT_VERSION || version == 0 {
        return Err(bad(format!(
            "format version {version} is not supported (this build reads versions 1 to \
             {FORMAT_VERSION}); it was written by metaadd {}",
            meta.get("crate_version").map_or("?", String::as_str)
        )));
    }
    let feature_names: Vec<String> = serde_json::from_str(get("feature_names")?).map_err(|e| {
        bad(format!(
            "metadata `feature_names` is not a JSON list of names: {e}"
        ))
    })?;
    let mut seen = std::collections::HashSet::with_capacity(feature_names.len());
    if let Some(twice) = feature_names
        .iter()
        .find(|name| !seen.insert(name.as_str()))
    {
        return Err(bad(format!(
            "metadata `feature_names` lists `{twice}` twice"
        )));
    }
    let in_key = |key: &'static str| move |e: Error| bad(format!("metadata `{key}`: {e}"));
    let task = Task::from_str(get("task")?).map_err(in_key("task"))?;
    let loss = Loss::from_str(get("loss")?).map_err(in_key("loss"))?;
    let spec = BasisSpec::from_str(get("basis")?).map_err(in_key("basis"))?;
    let weighting = Weighting::from_str(get("weighting")?).map_err(in_key("weighting"))?;
    let dtype = match get("dtype")? {
        "f32" => DType::F32,
        "f64" => DType::F64,
        other => {
            return Err(bad(format!(
                "metadata `dtype` is `{other}`, expected f32 or f64"
            )))
        }
    };
    let batch = |key: &str| -> Result<Option<usize>> {
        match get(key)? {
            "all" => Ok(None),
            v => parse(v, key, &bad).map(Some),
        }
    };
    let eta: f64 = parse(get("eta")?, "eta", &bad)?;
    let params = FitParams {
        task,
        loss: Some(loss),
        basis: spec,
        weighting,
        k: parse(get("k")?, "k", &bad)?,
        hypergradient: get("hypergradient")?
            .parse()
            .map_err(|e: Error| bad(format!("metadata `hypergradient`: {e}")))?,
        detach_weight_input: parse(get("detach_weight_input")?, "detach_weight_input", &bad)?,
        // Absent in files written before the option existed: those did not normalise.
        normalize_weights: match meta.get("normalize_weights") {
            Some(value) => parse(value, "normalize_weights", &bad)?,
            None => false,
        },
        lambda: parse(get("lambda")?, "lambda", &bad)?,
        eta: Some(eta),
        ridge: parse(get("ridge")?, "ridge", &bad)?,
        hidden: parse(get("hidden")?, "hidden", &bad)?,
        learning_rate: parse(get("learning_rate")?, "learning_rate", &bad)?,
        weight_decay: parse(get("weight_decay")?, "weight_decay", &bad)?,
        iterations: parse(get("iterations")?, "iterations", &bad)?,
        inner_steps: parse(get("inner_steps")?, "inner_steps", &bad)?,
        train_batch: batch("train_batch")?,
        meta_batch: batch("meta_batch")?,
        seed: parse(get("seed")?, "seed", &bad)?,
        dtype,
        device: device.clone(),
    };
    params.validate().map_err(|e| bad(e.to_string()))?;

    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("corrupted ({e})")))?;
    let p = feature_names.len();
    let m = spec.n_basis;
    let c = task.outputs();
    let h = params.hidden;
    let tensor = |name: &str, shape: &[usize], want: DType| -> Result<Tensor> {
        let view = st
            .tensor(name)
            .map_err(|_| bad(format!("tensor `{name}` is missing")))?;
        // Shape and dtype are checked on the header, before any data is read: a header may
        // declare any shape (huge dimensions next to a zero one hold no data at all) and any
        // dtype, which must not reach the tensor library.
        if view.shape() != shape {
            return Err(bad(format!(
                "tensor `{name}` has shape {:?}, expected {shape:?}",
                view.shape()
            )));
        }
        if view.dtype() != safetensors::Dtype::from(want) {
            return Err(bad(format!(
                "tensor `{name}` has dtype {:?}, expected {want:?}",
                view.dtype()
            )));
        }
        let t = view
            .load(&Device::Cpu)
            .map_err(|e| bad(format!("tensor `{name}` cannot be read: {e}")))?;
        if t.dims() != shape || t.dtype() != want {
            return Err(bad(format!(
                "tensor `{name}` reads as {:?} {:?}, expected {want:?} {shape:?}",
                t.dtype(),
                t.dims()
            )));
        }
        Ok(t)
    };
    let host = |name: &str, shape: &[usize]| -> Result<Vec<f64>> {
        Ok(tensor(name, shape, DType::F64)?.flatten_all()?.to_vec1()?)
    };
    let parts = BasisParts {
        mean: host("basis.mean", &[p])?,
        scale: host("basis.scale", &[p])?,
        knots: host("basis.knots", &[p, BasisParts::knots_per_feature(spec)])?,
        centre: host("basis.centre", &[p, m + 1])?,
        transform: host("basis.transform", &[p, m + 1, m])?,
    };
    let basis = SplineBasis::from_parts(spec, parts).map_err(|e| bad(e.to_string()))?;
    // Fitted coefficients and weight-net parameters are finite (training stops with an error
    // otherwise), so a NaN or infinity means the file is damaged.
    let on_device = |name: &str, shape: &[usize]| -> Result<Tensor> {
        let t = tensor(name, shape, dtype)?;
        let values: Vec<f64> = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!(
                "tensor `{name}` has the non-finite value {} at flat index {pos}",
                values[pos]
            )));
        }
        Ok(t.to_device(device)?)
    };
    let coefficients = Coefficients {
        beta: on_device("model.beta", &[p.saturating_mul(m), c])?,
        bias: on_device("model.bias", &[c])?,
    };
    let net_shapes: [&[usize]; 4] = [&[h], &[h, 1], &[1], &[1, h]];
    let net_tensors = PARAMETER_NAMES
        .iter()
        .zip(net_shapes)
        .map(|(name, shape)| on_device(name, shape))
        .collect::<Result<Vec<_>>>()?;
    let additive = AdditiveModel::new(
        basis,
        coefficients,
        task,
        feature_names,
        get("target_name")?.to_string(),
    )
    .map_err(|e| bad(e.to_string()))?;
    let class_labels = match (task, meta.get("class_labels")) {
        (Task::Regression, _) => None,
        (_, None) => Some((0..task.outputs().max(2)).map(|c| c as f64).collect()),
        (_, Some(text)) => Some(serde_json::from_str::<Vec<f64>>(text).map_err(|e| {
            bad(format!(
                "metadata `class_labels` is not a JSON list of numbers: {e}"
            ))
        })?),
    };
    let class_labels = class_labels
        .map(|values| {
            // The count first: checking that labels are distinct takes time quadratic in it.
            if values.len() != task.outputs().max(2) {
                return Err(bad(format!(
                    "metadata `class_labels` has {} labels for a {task} task",
                    values.len()
                )));
            }
            ClassLabels::from_values(values).map_err(|e| bad(e.to_string()))
        })
        .transpose()?;
    let target_scale = match (task, meta.get("target_mean"), meta.get("target_sd")) {
        (_, None, None) => None,
        (Task::Regression, Some(mean), Some(sd)) => Some(
            TargetScale::new(
                parse(mean, "target_mean", &bad)?,
                parse(sd, "target_sd", &bad)?,
            )
            .map_err(|e| bad(e.to_string()))?,
        ),
        (Task::Regression, _, _) => {
            return Err(bad(
                "metadata holds only one of `target_mean` and `target_sd`".to_string(),
            ))
        }
        _ => {
            return Err(bad(format!(
                "metadata `target_mean`/`target_sd` on a {task} model"
            )))
        }
    };
    // Absent in files written before the optimiser state was kept: such a model predicts, but
    // training cannot resume from it exactly.
    let optimizer = match meta.get("optimizer_steps") {
        None => None,
        Some(steps) => {
            let moments = |kind: &str| -> Result<Vec<Tensor>> {
                PARAMETER_NAMES
                    .iter()
                    .zip(net_shapes)
                    .map(|(name, shape)| on_device(&format!("optimizer.{kind}.{name}"), shape))
                    .collect()
            };
            Some(AdamWState {
                steps: parse(steps, "optimizer_steps", &bad)?,
                first: moments("first")?,
                second: moments("second")?,
            })
        }
    };
    Ok(MetaAdditiveModel {
        additive,
        optimizer,
        target_scale,
        weightnet: WeightNet::from_tensors(&net_tensors).map_err(|e| bad(e.to_string()))?,
        class_labels,
        crate_version: get("crate_version")?.to_string(),
        eta,
        params,
        n_train: parse(get("n_train")?, "n_train", &bad)?,
        n_meta: parse(get("n_meta")?, "n_meta", &bad)?,
    })
}

fn parse<T: FromStr>(value: &str, key: &str, bad: &dyn Fn(String) -> Error) -> Result<T> {
    value.parse().map_err(|_| {
        bad(format!(
            "metadata `{key}` has the unreadable value `{value}`"
        ))
    })
}

fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F64 => "f64",
        _ => "f32",
    }
}
