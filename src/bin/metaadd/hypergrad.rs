//! `metaadd hypergrad` and `metaadd check-grad`: one bilevel problem from CSV files and its
//! hypergradient, written as a safetensors file that any other framework can check, or checked
//! here by finite differences.

use crate::args::{LambdaArg, ModelArgs};
use anyhow::bail;
use candle_core::{DType, Tensor};
use clap::Args;
use metaadd::hypergrad::export::{save_problem, ProblemFile};
use metaadd::hypergrad::{hypergradient, Bilevel, HypergradOptions, ImplicitReport};
use metaadd::inner::{Coefficients, InnerStep, Problem};
use metaadd::prepare::Preparation;
use metaadd::{MetaAdditiveModel, Table, WeightNet};
use std::path::PathBuf;

/// The bilevel problem's data and settings, shared by `hypergrad` and `check-grad`.
#[derive(Args)]
pub struct ProblemArgs {
    #[command(flatten)]
    pub runtime: crate::args::RuntimeArgs,
    /// Training data (CSV with a header row).
    #[arg(long)]
    train: PathBuf,
    /// Clean meta data (CSV with the training file's feature and target columns).
    #[arg(long)]
    meta: PathBuf,
    /// Name of the target column.
    #[arg(long)]
    target: String,
    /// Feature columns, comma-separated [default: every other column; with --model, the
    /// model's].
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
    /// Where to write the problem and its hypergradient (a file: `-` is refused).
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
    if args.settings.lambda == LambdaArg::Auto {
        bail!("--lambda auto chooses λ by a path and is for `metaadd fit` only; give a number");
    }
    let device = args.runtime.start()?;
    let train_table = Table::read_csv(&args.train)?;
    let meta_table = Table::read_csv(&args.meta)?;
    let f64_tensor = |t: &Tensor| t.to_dtype(DType::F64);
    let (params, problem, start, net) = match &args.model {
        // The model's own settings (its loss among them), encoding, basis and coefficients.
        Some(path) => {
            let m = MetaAdditiveModel::load(path, &device)?;
            let target = m.encoding().target_name();
            if args.target != target {
                bail!(
                    "--target {}: the model {} was fitted on the target `{target}`",
                    args.target,
                    path.display()
                );
            }
            let additive = m.additive();
            let task = additive.task();
            // K, mode and detaching from the flags; the problem (loss, λ, η) is the model's.
            let params = args.settings.params(task)?;
            let fitted = m.params();
            let loss = fitted.resolved_loss();
            // The products read the sparse form where --design says (auto by default).
            let problem = |table: &Table| -> anyhow::Result<Problem> {
                let data = m.read_labelled(table)?;
                let y = m.encoding().encode_targets(&data)?;
                let problem = Problem::new(
                    &f64_tensor(&additive.design(data.x())?)?,
                    &task.encode_targets(&y, DType::F64, &device)?,
                    loss,
                )?;
                Ok(problem.with_design_storage(params.design, additive.basis(), data.x())?)
            };
            let problem = Bilevel {
                train: problem(&train_table)?,
                meta: problem(&meta_table)?,
                step: InnerStep {
                    eta: m.eta(),
                    lambda: fitted.lambda,
                    ridge: fitted.ridge,
                    n_features: additive.basis().n_features(),
                    normalize_weights: fitted.resolved_normalize_weights(),
                },
            };
            let c = additive.coefficients();
            let start = Coefficients {
                beta: f64_tensor(&c.beta)?,
                bias: f64_tensor(&c.bias)?,
            };
            let net =
                WeightNet::from_tensors(&m.weightnet().tensors().try_map(|t| f64_tensor(&t))?)?
                    .with_curve(m.weightnet().curve());
            (params, problem, start, net)
        }
        // A fresh fit's starting point: exactly what `metaadd fit` would start from, in f64.
        None => {
            let mut preparation = Preparation::new(args.target.clone(), args.settings.task.into());
            if let Some(features) = &args.features {
                preparation = preparation.features(features.clone());
            }
            let mut base = args.settings.params(metaadd::Task::Regression)?;
            base.device = device.clone();
            let prepared = preparation.prepare(&train_table, Some(&meta_table), None, &base)?;
            for w in &prepared.warnings {
                eprintln!("warning: {w}");
            }
            let params = prepared.params(&base).dtype(DType::F64);
            let (problem, start, net) = prepared.starting_point(&params)?;
            (params, problem, start, net)
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
    crate::outputs::file("--out", &args.out, "a safetensors file is binary")?;
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
