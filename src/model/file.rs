//! Model files: one safetensors file with every tensor needed for inference and string
//! metadata.
//!
//! Layout (format version 2):
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
//! Metadata: `format` (= `metaadd`), `format_version`, `crate_version`, `feature_names` (JSON
//! list), `inputs` (JSON list: a numeric input column by its name, a categorical one as
//! `{"name": …, "levels": […]}`), `target_name`, every setting of
//! [`crate::params::SETTINGS`] under its key, `step_size` (the η used), `n_train`, `n_meta`,
//! `training_loss_q99` (optional: the 99th percentile of the training losses under the model);
//! for classification `class_labels` (JSON list of the labels, numbers or strings, class 0
//! first); for a regression model fitted on a standardised target `target_mean` and
//! `target_sd`; for a solved model `solved_kkt`, `solved_objective`, `solved_epochs` and
//! `solved_converged`, and the outer loop's iterate as tensors `iterate.beta` and `iterate.bias`
//! (when the optimiser state is kept, for resuming). Version 1 files (no `inputs`, `step_size` or `standardize_target`; `eta` held
//! the η used) are read too.

use crate::basis::{BasisParts, SplineBasis};
use crate::data::encoding::{Encoding, InputColumn, TargetEncoding, TargetScale};
use crate::data::labels::ClassLabels;
use crate::error::{Error, Result};
use crate::inner::Coefficients;
use crate::loss::Task;
use crate::model::{AdditiveModel, MetaAdditiveModel};
use crate::optim::AdamWState;
use crate::params::{FitParams, SETTINGS};
use crate::solver::SolveReport;
use crate::tensor_file::{bad, serialize, TensorReader};
use crate::weightnet::{WeightNet, PARAMETER_NAMES};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::str::FromStr;

/// The model-file format this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 2;

impl MetaAdditiveModel {
    /// The model file's bytes (what [`MetaAdditiveModel::save`] writes): the same model gives
    /// the same bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let params = self.params();
        params.validate()?;
        let additive = self.additive();
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
            ("model.beta".into(), coefficients.beta.clone()),
            ("model.bias".into(), coefficients.bias.clone()),
        ];
        for (name, t) in self.weightnet().tensors().with_names() {
            tensors.push((name.to_string(), t));
        }
        // The trainer's AdamW holds the weight net's parameters in `PARAMETER_NAMES` order.
        if let Some(state) = self.optimizer_state() {
            for (i, name) in PARAMETER_NAMES.iter().enumerate() {
                for (kind, moments) in [("first", &state.first), ("second", &state.second)] {
                    let t = moments
                        .get(i)
                        .ok_or_else(|| Error::invalid("optimizer state: a moment is missing"))?;
                    tensors.push((format!("optimizer.{kind}.{name}"), t.clone()));
                }
            }
        }
        let json = |v: serde_json::Value| v.to_string();
        let encoding = self.encoding();
        let inputs: Vec<serde_json::Value> = encoding
            .inputs()
            .iter()
            .map(|input| match input {
                InputColumn::Numeric(name) => serde_json::Value::from(name.clone()),
                InputColumn::Categorical { name, levels } => {
                    serde_json::json!({ "name": name, "levels": levels })
                }
            })
            .collect();
        let mut metadata: HashMap<String, String> = [
            ("format", "metaadd".to_string()),
            ("format_version", FORMAT_VERSION.to_string()),
            ("crate_version", env!("CARGO_PKG_VERSION").to_string()),
            (
                "feature_names",
                json(serde_json::Value::from(additive.feature_names().to_vec())),
            ),
            ("inputs", json(serde_json::Value::from(inputs))),
            ("target_name", additive.target_name().to_string()),
            ("step_size", self.eta().to_string()),
            ("n_train", self.data_sizes().0.to_string()),
            ("n_meta", self.data_sizes().1.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for setting in SETTINGS {
            metadata.insert(setting.key.to_string(), (setting.get)(params));
        }
        match encoding.target() {
            TargetEncoding::Classes(labels) => {
                metadata.insert("class_labels".into(), json(labels.to_json()));
            }
            TargetEncoding::Regression(Some(scale)) => {
                metadata.insert("target_mean".into(), scale.mean().to_string());
                metadata.insert("target_sd".into(), scale.sd().to_string());
            }
            TargetEncoding::Regression(None) => {}
        }
        if let Some(state) = self.optimizer_state() {
            metadata.insert("optimizer_steps".into(), state.steps.to_string());
        }
        if let Some(q) = self.training_loss_q99 {
            metadata.insert("training_loss_q99".into(), q.to_string());
        }
        if let Some(report) = self.solution() {
            // Seconds are left out: the same fit must give the same bytes.
            for (key, value) in [
                ("solved_kkt", report.kkt.to_string()),
                ("solved_objective", report.objective.to_string()),
                ("solved_epochs", report.epochs.to_string()),
                ("solved_converged", report.converged.to_string()),
            ] {
                metadata.insert(key.into(), value);
            }
        }
        if let Some(iterate) = self.iterate() {
            tensors.push(("iterate.beta".into(), iterate.beta.clone()));
            tensors.push(("iterate.bias".into(), iterate.bias.clone()));
        }
        serialize(tensors, metadata).map_err(bad)
    }

    /// Reads a model from a file's bytes onto `device`, checking format, version, every
    /// tensor and every shape.
    ///
    /// Any damage is an [`Error::ModelFile`] naming the problem (a missing or unreadable
    /// metadata key, a format version newer than [`FORMAT_VERSION`], a tensor that is missing
    /// or has the wrong shape or dtype, a non-finite or inconsistent stored value, duplicate
    /// feature names), never a panic: shapes and dtypes are checked on the header before any
    /// tensor data is read, so a header declaring huge dimensions allocates nothing.
    pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<Self> {
        let file = TensorReader::new(bytes)?;
        let meta = |key: &str| file.meta(key);
        if meta("format").ok() != Some("metaadd") {
            return Err(bad(
                "not a metaadd model (metadata `format` is not `metaadd`)",
            ));
        }
        let version: u32 = parse(meta("format_version")?, "format_version")?;
        if version > FORMAT_VERSION || version == 0 {
            return Err(bad(format!(
                "format version {version} is not supported (this build reads versions 1 to \
                 {FORMAT_VERSION}); it was written by metaadd {}",
                meta("crate_version").unwrap_or("?")
            )));
        }
        let feature_names: Vec<String> =
            serde_json::from_str(meta("feature_names")?).map_err(|e| {
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
        let params = read_params(&file, version, device)?;
        let task = params.task;
        // Version 1 kept the η used under `eta`; version 2 keeps the setting there.
        let eta: f64 = if version == 1 {
            parse(meta("eta")?, "eta")?
        } else {
            parse(meta("step_size")?, "step_size")?
        };
        if !(eta.is_finite() && eta > 0.0) {
            return Err(bad(format!("the step size {eta} is not positive")));
        }

        let spec = params.basis;
        let p = feature_names.len();
        let m = spec.n_basis;
        let c = task.outputs();
        let h = params.hidden;
        let dtype = params.dtype;
        let host = |name: &str, shape: &[usize]| -> Result<Vec<f64>> {
            Ok(file
                .get(name, shape, DType::F64)?
                .flatten_all()?
                .to_vec1()?)
        };
        let parts = BasisParts {
            mean: host("basis.mean", &[p])?,
            scale: host("basis.scale", &[p])?,
            knots: host("basis.knots", &[p, BasisParts::knots_per_feature(spec)])?,
            centre: host("basis.centre", &[p, m + 1])?,
            transform: host("basis.transform", &[p, m + 1, m])?,
        };
        let basis = SplineBasis::from_parts(spec, parts).map_err(|e| bad(e.to_string()))?;
        let on_device = |name: &str, shape: &[usize]| -> Result<Tensor> {
            Ok(file.get_finite(name, shape, dtype)?.to_device(device)?)
        };
        let coefficients = Coefficients {
            beta: on_device("model.beta", &[p.saturating_mul(m), c])?,
            bias: on_device("model.bias", &[c])?,
        };
        let net_shapes = WeightNet::shapes(h, params.weight_net_classes());
        let net_tensors = net_shapes
            .clone()
            .with_names()
            .try_map(|(name, shape)| on_device(name, &shape))?;
        let target_name = meta("target_name")?.to_string();
        let additive = AdditiveModel::new(
            basis,
            coefficients,
            task,
            feature_names.clone(),
            target_name.clone(),
        )
        .map_err(|e| bad(e.to_string()))?;
        let encoding = read_encoding(&file, task, &feature_names, target_name)?;
        // Absent in files written before the optimiser state was kept: such a model predicts,
        // but training cannot resume from it exactly.
        let optimizer = match file.metadata().get("optimizer_steps") {
            None => None,
            Some(steps) => {
                // In `PARAMETER_NAMES` order, as the trainer's AdamW holds the parameters.
                let moments = |kind: &str| -> Result<Vec<Tensor>> {
                    net_shapes
                        .named()
                        .into_iter()
                        .map(|(name, shape)| on_device(&format!("optimizer.{kind}.{name}"), shape))
                        .collect()
                };
                Some(AdamWState {
                    steps: parse(steps, "optimizer_steps")?,
                    first: moments("first")?,
                    second: moments("second")?,
                })
            }
        };
        let solution = match file.metadata().get("solved_kkt") {
            None => None,
            Some(kkt) => Some(SolveReport {
                kkt: parse(kkt, "solved_kkt")?,
                objective: parse(meta("solved_objective")?, "solved_objective")?,
                epochs: parse(meta("solved_epochs")?, "solved_epochs")?,
                seconds: f64::NAN,
                converged: parse(meta("solved_converged")?, "solved_converged")?,
            }),
        };
        let iterate = match file.contains("iterate.beta") || file.contains("iterate.bias") {
            false => None,
            true => Some(Coefficients {
                beta: on_device("iterate.beta", &[p.saturating_mul(m), c])?,
                bias: on_device("iterate.bias", &[c])?,
            }),
        };
        let training_loss_q99 = file
            .metadata()
            .get("training_loss_q99")
            .map(|v| parse(v, "training_loss_q99"))
            .transpose()?;
        Ok(MetaAdditiveModel {
            training_loss_q99,
            solution,
            iterate,
            additive,
            optimizer,
            encoding,
            weightnet: WeightNet::from_tensors(&net_tensors)
                .map_err(|e| bad(e.to_string()))?
                .with_curve(params.weight_curve),
            crate_version: meta("crate_version")?.to_string(),
            eta,
            params,
            n_train: parse(meta("n_train")?, "n_train")?,
            n_meta: parse(meta("n_meta")?, "n_meta")?,
        })
    }
}

/// The fit settings, each read through [`SETTINGS`]; version 1 files kept the η used under
/// `eta`, which becomes the setting.
fn read_params(file: &TensorReader<'_>, version: u32, device: &Device) -> Result<FitParams> {
    let task =
        Task::from_str(file.meta("task")?).map_err(|e| bad(format!("metadata `task`: {e}")))?;
    let mut params = FitParams::new(task);
    for setting in SETTINGS {
        let value = match (file.metadata().get(setting.key), setting.absent) {
            (Some(v), _) => v.as_str(),
            (None, Some(default)) => default,
            (None, None) => file.meta(setting.key)?,
        };
        (setting.set)(&mut params, value)
            .map_err(|e| bad(format!("metadata `{}`: {e}", setting.key)))?;
    }
    if version == 1 && params.eta.is_none() {
        return Err(bad("metadata `eta` must be a number in a version 1 file"));
    }
    params.device = device.clone();
    params.validate().map_err(|e| bad(e.to_string()))?;
    Ok(params)
}

/// The inputs and the target's encoding; `feature_names` must be what the inputs give.
fn read_encoding(
    file: &TensorReader<'_>,
    task: Task,
    feature_names: &[String],
    target_name: String,
) -> Result<Encoding> {
    let metadata = file.metadata();
    let inputs = match metadata.get("inputs") {
        None => feature_names
            .iter()
            .map(|n| InputColumn::Numeric(n.clone()))
            .collect(),
        Some(text) => {
            let list: Vec<serde_json::Value> = serde_json::from_str(text)
                .map_err(|e| bad(format!("metadata `inputs` is not a JSON list: {e}")))?;
            list.iter()
                .map(|v| match v {
                    serde_json::Value::String(name) => Ok(InputColumn::Numeric(name.clone())),
                    serde_json::Value::Object(o) => {
                        let name = o.get("name").and_then(|n| n.as_str());
                        let levels = o.get("levels").and_then(|l| {
                            l.as_array()?
                                .iter()
                                .map(|x| x.as_str().map(str::to_string))
                                .collect::<Option<Vec<String>>>()
                        });
                        match (name, levels) {
                            (Some(name), Some(levels)) => Ok(InputColumn::Categorical {
                                name: name.to_string(),
                                levels,
                            }),
                            _ => Err(bad(format!(
                                "metadata `inputs`: {v} needs a `name` and a list of `levels`"
                            ))),
                        }
                    }
                    other => Err(bad(format!("metadata `inputs`: unreadable entry {other}"))),
                })
                .collect::<Result<Vec<_>>>()?
        }
    };
    let target = match task {
        Task::Regression => {
            let scale = match (metadata.get("target_mean"), metadata.get("target_sd")) {
                (None, None) => None,
                (Some(mean), Some(sd)) => Some(
                    TargetScale::new(parse(mean, "target_mean")?, parse(sd, "target_sd")?)
                        .map_err(|e| bad(e.to_string()))?,
                ),
                _ => {
                    return Err(bad(
                        "metadata holds only one of `target_mean` and `target_sd`",
                    ))
                }
            };
            TargetEncoding::Regression(scale)
        }
        task => {
            if metadata.contains_key("target_mean") || metadata.contains_key("target_sd") {
                return Err(bad(format!(
                    "metadata `target_mean`/`target_sd` on a {task} model"
                )));
            }
            let classes = task.outputs().max(2);
            let labels = match metadata.get("class_labels") {
                None => ClassLabels::numbers((0..classes).map(|c| c as f64).collect()),
                Some(text) => {
                    let value: serde_json::Value = serde_json::from_str(text)
                        .map_err(|e| bad(format!("metadata `class_labels` is not JSON: {e}")))?;
                    // The count first: checking that labels are distinct takes time quadratic
                    // in it.
                    let n = value.as_array().map_or(0, Vec::len);
                    if n != classes {
                        return Err(bad(format!(
                            "metadata `class_labels` has {n} labels for a {task} task"
                        )));
                    }
                    ClassLabels::from_json(&value)
                }
            }
            .map_err(|e| bad(format!("metadata `class_labels`: {e}")))?;
            TargetEncoding::Classes(labels)
        }
    };
    let encoding = Encoding::new(inputs, target_name, target).map_err(|e| bad(e.to_string()))?;
    if encoding.feature_names() != feature_names {
        return Err(bad(
            "metadata `inputs` does not give the model's `feature_names`",
        ));
    }
    Ok(encoding)
}

fn parse<T: FromStr>(value: &str, key: &str) -> Result<T> {
    value.parse().map_err(|_| {
        bad(format!(
            "metadata `{key}` has the unreadable value `{value}`"
        ))
    })
}
