//! The online bilevel training loop (SPEC §5), configured by [`FitParams`].
//!
//! Each outer iteration (1) takes the exact hypergradient of `F_K` at the current `β` and one
//! AdamW step on the weight net's parameters `φ`, then (2) takes the real inner step(s)
//! `β ← T(β, φ)` with the weights held fixed.

use crate::basis::{BasisSpec, SplineBasis};
use crate::data::targets::ClassLabels;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::hypergrad::{hypergradient, Bilevel, HypergradMode, HypergradOptions};
use crate::inner::{Coefficients, InnerStep, Problem};
use crate::loss::{Loss, Task};
use crate::model::{AdditiveModel, MetaAdditiveModel};
use crate::ops::scalar;
use crate::optim::{AdamW, AdamWParams};
use crate::weightnet::WeightNet;
use candle_core::{DType, Device, Tensor};
use rand::{rngs::StdRng, seq::index::sample, SeedableRng};
use std::fmt;
use std::str::FromStr;

/// How training samples are weighted: learned (MAM) or one of the fixed baselines (SPEC §9).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use metaadd::{Weighting, WeightNet};
/// let w: Weighting = "huber(1)".parse()?;
/// assert_eq!(w, Weighting::Huber(1.0));
/// let net = WeightNet::new(4, 0, candle_core::DType::F64, &Device::Cpu)?;
/// let losses = Tensor::new(&[0.0f64, 0.5, 8.0], &Device::Cpu)?;
/// // Huber weights min(1, δ/√(2ℓ)): 1, 1 and 1/4.
/// assert_eq!(w.weights(&losses, &net)?.to_vec1::<f64>()?, vec![1.0, 1.0, 0.25]);
/// assert_eq!("tilted(-0.5)".parse::<Weighting>()?.to_string(), "tilted(-0.5)");
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Weighting {
    /// Weights `V_φ(ℓ)` learned on the meta set (MAM).
    Meta,
    /// Every weight 1: the plain sparse additive model, same solver.
    Uniform,
    /// Huber-type fixed weights `min(1, δ/√(2ℓ))`: for the squared loss `ℓ = r²/2` these are
    /// the weights `min(1, δ/|r|)` of Huber's M-estimator (δ > 0).
    Huber(f64),
    /// Tilted weights `w ∝ exp(t·ℓ)`, scaled to mean 1: `t < 0` down-weights large losses
    /// (outliers), `t > 0` up-weights them (imbalance).
    Tilted(f64),
}

impl Weighting {
    /// The weights `[n]` of losses `[n]`; `net` is used by [`Weighting::Meta`] only.
    pub fn weights(&self, losses: &Tensor, net: &WeightNet) -> Result<Tensor> {
        Ok(match *self {
            Weighting::Meta => net.forward(losses)?,
            Weighting::Uniform => losses.ones_like()?,
            // δ / max(δ, √(2ℓ)) = min(1, δ/√(2ℓ)), finite at ℓ = 0.
            Weighting::Huber(delta) => losses
                .affine(2.0, 0.0)?
                .sqrt()?
                .maximum(delta)?
                .recip()?
                .affine(delta, 0.0)?,
            Weighting::Tilted(t) => {
                // Shifted by the largest exponent so that no exp overflows.
                let z = losses.affine(t, 0.0)?;
                let e = z.broadcast_sub(&z.max_keepdim(0)?)?.exp()?;
                e.broadcast_div(&e.mean_keepdim(0)?)?
            }
        })
    }
}

impl fmt::Display for Weighting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Weighting::Meta => f.write_str("meta"),
            Weighting::Uniform => f.write_str("uniform"),
            Weighting::Huber(delta) => write!(f, "huber({delta})"),
            Weighting::Tilted(t) => write!(f, "tilted({t})"),
        }
    }
}

impl FromStr for Weighting {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::param(
                "weighting",
                format!("unknown weighting `{s}`: expected meta, uniform, huber(δ) or tilted(t)"),
            )
        };
        let argument = |name: &str| -> Option<&str> {
            s.trim()
                .strip_prefix(name)?
                .strip_prefix('(')?
                .strip_suffix(')')
                .map(str::trim)
        };
        match s.trim() {
            "meta" => Ok(Weighting::Meta),
            "uniform" => Ok(Weighting::Uniform),
            _ => {
                if let Some(delta) = argument("huber") {
                    let delta: f64 = delta.parse().map_err(|_| bad())?;
                    if !(delta.is_finite() && delta > 0.0) {
                        return Err(Error::param(
                            "weighting",
                            format!("huber(δ) needs δ > 0, got {delta}"),
                        ));
                    }
                    Ok(Weighting::Huber(delta))
                } else if let Some(t) = argument("tilted") {
                    let t: f64 = t.parse().map_err(|_| bad())?;
                    if !t.is_finite() {
                        return Err(Error::param(
                            "weighting",
                            format!("tilted(t) needs a finite t, got {t}"),
                        ));
                    }
                    Ok(Weighting::Tilted(t))
                } else {
                    Err(bad())
                }
            }
        }
    }
}

/// Everything that configures a fit. Build with [`FitParams::new`] and the setters; every value
/// is checked when [`FitParams::fit`] runs.
///
/// ```
/// use metaadd::{FitParams, Task};
/// use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
/// let splits = RegressionProtocol::new(RegressionNoise::B).n(200).n_features(10).generate(1)?;
/// let fit = FitParams::new(Task::Regression)
///     .k(2)
///     .lambda(0.01)
///     .iterations(50)
///     .seed(7)
///     .fit(&splits.train, &splits.meta)?;
/// assert_eq!(fit.history.len(), 50);
/// let selected = fit.model.additive().selected_features()?;
/// assert!(selected.len() <= 10);
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct FitParams {
    /// Regression, binary or multi-class.
    pub task: Task,
    /// Training loss; the task's default when `None`.
    pub loss: Option<Loss>,
    /// Spline basis per feature.
    pub basis: BasisSpec,
    /// How samples are weighted.
    pub weighting: Weighting,
    /// Unroll depth K of the hypergradient.
    pub k: usize,
    /// How the hypergradient is computed (exact by default).
    pub hypergradient: HypergradMode,
    /// Treat the weight net's input loss as a constant in the hypergradient.
    pub detach_weight_input: bool,
    /// Divide the weights by their mean in every inner step (see [`InnerStep`]).
    pub normalize_weights: bool,
    /// Group-lasso strength λ.
    pub lambda: f64,
    /// Inner step size η; `None` picks `1/L` from the design (see
    /// [`InnerStep::safe_step_size`]).
    pub eta: Option<f64>,
    /// Ridge strength on `β` (0 for none); makes the inner problem strongly convex.
    pub ridge: f64,
    /// Hidden units of the weight net.
    pub hidden: usize,
    /// AdamW learning rate for `φ`.
    pub learning_rate: f64,
    /// AdamW (decoupled) weight decay for `φ`.
    pub weight_decay: f64,
    /// Outer iterations.
    pub iterations: usize,
    /// Real inner steps per outer iteration.
    pub inner_steps: usize,
    /// Training rows per iteration; all when `None`.
    pub train_batch: Option<usize>,
    /// Meta rows per iteration; all when `None`.
    pub meta_batch: Option<usize>,
    /// Seed for the weight net's initialisation and the mini-batches.
    pub seed: u64,
    /// Precision of all tensors (F32 or F64).
    pub dtype: DType,
    /// Where tensors live.
    pub device: Device,
}

impl FitParams {
    /// Defaults: task's loss, cubic B-splines with m = 6 orthonormalised per feature, MAM weights,
    /// K = 5, λ = 0.01, automatic η, no ridge, h = 100, AdamW lr 1e-3 and weight decay 1e-4,
    /// 1000 iterations of one inner step, full batches, seed 0, f32 on the CPU.
    pub fn new(task: Task) -> Self {
        Self {
            task,
            loss: None,
            basis: BasisSpec::bspline(6).orthonormalized(true),
            weighting: Weighting::Meta,
            k: 5,
            hypergradient: HypergradMode::Exact,
            detach_weight_input: false,
            normalize_weights: false,
            lambda: 0.01,
            eta: None,
            ridge: 0.0,
            hidden: 100,
            learning_rate: 1e-3,
            weight_decay: 1e-4,
            iterations: 1000,
            inner_steps: 1,
            train_batch: None,
            meta_batch: None,
            seed: 0,
            dtype: DType::F32,
            device: Device::Cpu,
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {
        impl FitParams {
            $($(#[$doc])* pub fn $name(mut self, value: $ty) -> Self {
                self.$name = value;
                self
            })*
        }
    };
}

setters! {
    /// Sets the training loss (must suit the task).
    loss: Option<Loss>,
    /// Sets the spline basis.
    basis: BasisSpec,
    /// Sets the weighting (MAM or uniform).
    weighting: Weighting,
    /// Sets the unroll depth K.
    k: usize,
    /// Sets how the hypergradient is computed.
    hypergradient: HypergradMode,
    /// Detaches the weight net's input loss in the hypergradient.
    detach_weight_input: bool,
    /// Divides the weights by their mean in every inner step.
    normalize_weights: bool,
    /// Sets the group-lasso strength λ.
    lambda: f64,
    /// Sets the inner step size η (`None`: automatic).
    eta: Option<f64>,
    /// Sets the ridge strength.
    ridge: f64,
    /// Sets the weight net's hidden units.
    hidden: usize,
    /// Sets the AdamW learning rate.
    learning_rate: f64,
    /// Sets the AdamW weight decay.
    weight_decay: f64,
    /// Sets the number of outer iterations.
    iterations: usize,
    /// Sets the real inner steps per outer iteration.
    inner_steps: usize,
    /// Sets the training mini-batch size (`None`: full batch).
    train_batch: Option<usize>,
    /// Sets the meta mini-batch size (`None`: full batch).
    meta_batch: Option<usize>,
    /// Sets the seed.
    seed: u64,
    /// Sets the tensor dtype (F32 or F64).
    dtype: DType,
    /// Sets the device.
    device: Device,
}

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
    /// Mean sample weight in the real step.
    pub mean_weight: f64,
}

/// A trained model and the metrics of every outer iteration.
#[derive(Debug, Clone)]
pub struct Fit {
    /// The trained model.
    pub model: MetaAdditiveModel,
    /// One entry per outer iteration.
    pub history: Vec<IterationMetrics>,
}

impl FitParams {
    /// The loss used: the explicit one or the task's default.
    pub fn resolved_loss(&self) -> Loss {
        self.loss.unwrap_or(self.task.default_loss())
    }

    /// The hypergradient's depth, mode and weight-net input treatment.
    pub fn hypergrad_options(&self) -> HypergradOptions {
        HypergradOptions::new(self.k)
            .detach_weight_input(self.detach_weight_input)
            .mode(self.hypergradient)
    }

    /// Checks every setting, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        self.task.validate()?;
        let loss = self.resolved_loss();
        loss.validate()?;
        if !self.task.accepts(loss) {
            return Err(Error::param(
                "loss",
                format!("{loss} loss does not fit a {} task", self.task),
            ));
        }
        let positive = |name: &'static str, v: f64| -> Result<()> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::param(
                    name,
                    format!("must be positive and finite, got {v}"),
                ))
            }
        };
        non_negative("lambda", self.lambda)?;
        non_negative("ridge", self.ridge)?;
        non_negative("weight_decay", self.weight_decay)?;
        positive("learning_rate", self.learning_rate)?;
        if let Some(eta) = self.eta {
            positive("eta", eta)?;
        }
        for (name, v) in [
            ("k", self.k),
            ("hidden", self.hidden),
            ("inner_steps", self.inner_steps),
        ] {
            if v == 0 {
                return Err(Error::param(name, "must be at least 1"));
            }
        }
        self.hypergrad_options().validate(self.normalize_weights)?;
        for (name, v) in [
            ("train_batch", self.train_batch),
            ("meta_batch", self.meta_batch),
        ] {
            if v == Some(0) {
                return Err(Error::param(name, "a mini-batch needs at least 1 row"));
            }
        }
        if !matches!(self.dtype, DType::F32 | DType::F64) {
            return Err(Error::param(
                "dtype",
                format!("must be f32 or f64, got {:?}", self.dtype),
            ));
        }
        Ok(())
    }

    /// Fits a Meta Additive Model on `train`, learning the weights on the clean `meta` set.
    pub fn fit(&self, train: &Dataset, meta: &Dataset) -> Result<Fit> {
        let mut trainer = Trainer::new(self, train, meta)?;
        let mut history = Vec::with_capacity(self.iterations);
        for _ in 0..self.iterations {
            history.push(trainer.step()?);
        }
        Ok(Fit {
            model: trainer.into_model()?,
            history,
        })
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
    iteration: usize,
    feature_names: Vec<String>,
    target_name: String,
    sizes: (usize, usize),
}

impl Trainer {
    /// Validates `params`, fits the basis on `train`, builds both design matrices and
    /// initialises the weight net, the optimiser and `β = 0`.
    pub fn new(params: &FitParams, train: &Dataset, meta: &Dataset) -> Result<Self> {
        params.validate()?;
        check_same_features(train, meta)?;
        let loss = params.resolved_loss();
        let p = train.n_features();
        let basis = SplineBasis::fit(params.basis, train.x(), p)?;
        let problem = |data: &Dataset, which: &str| -> Result<(Tensor, Problem)> {
            let design = Tensor::from_vec(
                basis.transform(data.x())?,
                (data.n_samples(), basis.n_columns()),
                &params.device,
            )?
            .to_dtype(params.dtype)?;
            let target = params
                .task
                .encode_targets(data.y(), params.dtype, &params.device)
                .map_err(|e| Error::invalid(format!("{which} set: {e}")))?;
            let problem = Problem::new(&design, &target, loss)?;
            Ok((design, problem))
        };
        let (train_design, train_problem) = problem(train, "training")?;
        let (_, meta_problem) = problem(meta, "meta")?;
        let eta = match params.eta {
            Some(eta) => eta,
            None => InnerStep::safe_step_size(&train_design, loss, params.ridge)?,
        };
        let step = InnerStep {
            eta,
            lambda: params.lambda,
            ridge: params.ridge,
            n_features: p,
            normalize_weights: params.normalize_weights,
        };
        let net = WeightNet::new(params.hidden, params.seed, params.dtype, &params.device)?;
        let optimizer = AdamW::new(
            net.vars().iter().map(|&v| v.clone()).collect(),
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
        Ok(Self {
            params: params.clone(),
            basis,
            train: train_problem,
            meta: meta_problem,
            step,
            net,
            optimizer,
            coefficients,
            iteration: 0,
            feature_names: train.feature_names().to_vec(),
            target_name: train.target_name().to_string(),
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
        let mut trainer = Self::new(&params, train, meta)?;
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
        trainer.coefficients = model.additive().coefficients().clone();
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
                self.optimizer.step(&hg.grads)?;
                (hg.meta_loss, norm)
            }
            // Fixed weights: nothing to learn.
            _ => (scalar(&problem.meta.mean_loss(&self.coefficients)?)?, 0.0),
        };
        let mut train_loss = f64::NAN;
        let mut mean_weight = f64::NAN;
        for s in 0..params.inner_steps {
            let losses = problem.train.losses(&self.coefficients)?.detach();
            let weights = params.weighting.weights(&losses, &self.net)?.detach();
            if s == 0 {
                train_loss = scalar(&losses.mean_all()?)?;
                mean_weight = scalar(&weights.mean_all()?)?;
                finite(iteration, "training loss", train_loss)?;
                finite(iteration, "mean weight", mean_weight)?;
            }
            self.coefficients = self
                .step
                .apply_with_weights(&problem.train, &self.coefficients, &weights)?
                .detach();
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

    /// The model at the current iterate; its recorded `iterations` are those actually run.
    pub fn into_model(self) -> Result<MetaAdditiveModel> {
        self.model()
    }

    /// A copy of the model at the current iterate (training can go on).
    pub fn model(&self) -> Result<MetaAdditiveModel> {
        self.model_with(self.coefficients.clone())
    }

    /// The relaxed refit on a support: the current weighting (for MAM, the weight net as
    /// learned so far, applied to the refit's own losses) held fixed, every feature outside
    /// `support` held at zero, and `steps` proximal gradient steps at group-lasso strength
    /// `lambda` (usually well below the one that chose the support, to undo its shrinkage),
    /// warm-started from the current coefficients. The trainer itself is left as it was.
    ///
    /// ```
    /// use metaadd::{FitParams, Task, Trainer};
    /// use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
    /// let splits = RegressionProtocol::new(RegressionNoise::A).n(100).n_features(8).generate(0)?;
    /// let mut trainer = Trainer::new(&FitParams::new(Task::Regression), &splits.train, &splits.meta)?;
    /// trainer.step()?;
    /// let refit = trainer.refit(&[0, 2], 0.0, 50)?;
    /// assert!(refit.additive().selected_features()?.iter().all(|j| [0, 2].contains(j)));
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    pub fn refit(&self, support: &[usize], lambda: f64, steps: usize) -> Result<MetaAdditiveModel> {
        non_negative("lambda", lambda)?;
        let keep = self.support_mask(support)?;
        let train = masked(&self.train, &keep)?;
        let step = InnerStep {
            lambda,
            ..self.step
        };
        let mut c = Coefficients {
            beta: self.coefficients.beta.broadcast_mul(&keep.unsqueeze(1)?)?,
            bias: self.coefficients.bias.clone(),
        };
        for _ in 0..steps {
            let losses = train.losses(&c)?;
            let weights = self.params.weighting.weights(&losses, &self.net)?;
            c = step.apply_with_weights(&train, &c, &weights)?.detach();
        }
        let mut model = self.model_with(c)?;
        model.params.lambda = lambda;
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
        let keep = self.support_mask(support)?;
        self.train = masked(&self.train, &keep)?;
        self.coefficients.beta = self.coefficients.beta.broadcast_mul(&keep.unsqueeze(1)?)?;
        Ok(())
    }

    /// 1 on the design columns of the features in `support`, 0 elsewhere, `[P]`.
    fn support_mask(&self, support: &[usize]) -> Result<Tensor> {
        let p = self.step.n_features;
        if let Some(&j) = support.iter().find(|&&j| j >= p) {
            return Err(Error::param(
                "support",
                format!("feature index {j} out of range (the model has {p} features)"),
            ));
        }
        let m = self.basis.n_columns() / p;
        let keep: Vec<f64> = (0..p)
            .flat_map(|j| std::iter::repeat_n(f64::from(u8::from(support.contains(&j))), m))
            .collect();
        let design = self.train.design();
        Ok(Tensor::from_vec(keep, design.dims()[1], design.device())?.to_dtype(design.dtype())?)
    }

    fn model_with(&self, coefficients: Coefficients) -> Result<MetaAdditiveModel> {
        let mut params = self.params.clone();
        params.iterations = self.iteration;
        let additive = AdditiveModel::new(
            self.basis.clone(),
            coefficients,
            params.task,
            self.feature_names.clone(),
            self.target_name.clone(),
        )?;
        let class_labels = match params.task {
            Task::Regression => None,
            task => Some(ClassLabels::from_values(
                (0..task.outputs().max(2)).map(|c| c as f64).collect(),
            )?),
        };
        Ok(MetaAdditiveModel {
            additive,
            class_labels,
            target_scale: None,
            crate_version: env!("CARGO_PKG_VERSION").to_string(),
            weightnet: self.net.clone(),
            eta: self.step.eta,
            params,
            n_train: self.sizes.0,
            n_meta: self.sizes.1,
            optimizer: Some(self.optimizer.state()),
        })
    }

    /// Changes the group-lasso strength for the iterations to come, keeping `β`, the weight net
    /// and the optimiser's state: the warm start of a λ path.
    pub fn set_lambda(&mut self, lambda: f64) -> Result<()> {
        non_negative("lambda", lambda)?;
        self.params.lambda = lambda;
        self.step.lambda = lambda;
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

/// `problem` with its design columns multiplied by `keep` `[P]`: zero columns keep a feature's
/// gradient, and so its coefficients, at exactly zero.
fn masked(problem: &Problem, keep: &Tensor) -> Result<Problem> {
    let design = problem.design().broadcast_mul(&keep.unsqueeze(0)?)?;
    Problem::new(&design, problem.target(), problem.loss())
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

/// A strength (λ, ridge) must be finite and not negative.
fn non_negative(name: &'static str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(Error::param(
            name,
            format!("must be ≥ 0 and finite, got {v}"),
        ))
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
