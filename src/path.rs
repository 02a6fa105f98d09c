//! The λ path: group-lasso strengths from `λ_max` (every group zero) down, each fit warm-started
//! from the previous one, and the λ whose fit has the smallest meta loss.
//!
//! By default each λ is scored by a *relaxed refit* on its support ([`Trainer::refit`]): the
//! shrinkage that a larger λ puts on the true features costs more meta loss than a few noise
//! features do, so the plain meta loss prefers too many features; refitting each support with
//! little penalty compares supports rather than amounts of shrinkage (the relaxed lasso).

use crate::data::dataset::Dataset;
use crate::data::encoding::Encoding;
use crate::error::{Error, Result};
use crate::inner::class_counts;
use crate::model::MetaAdditiveModel;
use crate::ops::scalar;
use crate::params::FitParams;
use crate::trainer::{fit_warnings, Trainer};

/// How many λ values, how far down, and how many outer iterations at each.
///
/// ```
/// use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
/// use metaadd::path::PathParams;
/// use metaadd::{FitParams, Task};
/// let splits = RegressionProtocol::new(RegressionNoise::B).n(150).n_features(10).generate(0)?;
/// let fit = FitParams::new(Task::Regression).iterations(40);
/// let path = PathParams::new(fit).lambdas(6).fit(&splits.train, &splits.meta)?;
/// assert_eq!(path.lambdas.len(), 6);
/// // The first λ is λ_max: every group is zero there.
/// assert!(path.group_norms[0].iter().all(|&g| g == 0.0));
/// let best = path.best;
/// // The chosen model is the relaxed refit at a tenth of the best λ.
/// assert_eq!(path.model.params().lambda, 0.1 * path.lambdas[best]);
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PathParams {
    /// Settings of every fit; `iterations` is per λ, and `lambda` is replaced by the path's
    /// values (it is never used).
    pub fit: FitParams,
    /// Number of λ values.
    pub lambdas: usize,
    /// The smallest λ as a fraction of `λ_max`.
    pub min_ratio: f64,
    /// Solver epochs at the most for the relaxed refit on each support (it stops at the fit's
    /// tolerance); 0 scores the path's own fits instead.
    pub refit_steps: usize,
    /// The refit's λ as a fraction of the λ that chose the support.
    pub refit_ratio: f64,
    /// Outer iterations of a final fit from scratch on the chosen support at the refit's λ
    /// (the method's full training, weight net included); 0 keeps the chosen relaxed refit.
    pub final_iterations: usize,
    /// What scores a λ on the meta set.
    pub select_by: SelectBy,
    /// The encoding of inputs and target (as [`crate::prepare::Prepared`] gives it); `None`:
    /// the one [`Trainer::new`] infers from raw data sets.
    pub encoding: Option<Encoding>,
}

/// The meta-set score that chooses λ on a path.
///
/// ```
/// use metaadd::data::synthetic::{ClassificationCorruption, ClassificationProtocol};
/// use metaadd::path::{PathParams, SelectBy};
/// use metaadd::{FitParams, Task};
/// let c = ClassificationCorruption::none().flip(0.1);
/// let s = ClassificationProtocol::new(c).n(200).n_features(4).generate(0)?;
/// let fit = FitParams::new(Task::Binary).iterations(10);
/// let path = PathParams::new(fit).lambdas(4).select_by(SelectBy::Error).fit(&s.train, &s.meta)?;
/// // Balanced error rates on the 200 meta rows (100 per class): multiples of 1/200 in [0, 1].
/// assert!(path.scores.iter().all(|&e| (0.0..=1.0).contains(&e) && (e * 200.0 - (e * 200.0).round()).abs() < 1e-9));
/// assert_eq!("error".parse::<SelectBy>()?, SelectBy::Error);
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SelectBy {
    /// The mean meta loss (the training loss on the meta set).
    #[default]
    Loss,
    /// The meta misclassification rate (classification; the meta loss for regression). Log-loss
    /// can prefer a model with sharper probabilities and more features whose accuracy is lower.
    Error,
}

impl std::fmt::Display for SelectBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Loss => "loss",
            Self::Error => "error",
        })
    }
}

impl std::str::FromStr for SelectBy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "loss" => Ok(Self::Loss),
            "error" => Ok(Self::Error),
            other => Err(Error::param(
                "select_by",
                format!("expected loss or error, got {other:?}"),
            )),
        }
    }
}

impl PathParams {
    /// 20 values, geometric from `λ_max` down to `10⁻³·λ_max`; each support refitted with 500
    /// steps at a tenth of its λ.
    pub fn new(fit: FitParams) -> Self {
        Self {
            fit,
            lambdas: 20,
            min_ratio: 1e-3,
            refit_steps: 20_000,
            refit_ratio: 0.1,
            final_iterations: 0,
            select_by: SelectBy::Loss,
            encoding: None,
        }
    }

    /// Sets the encoding of inputs and target (see [`PathParams::encoding`]).
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = Some(encoding);
        self
    }

    /// Sets what scores a λ.
    pub fn select_by(mut self, select_by: SelectBy) -> Self {
        self.select_by = select_by;
        self
    }

    /// Sets the outer iterations of the final fit on the chosen support (0: none).
    pub fn final_iterations(mut self, iterations: usize) -> Self {
        self.final_iterations = iterations;
        self
    }

    /// Sets the relaxed refit: the weighted problem at `ratio·λ` on the support, solved in at
    /// most `steps` epochs (0: no refit).
    pub fn refit(mut self, steps: usize, ratio: f64) -> Self {
        self.refit_steps = steps;
        self.refit_ratio = ratio;
        self
    }

    /// Sets the number of λ values.
    pub fn lambdas(mut self, n: usize) -> Self {
        self.lambdas = n;
        self
    }

    /// Sets the smallest λ as a fraction of `λ_max`.
    pub fn min_ratio(mut self, ratio: f64) -> Self {
        self.min_ratio = ratio;
        self
    }

    /// Fits the path on `train`, scoring each λ on `meta` by [`PathParams::select_by`].
    pub fn fit(&self, train: &Dataset, meta: &Dataset) -> Result<LambdaPath> {
        self.fit_with_progress(train, meta, |_, _| {})
    }

    /// [`PathParams::fit`], calling `progress(done, total)` after each λ (`total` counts the
    /// final fit as one more step when there is one).
    ///
    /// With `huber(auto)` or `tilted(auto)` a path is fitted for every candidate of the grid
    /// and the one whose chosen λ scores best kept ([`LambdaPath::candidates`]).
    pub fn fit_with_progress(
        &self,
        train: &Dataset,
        meta: &Dataset,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<LambdaPath> {
        let candidates = self.fit.weighting.candidates();
        let steps = self.lambdas + usize::from(self.final_iterations > 0);
        let total = steps * candidates.len();
        let mut best: Option<LambdaPath> = None;
        let mut scores = Vec::new();
        let mut diverged = None;
        for (i, &weighting) in candidates.iter().enumerate() {
            let one = PathParams {
                fit: self.fit.clone().weighting(weighting),
                ..self.clone()
            };
            let step = |done| {
                progress(i * steps + done, total);
                crate::progress::report(crate::progress::Progress::Step {
                    done: i * steps + done,
                    total,
                })
            };
            let path = match one.fit_one(train, meta, step) {
                // A candidate of an `auto` grid that diverges is out of the running.
                Err(e @ Error::NonFinite { .. }) if self.fit.weighting.is_auto() => {
                    scores.push((weighting, f64::INFINITY));
                    diverged = Some(e);
                    continue;
                }
                other => other?,
            };
            let score = path.scores[path.best];
            scores.push((weighting, score));
            // Ties go to the earlier candidate.
            if best.as_ref().is_none_or(|b| score < b.scores[b.best]) {
                best = Some(path);
            }
        }
        let mut path = match (best, diverged) {
            (Some(best), _) => best,
            (None, Some(e)) => return Err(e),
            (None, None) => return Err(Error::invalid("no weighting to fit")),
        };
        if self.fit.weighting.is_auto() {
            path.candidates = scores;
        }
        Ok(path)
    }

    /// The path of one weighting.
    fn fit_one(
        &self,
        train: &Dataset,
        meta: &Dataset,
        mut progress: impl FnMut(usize) -> Result<()>,
    ) -> Result<LambdaPath> {
        if self.lambdas < 2 {
            return Err(Error::param("lambdas", "a path needs at least 2 values"));
        }
        if !(self.min_ratio > 0.0 && self.min_ratio < 1.0) {
            return Err(Error::param(
                "min_ratio",
                format!("must lie in (0, 1), got {}", self.min_ratio),
            ));
        }
        if !(0.0..=1.0).contains(&self.refit_ratio) {
            return Err(Error::param(
                "refit_ratio",
                format!("must lie in [0, 1], got {}", self.refit_ratio),
            ));
        }
        let mut trainer = self.trainer(&self.fit, train, meta)?;
        let problem = trainer.bilevel();
        let lambda_max = trainer.inner_step().lambda_max(&problem.train)?;
        let lambdas: Vec<f64> = (0..self.lambdas)
            .map(|i| {
                let t = i as f64 / (self.lambdas - 1) as f64;
                lambda_max * self.min_ratio.powf(t)
            })
            .collect();
        let p = train.n_features();
        let total = self.lambdas + usize::from(self.final_iterations > 0);
        let (mut meta_losses, mut group_norms, mut scores) = (Vec::new(), Vec::new(), Vec::new());
        let mut best: Option<(usize, (f64, f64), MetaAdditiveModel)> = None;
        let mut previous_refit: Option<MetaAdditiveModel> = None;
        for (i, &lambda) in lambdas.iter().enumerate() {
            trainer.set_lambda(lambda)?;
            // The trainer counts on over the path; each λ's iterations are reported from 1.
            for j in 0..self.fit.iterations {
                trainer.step()?.report(j + 1, self.fit.iterations)?;
            }
            // The path's fit at this λ: the weighted inner problem solved (weights held fixed).
            if self.fit.final_solve {
                trainer.solve()?;
            }
            let fitted = trainer.model()?;
            let coefficients = fitted.additive().coefficients();
            let loss = scalar(&problem.meta.mean_loss(coefficients)?)?;
            meta_losses.push(loss);
            group_norms.push(coefficients.group_norms(p)?);
            let (score, model) = if self.refit_steps == 0 {
                (self.score(&problem.meta, coefficients)?, None)
            } else {
                let support = coefficients.active_groups(p)?;
                // Started from the previous λ's refit, closer to this one than the path's fit.
                let warm = previous_refit
                    .as_ref()
                    .map(|m: &MetaAdditiveModel| m.additive().coefficients());
                let model = trainer.refit_from(
                    &support,
                    self.refit_ratio * lambda,
                    self.refit_steps,
                    warm,
                )?;
                previous_refit = Some(model.clone());
                let c = model.additive().coefficients();
                (self.score(&problem.meta, c)?, Some(model))
            };
            scores.push(score);
            // Ties of the score (the same support refitted alike, or one meta error on a
            // small meta set) go to the smaller meta loss, then to the larger λ (the sparser
            // model): an error rate flat over the path's top must not pick the empty model.
            let key = (
                score,
                meta_loss_of(&problem.meta, model.as_ref(), coefficients)?,
            );
            if best.as_ref().is_none_or(|(_, b, _)| key < *b) {
                let model = match model {
                    Some(model) => model,
                    None => fitted,
                };
                best = Some((i, key, model));
            }
            progress(i + 1)?;
        }
        let (best, _, mut model) = best.ok_or_else(|| Error::invalid("empty λ path"))?;
        let mut history = Vec::new();
        if self.final_iterations > 0 {
            let support = model.additive().selected_features()?;
            let mut params = self.fit.clone().iterations(self.final_iterations);
            params.lambda = model.params().lambda;
            let mut trainer = self.trainer(&params, train, meta)?;
            trainer.restrict(&support)?;
            for _ in 0..self.final_iterations {
                let metrics = trainer.step()?;
                metrics.report(metrics.iteration + 1, self.final_iterations)?;
                history.push(metrics);
            }
            if params.final_solve {
                trainer.solve()?;
            }
            model = trainer.into_model()?;
            progress(total)?;
        }
        let warnings = fit_warnings(self.fit.task, train, meta, &model)?;
        Ok(LambdaPath {
            lambdas,
            meta_losses,
            scores,
            group_norms,
            best,
            model,
            warnings,
            candidates: Vec::new(),
            history,
        })
    }
}

impl PathParams {
    /// A trainer on the path's data, with the encoding given by [`PathParams::encoding`] or
    /// the one [`Trainer::new`] infers.
    fn trainer(&self, params: &FitParams, train: &Dataset, meta: &Dataset) -> Result<Trainer> {
        match &self.encoding {
            Some(encoding) => Trainer::with_encoding(params, train, meta, encoding.clone()),
            None => Trainer::new(params, train, meta),
        }
    }

    /// The score of coefficients `c` on the meta problem: mean loss, or misclassification rate.
    fn score(&self, meta: &crate::inner::Problem, c: &crate::inner::Coefficients) -> Result<f64> {
        let loss = meta.loss();
        if self.select_by == SelectBy::Loss
            || matches!(loss, crate::Loss::Squared | crate::Loss::Huber { .. })
        {
            return scalar(&meta.mean_loss(c)?);
        }
        let f = meta.outputs(c)?;
        let y = meta.target();
        // Binary: one logit against 0/1; multi-class: argmax against one-hot targets.
        let (predicted, truth) = if f.dims()[1] == 1 {
            (
                f.ge(0.0)?.to_dtype(candle_core::DType::F64)?,
                y.to_dtype(candle_core::DType::F64)?,
            )
        } else {
            (
                f.argmax(1)?.to_dtype(candle_core::DType::F64)?,
                y.argmax(1)?.to_dtype(candle_core::DType::F64)?,
            )
        };
        let wrong = predicted
            .flatten_all()?
            .ne(&truth.flatten_all()?)?
            .to_dtype(candle_core::DType::F64)?;
        match (meta.is_class_balanced(), meta.classes()) {
            (true, Some(classes)) => {
                // The balanced error rate: each class's error rate, averaged over the classes
                // present (counted on the host in f64, so that it is exact).
                let wrong = wrong.to_vec1::<f64>()?;
                let classes = classes.to_vec1::<u32>()?;
                let counts = class_counts(&classes);
                let mut errors = vec![0.0; counts.len()];
                for (w, &c) in wrong.iter().zip(&classes) {
                    errors[c as usize] += w;
                }
                let rates: Vec<f64> = errors
                    .iter()
                    .zip(&counts)
                    .filter(|(_, &n)| n > 0)
                    .map(|(e, &n)| e / n as f64)
                    .collect();
                Ok(rates.iter().sum::<f64>() / rates.len() as f64)
            }
            _ => scalar(&wrong.mean_all()?),
        }
    }
}

/// The meta loss of a λ's relaxed refit, or of the path's own fit `c` when there is none.
fn meta_loss_of(
    meta: &crate::inner::Problem,
    refit: Option<&MetaAdditiveModel>,
    c: &crate::inner::Coefficients,
) -> Result<f64> {
    let c = refit.map_or(c, |m| m.additive().coefficients());
    scalar(&meta.mean_loss(c)?)
}

/// A fitted λ path.
#[derive(Debug, Clone)]
pub struct LambdaPath {
    /// λ values, from `λ_max` down.
    pub lambdas: Vec<f64>,
    /// Meta loss at the end of each λ's fit.
    pub meta_losses: Vec<f64>,
    /// What chose the best λ: the meta loss (or error rate, [`SelectBy`]) of each λ's relaxed
    /// refit, or of the path's own fit when there is no refit.
    pub scores: Vec<f64>,
    /// `‖β_j‖` of every feature at the end of each λ's fit.
    pub group_norms: Vec<Vec<f64>>,
    /// Index of the λ with the smallest score.
    pub best: usize,
    /// The model chosen at that λ: the final fit on its support when there is one, else its
    /// relaxed refit when there is one, else the path's own fit.
    pub model: MetaAdditiveModel,
    /// What the caller should know: a small meta set, a chosen model that selects nothing.
    pub warnings: Vec<String>,
    /// With `huber(auto)` or `tilted(auto)`: every candidate weighting and the score of its
    /// path's chosen λ (this path is the best one's); empty otherwise.
    pub candidates: Vec<(crate::Weighting, f64)>,
    /// The metrics of every outer iteration of the final fit on the chosen support (empty
    /// without one, see [`PathParams::final_iterations`]).
    pub history: Vec<crate::IterationMetrics>,
}
