//! The paper's experiments (docs/design.md §11, weightings §6.2): every method on the same basis and solver, over
//! settings and seeds, one [`Record`] per fit, summarised as a markdown table of mean ± sd.
//!
//! A results file makes long runs resumable: each finished fit is appended as one CSV line at
//! once, and a later run with the same configuration skips the fits already there.
//!
//! ```
//! use metaadd::experiment::{Experiment, LambdaChoice, Method, Setting};
//! use metaadd::data::synthetic::RegressionNoise;
//! let mut experiment = Experiment::paper_regression();
//! experiment.settings = vec![Setting::Regression(RegressionNoise::B)];
//! experiment.methods = vec![Method::Uniform, Method::Mam(2)];
//! experiment.seeds = 1;
//! experiment.n = 150;
//! experiment.n_features = 10;
//! experiment.lambda = LambdaChoice::Fixed(0.01);
//! experiment.fit.iterations = 30;
//! let records = experiment.run(None, |_, _, _| {})?;
//! assert_eq!(records.len(), 2);
//! assert!(records.iter().all(|r| r.test_mse.is_some_and(f64::is_finite)));
//! let table = metaadd::experiment::table(&records);
//! assert!(table.contains("| noise B | uniform |"));
//! # Ok::<(), metaadd::Error>(())
//! ```

use crate::data::synthetic::{
    ClassificationCorruption, ClassificationProtocol, RegressionNoise, RegressionProtocol,
    SpamProtocol, Splits, PAPER_N, PAPER_N_FEATURES,
};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::evaluate::Scores;
use crate::params::{FitParams, Weighting, SETTINGS};
use crate::path::{PathParams, SelectBy};
use crate::prepare::MetaSelect;
use crate::shard::{check_division, Shard};
use crate::{HypergradMode, Task};
pub mod real;
mod results;
mod table;

pub use results::Record;
pub use table::{mean_sd, stability, table};

use results::ResultsFile;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

/// Settings each fit of an experiment sets for itself (from the setting, the method, λ's
/// choice and the seed): left out of the description.
const PER_FIT: &[&str] = &[
    "task",
    "loss",
    "weighting",
    "k",
    "hypergradient",
    "lambda",
    "seed",
];

/// Settings added after experiment results files were first written: said in a description
/// only when not at the value of those files (their `absent` value).
const LATER: &[&str] = &["meta_objective", "weight_curve", "class_aware", "design"];

/// Shares of a labelled data set's rows held out as the meta and the test set.
const META_SHARE: f64 = 0.1;
const TEST_SHARE: f64 = 0.2;

/// One data-generating setting. Its name (`Display`) has no comma, so that names can be listed
/// comma-separated on the command line.
#[derive(Debug, Clone)]
pub enum Setting {
    /// The 8-function regression design (docs/design.md §11.1) with this training noise.
    Regression(RegressionNoise),
    /// The classic SpAM design (4 true features, Gaussian training noise).
    Spam,
    /// The circle classification design (docs/design.md §11.3) with this training corruption.
    Circle(ClassificationCorruption),
    /// A labelled data set (class indices `0..classes`) split 70/10/20 into training, meta and
    /// test sets (stratified, from the seed), with `flip` of the training labels moved to
    /// another class.
    Labelled {
        /// Name in tables and in the results file.
        name: String,
        /// All rows.
        data: Dataset,
        /// Number of classes.
        classes: usize,
        /// Fraction of training labels moved.
        flip: f64,
    },
    /// A real table (regression, or class indices `0..classes`) split 60/10/30, its training
    /// split corrupted ([`real::corrupted_splits`]).
    Real {
        /// The table's name in tables and in the results file.
        name: String,
        /// All rows.
        data: Dataset,
        /// The table's task.
        task: Task,
        /// What is done to it.
        corruption: real::Corruption,
        /// The meta set's share of the rows ([`real::REAL_META_SHARE`] in the protocol).
        meta_share: f64,
        /// How the meta rows are drawn: at random like the other splits (the protocol), or
        /// class-balanced ([`MetaSelect::Balanced`]).
        meta_select: MetaSelect,
    },
}

impl Setting {
    /// The task the setting's targets need.
    pub fn task(&self) -> Task {
        match self {
            Self::Regression(_) | Self::Spam => Task::Regression,
            Self::Circle(_) => Task::Binary,
            Self::Labelled { classes, .. } => Task::Multiclass { classes: *classes },
            Self::Real { task, .. } => *task,
        }
    }

    /// (training rows, meta rows, features) of [`Setting::splits`], known before drawing them
    /// (to the row for synthetic designs, within a row for labelled data).
    pub fn sizes(&self, n: usize, p: usize) -> (usize, usize, usize) {
        let table = |data: &Dataset, (meta, test): (f64, f64)| {
            let rows = data.n_samples() as f64;
            (
                (rows * (1.0 - meta - test)).ceil() as usize,
                (rows * meta).ceil() as usize,
                data.n_features(),
            )
        };
        match self {
            Self::Labelled { data, .. } => table(data, (META_SHARE, TEST_SHARE)),
            Self::Real {
                data,
                meta_share,
                meta_select,
                ..
            } => {
                let (train, meta, p) = table(data, (*meta_share, real::REAL_TEST_SHARE));
                // A balanced meta set can be smaller, leaving its rows to the training set.
                match meta_select {
                    MetaSelect::Random => (train, meta, p),
                    _ => (train + meta, meta, p),
                }
            }
            _ => (n, n, p),
        }
    }

    /// Train, meta and test sets for `seed`; synthetic designs get `n` rows per split and `p`
    /// features.
    pub fn splits(&self, n: usize, p: usize, seed: u64) -> Result<Splits> {
        match self {
            Self::Regression(noise) => RegressionProtocol::new(*noise)
                .n(n)
                .n_features(p)
                .generate(seed),
            Self::Spam => SpamProtocol::new().n(n).n_features(p).generate(seed),
            Self::Circle(c) => ClassificationProtocol::new(*c)
                .n(n)
                .n_features(p)
                .generate(seed),
            // A real table with moved labels at the shares of this protocol.
            Self::Labelled { data, flip, .. } => real::corrupted_splits_with_shares(
                data,
                self.task(),
                real::Corruption::Flip { share: *flip },
                (META_SHARE, TEST_SHARE),
                MetaSelect::Random,
                seed,
            ),
            Self::Real {
                data,
                task,
                corruption,
                meta_share,
                meta_select,
                ..
            } => real::corrupted_splits_with_shares(
                data,
                *task,
                *corruption,
                (*meta_share, real::REAL_TEST_SHARE),
                *meta_select,
                seed,
            ),
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let percent = |x: f64| format!("{}%", (100.0 * x).round());
        match self {
            Self::Regression(RegressionNoise::Gaussian) => write!(f, "Gaussian noise"),
            Self::Regression(noise) => write!(f, "noise {noise}"),
            Self::Spam => write!(f, "SpAM design"),
            Self::Circle(c) => {
                let mut parts = Vec::new();
                if let Some(share) = c.imbalance {
                    parts.push(format!("imbalance {}", percent(share)));
                }
                if c.flip > 0.0 {
                    parts.push(format!("flips {}", percent(c.flip)));
                }
                if parts.is_empty() {
                    parts.push("clean".into());
                }
                write!(f, "circle {}", parts.join(" + "))
            }
            Self::Labelled { name, flip, .. } => write!(f, "{name} flips {}", percent(*flip)),
            Self::Real {
                name,
                corruption,
                meta_share,
                meta_select,
                ..
            } => {
                write!(f, "{name} {corruption}")?;
                if *meta_share != real::REAL_META_SHARE {
                    write!(f, " meta {}", percent(*meta_share))?;
                }
                if *meta_select != MetaSelect::Random {
                    write!(f, " {meta_select} meta")?;
                }
                Ok(())
            }
        }
    }
}

/// A weighting method; all share the basis, the solver and λ's choice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// Uniform weights: the sparse additive model.
    Uniform,
    /// Huber-type fixed weights `min(1, δ/√(2ℓ))`.
    Huber(f64),
    /// Tilted weights `∝ exp(t·ℓ)`.
    Tilted(f64),
    /// `huber(δ)` with δ chosen on the meta set ([`Weighting::HuberAuto`]).
    HuberAuto,
    /// `tilted(t)` with t chosen on the meta set ([`Weighting::TiltedAuto`]).
    TiltedAuto,
    /// MAM with the one-step hypergradient.
    OneStep,
    /// MAM with the exact hypergradient through `K` unrolled steps.
    Mam(usize),
    /// MAM with `K` unrolled steps and a class-aware weight net (classification only).
    ClassAware(usize),
}

impl Method {
    /// `base` with this method's weighting and hypergradient.
    pub fn params(&self, base: &FitParams) -> FitParams {
        let p = base.clone();
        match *self {
            Self::Uniform => p.weighting(Weighting::Uniform),
            Self::Huber(delta) => p.weighting(Weighting::Huber(delta)),
            Self::Tilted(t) => p.weighting(Weighting::Tilted(t)),
            Self::HuberAuto => p.weighting(Weighting::HuberAuto),
            Self::TiltedAuto => p.weighting(Weighting::TiltedAuto),
            Self::OneStep => p
                .weighting(Weighting::Meta)
                .hypergradient(HypergradMode::OneStep)
                .k(1),
            Self::Mam(k) => p
                .weighting(Weighting::Meta)
                .hypergradient(HypergradMode::Exact)
                .k(k),
            Self::ClassAware(k) => Self::Mam(k).params(base).class_aware(true),
        }
    }

    /// Whether the method can fit a task (a class-aware net needs classes).
    pub fn suits(&self, task: Task) -> bool {
        !matches!(self, Self::ClassAware(_)) || task != Task::Regression
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uniform => write!(f, "uniform"),
            Self::Huber(delta) => write!(f, "huber({delta})"),
            Self::Tilted(t) => write!(f, "tilted({t})"),
            Self::HuberAuto => write!(f, "huber(auto)"),
            Self::TiltedAuto => write!(f, "tilted(auto)"),
            Self::OneStep => write!(f, "one-step"),
            Self::Mam(k) => write!(f, "mam({k})"),
            Self::ClassAware(k) => write!(f, "mam-class({k})"),
        }
    }
}

impl FromStr for Method {
    type Err = Error;

    /// `uniform`, `huber(δ)`, `tilted(t)`, `huber(auto)`, `tilted(auto)`, `one-step`,
    /// `mam(K)` or `mam-class(K)`.
    ///
    /// ```
    /// use metaadd::experiment::Method;
    /// assert_eq!("mam(5)".parse::<Method>()?, Method::Mam(5));
    /// assert_eq!("tilted(-1)".parse::<Method>()?, Method::Tilted(-1.0));
    /// assert!("mam(0)".parse::<Method>().is_err());
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let bad = || {
            Error::param(
                "method",
                format!(
                    "unknown method {s:?}: expected uniform, huber(δ), tilted(t), huber(auto), \
                     tilted(auto), one-step, mam(K) or mam-class(K)"
                ),
            )
        };
        match s {
            "uniform" => return Ok(Self::Uniform),
            "one-step" => return Ok(Self::OneStep),
            _ => {}
        }
        for (prefix, method) in [
            ("mam(", Self::Mam as fn(usize) -> Self),
            ("mam-class(", Self::ClassAware),
        ] {
            if let Some(k) = s.strip_prefix(prefix).and_then(|r| r.strip_suffix(')')) {
                return match k.trim().parse::<usize>() {
                    Ok(k) if k >= 1 => Ok(method(k)),
                    _ => Err(Error::param(
                        "method",
                        format!("{s:?}: K must be a whole number ≥ 1"),
                    )),
                };
            }
        }
        // Huber and tilted share their syntax and checks with `Weighting`.
        match s.parse::<Weighting>().map_err(|_| bad())? {
            Weighting::Huber(delta) => Ok(Self::Huber(delta)),
            Weighting::Tilted(t) => Ok(Self::Tilted(t)),
            Weighting::HuberAuto => Ok(Self::HuberAuto),
            Weighting::TiltedAuto => Ok(Self::TiltedAuto),
            _ => Err(bad()),
        }
    }
}

/// How λ is chosen for each fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LambdaChoice {
    /// The same λ everywhere.
    Fixed(f64),
    /// A λ path ([`PathParams`], relaxed refit on each support) of `lambdas` values down to
    /// `min_ratio·λ_max`, each run for the fit's `iterations`, then a final fit of
    /// `final_iterations` on the chosen support.
    Path {
        /// Number of λ values.
        lambdas: usize,
        /// The smallest λ as a fraction of `λ_max`.
        min_ratio: f64,
        /// Outer iterations of the final fit on the chosen support (0: none).
        final_iterations: usize,
    },
}

impl fmt::Display for LambdaChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(lambda) => write!(f, "λ = {lambda}"),
            Self::Path {
                lambdas,
                min_ratio,
                final_iterations,
            } => write!(
                f,
                "λ by the path ({lambdas} values down to {min_ratio}·λ_max, relaxed refit, \
                 final fit of {final_iterations} iterations)"
            ),
        }
    }
}

/// Settings × methods × seeds, and everything the fits share.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// Data settings, in table order.
    pub settings: Vec<Setting>,
    /// Methods, in table order.
    pub methods: Vec<Method>,
    /// Seeds `0..seeds`; each seed draws the data and initialises the fit.
    pub seeds: u64,
    /// Rows per split of the synthetic designs.
    pub n: usize,
    /// Features of the synthetic designs.
    pub n_features: usize,
    /// Settings shared by every fit (the task is the setting's; `iterations` is per λ on a
    /// path).
    pub fit: FitParams,
    /// How λ is chosen.
    pub lambda: LambdaChoice,
    /// What scores a λ on a path.
    pub select_by: SelectBy,
    /// Only this shard's fits (see [`crate::shard`]); all when `None`.
    pub shard: Option<Shard>,
}

impl Experiment {
    /// docs/design.md §11.1–§11.2 at the paper's size (2000 rows per split, 100 features): noises A, B, C and
    /// Gaussian, and the SpAM design; uniform, the paper's huber(0.5) and tilted(−1), the same
    /// rules tuned on the meta set (huber(auto), tilted(auto)), one-step and MAM with K = 5; 5 seeds; λ by a 12-value path with 100 iterations per λ, then 1000 iterations on
    /// the chosen support. Weights enter the inner step as they are (docs/design.md §5.4).
    pub fn paper_regression() -> Self {
        Self {
            settings: vec![
                Setting::Regression(RegressionNoise::A),
                Setting::Regression(RegressionNoise::B),
                Setting::Regression(RegressionNoise::C),
                Setting::Regression(RegressionNoise::Gaussian),
                Setting::Spam,
            ],
            methods: vec![
                Method::Uniform,
                Method::Huber(0.5),
                Method::Tilted(-1.0),
                Method::HuberAuto,
                Method::TiltedAuto,
                Method::OneStep,
                Method::Mam(5),
            ],
            seeds: 5,
            n: PAPER_N,
            n_features: PAPER_N_FEATURES,
            // The protocol's targets are already standardised with the meta set.
            fit: FitParams::new(Task::Regression)
                .iterations(100)
                .standardize_target(false),
            lambda: LambdaChoice::Path {
                lambdas: 12,
                min_ratio: 1e-2,
                final_iterations: 1000,
            },
            select_by: SelectBy::Loss,
            shard: None,
        }
    }

    /// docs/design.md §11.3 at the paper's size: the circle design with 15% imbalance, 15% and 30% label
    /// flips, and 15% imbalance with 15% flips; uniform, the paper's huber(1), tilted(−1) and
    /// tilted(+1), huber(auto), tilted(auto), one-step and MAM with K = 5; otherwise as [`Experiment::paper_regression`], except that
    /// weights are normalised to mean 1 in every inner step: under label noise MAM's weights
    /// fall to a mean near 0.1, which acts as a tenfold λ, and every λ of the upper half of the
    /// path then empties the model.
    pub fn paper_classification() -> Self {
        let c = ClassificationCorruption::none();
        Self {
            settings: vec![
                Setting::Circle(c.imbalance(0.15)),
                Setting::Circle(c.flip(0.15)),
                Setting::Circle(c.flip(0.3)),
                Setting::Circle(c.imbalance(0.15).flip(0.15)),
            ],
            methods: vec![
                Method::Uniform,
                Method::Huber(1.0),
                Method::Tilted(-1.0),
                Method::Tilted(1.0),
                Method::HuberAuto,
                Method::TiltedAuto,
                Method::OneStep,
                Method::Mam(5),
            ],
            fit: FitParams::new(Task::Binary)
                .iterations(100)
                .normalize_weights(true),
            ..Self::paper_regression()
        }
    }

    /// Ten-class digits (`data`, labels `0..10`) with clean labels and 20% moved, split 70/10/20;
    /// the methods of [`Experiment::paper_classification`].
    pub fn digits(data: Dataset) -> Self {
        let digits = |flip| Setting::Labelled {
            name: "digits".into(),
            data: data.clone(),
            classes: 10,
            flip,
        };
        Self {
            settings: vec![digits(0.0), digits(0.2)],
            fit: FitParams::new(Task::Multiclass { classes: 10 })
                .iterations(100)
                .normalize_weights(true),
            ..Self::paper_classification()
        }
    }

    /// Corrupt-and-recover on real tables ([`real`]): each regression table (`name`, data)
    /// with 20% one-sided and 20% two-sided outliers of 5 sd and with heavy-tailed noise; each
    /// binary table (labels 0/1) with 15% and 30% flips, its smaller class subsampled to 5%,
    /// and both (5% with 15% flips); each multi-class table (labels `0..classes`) with 20%
    /// flips. Methods: uniform, huber(auto), tilted(auto), one-step, MAM with K = 5 and, for
    /// classification, the class-aware MAM; 5 seeds; λ by the path as in the paper's
    /// protocols, with class-balanced meta objectives for classification (the default).
    pub fn real(
        regression: Vec<(String, Dataset)>,
        binary: Vec<(String, Dataset)>,
        multiclass: Vec<(String, Dataset, usize)>,
    ) -> Self {
        use real::Corruption;
        let mut settings = Vec::new();
        for (name, data) in regression {
            for corruption in [
                Corruption::OneSided { share: 0.2 },
                Corruption::TwoSided { share: 0.2 },
                Corruption::HeavyTails,
            ] {
                settings.push(Setting::Real {
                    name: name.clone(),
                    data: data.clone(),
                    task: Task::Regression,
                    corruption,
                    meta_share: real::REAL_META_SHARE,
                    meta_select: MetaSelect::Random,
                });
            }
        }
        for (name, data) in binary {
            for corruption in [
                Corruption::Flip { share: 0.15 },
                Corruption::Flip { share: 0.3 },
                Corruption::Minority {
                    share: 0.05,
                    flip: 0.0,
                },
                Corruption::Minority {
                    share: 0.05,
                    flip: 0.15,
                },
            ] {
                settings.push(Setting::Real {
                    name: name.clone(),
                    data: data.clone(),
                    task: Task::Binary,
                    corruption,
                    meta_share: real::REAL_META_SHARE,
                    meta_select: MetaSelect::Random,
                });
            }
        }
        for (name, data, classes) in multiclass {
            settings.push(Setting::Real {
                name,
                data,
                task: Task::Multiclass { classes },
                corruption: Corruption::Flip { share: 0.2 },
                meta_share: real::REAL_META_SHARE,
                meta_select: MetaSelect::Random,
            });
        }
        Self {
            settings,
            methods: vec![
                Method::Uniform,
                Method::HuberAuto,
                Method::TiltedAuto,
                Method::OneStep,
                Method::Mam(5),
                Method::ClassAware(5),
            ],
            // Regression targets are standardised by the clean training split already.
            fit: FitParams::new(Task::Regression)
                .iterations(100)
                .standardize_target(false),
            ..Self::paper_regression()
        }
    }

    /// Everything that decides the numbers, in one line: a results file made with another
    /// description is not resumed.
    pub fn description(&self) -> String {
        self.description_with(self.shard)
    }

    /// [`Experiment::description`] of shard `shard` (the whole experiment when `None`).
    fn description_with(&self, shard: Option<Shard>) -> String {
        let settings: Vec<String> = self
            .settings
            .iter()
            .map(|s| match s {
                Setting::Labelled { data, .. } | Setting::Real { data, .. } => format!(
                    "{s} ({} rows, {} features)",
                    data.n_samples(),
                    data.n_features()
                ),
                s => s.to_string(),
            })
            .collect();
        let methods: Vec<String> = self.methods.iter().map(Method::to_string).collect();
        // Said only when not the default, so that results files of earlier runs still resume.
        let select = match (self.lambda, self.select_by) {
            (LambdaChoice::Path { .. }, SelectBy::Error) => ", chosen by meta error",
            _ => "",
        };
        // Every shared setting from the one table, except those each fit sets for itself.
        // Each setting as the fits of the experiment's tasks resolve it (task defaults); one
        // that differs between them is said "by task".
        let mut tasks: Vec<Task> = Vec::new();
        for task in self.settings.iter().map(Setting::task) {
            if !tasks.contains(&task) {
                tasks.push(task);
            }
        }
        if tasks.is_empty() {
            tasks.push(self.fit.task);
        }
        let shared: Vec<String> = SETTINGS
            .iter()
            .filter(|s| !PER_FIT.contains(&s.key))
            .filter_map(|s| {
                let values: Vec<String> = tasks
                    .iter()
                    .map(|&task| {
                        (s.get)(&FitParams {
                            task,
                            ..self.fit.clone()
                        })
                    })
                    .collect();
                if values.iter().any(|v| *v != values[0]) {
                    return Some(format!("{} by task", s.key));
                }
                let value = values[0].clone();
                // Settings added after results files were first written are said only when
                // not at the value those files had, so that such files still resume.
                if LATER.contains(&s.key) && s.absent == Some(value.as_str()) {
                    return None;
                }
                Some(format!("{} {value}", s.key))
            })
            .collect();
        let shard = shard.map_or(String::new(), |shard| format!("; shard {shard}"));
        format!(
            "settings [{}]; methods [{}]; seeds {}; n {}; p {}; {}{select}; {}; metaadd {}{shard}",
            settings.join(", "),
            methods.join(", "),
            self.seeds,
            self.n,
            self.n_features,
            self.lambda,
            shared.join("; "),
            env!("CARGO_PKG_VERSION"),
        )
    }

    /// The settings of `method`'s fit on `setting` with `seed`: the shared ones with the
    /// setting's task (and its loss) and the method's weighting and hypergradient.
    pub fn fit_params(&self, setting: &Setting, method: Method, seed: u64) -> FitParams {
        let base = FitParams {
            task: setting.task(),
            loss: None,
            ..self.fit.clone()
        }
        .seed(seed);
        method.params(&base)
    }

    /// Fits `method` on `splits` (from `setting` and `seed`) and scores it on the test set.
    pub fn run_one(
        &self,
        setting: &Setting,
        splits: &Splits,
        method: Method,
        seed: u64,
    ) -> Result<Record> {
        let params = self.fit_params(setting, method, seed);
        let start = Instant::now();
        let (model, warnings) = match self.lambda {
            LambdaChoice::Fixed(lambda) => {
                let fit = params.lambda(lambda).fit(&splits.train, &splits.meta)?;
                (fit.model, fit.warnings)
            }
            LambdaChoice::Path {
                lambdas,
                min_ratio,
                final_iterations,
            } => {
                let path = PathParams::new(params)
                    .select_by(self.select_by)
                    .lambdas(lambdas)
                    .min_ratio(min_ratio)
                    .final_iterations(final_iterations)
                    .fit(&splits.train, &splits.meta)?;
                (path.model, path.warnings)
            }
        };
        let seconds = start.elapsed().as_secs_f64();
        let scores = model.evaluate(&splits.test)?;
        let mut selected = model.additive().selected_features()?;
        // Indices into the table's columns, though a split may have dropped constant ones.
        if let Setting::Labelled { data, .. } | Setting::Real { data, .. } = setting {
            let names = splits.train.feature_names();
            for j in &mut selected {
                *j = data
                    .feature_names()
                    .iter()
                    .position(|name| *name == names[*j])
                    .ok_or_else(|| {
                        Error::invalid(format!("feature {} left the table", names[*j]))
                    })?;
            }
        }
        let truth = (!splits.true_features.is_empty()).then_some(&splits.true_features);
        let tp = truth.map(|t| selected.iter().filter(|j| t.contains(j)).count());
        let (regression, classification) = match &scores {
            Scores::Regression(s) => (Some(s), None),
            Scores::Classification(s) => (None, Some(s)),
        };
        Ok(Record {
            setting: setting.to_string(),
            method: method.to_string(),
            seed,
            test_mse: regression.map(|s| s.mse),
            accuracy: classification.map(|s| s.accuracy),
            macro_f1: classification.map(|s| s.macro_f1),
            balanced_accuracy: classification.map(|s| s.balanced_accuracy),
            roc_auc: classification.and_then(|s| s.roc_auc),
            features: Some(selected.clone()),
            weighting: Some(model.params().weighting.to_string()),
            selected: selected.len(),
            true_positives: tp,
            false_positives: tp.map(|tp| selected.len() - tp),
            lambda: model.params().lambda,
            seconds,
            warnings,
        })
    }

    /// The fits of the experiment (this shard's, with [`Experiment::shard`]), in the order a
    /// run makes them: setting, then seed, then method, as (setting, method, seed).
    pub fn fits(&self) -> Vec<(String, String, u64)> {
        self.fits_with(self.shard)
    }

    /// The fits of shard `shard` (all when `None`).
    fn fits_with(&self, shard: Option<Shard>) -> Vec<(String, String, u64)> {
        let mut fits = Vec::new();
        // Shards are dealt setting by setting, method by method, seed by seed: the seeds of
        // one method spread over the shards, so that no shard gets all of a slow method's fits
        // (a run's order, below, is seed by seed).
        let mut base = 0;
        for setting in &self.settings {
            let task = setting.task();
            let methods: Vec<&Method> = self.methods.iter().filter(|m| m.suits(task)).collect();
            for seed in 0..self.seeds {
                for (i, method) in methods.iter().enumerate() {
                    let t = base + i * self.seeds as usize + seed as usize;
                    if shard.is_none_or(|shard| shard.owns(t)) {
                        fits.push((setting.to_string(), method.to_string(), seed));
                    }
                }
            }
            base += methods.len() * self.seeds as usize;
        }
        fits
    }

    /// Writes `records` (of this experiment, e.g. merged from its shards) to the results file
    /// `path` as a run would have: a later run with that file resumes from them. Records the
    /// file already holds are kept, not written twice.
    pub fn save(&self, path: &Path, records: &[Record]) -> Result<()> {
        let mut file = ResultsFile::open(path, &self.description())?;
        for record in records {
            if !file.contains(&record.setting, &record.method, record.seed) {
                file.append(record)?;
            }
        }
        Ok(())
    }

    /// The records of the whole experiment from the results files of its shards (each written
    /// by a run of this experiment with [`Experiment::shard`] set), in the order one run
    /// gives them: the files must be every shard of one division, each of this experiment,
    /// and hold every fit.
    pub fn merge(&self, files: &[PathBuf]) -> Result<Vec<Record>> {
        let base = self.description_with(None);
        let mut found: Vec<(Shard, &PathBuf, Vec<Record>)> = Vec::new();
        for path in files {
            let (description, records) = ResultsFile::read(path)?;
            let shard = description
                .strip_prefix(&base)
                .and_then(|rest| rest.strip_prefix("; shard "))
                .and_then(|shard| shard.parse::<Shard>().ok())
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "{}: not a shard of this experiment:\n  file: {description}\n  \
                         experiment: {base}; shard I/N",
                        path.display()
                    ))
                })?;
            found.push((shard, path, records));
        }
        let shards: Vec<(Shard, &Path)> = found.iter().map(|(s, p, _)| (*s, p.as_path())).collect();
        check_division(&shards)?;
        let mut records = Vec::new();
        let mut absent = Vec::new();
        for (setting, method, seed) in self.fits_with(None) {
            let key = (setting.clone(), method.clone(), seed);
            let record = found
                .iter()
                .find_map(|(_, _, rs)| rs.iter().find(|r| r.key() == key));
            match record {
                Some(record) => records.push(record.clone()),
                None => absent.push(format!("{setting}, {method}, seed {seed}")),
            }
        }
        if !absent.is_empty() {
            let shown = absent
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Error::invalid(format!(
                "{} of {} fits are in no shard's file (a shard still running or stopped; \
                 rerunning it resumes): {shown}{}",
                absent.len(),
                absent.len() + records.len(),
                if absent.len() > 5 { "; …" } else { "" }
            )));
        }
        Ok(records)
    }

    /// Every setting × seed × method. With `results`, records already in that file (written by
    /// an experiment with the same [`Experiment::description`]) are kept and skipped, and each
    /// new one is appended as soon as it is done. `progress(record, done, total)` follows each
    /// fit. Returns all records in table order.
    pub fn run(
        &self,
        results: Option<&Path>,
        mut progress: impl FnMut(&Record, usize, usize),
    ) -> Result<Vec<Record>> {
        if self.settings.is_empty() || self.methods.is_empty() || self.seeds == 0 {
            return Err(Error::param(
                "experiment",
                "needs at least one setting, one method and one seed",
            ));
        }
        let mut methods = HashSet::new();
        if let Some(m) = self.methods.iter().find(|m| !methods.insert(m.to_string())) {
            return Err(Error::param("methods", format!("{m} is listed twice")));
        }
        let description = self.description();
        let mut done = match results {
            Some(path) => ResultsFile::open(path, &description)?,
            None => ResultsFile::default(),
        };
        // A method that cannot fit a setting's task (a class-aware net in regression) is left
        // out of that setting.
        let methods_of = |setting: &Setting| -> Vec<Method> {
            let task = setting.task();
            self.methods
                .iter()
                .copied()
                .filter(|m| m.suits(task))
                .collect()
        };
        let fits: HashSet<(String, String, u64)> = self.fits().into_iter().collect();
        let total = fits.len();
        let mut records = Vec::with_capacity(total);
        for setting in &self.settings {
            for seed in 0..self.seeds {
                let name = setting.to_string();
                let methods: Vec<Method> = methods_of(setting)
                    .into_iter()
                    .filter(|m| fits.contains(&(name.clone(), m.to_string(), seed)))
                    .collect();
                let todo: Vec<Method> = methods
                    .iter()
                    .copied()
                    .filter(|m| !done.contains(&name, &m.to_string(), seed))
                    .collect();
                let splits = if todo.is_empty() {
                    None
                } else {
                    Some(setting.splits(self.n, self.n_features, seed)?)
                };
                for method in &methods {
                    let record = match done.take(&name, &method.to_string(), seed) {
                        Some(record) => record,
                        None => {
                            let splits = splits.as_ref().ok_or_else(|| {
                                Error::invalid("internal: splits not drawn for a pending fit")
                            })?;
                            let record =
                                self.run_one(setting, splits, *method, seed).map_err(|e| {
                                    Error::invalid(format!("{name}, {method}, seed {seed}: {e}"))
                                })?;
                            done.append(&record)?;
                            record
                        }
                    };
                    progress(&record, records.len() + 1, total);
                    records.push(record);
                }
            }
        }
        Ok(records)
    }
}
