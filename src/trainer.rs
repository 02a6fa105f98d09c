//! The online bilevel training loop, configured by [`FitParams`].
//!
//! Each outer iteration (1) takes the exact hypergradient of `F_K` at the current `β` and one
//! AdamW step on the weight net's parameters `φ`, then (2) takes the real inner step(s)
//! `β ← T(β, φ)` with the weights held fixed.

use crate::basis::SplineBasis;
use crate::data::dataset::Dataset;
use crate::data::encoding::{Encoding, TargetEncoding, TargetScale};
use crate::data::labels::{ClassLabels, LabelOrder};
use crate::design::Design;
use crate::error::{Error, Result};
use crate::hypergrad::{hypergradient, Bilevel};
use crate::inner::{Coefficients, InnerStep, Problem, WeightInput};
use crate::loss::Task;
use crate::model::{AdditiveModel, MetaAdditiveModel};
use crate::ops::scalar;
use crate::optim::{AdamW, AdamWParams};
use crate::params::{non_negative, FitParams, MetaObjective, Weighting};
use crate::solver::{solve, GroupProblem, SolveReport, SolverOptions};
use crate::weightnet::WeightNet;
use candle_core::{DType, Tensor};
use rand::{rngs::StdRng, seq::index::sample, SeedableRng};

/// What one outer iteration measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IterationMetrics {
    /// Zero-based outer iteration.
    pub iteration: usize,
    /// `F_K`, the meta loss after K unrolled steps (meta loss at `β` for uniform weights).
    pub meta_loss: f64,
    /// Mean unweighted training loss at `β` before the real step.
    pub train_loss: f64,
    /// Norm of the hypergradient (0 for uniform weights).
    pub hypergrad_norm: f64,
    /// Non-zero coefficient groups after the real step.
    pub active_groups: usize,
    /// Mean sample weight in the real step, as the step uses them: 1 when the weights are
    /// normalised (only their ratios count), the weight net's mean output otherwise.
    pub mean_weight: f64,
}

impl IterationMetrics {
    /// Reports this iteration as the `done`-th of `total` of a fit (or of one λ of a path)
    /// to the thread's watcher ([`crate::progress`]).
    pub(crate) fn report(&self, done: usize, total: usize) -> Result<()> {
        crate::progress::report(crate::progress::Progress::Iteration {
            done,
            total,
            meta_loss: self.meta_loss,
            active_groups: self.active_groups,
        })
    }
}

/// A trained model and the metrics of every outer iteration.
#[derive(Debug, Clone)]
pub struct Fit {
    /// The trained model.
    pub model: MetaAdditiveModel,
    /// One entry per outer iteration.
    pub history: Vec<IterationMetrics>,
    /// What the caller should know about the fit: a meta set too small to learn weights or
    /// choose λ from reliably, a model that selects no feature.
    pub warnings: Vec<String>,
    /// With `huber(auto)` or `tilted(auto)`: every candidate weighting and its meta objective
    /// (the model is the smallest's); empty otherwise.
    pub candidates: Vec<(Weighting, f64)>,
}

impl FitParams {
    /// Fits a Meta Additive Model on `train`, learning the weights on the clean `meta` set.
    ///
    /// Both data sets are raw: regression targets in their own units (standardised inside,
    /// see [`FitParams::standardize_target`]), class labels as values (numbered in sorted
    /// order) or as the labels the data sets carry (see [`crate::prepare`]). The model keeps
    /// that encoding and answers in the same units.
    pub fn fit(&self, train: &Dataset, meta: &Dataset) -> Result<Fit> {
        self.validate()?;
        let encoding = Encoding::numeric(train, target_encoding(self, train)?)?;
        self.fit_encoded(train, meta, encoding)
    }

    /// [`FitParams::fit`] with a given encoding (one-hot inputs, label order), as
    /// [`crate::prepare::Prepared::fit`] uses it: `train` and `meta` hold the encoding's
    /// features.
    ///
    /// With `huber(auto)` or `tilted(auto)` every candidate of the grid is fitted and the one
    /// with the smallest meta objective kept ([`Fit::candidates`] lists them all).
    pub fn fit_encoded(&self, train: &Dataset, meta: &Dataset, encoding: Encoding) -> Result<Fit> {
        let mut best: Option<(Fit, f64)> = None;
        let mut candidates = Vec::new();
        let mut diverged = None;
        for weighting in self.weighting.candidates() {
            let params = self.clone().weighting(weighting);
            let mut trainer = Trainer::with_encoding(&params, train, meta, encoding.clone())?;
            let mut history = Vec::with_capacity(self.iterations);
            let run = (0..self.iterations).try_for_each(|_| {
                let metrics = trainer.step()?;
                metrics.report(metrics.iteration + 1, self.iterations)?;
                history.push(metrics);
                Ok(())
            });
            match run {
                // A candidate of an `auto` grid that diverges is out of the running.
                Err(e @ Error::NonFinite { .. }) if self.weighting.is_auto() => {
                    candidates.push((weighting, f64::INFINITY));
                    diverged = Some(e);
                    continue;
                }
                other => other?,
            }
            if self.final_solve {
                trainer.solve()?;
            }
            let score = trainer.meta_objective()?;
            candidates.push((weighting, score));
            // Ties go to the earlier candidate (the grids run from strong to mild).
            if best.as_ref().is_none_or(|(_, b)| score < *b) {
                let model = trainer.into_model()?;
                let fit = Fit {
                    model,
                    history,
                    warnings: Vec::new(),
                    candidates: Vec::new(),
                };
                best = Some((fit, score));
            }
        }
        let (mut fit, _) = match (best, diverged) {
            (Some(best), _) => best,
            (None, Some(e)) => return Err(e),
            (None, None) => return Err(Error::invalid("no weighting to fit")),
        };
        if self.weighting.is_auto() {
            fit.candidates = candidates;
        }
        fit.warnings = fit_warnings(self.task, train, meta, &fit.model)?;
        Ok(fit)
    }
}

/// Meta rows below which a warning says the meta set is small.
pub const SMALL_META_ROWS: usize = 50;
/// Meta rows of one class below which a warning names the class.
pub const SMALL_META_CLASS: usize = 10;

/// Warnings about a meta set too small to learn weights or choose λ from reliably: fewer than
/// [`SMALL_META_ROWS`] rows, or (classification) fewer than [`SMALL_META_CLASS`] rows of a
/// class the training set has.
///
/// ```
/// use metaadd::data::Dataset;
/// use metaadd::trainer::meta_set_warnings;
/// use metaadd::Task;
/// let train = Dataset::new((0..200).map(f64::from).collect(), 1, (0..200).map(|i| f64::from(i % 2)).collect())?;
/// let meta = Dataset::new((0..60).map(f64::from).collect(), 1, (0..60).map(|i| f64::from(i % 10 == 0)).collect())?;
/// let warnings = meta_set_warnings(Task::Binary, &train, &meta);
/// assert_eq!(warnings.len(), 1);
/// assert!(warnings[0].contains("class 1 has 6"), "{warnings:?}");
/// # Ok::<(), metaadd::Error>(())
/// ```
pub fn meta_set_warnings(task: Task, train: &Dataset, meta: &Dataset) -> Vec<String> {
    let mut warnings = Vec::new();
    let n = meta.n_samples();
    if n < SMALL_META_ROWS {
        warnings.push(format!(
            "the meta set has {n} rows (fewer than {SMALL_META_ROWS}): the learned weights and \
             the choice of λ rest on few rows and can vary a lot between seeds"
        ));
    }
    if task != Task::Regression {
        let mut labels: Vec<f64> = train.y().to_vec();
        labels.sort_by(f64::total_cmp);
        labels.dedup();
        let few: Vec<String> = labels
            .iter()
            .filter_map(|&label| {
                let count = meta.y().iter().filter(|&&y| y == label).count();
                (count < SMALL_META_CLASS).then(|| {
                    let name = match train.classes() {
                        Some(classes) => classes
                            .name(label as usize)
                            .unwrap_or_else(|| label.to_string()),
                        None => label.to_string(),
                    };
                    format!("class {name} has {count}")
                })
            })
            .collect();
        if !few.is_empty() {
            warnings.push(format!(
                "few meta rows per class ({} meta rows; fewer than {SMALL_META_CLASS}): the \
                 meta loss of those classes is noisy",
                few.join(", ")
            ));
        }
    }
    warnings
}

/// What a fit of `model` on `train` and `meta` should tell its caller:
/// [`meta_set_warnings`], and a warning when the model selects no feature.
pub fn fit_warnings(
    task: Task,
    train: &Dataset,
    meta: &Dataset,
    model: &MetaAdditiveModel,
) -> Result<Vec<String>> {
    let mut warnings = meta_set_warnings(task, train, meta);
    warnings.extend(empty_model_warning(model)?);
    Ok(warnings)
}

/// A warning when `model` selects no feature: it then predicts one constant (the intercept).
fn empty_model_warning(model: &MetaAdditiveModel) -> Result<Option<String>> {
    Ok(model.additive().selected_features()?.is_empty().then(|| {
        format!(
            "the model selects no feature at λ = {:.3e}: it predicts one constant; lower λ",
            model.params().lambda
        )
    }))
}

/// The target encoding a fit infers from its training rows: for regression the robust scale
/// of the training targets (when [`FitParams::standardize_target`]), for classification the
/// labels the data set carries or its distinct values in sorted order, as many as the task
/// has classes.
pub fn target_encoding(params: &FitParams, train: &Dataset) -> Result<TargetEncoding> {
    let name = train.target_name();
    match params.task {
        Task::Regression => Ok(TargetEncoding::Regression(if params.standardize_target {
            Some(
                TargetScale::robust(train.y())
                    .map_err(|e| Error::invalid(format!("training set, target `{name}`: {e}")))?,
            )
        } else {
            None
        })),
        task => {
            let classes = task.outputs().max(2);
            let labels = match train.classes() {
                Some(labels) => labels.clone(),
                None => {
                    // The row that brings one label too many, for the message.
                    let mut seen: Vec<f64> = Vec::with_capacity(classes);
                    for (i, &v) in train.y().iter().enumerate() {
                        if !seen.contains(&v) {
                            if seen.len() == classes {
                                return Err(Error::invalid(format!(
                                    "training set, target `{name}`, row {i}: label {v} is one \
                                     more than the {classes} classes of a {task} task (the \
                                     first are {})",
                                    seen.iter()
                                        .map(f64::to_string)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                )));
                            }
                            seen.push(v);
                        }
                    }
                    ClassLabels::from_numbers(train.y(), LabelOrder::Sorted).map_err(|e| {
                        Error::invalid(format!("training set, target `{name}`: {e}"))
                    })?
                }
            };
            if labels.len() != classes {
                return Err(Error::invalid(format!(
                    "a {task} task needs {classes} classes, the training target `{name}` has {}",
                    labels.len(),
                )));
            }
            Ok(TargetEncoding::Classes(labels))
        }
    }
}

/// The training loop's state, one outer iteration at a time: for callers that watch progress,
/// stop early or time single iterations. [`FitParams::fit`] runs it for `iterations` steps.
///
/// ```
/// use metaadd::{FitParams, Task, Trainer};
/// use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
/// let splits = RegressionProtocol::new(RegressionNoise::A).n(100).n_features(8).generate(0)?;
/// let params = FitParams::new(Task::Regression).k(2);
/// let mut trainer = Trainer::new(&params, &splits.train, &splits.meta)?;
/// let first = trainer.step()?;
/// assert_eq!(first.iteration, 0);
/// assert!(first.meta_loss.is_finite());
/// let model = trainer.into_model()?;
/// # Ok::<(), metaadd::Error>(())
/// ```
pub struct Trainer {
    params: FitParams,
    basis: SplineBasis,
    train: Problem,
    meta: Problem,
    step: InnerStep,
    net: WeightNet,
    optimizer: AdamW,
    coefficients: Coefficients,
    /// The weighted inner problem solved at the current iterate (see [`Trainer::solve`]);
    /// cleared by every step.
    solution: Option<(Coefficients, SolveReport)>,
    iteration: usize,
    encoding: Encoding,
    sizes: (usize, usize),
}

impl Trainer {
    /// Validates `params`, fits the basis on `train`, builds both design matrices and
    /// initialises the weight net, the optimiser and `β = 0`. The data sets are raw, as for
    /// [`FitParams::fit`].
    pub fn new(params: &FitParams, train: &Dataset, meta: &Dataset) -> Result<Self> {
        params.validate()?;
        let encoding = Encoding::numeric(train, target_encoding(params, train)?)?;
        Self::with_encoding(params, train, meta, encoding)
    }

    /// [`Trainer::new`] with a given encoding of the inputs and the target.
    pub fn with_encoding(
        params: &FitParams,
        train: &Dataset,
        meta: &Dataset,
        encoding: Encoding,
    ) -> Result<Self> {
        params.validate()?;
        if params.weighting.is_auto() {
            return Err(Error::param(
                "weighting",
                format!(
                    "{} is chosen among fits (FitParams::fit, a λ path); a trainer needs one \
                     weighting",
                    params.weighting
                ),
            ));
        }
        check_same_features(train, meta)?;
        if encoding.feature_names() != train.feature_names() {
            return Err(Error::invalid(format!(
                "the encoding's features {:?} are not the training set's {:?}",
                encoding.feature_names(),
                train.feature_names()
            )));
        }
        if matches!(encoding.target(), TargetEncoding::Regression(_))
            != (params.task == Task::Regression)
        {
            return Err(Error::invalid(format!(
                "the target encoding does not fit a {} task",
                params.task
            )));
        }
        let encoded = |data: &Dataset, which: &str| -> Result<Vec<f64>> {
            encoding.encode_targets(data).map_err(|e| {
                Error::invalid(format!("{which} set, target `{}`: {e}", data.target_name()))
            })
        };
        let (train_y, meta_y) = (encoded(train, "training")?, encoded(meta, "meta")?);
        let loss = params.resolved_loss();
        let p = train.n_features();
        // A constant feature has no shape to fit; name it (a rare level of a one-hot column can
        // end up constant once the meta hold-out has taken its rows).
        for (j, name) in train.feature_names().iter().enumerate() {
            let column = train.column(j);
            if column.iter().all(|v| *v == column[0]) {
                return Err(Error::invalid(format!(
                    "feature `{name}` is constant on the {} training rows (value {}): drop the \
                     column, or hold out fewer rows if the meta set took all of one level",
                    train.n_samples(),
                    column[0]
                )));
            }
        }
        let basis = SplineBasis::fit(params.basis, train.x(), p)?;
        // Each design in the form `FitParams::design` takes for it: a sparse one is built
        // without the dense matrix, and the step size reads whichever form there is.
        let problem = |data: &Dataset, y: &[f64], which: &str| -> Result<Problem> {
            let design = Design::from_basis(
                &basis,
                data.x(),
                params.design,
                params.dtype,
                &params.device,
            )?;
            let target = params
                .task
                .encode_targets(y, params.dtype, &params.device)
                .map_err(|e| Error::invalid(format!("{which} set: {e}")))?;
            Problem::from_design(design, &target, loss)
        };
        let train_problem = problem(train, &train_y, "training")?;
        let meta_problem = problem(meta, &meta_y, "meta")?;
        let meta_problem = match params.resolved_meta_objective() {
            MetaObjective::Mean => meta_problem,
            MetaObjective::Balanced => meta_problem.class_balanced()?,
        };
        let eta = match params.eta {
            Some(eta) => eta,
            None => InnerStep::design_step_size(train_problem.products(), loss, params.ridge)?,
        };
        let step = InnerStep {
            eta,
            lambda: params.lambda,
            ridge: params.ridge,
            n_features: p,
            normalize_weights: params.resolved_normalize_weights(),
        };
        let net = WeightNet::with_classes(
            params.hidden,
            params.weight_net_classes(),
            params.seed,
            params.dtype,
            &params.device,
        )?
        .with_curve(params.weight_curve);
        // AdamW's parameters (and so its moments) in `WeightNetParams::NAMES` order.
        let optimizer = AdamW::new(
            net.vars().iter().cloned().collect(),
            AdamWParams {
                lr: params.learning_rate,
                weight_decay: params.weight_decay,
                ..AdamWParams::default()
            },
        )?;
        let coefficients = Coefficients::zeros(
            basis.n_columns(),
            params.task.outputs(),
            params.dtype,
            &params.device,
        )?;
        // The task's defaults made explicit, so that the model says what the fit used.
        let mut params = params.clone();
        params.normalize_weights = Some(params.resolved_normalize_weights());
        params.meta_objective = Some(params.resolved_meta_objective());
        Ok(Self {
            params,
            basis,
            train: train_problem,
            meta: meta_problem,
            step,
            net,
            optimizer,
            coefficients,
            solution: None,
            iteration: 0,
            encoding,
            sizes: (train.n_samples(), meta.n_samples()),
        })
    }

    /// A trainer that continues from `model`, a file written by [`Trainer::model`] (e.g. a
    /// checkpoint), on the same training and meta sets: coefficients, weight net, AdamW state
    /// and iteration count are the model's, so the iterations to come are those an
    /// uninterrupted run would have taken, bit for bit.
    ///
    /// Fails when the model has no optimiser state, or when the data do not give the model's
    /// basis and sizes (other data).
    ///
    /// ```
    /// use metaadd::{FitParams, Task, Trainer};
    /// use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
    /// let s = RegressionProtocol::new(RegressionNoise::B).n(80).n_features(8).generate(0)?;
    /// let params = FitParams::new(Task::Regression).k(2);
    /// let mut straight = Trainer::new(&params, &s.train, &s.meta)?;
    /// let mut first = Trainer::new(&params, &s.train, &s.meta)?;
    /// for _ in 0..6 { straight.step()?; }
    /// for _ in 0..3 { first.step()?; }
    /// let mut resumed = Trainer::resume(&first.model()?, &s.train, &s.meta)?;
    /// for _ in 0..3 { resumed.step()?; }
    /// let (a, b) = (straight.coefficients(), resumed.coefficients());
    /// assert_eq!(a.beta.flatten_all()?.to_vec1::<f32>()?, b.beta.flatten_all()?.to_vec1::<f32>()?);
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    pub fn resume(model: &MetaAdditiveModel, train: &Dataset, meta: &Dataset) -> Result<Self> {
        let state = model.optimizer_state().cloned().ok_or_else(|| {
            Error::invalid(
                "the model file has no optimiser state (written by an older metaadd or not by \
                 a trainer): training cannot resume from it exactly",
            )
        })?;
        let mut params = model.params().clone();
        params.device = model.additive().device().clone();
        let mut trainer = Self::with_encoding(&params, train, meta, model.encoding().clone())?;
        if trainer.basis != *model.additive().basis() {
            return Err(Error::invalid(
                "the training data do not give the model's basis (knots or centring differ): \
                 resume on the data the model was trained on",
            ));
        }
        if trainer.sizes != model.data_sizes() {
            return Err(Error::invalid(format!(
                "the model was trained on {} training and {} meta rows, these data have {} and {}",
                model.data_sizes().0,
                model.data_sizes().1,
                trainer.sizes.0,
                trainer.sizes.1
            )));
        }
        // A solved model keeps the outer loop's iterate beside the solution: training goes on
        // from the iterate, as an uninterrupted run would.
        trainer.coefficients = model
            .iterate()
            .unwrap_or(model.additive().coefficients())
            .clone();
        for (var, t) in trainer.net.vars().iter().zip(model.weightnet().tensors()) {
            var.set(&t)?;
        }
        trainer.optimizer.set_state(state)?;
        trainer.step.eta = model.eta();
        trainer.iteration = params.iterations;
        Ok(trainer)
    }

    /// One outer iteration: hypergradient and AdamW step on `φ`, then the real inner step(s).
    /// A NaN or infinity stops with [`Error::NonFinite`] naming the iteration and quantity.
    pub fn step(&mut self) -> Result<IterationMetrics> {
        self.solution = None;
        let iteration = self.iteration;
        let params = &self.params;
        // One batch stream per iteration, from the seed and the iteration alone, so that a run
        // resumed from a checkpoint draws the batches an uninterrupted run would; its own seed
        // so that changing the batch size leaves the weight net's initialisation alone.
        let mut rng = StdRng::seed_from_u64(
            params
                .seed
                .wrapping_add(0x9E37_79B9_7F4A_7C15)
                .wrapping_mul(0xBF58_476D_1CE4_E5B9)
                .wrapping_add(iteration as u64),
        );
        let problem = Bilevel {
            train: batch(&self.train, params.train_batch, &mut rng)?,
            meta: batch(&self.meta, params.meta_batch, &mut rng)?,
            step: self.step,
        };
        let (meta_loss, hypergrad_norm) = match params.weighting {
            Weighting::Meta => {
                let opts = params.hypergrad_options();
                let hg = hypergradient(&problem, &self.coefficients, &self.net, opts)?;
                let norm = hg.norm()?;
                finite(iteration, "meta loss", hg.meta_loss)?;
                finite(iteration, "hypergradient", norm)?;
                self.optimizer.step(&hg.grads.into_array())?;
                (hg.meta_loss, norm)
            }
            // Fixed weights: nothing to learn.
            _ => (scalar(&problem.meta.mean_loss(&self.coefficients)?)?, 0.0),
        };
        let mut train_loss = f64::NAN;
        let mut mean_weight = f64::NAN;
        for s in 0..params.inner_steps {
            // The learned weights: one step that reads the outputs once for the losses, the
            // weights and the gradient (fused, one pass, where the design's steps fuse).
            // Fixed weights: the losses, their weights, then the step.
            let (losses, weights, next) = if matches!(params.weighting, Weighting::Meta) {
                let input = WeightInput::Detached;
                let out = self
                    .step
                    .apply(&problem.train, &self.coefficients, &self.net, input)?;
                (out.losses.detach(), out.weights.detach(), Some(out.next))
            } else {
                let losses = problem.train.losses(&self.coefficients)?.detach();
                let weights = params
                    .weighting
                    .weights_of_classes(&losses, problem.train.classes(), &self.net)?
                    .detach();
                (losses, weights, None)
            };
            if s == 0 {
                train_loss = scalar(&losses.mean_all()?)?;
                // The weights as the step uses them (divided by their mean when normalised).
                let mean = scalar(&weights.mean_all()?)?;
                mean_weight = if self.step.normalize_weights {
                    mean / mean.max(1e-30)
                } else {
                    mean
                };
                finite(iteration, "training loss", train_loss)?;
                finite(iteration, "mean weight", mean_weight)?;
            }
            self.coefficients = match next {
                Some(next) => next.detach(),
                None => self
                    .step
                    .apply_with_weights(&problem.train, &self.coefficients, &weights)?
                    .detach(),
            };
        }
        let c = &self.coefficients;
        let size = scalar(&c.beta.abs()?.sum_all()?)? + scalar(&c.bias.abs()?.sum_all()?)?;
        finite(iteration, "coefficients", size)?;
        self.iteration += 1;
        Ok(IterationMetrics {
            iteration,
            meta_loss,
            train_loss,
            hypergrad_norm,
            active_groups: c.active_groups(self.step.n_features)?.len(),
            mean_weight,
        })
    }

    /// The current coefficients.
    pub fn coefficients(&self) -> &Coefficients {
        &self.coefficients
    }

    /// The meta objective (the meta set's mean or class-balanced loss, see
    /// [`crate::params::MetaObjective`]) of the model: the solution of [`Trainer::solve`] when
    /// there is one, else the current coefficients.
    pub fn meta_objective(&self) -> Result<f64> {
        scalar(&self.meta.mean_loss(self.solved_or_current())?)
    }

    /// The solution of [`Trainer::solve`] when there is one, else the current coefficients.
    fn solved_or_current(&self) -> &Coefficients {
        match &self.solution {
            Some((c, _)) => c,
            None => &self.coefficients,
        }
    }

    /// The full-batch bilevel problem the trainer works on: both designs, targets and the
    /// inner step.
    pub fn bilevel(&self) -> Bilevel {
        Bilevel {
            train: self.train.clone(),
            meta: self.meta.clone(),
            step: self.step,
        }
    }

    /// The current weight net.
    pub fn weightnet(&self) -> &WeightNet {
        &self.net
    }

    /// Outer iterations taken so far.
    pub fn iterations_done(&self) -> usize {
        self.iteration
    }

    /// The model: the solution of [`Trainer::solve`] when it was called after the last step,
    /// else the current iterate; its recorded `iterations` are those actually run.
    pub fn into_model(self) -> Result<MetaAdditiveModel> {
        self.model()
    }

    /// A copy of [`Trainer::into_model`]'s model (training can go on).
    pub fn model(&self) -> Result<MetaAdditiveModel> {
        match &self.solution {
            Some((c, report)) => {
                let mut model = self.model_with(c.clone())?;
                model.solution = Some(*report);
                model.iterate = Some(self.coefficients.clone());
                Ok(model)
            }
            None => self.model_with(self.coefficients.clone()),
        }
    }

    /// Solves the weighted inner problem at the current iterate with the weights held fixed
    /// (the weighting applied to the iterate's losses) to [`FitParams::solver_tolerance`] (see
    /// [`crate::solver`]); [`Trainer::model`] is then that solution, and its selected features
    /// are the solution's support. The iterate itself is kept, for training to go on.
    ///
    /// ```
    /// use metaadd::{FitParams, Task, Trainer};
    /// use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
    /// let s = RegressionProtocol::new(RegressionNoise::B).n(150).n_features(8).generate(0)?;
    /// let mut trainer = Trainer::new(&FitParams::new(Task::Regression).k(2), &s.train, &s.meta)?;
    /// for _ in 0..20 { trainer.step()?; }
    /// let report = trainer.solve()?;
    /// assert!(report.converged && report.kkt <= 1e-4);
    /// assert_eq!(trainer.model()?.solution(), Some(&report));
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    pub fn solve(&mut self) -> Result<SolveReport> {
        let solution = self.solve_on(
            &self.train,
            (&self.coefficients, &self.coefficients),
            self.step.lambda,
            None,
            self.params.solver_epochs,
        )?;
        let report = solution.1;
        self.solution = Some(solution);
        Ok(report)
    }

    /// The weighted problem on `train` at strength `lambda` (groups outside `allowed` held at
    /// zero), weights from the losses at `at`, solved from `start` in at most `epochs`.
    fn solve_on(
        &self,
        train: &Problem,
        (at, start): (&Coefficients, &Coefficients),
        lambda: f64,
        allowed: Option<&[bool]>,
        epochs: usize,
    ) -> Result<(Coefficients, SolveReport)> {
        let host = |t: &Tensor| -> Result<Vec<f64>> {
            Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
        };
        let losses = train.losses(at)?;
        let mut weights = host(&self.params.weighting.weights_of_classes(
            &losses,
            train.classes(),
            &self.net,
        )?)?;
        // Weights that overflowed (a diverging iterate under tilted weights) end the fit as
        // a divergence, not as a bad solver input.
        if let Some(i) = weights.iter().position(|w| !w.is_finite()) {
            finite(
                self.iteration,
                &format!("the weight of training row {i}"),
                weights[i],
            )?;
        }
        if self.step.normalize_weights {
            let mean = weights.iter().sum::<f64>() / weights.len() as f64;
            weights.iter_mut().for_each(|w| *w /= mean.max(1e-30));
        }
        let outputs = self.params.task.outputs();
        let problem = GroupProblem::from_columns(
            train.products().host_columns_f64()?,
            &host(train.target())?,
            weights,
            self.step.n_features,
            outputs,
            train.loss(),
            lambda,
            self.step.ridge,
        )?;
        let mut beta = host(&start.beta)?;
        let mut bias = host(&start.bias)?;
        let options = SolverOptions {
            tolerance: self.params.solver_tolerance,
            max_epochs: epochs,
        };
        let report = solve(&problem, &mut beta, &mut bias, options, allowed)?;
        let (dtype, device) = (start.beta.dtype(), start.beta.device());
        let columns = beta.len() / outputs;
        Ok((
            Coefficients {
                beta: Tensor::from_vec(beta, (columns, outputs), device)?.to_dtype(dtype)?,
                bias: Tensor::from_vec(bias, outputs, device)?.to_dtype(dtype)?,
            },
            report,
        ))
    }

    /// The relaxed refit on a support: the weighted inner problem at group-lasso strength
    /// `lambda` (usually well below the one that chose the support, to undo its shrinkage) with
    /// every feature outside `support` held at zero and the weights held fixed at those of the
    /// current point (for MAM, the weight net as learned so far), solved by [`crate::solver`]
    /// from the current point (the solution of [`Trainer::solve`] when there is one) in at most
    /// `epochs` epochs. The trainer itself is left as it was.
    ///
    /// ```
    /// use metaadd::{FitParams, Task, Trainer};
    /// use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
    /// let splits = RegressionProtocol::new(RegressionNoise::A).n(100).n_features(8).generate(0)?;
    /// let mut trainer = Trainer::new(&FitParams::new(Task::Regression), &splits.train, &splits.meta)?;
    /// trainer.step()?;
    /// let refit = trainer.refit(&[0, 2], 0.0, 500)?;
    /// assert!(refit.additive().selected_features()?.iter().all(|j| [0, 2].contains(j)));
    /// assert!(refit.solution().is_some_and(|s| s.converged));
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    pub fn refit(
        &self,
        support: &[usize],
        lambda: f64,
        epochs: usize,
    ) -> Result<MetaAdditiveModel> {
        self.refit_from(support, lambda, epochs, None)
    }

    /// [`Trainer::refit`], its iterations started from `warm` (e.g. the refit at a nearby λ,
    /// restricted to `support`) instead of the current point; the weights are still those of
    /// the current point, so the solution is the same problem's.
    pub(crate) fn refit_from(
        &self,
        support: &[usize],
        lambda: f64,
        epochs: usize,
        warm: Option<&Coefficients>,
    ) -> Result<MetaAdditiveModel> {
        non_negative("lambda", lambda)?;
        let (allowed, keep) = self.support_mask(support)?;
        let train = self.train.keep_features(&allowed)?;
        // Coefficients with the groups outside the support at zero.
        let restricted = |c: &Coefficients| -> Result<Coefficients> {
            Ok(Coefficients {
                beta: c.beta.broadcast_mul(&keep.unsqueeze(1)?)?,
                bias: c.bias.clone(),
            })
        };
        let start = restricted(self.solved_or_current())?;
        let warm = match warm {
            Some(w) => restricted(w)?,
            None => start.clone(),
        };
        let (c, report) = self.solve_on(&train, (&start, &warm), lambda, Some(&allowed), epochs)?;
        let mut model = self.model_with(c)?;
        model.params.lambda = lambda;
        model.solution = Some(report);
        Ok(model)
    }

    /// Holds every feature outside `support` at zero from now on (their coefficients are set
    /// to zero and their design columns to zero, so no step moves them): training restricted
    /// to a support chosen beforehand, e.g. by a λ path.
    ///
    /// ```
    /// use metaadd::{FitParams, Task, Trainer};
    /// use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
    /// let splits = RegressionProtocol::new(RegressionNoise::A).n(100).n_features(8).generate(0)?;
    /// let params = FitParams::new(Task::Regression).lambda(0.0);
    /// let mut trainer = Trainer::new(&params, &splits.train, &splits.meta)?;
    /// trainer.restrict(&[1, 3])?;
    /// for _ in 0..20 {
    ///     trainer.step()?;
    /// }
    /// assert_eq!(trainer.coefficients().active_groups(8)?, vec![1, 3]);
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    pub fn restrict(&mut self, support: &[usize]) -> Result<()> {
        self.solution = None;
        let (allowed, keep) = self.support_mask(support)?;
        self.train = self.train.keep_features(&allowed)?;
        self.coefficients.beta = self.coefficients.beta.broadcast_mul(&keep.unsqueeze(1)?)?;
        Ok(())
    }

    /// Whether each feature is in `support` (`[p]`), and 1 on the design columns of those
    /// features, 0 elsewhere (`[P]`); an index out of range is refused by name.
    fn support_mask(&self, support: &[usize]) -> Result<(Vec<bool>, Tensor)> {
        let p = self.step.n_features;
        if let Some(&j) = support.iter().find(|&&j| j >= p) {
            return Err(Error::param(
                "support",
                format!("feature index {j} out of range (the model has {p} features)"),
            ));
        }
        let allowed: Vec<bool> = (0..p).map(|j| support.contains(&j)).collect();
        let (columns, device) = (self.train.n_columns(), self.train.target().device());
        let dtype = self.train.products().dtype();
        let keep = crate::design::column_mask(&allowed, columns, dtype, device)?;
        Ok((allowed, keep))
    }

    fn model_with(&self, coefficients: Coefficients) -> Result<MetaAdditiveModel> {
        let mut params = self.params.clone();
        params.iterations = self.iteration;
        let additive = AdditiveModel::new(
            self.basis.clone(),
            coefficients,
            params.task,
            self.encoding.feature_names(),
            self.encoding.target_name().to_string(),
        )?;
        let losses = self.train.losses(additive.coefficients())?;
        let losses = losses.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        Ok(MetaAdditiveModel {
            training_loss_q99: Some(crate::evaluate::quantile(&losses, 0.99)),
            additive,
            encoding: self.encoding.clone(),
            crate_version: env!("CARGO_PKG_VERSION").to_string(),
            weightnet: self.net.clone(),
            eta: self.step.eta,
            params,
            n_train: self.sizes.0,
            n_meta: self.sizes.1,
            optimizer: Some(self.optimizer.state()),
            solution: None,
            iterate: None,
        })
    }

    /// Changes the group-lasso strength for the iterations to come, keeping `β`, the weight net
    /// and the optimiser's state: the warm start of a λ path.
    pub fn set_lambda(&mut self, lambda: f64) -> Result<()> {
        non_negative("lambda", lambda)?;
        self.solution = None;
        self.params.lambda = lambda;
        self.step.lambda = lambda;
        Ok(())
    }

    /// Changes the unroll depth K of the hypergradient for the iterations to come, keeping `β`,
    /// the weight net and the optimiser's state (e.g. to time several depths from one state).
    ///
    /// ```
    /// use metaadd::{FitParams, Task, Trainer};
    /// use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
    /// let s = RegressionProtocol::new(RegressionNoise::A).n(80).n_features(8).generate(0)?;
    /// let mut trainer = Trainer::new(&FitParams::new(Task::Regression).k(2), &s.train, &s.meta)?;
    /// trainer.step()?;
    /// trainer.set_k(4)?;
    /// assert!(trainer.set_k(0).is_err());
    /// assert_eq!(trainer.model()?.params().k, 4);
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    pub fn set_k(&mut self, k: usize) -> Result<()> {
        let params = self.params.clone().k(k);
        params.validate()?;
        self.params = params;
        Ok(())
    }

    /// The inner step in use (step size, λ, ridge).
    pub fn inner_step(&self) -> InnerStep {
        self.step
    }
}

fn check_same_features(train: &Dataset, meta: &Dataset) -> Result<()> {
    if train.feature_names() != meta.feature_names() {
        return Err(Error::invalid(format!(
            "meta set features {:?} differ from training features {:?}",
            meta.feature_names(),
            train.feature_names()
        )));
    }
    if meta.n_samples() == 0 {
        return Err(Error::invalid("the meta set is empty"));
    }
    Ok(())
}

/// The whole problem, or a random subset of `size` rows (without replacement).
fn batch(problem: &Problem, size: Option<usize>, rng: &mut StdRng) -> Result<Problem> {
    match size {
        Some(size) if size < problem.n_samples() => {
            let mut idx: Vec<u32> = sample(rng, problem.n_samples(), size)
                .into_iter()
                .map(|i| i as u32)
                .collect();
            idx.sort_unstable();
            let idx = Tensor::from_vec(idx, size, problem.target().device())?;
            problem.rows(&idx)
        }
        _ => Ok(problem.clone()),
    }
}

fn finite(iteration: usize, quantity: &str, value: f64) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(Error::NonFinite {
            iteration,
            quantity: quantity.to_string(),
        })
    }
}
