//! `metaadd fit`: train a MAM on CSV files.

use crate::figures::{write_figure, ImageFormat, Panel, Series};
use crate::report::{print_table, Report};
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use metaadd::data::csv::{write_csv, CsvTable};
use metaadd::data::split::{hard_holdout, holdout};
use metaadd::data::targets::{ClassLabels, TargetScale};
use metaadd::memory::{human_bytes, MemoryEstimate};
use metaadd::path::{LambdaPath, PathParams, SelectBy};
use metaadd::{
    metrics, BasisSpec, Dataset, FitParams, Loss, MetaAdditiveModel, Task, Trainer, Weighting,
};
use plotters::prelude::SeriesLabelPosition;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TaskArg {
    Regression,
    Binary,
    Multiclass,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetaSelect {
    /// Stratified random rows (classification), random rows (regression).
    Random,
    /// The correctly classified rows with the smallest margin under a uniform-weight fit.
    Hard,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BasisArg {
    Bspline,
    Bernstein,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DTypeArg {
    F32,
    F64,
}

impl From<DTypeArg> for candle_core::DType {
    fn from(d: DTypeArg) -> Self {
        match d {
            DTypeArg::F32 => candle_core::DType::F32,
            DTypeArg::F64 => candle_core::DType::F64,
        }
    }
}

fn default() -> FitParams {
    FitParams::new(Task::Regression)
}

/// Model options: every setting of the library, with the library's defaults.
#[derive(Args, Clone)]
pub struct ModelArgs {
    /// What the target is.
    #[arg(long, value_enum, default_value = "regression")]
    pub task: TaskArg,
    /// Training loss: squared, huber(δ), logistic or softmax [default: the task's].
    #[arg(long)]
    pub loss: Option<String>,
    /// Spline family.
    #[arg(long, value_enum, default_value = "bspline")]
    pub basis: BasisArg,
    /// Basis columns per feature m (the degree for bernstein).
    #[arg(long, default_value_t = default().basis.n_basis)]
    pub n_basis: usize,
    /// Orthonormalise each feature's block on the training rows.
    #[arg(long, default_value_t = default().basis.orthonormalize, action = clap::ArgAction::Set)]
    pub orthonormal: bool,
    /// Learn the sample weights (meta), weight every sample 1 (uniform), or use fixed weights:
    /// huber(δ) = min(1, δ/√(2ℓ)) or tilted(t) ∝ exp(t·ℓ).
    #[arg(long, default_value = "meta")]
    pub weighting: String,
    /// Unroll depth K of the exact hypergradient.
    #[arg(long, default_value_t = default().k)]
    pub k: usize,
    /// Hypergradient: exact, exact-recompute (same value, memory O(K·p·m)), truncated(k)
    /// (backpropagate through the last k of K steps), one-step (Meta-Weight-Net) or implicit
    /// (K → ∞ at the converged inner solution; needs a strongly convex inner problem).
    #[arg(long, visible_alias = "mode", default_value_t = default().hypergradient)]
    pub hypergradient: metaadd::HypergradMode,
    /// Treat the loss fed to the weight net as a constant in the hypergradient.
    #[arg(long)]
    pub detach_weight_input: bool,
    /// Divide the weights by their mean in every inner step (only their ratios matter).
    #[arg(long)]
    pub normalize_weights: bool,
    /// Group-lasso strength λ, or `auto` (fit only): a λ path from λ_max down, each support
    /// scored by the meta loss of a relaxed refit, then --epochs iterations on the chosen one.
    #[arg(long, default_value_t = LambdaArg::Value(default().lambda))]
    pub lambda: LambdaArg,
    /// Inner step size η [default: 1/L from the design].
    #[arg(long)]
    pub eta: Option<f64>,
    /// Ridge strength on the coefficients.
    #[arg(long, default_value_t = default().ridge)]
    pub ridge: f64,
    /// Hidden units of the weight net.
    #[arg(long, default_value_t = default().hidden)]
    pub hidden: usize,
    /// AdamW learning rate of the weight net.
    #[arg(long, default_value_t = default().learning_rate)]
    pub lr: f64,
    /// AdamW weight decay of the weight net.
    #[arg(long, default_value_t = default().weight_decay)]
    pub weight_decay: f64,
    /// Outer iterations.
    #[arg(long, visible_alias = "iterations", default_value_t = default().iterations)]
    pub epochs: usize,
    /// Real inner steps per outer iteration.
    #[arg(long, default_value_t = default().inner_steps)]
    pub inner_steps: usize,
    /// Training rows per iteration [default: all].
    #[arg(long)]
    pub train_batch: Option<usize>,
    /// Meta rows per iteration [default: all].
    #[arg(long)]
    pub meta_batch: Option<usize>,
    /// Seed for initialisation, mini-batches and the meta hold-out.
    #[arg(long, default_value_t = default().seed)]
    pub seed: u64,
    /// Tensor precision.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DTypeArg,
}

/// `--lambda`: a number or `auto`.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum LambdaArg {
    Value(f64),
    Auto,
}

impl std::str::FromStr for LambdaArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            v => match v.parse::<f64>() {
                Ok(lambda) if lambda.is_finite() && lambda >= 0.0 => Ok(Self::Value(lambda)),
                _ => Err(format!("expected a number ≥ 0 or `auto`, got {v:?}")),
            },
        }
    }
}

impl std::fmt::Display for LambdaArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(lambda) => write!(f, "{lambda}"),
            Self::Auto => write!(f, "auto"),
        }
    }
}

impl ModelArgs {
    /// The library parameters for a task whose class count is known.
    pub fn params(&self, task: Task) -> anyhow::Result<FitParams> {
        let loss = self.loss.as_deref().map(str::parse::<Loss>).transpose()?;
        let basis = match self.basis {
            BasisArg::Bspline => BasisSpec::bspline(self.n_basis),
            BasisArg::Bernstein => BasisSpec::bernstein(self.n_basis),
        }
        .orthonormalized(self.orthonormal);
        Ok(FitParams::new(task)
            .loss(loss)
            .basis(basis)
            .weighting(self.weighting.parse::<Weighting>()?)
            .k(self.k)
            .hypergradient(self.hypergradient)
            .detach_weight_input(self.detach_weight_input)
            .normalize_weights(self.normalize_weights)
            .lambda(match self.lambda {
                LambdaArg::Value(lambda) => lambda,
                LambdaArg::Auto => default().lambda,
            })
            .eta(self.eta)
            .ridge(self.ridge)
            .hidden(self.hidden)
            .learning_rate(self.lr)
            .weight_decay(self.weight_decay)
            .iterations(self.epochs)
            .inner_steps(self.inner_steps)
            .train_batch(self.train_batch)
            .meta_batch(self.meta_batch)
            .seed(self.seed)
            .dtype(self.dtype.into()))
    }
}

#[derive(Args)]
pub struct FitArgs {
    /// Training data (CSV with a header row).
    #[arg(long)]
    train: PathBuf,
    /// Name of the target column.
    #[arg(long)]
    target: String,
    /// Feature columns, comma-separated [default: every other numeric column].
    #[arg(long, value_delimiter = ',')]
    features: Option<Vec<String>>,
    /// Clean meta data (CSV with the training file's columns).
    #[arg(long, conflicts_with = "meta_frac")]
    meta: Option<PathBuf>,
    /// Fraction of the training file held out as the meta set (stratified for classification).
    #[arg(long)]
    meta_frac: Option<f64>,
    /// How held-out meta rows are chosen (classification).
    #[arg(long, value_enum, default_value = "random")]
    meta_select: MetaSelect,
    #[command(flatten)]
    model: ModelArgs,
    /// With --lambda auto: number of λ values on the path.
    #[arg(long, default_value_t = 12)]
    lambdas: usize,
    /// With --lambda auto: the smallest λ as a fraction of λ_max.
    #[arg(long, default_value_t = 1e-2)]
    min_ratio: f64,
    /// With --lambda auto: what chooses λ, the meta loss or (classification) the meta
    /// misclassification rate (`error`).
    #[arg(long, default_value = "loss")]
    select_by: SelectBy,
    /// With --lambda auto: outer iterations at each λ of the path.
    #[arg(long, default_value_t = 100)]
    path_iterations: usize,
    /// With --lambda auto: draw the path (group norms and meta losses against λ) to this SVG
    /// or PNG file, and write its numbers to the same name with `.csv`.
    #[arg(long)]
    path_plot: Option<PathBuf>,
    /// Where to write the model.
    #[arg(long, default_value = "model.safetensors")]
    out: PathBuf,
    /// Also write the model to --out every N iterations (0: only at the end), so that a run
    /// that stops leaves its last good model; --resume continues from it.
    #[arg(long, default_value_t = 0)]
    checkpoint_every: usize,
    /// Refuse a fit whose estimated peak memory exceeds this (bytes, or with K/M/G/T, binary
    /// units) [default: 80% of the memory available when the fit starts].
    #[arg(long)]
    max_memory: Option<MemorySize>,
    /// Continue training from this model file (a checkpoint), on the same data and settings,
    /// up to --epochs iterations in all: the result is the one an uninterrupted run gives.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Print the final metrics as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &FitArgs) -> anyhow::Result<()> {
    let table = CsvTable::read(&args.train)?;
    let (data, warnings) = table.dataset(&args.target, args.features.as_deref())?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let (task, labels) = task_and_labels(args.model.task, &table, &data)?;
    let data = encode(&data, labels.as_ref(), &table)?;
    let params = args.model.params(task)?;

    let (train, meta, meta_source) = match (&args.meta, args.meta_frac) {
        (Some(path), _) => {
            let meta_table = CsvTable::read(path)?;
            if args.meta_select == MetaSelect::Hard {
                bail!("--meta-select hard holds rows out of the training file; use it with --meta-frac");
            }
            let meta = meta_table.dataset_exact(&args.target, data.feature_names())?;
            let extra: Vec<String> = meta_table
                .headers()
                .iter()
                .filter(|h| !table.headers().contains(h))
                .map(|h| format!("`{h}`"))
                .collect();
            if !extra.is_empty() {
                bail!(
                    "{}: column(s) {} are not in the training file {}; the meta file must have \
                     the training file's columns",
                    path.display(),
                    extra.join(", "),
                    args.train.display()
                );
            }
            let meta = encode(&meta, labels.as_ref(), &meta_table)?;
            (data, meta, path.display().to_string())
        }
        (None, Some(frac)) => {
            let classification = task != Task::Regression;
            let (train, meta) = match args.meta_select {
                MetaSelect::Random => holdout(&data, frac, classification, args.model.seed)?,
                MetaSelect::Hard => {
                    if !classification {
                        bail!("--meta-select hard needs a classification task (margins)");
                    }
                    let uniform = params
                        .clone()
                        .weighting(Weighting::Uniform)
                        .fit(&data, &data)?;
                    let margins = uniform.model.additive().margins(&data)?;
                    hard_holdout(&data, frac, &margins)?
                }
            };
            let select = match args.meta_select {
                MetaSelect::Random => "random",
                MetaSelect::Hard => "hard",
            };
            (
                train,
                meta,
                format!("{frac} of {} ({select})", args.train.display()),
            )
        }
        (None, None) => {
            bail!("give a clean meta set with --meta FILE or hold one out with --meta-frac F")
        }
    };

    let need = params.basis.min_training_rows();
    if train.n_samples() < need {
        bail!(
            "{}: {} training rows{}, but a {} basis needs at least {need}",
            args.train.display(),
            train.n_samples(),
            if args.meta.is_some() {
                ""
            } else {
                " after holding out the meta set"
            },
            params.basis
        );
    }
    if meta.n_samples() < 2 {
        bail!(
            "meta set ({meta_source}): {} row(s); it needs at least 2",
            meta.n_samples()
        );
    }

    let scale = meta_scale(task, &meta, &meta_source, &args.target)?;
    let (train_std, meta_std) = (standardise(scale, &train)?, standardise(scale, &meta)?);
    // A model as it is written: with the original class labels and the target's scale.
    let finish = |mut model: MetaAdditiveModel| -> anyhow::Result<MetaAdditiveModel> {
        if let Some(labels) = &labels {
            model = model.with_class_labels(labels.clone())?;
        }
        if let Some(scale) = scale {
            model = model.with_target_scale(scale)?;
        }
        Ok(model)
    };
    if args.model.lambda == LambdaArg::Auto && (args.resume.is_some() || args.checkpoint_every > 0)
    {
        bail!("--checkpoint-every and --resume work with a fixed λ, not with --lambda auto");
    }
    check_memory(
        std::slice::from_ref(&params),
        (train.n_samples(), meta.n_samples(), train.n_features()),
        args.max_memory,
    )?;
    let start = Instant::now();
    let mut path_report = None;
    let (model, last) = match args.model.lambda {
        LambdaArg::Value(_) => {
            let mut trainer = match &args.resume {
                Some(path) => resume(path, &params, &train_std, &meta_std)?,
                None => Trainer::new(&params, &train_std, &meta_std)?,
            };
            let bar = progress_bar(params.iterations, "iterations", args.quiet);
            let mut last = None;
            let mut saved: Option<usize> = None;
            while trainer.iterations_done() < params.iterations {
                let m = trainer.step().map_err(|e| {
                    let hint = match saved {
                        Some(i) => format!(
                            "; the last good model (after {i} iterations) is in {}",
                            args.out.display()
                        ),
                        None => String::new(),
                    };
                    anyhow::anyhow!("{e}{hint}")
                })?;
                let done = m.iteration + 1;
                if m.iteration % 10 == 0 || done == params.iterations {
                    bar.set_position(done as u64);
                    bar.set_message(format!(
                        "meta loss {:.4}  active groups {}",
                        m.meta_loss, m.active_groups
                    ));
                }
                if args.checkpoint_every > 0
                    && done % args.checkpoint_every == 0
                    && done < params.iterations
                {
                    finish(trainer.model()?)?.save(&args.out).with_context(|| {
                        format!("writing a checkpoint to {}", args.out.display())
                    })?;
                    saved = Some(done);
                }
                last = Some(m);
            }
            bar.finish_and_clear();
            (trainer.into_model()?, last)
        }
        LambdaArg::Auto => {
            let path_params = PathParams::new(params.clone().iterations(args.path_iterations))
                .lambdas(args.lambdas)
                .min_ratio(args.min_ratio)
                .select_by(args.select_by)
                .final_iterations(params.iterations);
            let bar = progress_bar(args.lambdas, "λ path steps", args.quiet);
            let path = path_params.fit_with_progress(&train_std, &meta_std, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })?;
            bar.finish_and_clear();
            if let Some(plot) = &args.path_plot {
                write_path(plot, &path, train.feature_names())?;
            }
            let model = path.model.clone();
            path_report = Some(path);
            (model, None)
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let model = finish(model)?;
    model
        .save(&args.out)
        .with_context(|| format!("writing the model to {}", args.out.display()))?;

    let mut report = Report::new();
    report.text("model", args.out.display().to_string());
    report.text("task", task.to_string());
    report.text("meta set", meta_source);
    report.count("training rows", train.n_samples());
    report.count("meta rows", meta.n_samples());
    report.count("features", train.n_features());
    if let Some(path) = &path_report {
        report.count("lambda values on the path", path.lambdas.len());
        report.number("chosen lambda", path.lambdas[path.best]);
        report.number("lambda max", path.lambdas[0]);
        report.number("refit lambda", model.params().lambda);
        report.number("chosen refit meta loss", path.scores[path.best]);
    }
    if let Some(m) = last {
        report.number("final meta loss", m.meta_loss);
        report.number("final training loss", m.train_loss);
        report.number("mean weight", m.mean_weight);
    }
    add_quality(&mut report, &model, &train, "training")?;
    add_quality(&mut report, &model, &meta, "meta")?;
    let additive = model.additive();
    let selected: Vec<String> = additive
        .selected_features()?
        .into_iter()
        .map(|j| additive.feature_names()[j].clone())
        .collect();
    report.count("selected features", selected.len());
    report.list("selected", selected);
    report.number("seconds", seconds);
    if args.json {
        println!("{}", report.json());
    } else {
        print_table(&report.rows());
    }
    Ok(())
}

/// The task with its class count, and the label mapping for classification.
pub fn task_and_labels(
    task: TaskArg,
    table: &CsvTable,
    data: &Dataset,
) -> anyhow::Result<(Task, Option<ClassLabels>)> {
    let labels = match task {
        TaskArg::Regression => return Ok((Task::Regression, None)),
        TaskArg::Binary => ClassLabels::binary(data.y()),
        TaskArg::Multiclass => ClassLabels::multiclass(data.y()),
    }
    .map_err(|e| label_error(e, table, data.target_name()))?;
    let task = match task {
        TaskArg::Binary => Task::Binary,
        _ => Task::Multiclass {
            classes: labels.len(),
        },
    };
    Ok((task, Some(labels)))
}

/// Another file of the same data (meta, test): the training set's feature columns exactly and
/// the target, labels encoded as in training.
pub fn read_matching(
    path: &std::path::Path,
    target: &str,
    like: &Dataset,
    labels: Option<&ClassLabels>,
) -> anyhow::Result<Dataset> {
    let table = CsvTable::read(path)?;
    let data = table.dataset_exact(target, like.feature_names())?;
    encode(&data, labels, &table)
}

pub fn encode(
    data: &Dataset,
    labels: Option<&ClassLabels>,
    table: &CsvTable,
) -> anyhow::Result<Dataset> {
    match labels {
        None => Ok(data.clone()),
        Some(labels) => {
            let y = labels
                .encode(data.y())
                .map_err(|e| label_error(e, table, data.target_name()))?;
            Ok(data.with_targets(y)?)
        }
    }
}

/// Places a label error at its file line and column.
fn label_error(e: metaadd::Error, table: &CsvTable, target: &str) -> anyhow::Error {
    match e {
        metaadd::Error::Label {
            row: Some(row),
            reason,
        } => anyhow::anyhow!(
            "{}: line {}, column `{target}`: {reason}",
            table.path().display(),
            table.line(row)
        ),
        metaadd::Error::Label { row: None, reason } => {
            anyhow::anyhow!("{}: column `{target}`: {reason}", table.path().display())
        }
        other => other.into(),
    }
}

fn add_quality(
    report: &mut Report,
    model: &MetaAdditiveModel,
    data: &Dataset,
    which: &str,
) -> anyhow::Result<()> {
    let additive = model.additive();
    match additive.task() {
        Task::Regression => {
            let f = additive
                .predict_dataset(data)?
                .flatten_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_vec1::<f64>()?;
            let f = match model.target_scale() {
                Some(scale) => scale.decode(&f),
                None => f,
            };
            report.number(&format!("{which} MSE"), metrics::mse(&f, data.y()));
        }
        task => {
            let x = candle_core::Tensor::from_vec(
                data.x().to_vec(),
                (data.n_samples(), data.n_features()),
                &candle_core::Device::Cpu,
            )?;
            let predicted = additive.predict_labels(&x)?;
            let truth: Vec<usize> = data.y().iter().map(|&y| y as usize).collect();
            report.number(
                &format!("{which} accuracy"),
                metrics::accuracy(&predicted, &truth),
            );
            report.number(
                &format!("{which} macro-F1"),
                metrics::macro_f1(&predicted, &truth, task.outputs().max(2)),
            );
        }
    }
    Ok(())
}

/// A progress bar over `total` units on a terminal's stderr; hidden when quiet or redirected.
pub fn progress_bar(total: usize, unit: &str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    let template = format!("{{bar:30}} {{pos}}/{{len}} {unit}  {{msg}}  [{{elapsed_precise}}]");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// The λ path as a two-panel figure (group norms, meta losses) and its numbers as CSV.
fn write_path(plot: &Path, path: &LambdaPath, names: &[String]) -> anyhow::Result<()> {
    let format = ImageFormat::from_path(plot).with_context(|| {
        format!(
            "--path-plot {}: the name must end in .svg or .png",
            plot.display()
        )
    })?;
    let chosen = path.model.additive().selected_features()?;
    let mut norms = Vec::new();
    for (j, name) in names.iter().enumerate() {
        let y: Vec<f64> = path.group_norms.iter().map(|g| g[j]).collect();
        if y.iter().any(|&v| v > 0.0) {
            // Only the chosen features are named: a legend of a hundred lines reads as none.
            let label = if chosen.contains(&j) && chosen.len() <= 10 {
                name.clone()
            } else {
                String::new()
            };
            norms.push(Series {
                label,
                x: path.lambdas.clone(),
                y,
            });
        }
    }
    let lambda = "λ (log scale)".to_string();
    let panels = [
        Panel {
            series: norms,
            log_x: true,
            legend: SeriesLabelPosition::UpperRight,
            ..Panel::curve(
                format!("group norms; chosen λ = {:.3e}", path.lambdas[path.best]),
                lambda.clone(),
                "‖β_j‖".into(),
                Vec::new(),
                Vec::new(),
            )
        },
        Panel {
            series: vec![
                Series {
                    label: "meta loss of the path's fit".into(),
                    x: path.lambdas.clone(),
                    y: path.meta_losses.clone(),
                },
                Series {
                    label: "meta loss of the relaxed refit".into(),
                    x: path.lambdas.clone(),
                    y: path.scores.clone(),
                },
            ],
            log_x: true,
            legend: SeriesLabelPosition::UpperLeft,
            ..Panel::curve(
                "meta loss".into(),
                lambda,
                "meta loss".into(),
                Vec::new(),
                Vec::new(),
            )
        },
    ];
    write_figure(plot, format, &panels, 2)?;
    let mut headers: Vec<String> = ["lambda", "meta_loss", "refit_meta_loss", "active_groups"]
        .map(String::from)
        .to_vec();
    headers.extend(names.iter().map(|n| format!("norm_{n}")));
    let rows: Vec<Vec<String>> = (0..path.lambdas.len())
        .map(|i| {
            let g = &path.group_norms[i];
            let mut row = vec![
                format!("{:e}", path.lambdas[i]),
                format!("{:e}", path.meta_losses[i]),
                format!("{:e}", path.scores[i]),
                g.iter().filter(|&&v| v > 0.0).count().to_string(),
            ];
            row.extend(g.iter().map(|v| format!("{v:e}")));
            row
        })
        .collect();
    Ok(write_csv(&plot.with_extension("csv"), &headers, &rows)?)
}

/// A trainer continuing from the checkpoint at `path`, after checking that the flags ask for
/// the settings the checkpoint was trained with.
fn resume(
    path: &Path,
    params: &FitParams,
    train: &Dataset,
    meta: &Dataset,
) -> anyhow::Result<Trainer> {
    let checkpoint = MetaAdditiveModel::load(path, &params.device)?;
    let differences = setting_differences(checkpoint.params(), params);
    if !differences.is_empty() {
        bail!(
            "--resume {}: the checkpoint was trained with other settings ({}); give the same \
             flags as the run that wrote it",
            path.display(),
            differences.join(", ")
        );
    }
    let done = checkpoint.params().iterations;
    if done > params.iterations {
        bail!(
            "--resume {}: the checkpoint has {done} iterations, more than --epochs {}",
            path.display(),
            params.iterations
        );
    }
    Trainer::resume(&checkpoint, train, meta)
        .with_context(|| format!("--resume {}", path.display()))
}

/// A setting by flag name, and how to read it.
type Setting = (&'static str, fn(&FitParams) -> String);

/// The settings a resumed run must share with its checkpoint.
const RESUMED_SETTINGS: &[Setting] = &[
    ("task", |p| p.task.to_string()),
    ("loss", |p| p.resolved_loss().to_string()),
    ("basis", |p| p.basis.to_string()),
    ("weighting", |p| p.weighting.to_string()),
    ("k", |p| p.k.to_string()),
    ("hypergradient", |p| p.hypergradient.to_string()),
    ("detach-weight-input", |p| p.detach_weight_input.to_string()),
    ("normalize-weights", |p| p.normalize_weights.to_string()),
    ("lambda", |p| p.lambda.to_string()),
    ("ridge", |p| p.ridge.to_string()),
    ("hidden", |p| p.hidden.to_string()),
    ("lr", |p| p.learning_rate.to_string()),
    ("weight-decay", |p| p.weight_decay.to_string()),
    ("inner-steps", |p| p.inner_steps.to_string()),
    ("train-batch", |p| format!("{:?}", p.train_batch)),
    ("meta-batch", |p| format!("{:?}", p.meta_batch)),
    ("seed", |p| p.seed.to_string()),
    ("dtype", |p| format!("{:?}", p.dtype)),
    // A checkpoint records the η it used; flags leave it open unless --eta is given.
    ("eta", |p| p.eta.map_or(String::new(), |e| e.to_string())),
];

/// `name: checkpoint → flags` for every setting that differs (iterations aside).
fn setting_differences(saved: &FitParams, asked: &FitParams) -> Vec<String> {
    RESUMED_SETTINGS
        .iter()
        .filter(|(name, _)| *name != "eta" || asked.eta.is_some())
        .filter_map(|(name, get)| {
            let (a, b) = (get(saved), get(asked));
            (a != b).then(|| format!("{name}: {a} → {b}"))
        })
        .collect()
}

/// `--max-memory`: a byte count with an optional binary suffix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MemorySize(pub usize);

impl std::str::FromStr for MemorySize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let scale: u64 = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "B" => 1,
            "K" | "KB" | "KIB" => 1 << 10,
            "M" | "MB" | "MIB" => 1 << 20,
            "G" | "GB" | "GIB" => 1 << 30,
            "T" | "TB" | "TIB" => 1 << 40,
            _ => {
                return Err(format!(
                    "unknown unit in {s:?}: use a number of bytes or K, M, G, T"
                ))
            }
        };
        match number.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(Self((v * scale as f64) as usize)),
            _ => Err(format!(
                "expected a positive size such as 512M or 4G, got {s:?}"
            )),
        }
    }
}

/// Refuses, before anything large is allocated, work whose largest fit (among `candidates`,
/// on `n_train` training and `n_meta` meta rows of `p` features) has an estimated peak above
/// the limit.
pub fn check_memory(
    candidates: &[FitParams],
    (n_train, n_meta, p): (usize, usize, usize),
    limit: Option<MemorySize>,
) -> anyhow::Result<()> {
    let (limit, source) = match limit {
        Some(MemorySize(bytes)) => (bytes, "--max-memory".to_string()),
        None => match metaadd::memory::available_bytes() {
            Some(available) => (
                available / 5 * 4,
                "80% of the memory available now; set another with --max-memory".to_string(),
            ),
            None => return Ok(()),
        },
    };
    let largest = candidates
        .iter()
        .map(|params| (params, MemoryEstimate::new(params, n_train, n_meta, p)))
        .max_by_key(|(_, e)| e.peak());
    let Some((params, e)) = largest else {
        return Ok(());
    };
    if e.peak() <= limit {
        return Ok(());
    }
    bail!(
        "this fit needs about {} (designs {}, building them {}, the graph of one outer \
         iteration ({}, K = {}) {}), more than the limit of {} ({source}). Try a smaller K, \
         the exact-recompute hypergradient (one unrolled step in memory at a time), or \
         mini-batches (--train-batch N)",
        human_bytes(e.peak()),
        human_bytes(e.designs),
        human_bytes(e.construction),
        params.hypergradient,
        params.k,
        human_bytes(e.graph),
        human_bytes(limit)
    )
}

/// Regression targets are standardised with the clean meta set's mean and sd, so that the
/// losses the weight net sees do not depend on the target's units; `None` for classification.
/// `meta_source` names the meta set in errors.
pub fn meta_scale(
    task: Task,
    meta: &Dataset,
    meta_source: &str,
    target: &str,
) -> anyhow::Result<Option<TargetScale>> {
    match task {
        Task::Regression => Ok(Some(TargetScale::fit(meta.y()).map_err(|e| {
            anyhow::anyhow!("meta set ({meta_source}): column `{target}`: {e}")
        })?)),
        _ => Ok(None),
    }
}

/// `data` with its targets on the meta set's scale (unchanged without one).
pub fn standardise(scale: Option<TargetScale>, data: &Dataset) -> anyhow::Result<Dataset> {
    Ok(match scale {
        Some(scale) => data.with_targets(scale.encode(data.y()))?,
        None => data.clone(),
    })
}
