//! The paper's experiments (SPEC §7–§9): every method on the same basis and solver, over
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

use crate::data::split::{flip_labels, three_way};
use crate::data::synthetic::{
    ClassificationCorruption, ClassificationProtocol, RegressionNoise, RegressionProtocol,
    SpamProtocol, Splits, PAPER_N, PAPER_N_FEATURES,
};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::metrics;
use crate::path::{PathParams, SelectBy};
use crate::trainer::{FitParams, Weighting};
use crate::{HypergradMode, MetaAdditiveModel, Task};
use std::collections::HashSet;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

/// Shares of a labelled data set's rows held out as the meta and the test set.
const META_SHARE: f64 = 0.1;
const TEST_SHARE: f64 = 0.2;

/// One data-generating setting. Its name (`Display`) has no comma, so that names can be listed
/// comma-separated on the command line.
#[derive(Debug, Clone)]
pub enum Setting {
    /// The 8-function regression design (SPEC §7) with this training noise.
    Regression(RegressionNoise),
    /// The classic SpAM design (4 true features, Gaussian training noise).
    Spam,
    /// The circle classification design (SPEC §8) with this training corruption.
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
}

impl Setting {
    /// The task the setting's targets need.
    pub fn task(&self) -> Task {
        match self {
            Self::Regression(_) | Self::Spam => Task::Regression,
            Self::Circle(_) => Task::Binary,
            Self::Labelled { classes, .. } => Task::Multiclass { classes: *classes },
        }
    }

    /// (training rows, meta rows, features) of [`Setting::splits`], known before drawing them
    /// (to the row for synthetic designs, within a row for labelled data).
    pub fn sizes(&self, n: usize, p: usize) -> (usize, usize, usize) {
        match self {
            Self::Labelled { data, .. } => {
                let rows = data.n_samples() as f64;
                (
                    (rows * (1.0 - META_SHARE - TEST_SHARE)).ceil() as usize,
                    (rows * META_SHARE).ceil() as usize,
                    data.n_features(),
                )
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
            Self::Labelled {
                data,
                classes,
                flip,
                ..
            } => {
                let (train, meta, test) = three_way(data, META_SHARE, TEST_SHARE, true, seed)?;
                let (train, corrupted) =
                    flip_labels(&train, *flip, *classes, seed.wrapping_add(400))?;
                Ok(Splits {
                    train,
                    meta,
                    test,
                    corrupted,
                    true_features: Vec::new(),
                    target_mean: 0.0,
                    target_sd: 1.0,
                })
            }
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
    /// MAM with the one-step hypergradient.
    OneStep,
    /// MAM with the exact hypergradient through `K` unrolled steps.
    Mam(usize),
}

impl Method {
    /// `base` with this method's weighting and hypergradient.
    pub fn params(&self, base: &FitParams) -> FitParams {
        let p = base.clone();
        match *self {
            Self::Uniform => p.weighting(Weighting::Uniform),
            Self::Huber(delta) => p.weighting(Weighting::Huber(delta)),
            Self::Tilted(t) => p.weighting(Weighting::Tilted(t)),
            Self::OneStep => p
                .weighting(Weighting::Meta)
                .hypergradient(HypergradMode::OneStep)
                .k(1),
            Self::Mam(k) => p
                .weighting(Weighting::Meta)
                .hypergradient(HypergradMode::Exact)
                .k(k),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uniform => write!(f, "uniform"),
            Self::Huber(delta) => write!(f, "huber({delta})"),
            Self::Tilted(t) => write!(f, "tilted({t})"),
            Self::OneStep => write!(f, "one-step"),
            Self::Mam(k) => write!(f, "mam({k})"),
        }
    }
}

impl FromStr for Method {
    type Err = Error;

    /// `uniform`, `huber(δ)`, `tilted(t)`, `one-step` or `mam(K)`.
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
                    "unknown method {s:?}: expected uniform, huber(δ), tilted(t), one-step or mam(K)"
                ),
            )
        };
        match s {
            "uniform" => return Ok(Self::Uniform),
            "one-step" => return Ok(Self::OneStep),
            _ => {}
        }
        if let Some(k) = s.strip_prefix("mam(").and_then(|r| r.strip_suffix(')')) {
            return match k.trim().parse::<usize>() {
                Ok(k) if k >= 1 => Ok(Self::Mam(k)),
                _ => Err(Error::param(
                    "method",
                    format!("{s:?}: K must be a whole number ≥ 1"),
                )),
            };
        }
        // Huber and tilted share their syntax and checks with `Weighting`.
        match s.parse::<Weighting>().map_err(|_| bad())? {
            Weighting::Huber(delta) => Ok(Self::Huber(delta)),
            Weighting::Tilted(t) => Ok(Self::Tilted(t)),
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

/// The outcome of one fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The setting's name ([`Setting`]'s `Display`).
    pub setting: String,
    /// The method's name ([`Method`]'s `Display`).
    pub method: String,
    /// The seed of the data and of the fit.
    pub seed: u64,
    /// Test MSE on standardised targets (regression).
    pub test_mse: Option<f64>,
    /// Test accuracy (classification).
    pub accuracy: Option<f64>,
    /// Test macro-F1 (classification).
    pub macro_f1: Option<f64>,
    /// Number of selected features.
    pub selected: usize,
    /// Selected features that carry signal (when the truth is known).
    pub true_positives: Option<usize>,
    /// Selected features that carry none (when the truth is known).
    pub false_positives: Option<usize>,
    /// The λ of the model.
    pub lambda: f64,
    /// Wall-clock seconds of the fit.
    pub seconds: f64,
}

const HEADER: [&str; 11] = [
    "setting",
    "method",
    "seed",
    "test_mse",
    "accuracy",
    "macro_f1",
    "selected",
    "true_positives",
    "false_positives",
    "lambda",
    "seconds",
];

impl Record {
    fn fields(&self) -> Vec<String> {
        let opt = |v: Option<f64>| v.map(|v| format!("{v:e}")).unwrap_or_default();
        let count = |v: Option<usize>| v.map(|v| v.to_string()).unwrap_or_default();
        vec![
            self.setting.clone(),
            self.method.clone(),
            self.seed.to_string(),
            opt(self.test_mse),
            opt(self.accuracy),
            opt(self.macro_f1),
            self.selected.to_string(),
            count(self.true_positives),
            count(self.false_positives),
            format!("{:e}", self.lambda),
            format!("{:.3}", self.seconds),
        ]
    }

    fn parse(fields: &csv::StringRecord, line: usize, file: &Path) -> Result<Self> {
        let bad = |what: &str| {
            Error::invalid(format!(
                "{}: line {line}: {what} (expected the columns {})",
                file.display(),
                HEADER.join(",")
            ))
        };
        if fields.len() != HEADER.len() {
            return Err(bad(&format!(
                "{} fields instead of {}",
                fields.len(),
                HEADER.len()
            )));
        }
        let number = |i: usize| -> Result<Option<f64>> {
            match fields[i].trim() {
                "" => Ok(None),
                v => v
                    .parse::<f64>()
                    .map(Some)
                    .map_err(|_| bad(&format!("column {}: {v:?} is not a number", HEADER[i]))),
            }
        };
        let count = |i: usize| -> Result<Option<usize>> {
            match fields[i].trim() {
                "" => Ok(None),
                v => v
                    .parse::<usize>()
                    .map(Some)
                    .map_err(|_| bad(&format!("column {}: {v:?} is not a count", HEADER[i]))),
            }
        };
        let required =
            |v: Option<f64>, i: usize| v.ok_or_else(|| bad(&format!("{} is empty", HEADER[i])));
        Ok(Self {
            setting: fields[0].to_string(),
            method: fields[1].to_string(),
            seed: fields[2]
                .trim()
                .parse()
                .map_err(|_| bad(&format!("column seed: {:?} is not a seed", &fields[2])))?,
            test_mse: number(3)?,
            accuracy: number(4)?,
            macro_f1: number(5)?,
            selected: count(6)?.ok_or_else(|| bad("selected is empty"))?,
            true_positives: count(7)?,
            false_positives: count(8)?,
            lambda: required(number(9)?, 9)?,
            seconds: required(number(10)?, 10)?,
        })
    }

    fn key(&self) -> (String, String, u64) {
        (self.setting.clone(), self.method.clone(), self.seed)
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
}

impl Experiment {
    /// SPEC §7 at the paper's size (2000 rows per split, 100 features): noises A, B, C and
    /// Gaussian, and the SpAM design; uniform, huber(0.5), tilted(−1), one-step and MAM with
    /// K = 5; 5 seeds; λ by a 12-value path with 100 iterations per λ, then 1000 iterations on
    /// the chosen support. Weights enter the inner step as they are (SPEC §3).
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
                Method::OneStep,
                Method::Mam(5),
            ],
            seeds: 5,
            n: PAPER_N,
            n_features: PAPER_N_FEATURES,
            fit: FitParams::new(Task::Regression).iterations(100),
            lambda: LambdaChoice::Path {
                lambdas: 12,
                min_ratio: 1e-2,
                final_iterations: 1000,
            },
            select_by: SelectBy::Loss,
        }
    }

    /// SPEC §8 at the paper's size: the circle design with 15% imbalance, 15% and 30% label
    /// flips, and 15% imbalance with 15% flips; uniform, huber(1), tilted(−1), tilted(+1),
    /// one-step and MAM with K = 5; otherwise as [`Experiment::paper_regression`], except that
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

    /// Everything that decides the numbers, in one line: a results file made with another
    /// description is not resumed.
    pub fn description(&self) -> String {
        let settings: Vec<String> = self
            .settings
            .iter()
            .map(|s| match s {
                Setting::Labelled { data, .. } => format!(
                    "{s} ({} rows, {} features)",
                    data.n_samples(),
                    data.n_features()
                ),
                s => s.to_string(),
            })
            .collect();
        let methods: Vec<String> = self.methods.iter().map(Method::to_string).collect();
        let f = &self.fit;
        // Said only when not the default, so that results files of earlier runs still resume.
        let select = match (self.lambda, self.select_by) {
            (LambdaChoice::Path { .. }, SelectBy::Error) => ", chosen by meta error",
            _ => "",
        };
        format!(
            "settings [{}]; methods [{}]; seeds {}; n {}; p {}; {}{select}; basis {:?}; iterations {}; \
             inner steps {}; lr {}; weight decay {}; hidden {}; ridge {}; eta {:?}; \
             batches {:?}/{:?}; normalize {}; detach {}; {:?}; metaadd {}",
            settings.join(", "),
            methods.join(", "),
            self.seeds,
            self.n,
            self.n_features,
            self.lambda,
            f.basis,
            f.iterations,
            f.inner_steps,
            f.learning_rate,
            f.weight_decay,
            f.hidden,
            f.ridge,
            f.eta,
            f.train_batch,
            f.meta_batch,
            f.normalize_weights,
            f.detach_weight_input,
            f.dtype,
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
        let model = match self.lambda {
            LambdaChoice::Fixed(lambda) => {
                params
                    .lambda(lambda)
                    .fit(&splits.train, &splits.meta)?
                    .model
            }
            LambdaChoice::Path {
                lambdas,
                min_ratio,
                final_iterations,
            } => {
                PathParams::new(params)
                    .select_by(self.select_by)
                    .lambdas(lambdas)
                    .min_ratio(min_ratio)
                    .final_iterations(final_iterations)
                    .fit(&splits.train, &splits.meta)?
                    .model
            }
        };
        let seconds = start.elapsed().as_secs_f64();
        let (test_mse, accuracy, macro_f1) = score(&model, &splits.test)?;
        let selected = model.additive().selected_features()?;
        let truth = (!splits.true_features.is_empty()).then_some(&splits.true_features);
        let tp = truth.map(|t| selected.iter().filter(|j| t.contains(j)).count());
        Ok(Record {
            setting: setting.to_string(),
            method: method.to_string(),
            seed,
            test_mse,
            accuracy,
            macro_f1,
            selected: selected.len(),
            true_positives: tp,
            false_positives: tp.map(|tp| selected.len() - tp),
            lambda: model.params().lambda,
            seconds,
        })
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
        let total = self.settings.len() * self.methods.len() * self.seeds as usize;
        let mut records = Vec::with_capacity(total);
        for setting in &self.settings {
            for seed in 0..self.seeds {
                let name = setting.to_string();
                let todo: Vec<Method> = self
                    .methods
                    .iter()
                    .copied()
                    .filter(|m| !done.contains(&name, &m.to_string(), seed))
                    .collect();
                let splits = if todo.is_empty() {
                    None
                } else {
                    Some(setting.splits(self.n, self.n_features, seed)?)
                };
                for method in &self.methods {
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

/// (test MSE, accuracy, macro-F1) of `model` on `test`, the ones its task has.
fn score(
    model: &MetaAdditiveModel,
    test: &Dataset,
) -> Result<(Option<f64>, Option<f64>, Option<f64>)> {
    let additive = model.additive();
    match additive.task() {
        Task::Regression => {
            let f = additive.predict_dataset(test)?.flatten_all()?;
            let f: Vec<f64> = f.to_dtype(candle_core::DType::F64)?.to_vec1()?;
            Ok((Some(metrics::mse(&f, test.y())), None, None))
        }
        _ => {
            let (accuracy, macro_f1) = accuracy_macro_f1(model, test)?;
            Ok((None, Some(accuracy), Some(macro_f1)))
        }
    }
}

/// Accuracy and macro-F1 of a classifier on rows labelled with class indices.
///
/// ```
/// use metaadd::data::synthetic::{ClassificationCorruption, ClassificationProtocol};
/// use metaadd::{FitParams, Task};
/// let s = ClassificationProtocol::new(ClassificationCorruption::none()).n(200).n_features(3).generate(0)?;
/// let model = FitParams::new(Task::Binary).iterations(20).fit(&s.train, &s.meta)?.model;
/// let (accuracy, f1) = metaadd::experiment::accuracy_macro_f1(&model, &s.test)?;
/// assert!((0.0..=1.0).contains(&accuracy) && (0.0..=1.0).contains(&f1));
/// # Ok::<(), metaadd::Error>(())
/// ```
pub fn accuracy_macro_f1(model: &MetaAdditiveModel, test: &Dataset) -> Result<(f64, f64)> {
    let additive = model.additive();
    let classes = additive.task().outputs().max(2);
    let predicted = additive.predict_dataset_labels(test)?;
    let truth: Vec<usize> = test.y().iter().map(|&y| y as usize).collect();
    Ok((
        metrics::accuracy(&predicted, &truth),
        metrics::macro_f1(&predicted, &truth, classes),
    ))
}

/// Records of an earlier run, and the file new ones go to.
#[derive(Default)]
struct ResultsFile {
    file: Option<(std::fs::File, std::path::PathBuf)>,
    records: Vec<Record>,
}

impl ResultsFile {
    const PREFIX: &'static str = "# metaadd experiment: ";

    fn open(path: &Path, description: &str) -> Result<Self> {
        let io = |e: std::io::Error| Error::invalid(format!("{}: {e}", path.display()));
        let mut records = Vec::new();
        if path.exists() {
            let mut text = std::fs::read_to_string(path).map_err(io)?;
            // A run stopped mid-line leaves a partial last line: drop it.
            if !text.is_empty() && !text.ends_with('\n') {
                let keep = text.rfind('\n').map_or(0, |i| i + 1);
                text.truncate(keep);
                crate::atomic::write_bytes(path, text.as_bytes())?;
            }
            if !text.is_empty() {
                let first = text.lines().next().unwrap_or_default();
                let found = first.strip_prefix(Self::PREFIX).ok_or_else(|| {
                    Error::invalid(format!(
                        "{}: line 1 is not a metaadd experiment header; refusing to append to it",
                        path.display()
                    ))
                })?;
                if found != description {
                    return Err(Error::invalid(format!(
                        "{} holds results of another configuration:\n  file: {found}\n  now:  \
                         {description}\nremove it or choose another results file",
                        path.display()
                    )));
                }
                let body = text.split_once('\n').map_or("", |(_, rest)| rest);
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .from_reader(body.as_bytes());
                for (i, row) in reader.records().enumerate() {
                    let row = row.map_err(|e| {
                        Error::invalid(format!("{}: line {}: {e}", path.display(), i + 3))
                    })?;
                    records.push(Record::parse(&row, i + 3, path)?);
                }
            }
        }
        let fresh = !path.exists() || std::fs::metadata(path).map_err(io)?.len() == 0;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        if fresh {
            writeln!(file, "{}{description}", Self::PREFIX).map_err(io)?;
            writeln!(file, "{}", HEADER.join(",")).map_err(io)?;
        }
        Ok(Self {
            file: Some((file, path.to_path_buf())),
            records,
        })
    }

    fn contains(&self, setting: &str, method: &str, seed: u64) -> bool {
        let key = (setting.to_string(), method.to_string(), seed);
        self.records.iter().any(|r| r.key() == key)
    }

    fn take(&mut self, setting: &str, method: &str, seed: u64) -> Option<Record> {
        let key = (setting.to_string(), method.to_string(), seed);
        let i = self.records.iter().position(|r| r.key() == key)?;
        Some(self.records.swap_remove(i))
    }

    /// One whole line per write, flushed: a run killed between fits loses nothing.
    fn append(&mut self, record: &Record) -> Result<()> {
        let Some((file, path)) = self.file.as_mut() else {
            return Ok(());
        };
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer
            .write_record(record.fields())
            .and_then(|()| writer.flush().map_err(csv::Error::from))
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        let line = writer
            .into_inner()
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        file.write_all(&line)
            .and_then(|()| file.flush())
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
    }
}

/// A markdown table: one row per setting and method (in the order of `records`), with mean ± sd
/// over seeds of the test metric(s), selected features, true and false positives, and the mean
/// seconds per fit.
pub fn table(records: &[Record]) -> String {
    let mut groups: Vec<((String, String), Vec<&Record>)> = Vec::new();
    for r in records {
        let key = (r.setting.clone(), r.method.clone());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, rows)) => rows.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    let regression = records.iter().any(|r| r.test_mse.is_some());
    let classification = records.iter().any(|r| r.accuracy.is_some());
    let mut headers = vec!["setting", "method", "seeds"];
    if regression {
        headers.push("test MSE");
    }
    if classification {
        headers.extend(["accuracy", "macro-F1"]);
    }
    headers.extend(["selected", "true pos.", "false pos.", "s / fit"]);
    let mut out = format!(
        "| {} |\n|{}\n",
        headers.join(" | "),
        "---|".repeat(headers.len())
    );
    for ((setting, method), rows) in &groups {
        let floats = |get: &dyn Fn(&Record) -> Option<f64>, digits: usize| -> String {
            let v: Vec<f64> = rows.iter().filter_map(|r| get(r)).collect();
            if v.is_empty() {
                "–".into()
            } else {
                mean_sd(&v, digits)
            }
        };
        let counts = |get: &dyn Fn(&Record) -> Option<usize>| -> String {
            let v: Vec<f64> = rows
                .iter()
                .filter_map(|r| get(r))
                .map(|c| c as f64)
                .collect();
            if v.is_empty() {
                "–".into()
            } else {
                mean_sd(&v, 1)
            }
        };
        let mut cells = vec![setting.clone(), method.clone(), rows.len().to_string()];
        if regression {
            cells.push(floats(&|r| r.test_mse, 4));
        }
        if classification {
            cells.push(floats(&|r| r.accuracy, 3));
            cells.push(floats(&|r| r.macro_f1, 3));
        }
        cells.push(counts(&|r| Some(r.selected)));
        cells.push(counts(&|r| r.true_positives));
        cells.push(counts(&|r| r.false_positives));
        let seconds: f64 = rows.iter().map(|r| r.seconds).sum::<f64>() / rows.len() as f64;
        cells.push(format!("{seconds:.1}"));
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

/// `mean ± sd` (sample sd; 0 for one value) with `digits` decimals.
///
/// ```
/// assert_eq!(metaadd::experiment::mean_sd(&[1.0, 2.0, 3.0], 2), "2.00 ± 1.00");
/// ```
pub fn mean_sd(values: &[f64], digits: usize) -> String {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = if values.len() > 1 {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    format!("{mean:.digits$} ± {sd:.digits$}")
}
