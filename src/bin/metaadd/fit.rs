//! `metaadd fit`: train a MAM on CSV files.

use crate::args::{check_memory, progress_bar, DataArgs, LambdaArg, MemorySize, ModelArgs};
use crate::evaluate::add_scores;
use crate::figures::{write_figure, ImageFormat, Panel, Series};
use crate::outputs;
use crate::report::{print_table, selected_features, selected_json, Report};
use anyhow::{bail, Context};
use clap::Args;
use metaadd::data::csv::write_csv;
use metaadd::model::{WeightsTable, DOWN_WEIGHT_THRESHOLD};
use metaadd::params::SETTINGS;
use metaadd::path::{LambdaPath, PathParams, SelectBy};
use metaadd::prepare::MetaSelect;
use metaadd::trainer::fit_warnings;
use metaadd::{Dataset, FitParams, MetaAdditiveModel, Table, Task, Trainer, Weighting};
use plotters::prelude::SeriesLabelPosition;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args)]
pub struct FitArgs {
    /// Training data (CSV with a header row).
    #[arg(long)]
    train: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Clean meta data (CSV with the training file's columns).
    #[arg(long, conflicts_with = "meta_frac")]
    meta: Option<PathBuf>,
    /// Fraction of the training file held out as the meta set (stratified for classification).
    #[arg(long)]
    meta_frac: Option<f64>,
    /// How held-out meta rows are chosen: random (stratified for classification), hard (the
    /// correctly classified rows with the smallest margin under a uniform-weight fit) or
    /// balanced (an equal number from every class, at most half of each class's rows).
    #[arg(long, default_value = "random")]
    meta_select: MetaSelect,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    runtime: crate::args::RuntimeArgs,
    /// With --lambda auto: number of λ values on the path.
    #[arg(long, default_value_t = 12)]
    lambdas: usize,
    /// With --lambda auto: the smallest λ as a fraction of λ_max.
    #[arg(long, default_value_t = 1e-2)]
    min_ratio: f64,
    /// With --lambda auto: what chooses λ, the meta loss or (classification) the meta
    /// misclassification rate (`error`; class-balanced with the balanced meta objective)
    /// [default: loss].
    #[arg(long)]
    select_by: Option<SelectBy>,
    /// With --lambda auto: outer iterations at each λ of the path.
    #[arg(long, default_value_t = 100)]
    path_iterations: usize,
    /// With --lambda auto: draw the path (group norms and meta losses against λ) to this SVG
    /// or PNG file, and write its numbers to the same name with `.csv`.
    #[arg(long)]
    path_plot: Option<PathBuf>,
    /// Held-out labelled rows (CSV with the training file's columns), scored after the fit:
    /// `test …` metrics in the report and the JSON.
    #[arg(long)]
    test: Option<PathBuf>,
    /// Also write the weights table of the training rows (as `metaadd weights` prints it) to
    /// this CSV.
    #[arg(long)]
    weights_out: Option<PathBuf>,
    /// Where to write the model (a file in an existing folder: `-` is refused, a link is kept
    /// and its target replaced).
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
    /// up to --iterations in all: the result is the one an uninterrupted run gives.
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
    if args.path_iterations == 0 {
        bail!("--path-iterations must be at least 1");
    }
    let device = args.runtime.start()?;
    check_outputs(args)?;
    let mut base = args.model.params(Task::Regression)?;
    base.device = device;
    let train_table = Table::read_csv(&args.train)?;
    let mut meta_table = args.meta.as_deref().map(Table::read_csv).transpose()?;
    let test_table = args.test.as_deref().map(Table::read_csv).transpose()?;
    let mut preparation = args
        .data
        .preparation(args.model.task)
        .meta_select(args.meta_select);
    if let Some(frac) = args.meta_frac {
        preparation = preparation.meta_fraction(frac);
    } else if meta_table.is_none() {
        // Fixed weights at a fixed λ learn and choose nothing: the meta set only scores, and
        // the training rows stand in for it.
        let fixed = !matches!(base.weighting, Weighting::Meta) && !base.weighting.is_auto();
        if !(fixed && matches!(args.model.lambda, LambdaArg::Value(_))) {
            bail!(
                "give a clean meta set with --meta FILE or hold one out with --meta-frac F \
                 (only fixed weights at a fixed --lambda need none)"
            );
        }
        meta_table = Some(train_table.clone());
    }
    let prepared = preparation.prepare(
        &train_table,
        meta_table.as_ref(),
        test_table.as_ref(),
        &base,
    )?;
    for w in &prepared.warnings {
        eprintln!("warning: {w}");
    }
    let params = prepared.params(&base);
    let (train, meta) = (&prepared.train, &prepared.meta);
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
    let encoding = prepared.full_encoding(&params)?;
    let task = params.task;
    if args.model.lambda == LambdaArg::Auto && (args.resume.is_some() || args.checkpoint_every > 0)
    {
        bail!("--checkpoint-every and --resume work with a fixed λ, not with --lambda auto");
    }
    if let (LambdaArg::Value(lambda), Some(_)) = (args.model.lambda, args.select_by) {
        bail!(
            "--select-by chooses λ on a path and needs --lambda auto; with --lambda {lambda} \
             there is nothing to choose"
        );
    }
    check_memory(
        std::slice::from_ref(&params),
        (train.n_samples(), meta.n_samples(), train.n_features()),
        args.max_memory,
    )?;
    let start = Instant::now();
    let mut path_report = None;
    let mut candidates = Vec::new();
    let (model, last) = match args.model.lambda {
        LambdaArg::Value(_) if params.weighting.is_auto() => {
            if args.resume.is_some() || args.checkpoint_every > 0 {
                bail!(
                    "--weighting {} fits one model per candidate; --checkpoint-every and \
                     --resume need one weighting",
                    params.weighting
                );
            }
            let fit = params.fit_encoded(train, meta, encoding.clone())?;
            candidates = fit.candidates;
            (fit.model, fit.history.last().cloned())
        }
        LambdaArg::Value(_) => {
            let mut trainer = match &args.resume {
                Some(path) => resume(path, &params, train, meta)?,
                None => Trainer::with_encoding(&params, train, meta, encoding.clone())?,
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
                    trainer.model()?.save(&args.out).with_context(|| {
                        format!("writing a checkpoint to {}", args.out.display())
                    })?;
                    saved = Some(done);
                }
                last = Some(m);
            }
            bar.finish_and_clear();
            if params.final_solve {
                trainer.solve()?;
            }
            (trainer.into_model()?, last)
        }
        LambdaArg::Auto => {
            let path_params = PathParams::new(params.clone().iterations(args.path_iterations))
                .lambdas(args.lambdas)
                .min_ratio(args.min_ratio)
                .select_by(args.select_by.unwrap_or(SelectBy::Loss))
                .encoding(encoding.clone())
                .final_iterations(params.iterations);
            let bar = progress_bar(args.lambdas, "λ path steps", args.quiet);
            let path = path_params.fit_with_progress(train, meta, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })?;
            bar.finish_and_clear();
            if let Some(plot) = &args.path_plot {
                write_path(plot, &path, train.feature_names())?;
            }
            let model = path.model.clone();
            candidates = path.candidates.clone();
            path_report = Some(path);
            (model, None)
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let warnings = match &path_report {
        Some(path) => path.warnings.clone(),
        None => fit_warnings(task, train, meta, &model)?,
    };
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    model
        .save(&args.out)
        .with_context(|| format!("writing the model to {}", args.out.display()))?;

    let mut report = Report::new();
    report.text("model", args.out.display().to_string());
    report.text("task", task.to_string());
    let meta_source = match (&args.meta, args.meta_frac) {
        (None, None) => "none: fixed weights (meta scores are on the training rows)".to_string(),
        _ => prepared.meta_source.clone(),
    };
    report.text("meta set", meta_source);
    report.text(
        "meta objective",
        params.resolved_meta_objective().to_string(),
    );
    report.count("training rows", train.n_samples());
    report.count("meta rows", meta.n_samples());
    report.count("features", train.n_features());
    report.text("weighting", model.params().weighting.to_string());
    if !candidates.is_empty() {
        // `huber(auto)` / `tilted(auto)`: each candidate's meta score, the chosen one above.
        report.list(
            "weighting candidates",
            candidates
                .iter()
                .map(|(w, score)| format!("{w}={score:.6}"))
                .collect(),
        );
    }
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
    if let Some(solution) = model.solution() {
        report.number("final solve kkt", solution.kkt);
        report.count("final solve epochs", solution.epochs);
        if solution.seconds.is_finite() {
            report.number("final solve seconds", solution.seconds);
        }
        report.value(
            "final solve converged",
            serde_json::Value::Bool(solution.converged),
        );
        if !solution.converged {
            eprintln!(
                "warning: the final solve stopped after {} epochs with a KKT violation of {:.2e}·λ, \
                 above --solver-tolerance {}: the selected features may not be the solution's; \
                 raise --solver-epochs or --solver-tolerance",
                solution.epochs,
                solution.kkt,
                model.params().solver_tolerance
            );
        }
    }
    add_scores(&mut report, &model.evaluate(train)?, "training ");
    add_scores(&mut report, &model.evaluate(meta)?, "meta ");
    if let Some(test) = &prepared.test {
        report.count("test rows", test.n_samples());
        add_scores(&mut report, &model.evaluate(test)?, "test ");
    }
    if let Some(path) = &args.weights_out {
        let table = model.weights_table(train, DOWN_WEIGHT_THRESHOLD)?;
        write_csv(path, &WeightsTable::headers(), &table.text_rows())
            .with_context(|| format!("--weights-out {}", path.display()))?;
        report.count("down-weighted training rows", table.down_weighted());
    }
    let selected = selected_features(model.additive())?;
    report.count("selected features", selected.len());
    report.value("selected", selected_json(&selected));
    report.number("seconds", seconds);
    if args.json {
        println!("{}", report.json());
    } else {
        print_table(&report.rows());
    }
    Ok(())
}

/// Every file the fit writes, checked before the data are read.
fn check_outputs(args: &FitArgs) -> anyhow::Result<()> {
    outputs::file("--out", &args.out, "a model file is binary")?;
    if let Some(path) = &args.weights_out {
        outputs::file("--weights-out", path, "the fit's report goes there")?;
    }
    if let Some(plot) = &args.path_plot {
        outputs::file("--path-plot", plot, "it names an image and a CSV file")?;
        path_plot_format(plot)?;
        outputs::writable("--path-plot", &plot.with_extension("csv"))?;
    }
    Ok(())
}

/// The image format of `--path-plot`, from its name.
fn path_plot_format(plot: &Path) -> anyhow::Result<ImageFormat> {
    ImageFormat::from_path(plot).with_context(|| {
        format!(
            "--path-plot {}: the name must end in .svg or .png",
            plot.display()
        )
    })
}

/// The λ path as a two-panel figure (group norms, meta losses) and its numbers as CSV.
fn write_path(plot: &Path, path: &LambdaPath, names: &[String]) -> anyhow::Result<()> {
    let format = path_plot_format(plot)?;
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
            marks: vec![path.lambdas[path.best]],
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
            marks: vec![path.lambdas[path.best]],
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
            "--resume {}: the checkpoint has {done} iterations, more than --iterations {}",
            path.display(),
            params.iterations
        );
    }
    Trainer::resume(&checkpoint, train, meta)
        .with_context(|| format!("--resume {}", path.display()))
}

/// `name: checkpoint → flags` for every setting that differs (iterations aside).
fn setting_differences(saved: &FitParams, asked: &FitParams) -> Vec<String> {
    SETTINGS
        .iter()
        // The iteration count is what a resumed run extends; a checkpoint records the η it
        // used, and flags leave it open unless --eta is given.
        .filter(|s| s.key != "iterations" && (s.key != "eta" || asked.eta.is_some()))
        .filter_map(|s| {
            let (a, b) = ((s.get)(saved), (s.get)(asked));
            (a != b).then(|| format!("{}: {a} → {b}", s.flag))
        })
        .collect()
}
