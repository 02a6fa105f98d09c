//! `metaadd experiment`: the paper's protocols, every baseline over seeds, as a markdown table.

use crate::args::{check_memory, progress_bar, DTypeArg, MemorySize};
use crate::outputs::{self, TextOut};
use anyhow::Context;
use clap::{Args, ValueEnum};
use metaadd::experiment::{table, Experiment, LambdaChoice, Method};
use metaadd::path::SelectBy;
use metaadd::prepare::{Preparation, TaskKind};
use metaadd::FitParams;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// docs/design.md §11.1–§11.2: noises A, B, C, Gaussian and the SpAM design.
    PaperRegression,
    /// docs/design.md §11.3: the circle design with imbalance, label flips and both.
    PaperClassification,
    /// Ten-class digits (needs --data), clean and with 20% of the training labels moved.
    Digits,
    /// Corrupt-and-recover on the real tables of --data-dir: diabetes and randhie with
    /// outliers and heavy tails; breast_cancer, fair and anes96 with flips and a 5% minority;
    /// digits with 20% flips.
    Real,
}

impl Protocol {
    /// The name in the default results file, `experiment-<name>.csv`.
    fn name(self) -> &'static str {
        match self {
            Protocol::PaperRegression => "paper-regression",
            Protocol::PaperClassification => "paper-classification",
            Protocol::Digits => "digits",
            Protocol::Real => "real",
        }
    }
}

#[derive(Args)]
pub struct ExperimentArgs {
    #[command(flatten)]
    pub runtime: crate::args::RuntimeArgs,
    /// Which experiment.
    #[arg(value_enum)]
    protocol: Protocol,
    /// Seeds 0..N (each draws the data and initialises the fits).
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// Rows per split of the synthetic designs [default: 2000, the paper's].
    #[arg(long)]
    n: Option<usize>,
    /// Features of the synthetic designs [default: 100, the paper's].
    #[arg(long)]
    n_features: Option<usize>,
    /// Only these settings, comma-separated, by the names in the table (e.g. "noise B,noise C")
    /// [default: all of the protocol's].
    #[arg(long, value_delimiter = ',')]
    settings: Option<Vec<String>>,
    /// Methods, comma-separated: uniform, huber(δ), tilted(t), one-step, mam(K)
    /// [default: the protocol's list].
    #[arg(long, value_delimiter = ',')]
    methods: Option<Vec<String>>,
    /// Outer iterations (per λ with --lambda auto).
    #[arg(long, visible_alias = "epochs", default_value_t = 100)]
    iterations: usize,
    /// Weight-net learning rate (AdamW).
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,
    /// Group-lasso strength, or `auto` for the λ path with a relaxed refit on each support.
    #[arg(long, default_value = "auto")]
    lambda: String,
    /// What chooses λ on the path: the meta loss, or the meta misclassification rate (`error`;
    /// the same as `loss` for regression).
    #[arg(long, default_value = "loss")]
    select_by: SelectBy,
    /// Number of λ values on the path.
    #[arg(long, default_value_t = 12)]
    lambdas: usize,
    /// The path's smallest λ as a fraction of λ_max.
    #[arg(long, default_value_t = 1e-2)]
    min_ratio: f64,
    /// Outer iterations of the final fit on the support the path chose (0: keep the path's
    /// relaxed refit).
    #[arg(long, default_value_t = 1000)]
    final_iterations: usize,
    /// Divide the weights by their mean in each inner step (true) or use them as they are
    /// [default: false for regression, true for classification].
    #[arg(long)]
    normalize_weights: Option<bool>,
    /// Digits CSV (label column `target`), for the digits experiment.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Folder of the real tables, for the real experiment: diabetes.csv (target `target`),
    /// randhie.csv (`mdvis`), breast_cancer.csv (`target`), fair.csv (`had_affair`),
    /// anes96.csv (`vote`) and digits.csv (`target`).
    #[arg(long, default_value = "examples/data")]
    data_dir: PathBuf,
    /// Real experiment: the meta set's share of each table's rows [default: 0.1], for a
    /// meta-set-size sweep (the training set takes what the 30% test set leaves).
    #[arg(long)]
    meta_share: Option<f64>,
    /// Real experiment, classification settings: draw the meta rows at random like the other
    /// splits (the protocol) or `balanced`, an equal number from every class (at most half of
    /// a class's rows); the setting's name then ends in "balanced meta".
    #[arg(long, value_name = "random|balanced")]
    meta_select: Option<metaadd::prepare::MetaSelect>,
    /// Results file (CSV): finished fits are appended at once and skipped by a rerun with the
    /// same settings, so a stopped run resumes (a file: `-` is refused)
    /// [default: experiment-<protocol>.csv].
    #[arg(long)]
    results: Option<PathBuf>,
    /// Also write the markdown table to this file (`-`: standard output, where it is printed
    /// anyway).
    #[arg(long)]
    table: Option<PathBuf>,
    /// Tensor precision.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: DTypeArg,
    /// Refuse an experiment whose largest fit's estimated peak memory exceeds this (bytes, or
    /// with K/M/G/T) [default: 80% of the memory available].
    #[arg(long)]
    max_memory: Option<MemorySize>,
    /// Run only shard I of N (0 ≤ I < N): the fits whose number is I modulo N, into their own
    /// results file (`results.csv` → `results.shard-I-of-N.csv`) [default: from a job array's
    /// SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, or JOB_COMPLETION_INDEX/METAADD_SHARDS].
    #[arg(long, value_name = "I/N", conflicts_with = "merge")]
    shard: Option<metaadd::shard::Shard>,
    /// Build the table from these shards' results files (the same command's other flags as
    /// the shards were run with); with --results, also write them as one run's results file.
    #[arg(long, value_name = "FILES", num_args = 1..)]
    merge: Option<Vec<PathBuf>>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

pub fn run(args: &ExperimentArgs) -> anyhow::Result<()> {
    let device = args.runtime.start()?;
    let shard = crate::args::shard(args.shard, args.merge.is_some())?;
    let mut results = args
        .results
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("experiment-{}.csv", args.protocol.name())));
    if let Some(shard) = shard {
        results = shard.path(&results);
    }
    outputs::file(
        "--results",
        &results,
        "a rerun reads and resumes the results file",
    )?;
    let table_out = args
        .table
        .as_deref()
        .map(|path| outputs::text("--table", path))
        .transpose()?;
    let mut experiment = match args.protocol {
        Protocol::PaperRegression => Experiment::paper_regression(),
        Protocol::PaperClassification => Experiment::paper_classification(),
        Protocol::Digits => {
            let path = args.data.as_ref().context(
                "the digits experiment needs --data FILE (a CSV with a `target` column)",
            )?;
            let (data, warnings) = Preparation::new("target", TaskKind::Multiclass)
                .dataset(&metaadd::Table::read_csv(path)?)?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            Experiment::digits(data)
        }
        Protocol::Real => {
            let load = |file: &str, target: &str, kind: TaskKind| -> anyhow::Result<_> {
                let path = args.data_dir.join(file);
                let table = metaadd::Table::read_csv(&path)
                    .with_context(|| format!("the real experiment reads {}", path.display()))?;
                let (data, warnings) = Preparation::new(target, kind).dataset(&table)?;
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                Ok(data)
            };
            let regression = vec![
                (
                    "diabetes".to_string(),
                    load("diabetes.csv", "target", TaskKind::Regression)?,
                ),
                (
                    "randhie".to_string(),
                    load("randhie.csv", "mdvis", TaskKind::Regression)?,
                ),
            ];
            let binary = vec![
                (
                    "breast_cancer".to_string(),
                    load("breast_cancer.csv", "target", TaskKind::Binary)?,
                ),
                (
                    "fair".to_string(),
                    load("fair.csv", "had_affair", TaskKind::Binary)?,
                ),
                (
                    "anes96".to_string(),
                    load("anes96.csv", "vote", TaskKind::Binary)?,
                ),
            ];
            let digits = load("digits.csv", "target", TaskKind::Multiclass)?;
            let multiclass = vec![("digits".to_string(), digits, 10)];
            Experiment::real(regression, binary, multiclass)
        }
    };
    if let Some(share) = args.meta_share {
        if args.protocol != Protocol::Real {
            anyhow::bail!("--meta-share is for the real experiment");
        }
        if !(share > 0.0 && share < 0.7) {
            anyhow::bail!("--meta-share must lie in (0, 0.7) beside the 30% test set, got {share}");
        }
        for setting in &mut experiment.settings {
            if let metaadd::experiment::Setting::Real { meta_share, .. } = setting {
                *meta_share = share;
            }
        }
    }
    if let Some(select) = args.meta_select {
        if args.protocol != Protocol::Real {
            anyhow::bail!("--meta-select is for the real experiment");
        }
        if select == metaadd::prepare::MetaSelect::Hard {
            anyhow::bail!("--meta-select: the real experiment draws random or balanced meta sets");
        }
        for setting in &mut experiment.settings {
            if let metaadd::experiment::Setting::Real {
                meta_select, task, ..
            } = setting
            {
                if *task != metaadd::Task::Regression {
                    *meta_select = select;
                }
            }
        }
    }
    experiment.seeds = args.seeds;
    if let Some(n) = args.n {
        experiment.n = n;
    }
    if let Some(p) = args.n_features {
        experiment.n_features = p;
    }
    if let Some(names) = &args.settings {
        let known: Vec<String> = experiment.settings.iter().map(|s| s.to_string()).collect();
        let mut chosen = Vec::new();
        for name in names {
            let i = known
                .iter()
                .position(|k| k.eq_ignore_ascii_case(name.trim()))
                .with_context(|| {
                    format!(
                        "--settings: unknown setting `{name}`; this experiment has: {}",
                        known.join(", ")
                    )
                })?;
            chosen.push(experiment.settings[i].clone());
        }
        experiment.settings = chosen;
    }
    if let Some(methods) = &args.methods {
        experiment.methods = methods
            .iter()
            .map(|m| m.parse::<Method>())
            .collect::<Result<_, _>>()?;
    }
    experiment.fit.iterations = args.iterations;
    experiment.select_by = args.select_by;
    experiment.fit.learning_rate = args.learning_rate;
    if let Some(normalize) = args.normalize_weights {
        experiment.fit.normalize_weights = Some(normalize);
    }
    experiment.fit.dtype = args.dtype.into();
    experiment.fit.device = device;
    experiment.lambda = match args.lambda.trim() {
        "auto" => LambdaChoice::Path {
            lambdas: args.lambdas,
            min_ratio: args.min_ratio,
            final_iterations: args.final_iterations,
        },
        value => LambdaChoice::Fixed(value.parse().map_err(|_| {
            anyhow::anyhow!("--lambda: expected a number or `auto`, got {value:?}")
        })?),
    };
    // Every method on every setting's data, before anything is fitted.
    for setting in &experiment.settings {
        let candidates: Vec<FitParams> = experiment
            .methods
            .iter()
            .map(|&m| experiment.fit_params(setting, m, 0))
            .collect();
        let sizes = setting.sizes(experiment.n, experiment.n_features);
        check_memory(&candidates, sizes, args.max_memory)?;
    }
    if let Some(files) = &args.merge {
        let records = experiment.merge(files)?;
        let markdown = table(&records);
        println!("{markdown}");
        eprintln!(
            "{} fits from {} shards' results files",
            records.len(),
            files.len()
        );
        if args.results.is_some() {
            experiment.save(&results, &records)?;
            eprintln!("results in {}", results.display());
        }
        if let Some(TextOut::File(path)) = &table_out {
            metaadd::output::write_bytes(path, markdown.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        return Ok(());
    }
    experiment.shard = shard;
    if let Some(shard) = shard {
        let mine = experiment.fits().len();
        if mine == 0 {
            eprintln!(
                "warning: shard {shard} has no fits: the experiment has fewer fits than {} \
                 shards",
                shard.count
            );
        }
    }
    let bar = progress_bar(0, "fits", args.quiet);
    let start = Instant::now();
    let records = experiment.run(Some(&results), |record, _, total| {
        bar.set_length(total as u64);
        bar.set_message(format!(
            "{}, {}, seed {}",
            record.setting, record.method, record.seed
        ));
        bar.inc(1);
        for warning in &record.warnings {
            bar.suspend(|| {
                eprintln!(
                    "warning: {}, {}, seed {}: {warning}",
                    record.setting, record.method, record.seed
                )
            });
        }
    })?;
    bar.finish_and_clear();
    let markdown = table(&records);
    println!("{markdown}");
    let fitted: f64 = records.iter().map(|r| r.seconds).sum();
    let total = records.len();
    eprintln!(
        "{total} fits ({:.0} s of fitting in all, {:.0} s this run); results in {}",
        fitted,
        start.elapsed().as_secs_f64(),
        results.display()
    );
    // `--table -`: the table printed above is the standard output's copy.
    if let Some(TextOut::File(path)) = &table_out {
        metaadd::output::write_bytes(path, markdown.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
