//! A bilevel problem at one point and its hypergradient, written to a safetensors file so that
//! any other framework can check it (`metaadd hypergrad`).

use crate::error::{Error, Result};
use crate::hypergrad::{Bilevel, HypergradOptions, Hypergradient};
use crate::inner::{Coefficients, Problem};
use crate::loss::Loss;
use crate::tensor_file::serialize;
use crate::weightnet::WeightNet;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

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
/// `design.meta`, `target.meta`, `meta.row_weights` `[n_meta]` (each meta row's share of the
/// meta loss `F_K = Σ_i a_i ℓ_i`: `1/n_meta`, or `1/(K·n_class)` when class-balanced),
/// `beta` `[p·m, C]`, `bias` `[C]`, the four `weightnet.*` tensors and
/// `hypergrad.weightnet.*` with the same shapes; string metadata `loss`, `eta`, `lambda`,
/// `ridge`, `k`, `features`, `basis_size`, `outputs`, `mode`, `detach_weight_input`,
/// `normalize_weights`, `weight_curve` (`free`, or `decreasing` / `increasing`: the net then
/// computes with `softplus(fc1.weight)` and `∓softplus(fc2.weight)/√h`, see
/// [`crate::weightnet::WeightCurve`]), `meta_objective` (`mean` or `balanced`) and `meta_loss`
/// (`F_K`), `weight_classes` (0, or the class inputs of a class-aware net: `fc1.weight` is then
/// `[h, 1 + classes]`, its first column for the loss and column `1 + c` for rows of class `c`,
/// the class of a training row being its `target.train`).
pub fn save_problem(path: &Path, file: ProblemFile<'_>) -> Result<()> {
    let f64_host =
        |t: &Tensor| -> Result<Tensor> { Ok(t.to_dtype(DType::F64)?.to_device(&Device::Cpu)?) };
    let loss = file.problem.train.loss();
    // Targets as the problem holds them ([n, C]) back to one number per row.
    let target = |p: &Problem| -> Result<Tensor> {
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
        (
            "meta.row_weights".into(),
            f64_host(&file.problem.meta.row_weights()?)?,
        ),
        ("beta".into(), f64_host(&file.start.beta)?),
        ("bias".into(), f64_host(&file.start.bias)?),
    ];
    for ((name, t), g) in file
        .net
        .tensors()
        .with_names()
        .zip(file.hypergradient.grads.as_ref())
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
        ("weight_curve", file.net.curve().to_string()),
        ("weight_classes", file.net.classes().to_string()),
        (
            "meta_objective",
            if file.problem.meta.is_class_balanced() {
                "balanced"
            } else {
                "mean"
            }
            .to_string(),
        ),
        ("meta_loss", file.hypergradient.meta_loss.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let bytes = serialize(tensors, metadata).map_err(|reason| Error::ModelFile {
        path: path.to_path_buf(),
        reason,
    })?;
    crate::output::write_bytes(path, &bytes)
}
