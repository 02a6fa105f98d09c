//! `metaadd hypergrad` and `metaadd check-grad`: one bilevel problem from CSV files and its
//! hypergradient, written as a safetensors file that any other framework can check, or checked
//! here by finite differences.

use crate::fit::{encode, meta_scale, read_matching, standardise, task_and_labels, ModelArgs};
use anyhow::bail;
use candle_core::{DType, Device, Tensor};
use clap::Args;
use metaadd::checkpoint::{save_problem, ProblemFile};
use metaadd::data::csv::CsvTable;
use metaadd::hypergrad::{hypergradient, Bilevel, HypergradOptions, ImplicitReport};
use metaadd::inner::{Coefficients, InnerStep, Problem};
use metaadd::{MetaAdditiveModel, Trainer, WeightNet};
use std::path::PathBuf;

/// The bilevel problem's data and settings, shared by `hypergrad` and `check-grad`.
#[derive(Args)]
pub struct ProblemArgs {
    /// Training data (CSV with a header row).
    #[arg(long)]
    train: PathBuf,
    /// Clean meta data (CSV with the training file's feature and target columns).
    #[arg(long)]
    meta: PathBuf,
    /// Name of the target column.
    #[arg(long)]
    target: String,
    /// Feature columns, comma-separated [default: every other numeric column; with --model,
    /// the model's].
    #[arg(long, value_delimiter = ',')]
    features: Option<Vec<String>>,
    /// Take basis, coefficients, weight net, η and λ from a fitted model (else: basis fitted on
    /// the training file, β = 0, a seeded weight net, η = 1/L and λ from the flags).
    #[arg(long)]
    model: Option<PathBuf>,
    #[command(flatten)]
    pub settings: ModelArgs,
}

#[derive(Args)]
pub struct HypergradArgs {
    #[command(flatten)]
    problem: ProblemArgs,
    /// Where to write the problem and its hypergradient.
    #[arg(long, default_value = "problem.safetensors")]
    out: PathBuf,
}

/// A problem read from files, in f64, with the options its hypergradient is taken with.
pub struct LoadedProblem {
    pub problem: Bilevel,
    pub start: Coefficients,
    pub net: WeightNet,
    pub options: HypergradOptions,
}

impl LoadedProblem {
    /// One line describing the problem's size and settings.
    pub fn describe(&self) -> String {
        let step = self.problem.step;
        format!(
            "{} training and {} meta rows, {} features × {} basis functions, K = {}, mode {}",
            self.problem.train.n_samples(),
            self.problem.meta.n_samples(),
            step.n_features,
            self.problem.train.n_columns() / step.n_features,
            self.options.k,
            self.options.mode,
        )
    }
}

pub fn load(args: &ProblemArgs) -> anyhow::Result<LoadedProblem> {
    if args.settings.lambda == crate::fit::LambdaArg::Auto {
        anyhow::bail!(
            "--lambda auto chooses λ by a path and is for `metaadd fit` only; give a number"
        );
    }
    let device = Device::Cpu;
    let model = args
        .model
        .as_ref()
        .map(|path| MetaAdditiveModel::load(path, &device))
        .transpose()?;
    let table = CsvTable::read(&args.train)?;
    let features = match (&model, &args.features) {
        (Some(m), None) => Some(m.additive().feature_names().to_vec()),
        (_, given) => given.clone(),
    };
    let (train, warnings) = table.dataset(&args.target, features.as_deref())?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let (task, labels) = match &model {
        Some(m) => (m.additive().task(), m.class_labels().cloned()),
        None => task_and_labels(args.settings.task, &table, &train)?,
    };
    let meta = read_matching(&args.meta, &args.target, &train, labels.as_ref())?;
    let train = encode(&train, labels.as_ref(), &table)?;
    // A model's own scale when it has one; a model without one was fitted on raw targets.
    let scale = match &model {
        Some(m) => m.target_scale(),
        None => meta_scale(task, &meta, &args.meta.display().to_string(), &args.target)?,
    };
    let (train, meta) = (standardise(scale, &train)?, standardise(scale, &meta)?);

    let params = args.settings.params(task)?;
    params.validate()?;
    let f64_tensor = |t: &Tensor| t.to_dtype(DType::F64);
    let (problem, start, net) = match &model {
        Some(m) => {
            let additive = m.additive();
            let c = additive.coefficients();
            let loss = params.resolved_loss();
            let problem = |data: &metaadd::Dataset| -> anyhow::Result<Problem> {
                Ok(Problem::new(
                    &f64_tensor(&additive.design(data.x())?)?,
                    &task.encode_targets(data.y(), DType::F64, &device)?,
                    loss,
                )?)
            };
            let problem = Bilevel {
                train: problem(&train)?,
                meta: problem(&meta)?,
                step: InnerStep {
                    eta: m.eta(),
                    lambda: m.params().lambda,
                    ridge: m.params().ridge,
                    n_features: additive.basis().n_features(),
                    normalize_weights: m.params().normalize_weights,
                },
            };
            let start = Coefficients {
                beta: f64_tensor(&c.beta)?,
                bias: f64_tensor(&c.bias)?,
            };
            let net = WeightNet::from_tensors(
                &m.weightnet()
                    .tensors()
                    .iter()
                    .map(f64_tensor)
                    .collect::<Result<Vec<_>, _>>()?,
            )?;
            (problem, start, net)
        }
        // A fresh fit's starting point: exactly what `metaadd fit` would start from, in f64.
        None => {
            let trainer = Trainer::new(&params.clone().dtype(DType::F64), &train, &meta)?;
            let start = trainer.coefficients().clone();
            (trainer.bilevel(), start, trainer.weightnet().clone())
        }
    };
    let options = params.hypergrad_options();
    Ok(LoadedProblem {
        problem,
        start,
        net,
        options,
    })
}

pub fn run(args: &HypergradArgs) -> anyhow::Result<()> {
    let loaded = load(&args.problem)?;
    let hg = hypergradient(&loaded.problem, &loaded.start, &loaded.net, loaded.options)?;
    if !hg.meta_loss.is_finite() {
        bail!("the meta loss is not finite ({})", hg.meta_loss);
    }
    save_problem(
        &args.out,
        ProblemFile {
            problem: &loaded.problem,
            start: &loaded.start,
            net: &loaded.net,
            hypergradient: &hg,
            options: loaded.options,
        },
    )?;
    println!(
        "wrote {}: {}, F_K = {:.6e}, |dF_K/dφ| = {:.6e}",
        args.out.display(),
        loaded.describe(),
        hg.meta_loss,
        hg.norm()?
    );
    if let Some(report) = hg.implicit {
        println!("{}", implicit_summary(&report));
    }
    Ok(())
}

/// How the implicit mode converged, in one line.
pub fn implicit_summary(report: &ImplicitReport) -> String {
    format!(
        "implicit: fixed point after {} inner steps (relative step {:.1e}), {} active groups, \
         conjugate gradients {} iterations, residual {:.1e}",
        report.inner_steps,
        report.fixed_point_residual,
        report.active_groups,
        report.cg_iterations,
        report.cg_residual
    )
}
