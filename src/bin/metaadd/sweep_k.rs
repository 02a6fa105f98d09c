//! `metaadd sweep-k`: every hypergradient mode at several unroll depths K, on the paper's
//! synthetic regression protocol or on CSV files: accuracy against the implicit hypergradient,
//! outcome, time and memory, as a table, a CSV file and a figure.

use crate::args::{check_memory, MemorySize, TaskArg};
use crate::figures::{write_figure, ImageFormat, Panel, Series};
use anyhow::bail;
use clap::{Args, ValueEnum};
use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
use metaadd::prepare::Preparation;
use metaadd::sweep::{SweepParams, SweepRow};
use metaadd::{Dataset, FitParams, HypergradMode, Table, Task};
use plotters::chart::SeriesLabelPosition;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, ValueEnum)]
enum NoiseArg {
    A,
    B,
    C,
    Gaussian,
}

#[derive(Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub runtime: crate::args::RuntimeArgs,
    /// Unroll depths, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,5,10,20,50")]
    k: Vec<usize>,
    /// Modes, comma-separated; one-step and implicit have no K and get one row each.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "exact,exact-recompute,truncated(1),one-step,implicit"
    )]
    modes: Vec<HypergradMode>,
    /// Training data (CSV with a header row) instead of the synthetic protocol; needs --meta,
    /// --test and --target.
    #[arg(long, requires_all = ["meta", "test", "target"])]
    train: Option<PathBuf>,
    /// Clean meta data (CSV with the training file's columns).
    #[arg(long, requires = "train")]
    meta: Option<PathBuf>,
    /// Test data (CSV with the training file's columns).
    #[arg(long, requires = "train")]
    test: Option<PathBuf>,
    /// Target column of the CSV files.
    #[arg(long, requires = "train")]
    target: Option<String>,
    /// What the CSV target is.
    #[arg(long, value_enum, default_value = "regression")]
    task: TaskArg,
    /// Training noise of the paper's regression protocol.
    #[arg(long, value_enum, default_value = "b")]
    noise: NoiseArg,
    /// Rows in each of the training, meta and test sets.
    #[arg(long, default_value_t = 400)]
    n: usize,
    /// Number of features (the first 8 carry signal).
    #[arg(long, default_value_t = 20)]
    n_features: usize,
    /// Outer iterations of every training run.
    #[arg(long, visible_alias = "epochs", default_value_t = 200)]
    iterations: usize,
    /// Reference K of the run whose states the accuracy is measured at.
    #[arg(long, default_value_t = 5)]
    reference_k: usize,
    /// Reference states, evenly spaced over the reference run.
    #[arg(long, default_value_t = 3)]
    snapshots: usize,
    /// Group-lasso strength λ.
    #[arg(long, default_value_t = 0.02)]
    lambda: f64,
    /// Ridge strength: the implicit mode needs a strongly convex inner problem.
    #[arg(long, default_value_t = 0.01)]
    ridge: f64,
    /// Hidden units of the weight net.
    #[arg(long, default_value_t = 100)]
    hidden: usize,
    /// AdamW learning rate of the weight net.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Treat the loss fed to the weight net as a constant in every mode.
    #[arg(long)]
    detach_weight_input: bool,
    /// Refuse a sweep whose deepest fit's estimated peak memory exceeds this (bytes, or with
    /// K/M/G/T) [default: 80% of the memory available].
    #[arg(long)]
    max_memory: Option<MemorySize>,
    /// Tensor precision (f64 resolves small hypergradient errors).
    #[arg(long, value_enum, default_value = "f64")]
    dtype: crate::args::DTypeArg,
    /// Seed for data and training.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Output prefix: writes PREFIX.csv, PREFIX.svg and PREFIX.png (the folder must exist).
    #[arg(long, default_value = "sweep-k")]
    out: PathBuf,
    /// Run only shard I of N (0 ≤ I < N) of the (K, mode) runs, into `OUT.shard-I-of-N.csv`
    /// (no figures) [default: from a job array's SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT,
    /// or JOB_COMPLETION_INDEX/METAADD_SHARDS].
    #[arg(long, value_name = "I/N", conflicts_with = "merge")]
    shard: Option<metaadd::shard::Shard>,
    /// Build the table and figures from these shards' files (with the flags the shards were
    /// run with) instead of running.
    #[arg(long, value_name = "FILES", num_args = 1..)]
    merge: Option<Vec<PathBuf>>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// The files a sweep writes, CSV first, each with its figure format.
fn outputs(prefix: &Path) -> [(PathBuf, Option<ImageFormat>); 3] {
    [
        (with_extension(prefix, "csv"), None),
        (with_extension(prefix, "svg"), Some(ImageFormat::Svg)),
        (with_extension(prefix, "png"), Some(ImageFormat::Png)),
    ]
}

pub fn run(args: &SweepArgs) -> anyhow::Result<()> {
    let device = args.runtime.start()?;
    crate::outputs::no_stdout("--out", &args.out, "sweep-k writes three files")?;
    let shard = crate::args::shard(args.shard, args.merge.is_some())?;
    let written_files: Vec<PathBuf> = match shard {
        Some(shard) => {
            let csv = shard.path(&with_extension(&args.out, "csv"));
            vec![csv.with_extension("json"), csv]
        }
        None => outputs(&args.out).into_iter().map(|(p, _)| p).collect(),
    };
    for path in &written_files {
        crate::outputs::writable("--out", path)?;
    }
    let noise = match args.noise {
        NoiseArg::A => RegressionNoise::A,
        NoiseArg::B => RegressionNoise::B,
        NoiseArg::C => RegressionNoise::C,
        NoiseArg::Gaussian => RegressionNoise::Gaussian,
    };
    let (task, train, meta, test, description) = match &args.train {
        Some(path) => csv_data(args, path)?,
        None => {
            let splits = RegressionProtocol::new(noise)
                .n(args.n)
                .n_features(args.n_features)
                .generate(args.seed)?;
            let description = format!(
                "paper regression protocol, noise {noise}: {} rows per split, {} features",
                args.n, args.n_features
            );
            (
                Task::Regression,
                splits.train,
                splits.meta,
                splits.test,
                description,
            )
        }
    };
    // The protocol's targets are already standardised with its meta set.
    let standardize = args.train.is_some();
    let dtype = args.dtype.into();
    let fit = FitParams::new(task)
        .k(args.reference_k)
        .lambda(args.lambda)
        .ridge(args.ridge)
        .hidden(args.hidden)
        .learning_rate(args.lr)
        .detach_weight_input(args.detach_weight_input)
        .iterations(args.iterations)
        .dtype(dtype)
        .seed(args.seed)
        .standardize_target(standardize)
        .device(device);
    let deepest = args
        .k
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .max(args.reference_k);
    let candidates: Vec<FitParams> = args
        .modes
        .iter()
        .map(|&mode| fit.clone().k(deepest).hypergradient(mode))
        .collect();
    let sizes = (train.n_samples(), meta.n_samples(), train.n_features());
    check_memory(&candidates, sizes, args.max_memory)?;
    let sweep = SweepParams::new(fit)
        .ks(args.k.clone())
        .modes(args.modes.clone())
        .snapshots(args.snapshots)
        .shard(shard);
    let runs = sweep.runs();
    if runs.is_empty() {
        bail!("no (K, mode) pair to run: truncated(t) needs some K ≥ t");
    }
    println!(
        "{description}; {} iterations per run, {} runs; accuracy at {} states of a K = {} exact \
         run",
        args.iterations,
        runs.len(),
        args.snapshots,
        args.reference_k
    );
    if let Some(files) = &args.merge {
        let rows = sweep.merge(files, &description)?;
        print_table(&rows, task);
        return write_outputs(&args.out, &rows);
    }
    let bar = crate::args::progress_bar(runs.len(), "runs", args.quiet);
    let rows = sweep.run_with_progress(&train, &meta, &test, |done, _| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();

    print_table(&rows, task);
    if shard.is_some() {
        let path = sweep.write_shard(&with_extension(&args.out, "csv"), &description, &rows)?;
        println!(
            "\nwrote {} (one shard: --merge builds the table and figures)",
            path.display()
        );
        return Ok(());
    }
    write_outputs(&args.out, &rows)
}

/// The CSV file and the figures of `rows`.
fn write_outputs(out: &Path, rows: &[SweepRow]) -> anyhow::Result<()> {
    let mut written = Vec::new();
    for (path, format) in outputs(out) {
        match format {
            None => metaadd::sweep::write_rows(&path, rows)?,
            Some(format) => write_figure(&path, format, &panels(rows), 3)?,
        }
        written.push(path);
    }
    let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    println!("\nwrote {}", names.join(", "));
    Ok(())
}

/// Training, meta and test sets from CSV files, prepared as `metaadd fit` prepares them (the
/// test error is then in the target's units).
fn csv_data(
    args: &SweepArgs,
    train_path: &Path,
) -> anyhow::Result<(Task, Dataset, Dataset, Dataset, String)> {
    let (Some(meta_path), Some(test_path), Some(target)) = (&args.meta, &args.test, &args.target)
    else {
        bail!("--train needs --meta, --test and --target");
    };
    let prepared = Preparation::new(target.clone(), args.task.into()).prepare(
        &Table::read_csv(train_path)?,
        Some(&Table::read_csv(meta_path)?),
        Some(&Table::read_csv(test_path)?),
        &FitParams::default().seed(args.seed),
    )?;
    for w in &prepared.warnings {
        eprintln!("warning: {w}");
    }
    let test = prepared
        .test
        .ok_or_else(|| anyhow::anyhow!("internal: the test table was not prepared"))?;
    let (train, meta) = (prepared.train, prepared.meta);
    let description = format!(
        "{} ({}): {} training, {} meta and {} test rows, {} features",
        train_path.display(),
        prepared.task,
        train.n_samples(),
        meta.n_samples(),
        test.n_samples(),
        train.n_features()
    );
    Ok((prepared.task, train, meta, test, description))
}

fn with_extension(prefix: &Path, ext: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(format!(".{ext}"));
    PathBuf::from(name)
}

fn k_text(row: &SweepRow) -> String {
    row.k.map_or("-".to_string(), |k| k.to_string())
}

fn mib(bytes: Option<usize>) -> f64 {
    bytes.map_or(f64::NAN, |b| b as f64 / (1024.0 * 1024.0))
}

fn print_table(rows: &[SweepRow], task: Task) {
    let test = if task == Task::Regression {
        "test MSE"
    } else {
        "test err."
    };
    println!(
        "\n{:<16} {:>4} {:>10} {:>8} {:>11} {:>10} {:>11} {:>9}",
        "mode", "K", "rel. err.", "cosine", "meta loss", test, "ms / iter", "peak MiB"
    );
    for r in rows {
        println!(
            "{:<16} {:>4} {:>10.2e} {:>8.4} {:>11.4e} {:>10.4} {:>11.2} {:>9.1}",
            r.mode.to_string(),
            k_text(r),
            r.relative_error,
            r.cosine,
            r.meta_loss,
            r.test_error,
            1e3 * r.seconds_per_iteration,
            mib(r.peak_bytes)
        );
    }
}

/// Error, time and memory against K: one curve per mode with a K; modes without one are drawn
/// as flat lines across the K range.
fn panels(rows: &[SweepRow]) -> Vec<Panel> {
    let ks: Vec<f64> = rows.iter().filter_map(|r| r.k).map(|k| k as f64).collect();
    let (k_lo, k_hi) = ks
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &k| {
            (lo.min(k), hi.max(k))
        });
    let mut modes: Vec<HypergradMode> = Vec::new();
    for r in rows {
        if !modes.contains(&r.mode) {
            modes.push(r.mode);
        }
    }
    let series = |value: &dyn Fn(&SweepRow) -> f64, skip_implicit: bool| -> Vec<Series> {
        modes
            .iter()
            .filter(|&&m| !(skip_implicit && m == HypergradMode::Implicit))
            .map(|&mode| {
                let mine: Vec<&SweepRow> = rows.iter().filter(|r| r.mode == mode).collect();
                let (x, y) = if mine.iter().all(|r| r.k.is_none()) && k_lo.is_finite() {
                    let v = mine.first().map_or(f64::NAN, |r| value(r));
                    (vec![k_lo, k_hi], vec![v, v])
                } else {
                    mine.iter()
                        .filter_map(|r| r.k.map(|k| (k as f64, value(r))))
                        .unzip()
                };
                Series {
                    label: mode.to_string(),
                    x,
                    y,
                }
            })
            .collect()
    };
    let panel = |title: &str, y_label: &str, series: Vec<Series>, legend| Panel {
        title: title.to_string(),
        x_label: "unroll depth K".to_string(),
        y_label: y_label.to_string(),
        series,
        rug: Vec::new(),
        marks: Vec::new(),
        y_range: None,
        log_x: true,
        log_y: true,
        legend,
    };
    vec![
        panel(
            "hypergradient error vs implicit",
            "relative error",
            series(&|r| r.relative_error, true),
            SeriesLabelPosition::LowerLeft,
        ),
        panel(
            "time per outer iteration",
            "seconds",
            series(&|r| r.seconds_per_iteration, false),
            SeriesLabelPosition::UpperLeft,
        ),
        panel(
            "peak memory per outer iteration",
            "MiB",
            series(&|r| mib(r.peak_bytes), false),
            SeriesLabelPosition::UpperLeft,
        ),
    ]
}
