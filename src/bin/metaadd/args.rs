//! Flags shared by several commands: the fit settings, the data preparation, progress bars
//! and the memory check.

use anyhow::bail;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use metaadd::data::labels::LabelOrder;
use metaadd::memory::{human_bytes, MemoryEstimate};
use metaadd::prepare::{CategoricalPolicy, MissingPolicy, Preparation, TaskKind};
use metaadd::{BasisSpec, FitParams, Loss, Task, Weighting};
use std::io::IsTerminal;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TaskArg {
    Regression,
    Binary,
    Multiclass,
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
    /// Training loss: squared, huber(δ), logistic or softmax [default: the task's]. δ is in
    /// the units of the standardised target (see --standardize-target).
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
    /// huber(δ) = min(1, δ/√(2ℓ)) or tilted(t) ∝ exp(t·ℓ) (ℓ on the standardised target's scale
    /// for regression, see --standardize-target); huber(auto) and tilted(auto) choose δ or t
    /// from a grid by the meta objective (one fit per candidate).
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
    /// Divide the weights by their mean in every inner step (only their ratios matter)
    /// [default: true for classification, false for regression].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub normalize_weights: Option<bool>,
    /// What the meta loss averages: `mean` over the meta rows, or `balanced` (each class's
    /// mean, then the mean over classes, so a rare class counts as much as a common one)
    /// [default: balanced for classification, mean for regression].
    #[arg(long)]
    pub meta_objective: Option<metaadd::params::MetaObjective>,
    /// Shape of the learned weight curve: free, decreasing (large losses never weigh more:
    /// outliers, label noise) or increasing (hard samples never weigh less: imbalance).
    #[arg(long, default_value_t = default().weight_curve)]
    pub weight_curve: metaadd::weightnet::WeightCurve,
    /// A class-aware weight net (classification): its input is the loss and the sample's
    /// class, so that a rare class can be weighted up as a class (see also --meta-objective).
    #[arg(long)]
    pub class_aware: bool,
    /// Group-lasso strength λ, or `auto` (fit only): a λ path from λ_max down, each support
    /// scored by the meta loss of a relaxed refit, then --iterations on the chosen one.
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
    /// Outer iterations of the weight net's training (with --lambda auto: on the chosen λ).
    #[arg(long, visible_alias = "epochs", default_value_t = default().iterations)]
    pub iterations: usize,
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
    /// Standardise a regression target with the median and MAD of the training targets
    /// (predictions are in the target's units either way).
    #[arg(long, default_value_t = default().standardize_target, action = clap::ArgAction::Set)]
    pub standardize_target: bool,
    /// After training, solve the weighted inner problem with the learned weights held fixed:
    /// the model is that solution and its selected features are the solution's support.
    #[arg(long, default_value_t = default().final_solve, action = clap::ArgAction::Set)]
    pub final_solve: bool,
    /// The solver stops when the largest violation of the optimality (KKT) conditions is below
    /// this fraction of λ.
    #[arg(long, default_value_t = default().solver_tolerance)]
    pub solver_tolerance: f64,
    /// Solver epochs at the most.
    #[arg(long, default_value_t = default().solver_epochs)]
    pub solver_epochs: usize,
    /// Which form of the design the unrolled steps' products read: auto (the sparse B-spline
    /// form where it was measured faster: m ≥ 9 columns per feature, or m ≥ 6 on a design
    /// above 32 MiB; CPU only; its steps fused from 20 000 rows), dense, sparse, or fused (the
    /// sparse form, each step one pass over the rows forward and one backward). The model is
    /// the same to rounding.
    #[arg(long, default_value_t = default().design)]
    pub design: metaadd::design::DesignStorage,
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

impl From<TaskArg> for TaskKind {
    fn from(t: TaskArg) -> Self {
        match t {
            TaskArg::Regression => TaskKind::Regression,
            TaskArg::Binary => TaskKind::Binary,
            TaskArg::Multiclass => TaskKind::Multiclass,
        }
    }
}

impl ModelArgs {
    /// The library parameters for a task whose class count is known. With `--lambda auto` λ
    /// is left to the path (`PathParams` sets it before every step).
    pub fn params(&self, task: Task) -> anyhow::Result<FitParams> {
        let loss = self.loss.as_deref().map(str::parse::<Loss>).transpose()?;
        let basis = match self.basis {
            BasisArg::Bspline => BasisSpec::bspline(self.n_basis),
            BasisArg::Bernstein => BasisSpec::bernstein(self.n_basis),
        }
        .orthonormalized(self.orthonormal);
        let mut params = FitParams::new(task)
            .loss(loss)
            .basis(basis)
            .weighting(self.weighting.parse::<Weighting>()?)
            .k(self.k)
            .hypergradient(self.hypergradient)
            .detach_weight_input(self.detach_weight_input)
            .eta(self.eta)
            .ridge(self.ridge)
            .hidden(self.hidden)
            .learning_rate(self.lr)
            .weight_decay(self.weight_decay)
            .iterations(self.iterations)
            .inner_steps(self.inner_steps)
            .train_batch(self.train_batch)
            .meta_batch(self.meta_batch)
            .seed(self.seed)
            .dtype(self.dtype.into())
            .standardize_target(self.standardize_target)
            .final_solve(self.final_solve)
            .solver_tolerance(self.solver_tolerance)
            .solver_epochs(self.solver_epochs);
        params.normalize_weights = self.normalize_weights;
        params.meta_objective = self.meta_objective;
        params.weight_curve = self.weight_curve;
        params.class_aware = self.class_aware;
        params.design = self.design;
        Ok(match self.lambda {
            LambdaArg::Value(lambda) => params.lambda(lambda),
            LambdaArg::Auto => params,
        })
    }
}

/// How a CSV file becomes a data set (`metaadd::prepare`).
#[derive(Args, Clone)]
pub struct DataArgs {
    /// Name of the target column.
    #[arg(long)]
    pub target: String,
    /// Feature columns, comma-separated [default: every other column].
    #[arg(long, value_delimiter = ',')]
    pub features: Option<Vec<String>>,
    /// Columns read as categorical even when they hold numbers (codes), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub categorical_columns: Vec<String>,
    /// Text feature columns: one-hot encoded (one 0/1 feature per level) or dropped.
    #[arg(long, default_value = "one-hot")]
    pub categorical_features: CategoricalPolicy,
    /// Rows with a missing value (empty, NA, NaN, null) in a used column: an error naming the
    /// first, or dropped.
    #[arg(long, default_value = "error")]
    pub missing: MissingPolicy,
    /// Class numbering: sorted labels or the order of first appearance.
    #[arg(long, default_value = "sorted")]
    pub label_order: LabelOrder,
}

impl DataArgs {
    /// The preparation for `task`.
    pub fn preparation(&self, task: TaskArg) -> Preparation {
        let mut prep = Preparation::new(self.target.clone(), task.into())
            .categorical(self.categorical_columns.clone())
            .categorical_policy(self.categorical_features)
            .missing(self.missing)
            .label_order(self.label_order);
        if let Some(features) = &self.features {
            prep = prep.features(features.clone());
        }
        prep
    }
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
    // What to change: the final solve's f64 copy of the training design, or the graph.
    let remedy = if e.designs + e.solve >= e.peak() && e.solve > 0 {
        "The final solve's f64 copy of the training design is the peak: fit without it \
         (--final-solve false), or on fewer rows"
    } else {
        "Try a smaller K, the exact-recompute hypergradient (one unrolled step in memory at a \
         time), or mini-batches (--train-batch N)"
    };
    bail!(
        "this fit needs about {} (designs {}, building them {}, the graph of one outer \
         iteration ({}, K = {}) {}, the final solve {}), more than the limit of {} \
         ({source}). {remedy}",
        human_bytes(e.peak()),
        human_bytes(e.designs),
        human_bytes(e.construction),
        params.hypergradient,
        params.k,
        human_bytes(e.graph),
        human_bytes(e.solve),
        human_bytes(limit)
    )
}

/// Where a command computes: `--device` and `--threads`.
#[derive(Args, Clone)]
pub struct RuntimeArgs {
    /// Device: cpu, cuda (the first GPU) or cuda:N; cuda needs a build with
    /// `--features cuda`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CPU threads for the computation (rayon's and candle's pools) [default:
    /// $RAYON_NUM_THREADS when set, else the cores available to the process that no other
    /// process is busy on].
    #[arg(long)]
    pub threads: Option<usize>,
}

impl RuntimeArgs {
    /// Sets the threads (first thing in a command) and opens the device.
    pub fn start(&self) -> anyhow::Result<candle_core::Device> {
        let threads = self
            .threads
            .unwrap_or_else(metaadd::runtime::default_threads);
        metaadd::runtime::set_threads(threads)?;
        Ok(metaadd::runtime::device(&self.device)?)
    }
}

/// A saved model and a CSV file of rows for it: `predict`, `evaluate` and `weights`.
#[derive(Args)]
pub struct ModelAndRows {
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// A model written by `metaadd fit`.
    #[arg(long)]
    pub model: std::path::PathBuf,
    /// Rows (CSV with a header row): the model's feature columns in any order, and for
    /// `evaluate` and `weights` its target column.
    #[arg(long)]
    pub data: std::path::PathBuf,
}

impl ModelAndRows {
    /// Starts the runtime, then loads the model on its device and reads the rows.
    pub fn load(&self) -> anyhow::Result<(metaadd::MetaAdditiveModel, metaadd::Table)> {
        let device = self.runtime.start()?;
        let model = metaadd::MetaAdditiveModel::load(&self.model, &device)?;
        Ok((model, metaadd::Table::read_csv(&self.data)?))
    }
}

/// The shard a sharded command runs: `--shard I/N`, else the job array's (said on stderr);
/// none when merging.
pub fn shard(
    flag: Option<metaadd::shard::Shard>,
    merging: bool,
) -> anyhow::Result<Option<metaadd::shard::Shard>> {
    if merging {
        return Ok(None);
    }
    if flag.is_some() {
        return Ok(flag);
    }
    let shard = metaadd::shard::Shard::from_env()?;
    if let Some(shard) = shard {
        eprintln!("shard {shard} (from the job array's environment)");
    }
    Ok(shard)
}
