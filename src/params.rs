//! Everything that configures a fit: [`FitParams`] with its defaults and checks, the sample
//! [`Weighting`], and [`SETTINGS`], the one table of named settings that the model file, a
//! resumed run's compatibility check and an experiment's description are all written from.

use crate::basis::BasisSpec;
use crate::design::DesignStorage;
use crate::error::{Error, Result};
use crate::hypergrad::{HypergradMode, HypergradOptions};
use crate::loss::{Loss, Task};
use crate::weightnet::{WeightCurve, WeightNet};
use candle_core::{DType, Device, Tensor};
use std::fmt;
use std::str::FromStr;

/// How training samples are weighted: learned (MAM) or one of the fixed baselines (docs/design.md §6.2).
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
    /// `huber(δ)` with δ chosen from [`HUBER_GRID`] by the meta objective, on the meta set MAM
    /// learns from: the fixed baseline tuned as fairly as MAM is.
    HuberAuto,
    /// `tilted(t)` with t chosen from [`TILTED_GRID`] (0, uniform weights, included) by the
    /// meta objective.
    TiltedAuto,
}

/// The δ values `huber(auto)` tries (on the standardised target's scale for regression; 1.345
/// is the classical 95%-efficiency choice).
pub const HUBER_GRID: [f64; 6] = [0.25, 0.5, 1.0, 1.345, 2.0, 4.0];

/// The t values `tilted(auto)` tries: down-weighting large losses (t < 0), none (t = 0), and
/// up-weighting them (t > 0).
pub const TILTED_GRID: [f64; 9] = [-2.0, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0];

impl Weighting {
    /// The weightings a fit with this one tries: the grid of an `auto` weighting, else itself.
    ///
    /// ```
    /// use metaadd::Weighting;
    /// assert_eq!(Weighting::Huber(1.0).candidates(), vec![Weighting::Huber(1.0)]);
    /// assert_eq!(Weighting::HuberAuto.candidates().len(), 6);
    /// assert!(Weighting::TiltedAuto.candidates().contains(&Weighting::Tilted(0.0)));
    /// ```
    pub fn candidates(&self) -> Vec<Weighting> {
        match *self {
            Weighting::HuberAuto => HUBER_GRID.iter().map(|&d| Weighting::Huber(d)).collect(),
            Weighting::TiltedAuto => TILTED_GRID.iter().map(|&t| Weighting::Tilted(t)).collect(),
            other => vec![other],
        }
    }

    /// Whether this weighting is chosen from a grid by the meta objective.
    pub fn is_auto(&self) -> bool {
        matches!(self, Weighting::HuberAuto | Weighting::TiltedAuto)
    }

    /// The weights `[n]` of losses `[n]`; `net` is used by [`Weighting::Meta`] only. An `auto`
    /// weighting has no weights of its own: a fit replaces it by its chosen candidate.
    pub fn weights(&self, losses: &Tensor, net: &WeightNet) -> Result<Tensor> {
        self.weights_of_classes(losses, None, net)
    }

    /// [`Weighting::weights`] of rows with classes `classes` (`u32` `[n]`), which a
    /// class-aware net needs.
    pub fn weights_of_classes(
        &self,
        losses: &Tensor,
        classes: Option<&Tensor>,
        net: &WeightNet,
    ) -> Result<Tensor> {
        Ok(match *self {
            Weighting::HuberAuto | Weighting::TiltedAuto => {
                return Err(Error::param(
                    "weighting",
                    format!("{self} is chosen by a fit; it has no weights of its own"),
                ))
            }
            Weighting::Meta => net.forward_classes(losses, classes)?,
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
            Weighting::HuberAuto => f.write_str("huber(auto)"),
            Weighting::TiltedAuto => f.write_str("tilted(auto)"),
        }
    }
}

impl FromStr for Weighting {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::param(
                "weighting",
                format!(
                    "unknown weighting `{s}`: expected meta, uniform, huber(δ), tilted(t), \
                     huber(auto) or tilted(auto)"
                ),
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
            _ if argument("huber") == Some("auto") => Ok(Weighting::HuberAuto),
            _ if argument("tilted") == Some("auto") => Ok(Weighting::TiltedAuto),
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

/// What the meta set's loss averages (the outer objective, docs/design.md §6.1).
///
/// ```
/// use metaadd::params::MetaObjective;
/// let o: MetaObjective = "balanced".parse()?;
/// assert_eq!(o, MetaObjective::Balanced);
/// assert_eq!(MetaObjective::Mean.to_string(), "mean");
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaObjective {
    /// The mean loss over the meta rows (the default for regression).
    Mean,
    /// Each class's mean loss, then the mean over classes: a rare class counts as much as a
    /// common one (the default for classification; see [`crate::inner::Problem::class_balanced`]).
    Balanced,
}

impl fmt::Display for MetaObjective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MetaObjective::Mean => "mean",
            MetaObjective::Balanced => "balanced",
        })
    }
}

impl FromStr for MetaObjective {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "mean" => Ok(MetaObjective::Mean),
            "balanced" => Ok(MetaObjective::Balanced),
            other => Err(Error::param(
                "meta_objective",
                format!("unknown meta objective `{other}`: expected mean or balanced"),
            )),
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
    /// Divide the weights by their mean in every inner step (see [`InnerStep`]); `None`: on
    /// for classification and monotone weight curves, off otherwise
    /// ([`FitParams::resolved_normalize_weights`]).
    pub normalize_weights: Option<bool>,
    /// What the meta loss averages; `None`: class-balanced for classification, the plain mean
    /// for regression ([`FitParams::resolved_meta_objective`]).
    pub meta_objective: Option<MetaObjective>,
    /// The shape the learned weight curve is held to (free, non-increasing or non-decreasing
    /// in the loss; see [`WeightCurve`]).
    pub weight_curve: WeightCurve,
    /// A class-aware weight net (classification): its input is the loss and the sample's
    /// class, so that a rare class can be weighted up as a class ([`WeightNet::with_classes`]).
    pub class_aware: bool,
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
    /// Standardise a regression target before fitting with a robust scale of the training
    /// targets (median and 1.4826 × MAD, see [`crate::data::encoding::TargetScale::robust`]);
    /// predictions come back in the target's units either way. Everything that sees the loss
    /// then works on that scale: λ, a Huber loss's δ, `huber(δ)` and `tilted(t)` weights. Off: the target is fitted as
    /// it is (the paper's protocols, whose synthetic targets are already standardised).
    pub standardize_target: bool,
    /// After the outer loop, solve the weighted inner problem with the learned weights held
    /// fixed to [`FitParams::solver_tolerance`] (see [`crate::solver`]): the model is then that
    /// solution and its selected features are its support.
    pub final_solve: bool,
    /// The largest KKT violation, relative to λ, at which the solver stops.
    pub solver_tolerance: f64,
    /// Epochs the solver may take at the most.
    pub solver_epochs: usize,
    /// Which form of the design the unrolled steps' products read (see [`crate::design`]);
    /// the model is the same to rounding either way.
    pub design: DesignStorage,
}

impl FitParams {
    /// Defaults: task's loss, cubic B-splines with m = 6 orthonormalised per feature, MAM weights,
    /// K = 5, λ = 0.01, automatic η, no ridge, h = 100, AdamW lr 1e-3 and weight decay 1e-4,
    /// 1000 iterations of one inner step, full batches, seed 0, f32 on the CPU, a regression
    /// target standardised by the training targets' median and MAD, and a final solve to a KKT
    /// violation of 1e-4·λ (at most 20 000 epochs).
    pub fn new(task: Task) -> Self {
        Self {
            task,
            loss: None,
            basis: BasisSpec::bspline(6).orthonormalized(true),
            weighting: Weighting::Meta,
            k: 5,
            hypergradient: HypergradMode::Exact,
            detach_weight_input: false,
            normalize_weights: None,
            meta_objective: None,
            weight_curve: WeightCurve::Free,
            class_aware: false,
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
            standardize_target: true,
            final_solve: true,
            solver_tolerance: 1e-4,
            solver_epochs: 20_000,
            design: DesignStorage::Auto,
        }
    }
}

impl Default for FitParams {
    /// [`FitParams::new`] for a regression task (a prepared fit sets the task it found).
    fn default() -> Self {
        FitParams::new(Task::Regression)
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
    /// Sets the shape the learned weight curve is held to.
    weight_curve: WeightCurve,
    /// Makes the weight net class-aware (classification).
    class_aware: bool,
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
    /// Standardises a regression target with a robust scale of the training targets.
    standardize_target: bool,
    /// Solves the weighted inner problem at the end of the fit.
    final_solve: bool,
    /// Sets the solver's KKT tolerance (relative to λ).
    solver_tolerance: f64,
    /// Sets the solver's epoch limit.
    solver_epochs: usize,
    /// Sets the form of the design the products read.
    design: DesignStorage,
}

impl FitParams {
    /// Divides the weights by their mean in every inner step (or not), instead of the task's
    /// default.
    pub fn normalize_weights(mut self, yes: bool) -> Self {
        self.normalize_weights = Some(yes);
        self
    }

    /// Sets what the meta loss averages, instead of the task's default.
    pub fn meta_objective(mut self, objective: MetaObjective) -> Self {
        self.meta_objective = Some(objective);
        self
    }

    /// The class inputs of the weight net: the task's classes when [`FitParams::class_aware`],
    /// else 0.
    pub fn weight_net_classes(&self) -> usize {
        if self.class_aware {
            self.task.outputs().max(2)
        } else {
            0
        }
    }

    /// The loss used: the explicit one or the task's default.
    pub fn resolved_loss(&self) -> Loss {
        self.loss.unwrap_or(self.task.default_loss())
    }

    /// Whether weights are divided by their mean: the explicit choice, else on for
    /// classification and for a monotone [`WeightCurve`] (only the weights' ratios, the curve's
    /// shape, should count there) and off for a free curve in regression.
    /// The implicit hypergradient with a live weight-net input needs weights as they are
    /// (a symmetric system, docs/design.md §7.8), so there the default is off.
    pub fn resolved_normalize_weights(&self) -> bool {
        let implicit_live =
            self.hypergradient == HypergradMode::Implicit && !self.detach_weight_input;
        self.normalize_weights.unwrap_or(
            (self.task != Task::Regression || self.weight_curve != WeightCurve::Free)
                && !implicit_live,
        )
    }

    /// The meta objective used: the explicit one, else class-balanced for classification and
    /// the mean for regression.
    pub fn resolved_meta_objective(&self) -> MetaObjective {
        self.meta_objective
            .unwrap_or(if self.task == Task::Regression {
                MetaObjective::Mean
            } else {
                MetaObjective::Balanced
            })
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
        positive("solver_tolerance", self.solver_tolerance)?;
        if let Some(eta) = self.eta {
            positive("eta", eta)?;
        }
        for (name, v) in [
            ("k", self.k),
            ("hidden", self.hidden),
            ("iterations", self.iterations),
            ("inner_steps", self.inner_steps),
            ("solver_epochs", self.solver_epochs),
        ] {
            if v == 0 {
                return Err(Error::param(name, "must be at least 1"));
            }
        }
        self.hypergrad_options()
            .validate(self.resolved_normalize_weights())?;
        if self.class_aware && self.task == Task::Regression {
            return Err(Error::param(
                "class_aware",
                "a class-aware weight net needs a classification task",
            ));
        }
        if self.resolved_meta_objective() == MetaObjective::Balanced
            && self.task == Task::Regression
        {
            return Err(Error::param(
                "meta_objective",
                "a class-balanced meta loss needs a classification task",
            ));
        }
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
}

/// A strength (λ, ridge) must be finite and not negative.
pub(crate) fn non_negative(name: &'static str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(Error::param(
            name,
            format!("must be ≥ 0 and finite, got {v}"),
        ))
    }
}

/// One named setting of [`FitParams`]: its key (model-file metadata, experiment
/// descriptions), its command-line flag, and how to write and read its value.
///
/// [`SETTINGS`] lists them all; the model file, `fit --resume`'s compatibility check and an
/// experiment's description are each written from that one table.
pub struct Setting {
    /// Key in model files and descriptions (snake_case).
    pub key: &'static str,
    /// The command-line flag that sets it.
    pub flag: &'static str,
    /// The value as text (the form stored in model files).
    pub get: fn(&FitParams) -> String,
    /// Sets the value from its text.
    pub set: fn(&mut FitParams, &str) -> Result<()>,
    /// The value of a model file written before the setting existed (`None`: required).
    pub absent: Option<&'static str>,
}

impl fmt::Debug for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key)
    }
}

fn parsed<T: FromStr>(key: &'static str, value: &str) -> Result<T> {
    value
        .trim()
        .parse()
        .map_err(|_| Error::param(key, format!("unreadable value `{value}`")))
}

fn batch_text(v: Option<usize>) -> String {
    v.map_or("all".to_string(), |v| v.to_string())
}

fn batch_value(key: &'static str, v: &str) -> Result<Option<usize>> {
    match v.trim() {
        "all" => Ok(None),
        v => parsed(key, v).map(Some),
    }
}

/// The name of a dtype in model files: `f32` or `f64` (others are refused by
/// [`FitParams::validate`]).
pub fn dtype_name(dtype: DType) -> String {
    match dtype {
        DType::F32 => "f32".into(),
        DType::F64 => "f64".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Every setting of [`FitParams`] but the device, in the order files and tables list them.
///
/// ```
/// use metaadd::params::SETTINGS;
/// use metaadd::{FitParams, Task};
/// let params = FitParams::new(Task::Regression).k(3).lambda(0.05);
/// let mut copy = FitParams::new(Task::Binary);
/// for s in SETTINGS {
///     (s.set)(&mut copy, &(s.get)(&params))?;
/// }
/// assert_eq!(copy.task, Task::Regression);
/// assert_eq!((copy.k, copy.lambda), (3, 0.05));
/// # Ok::<(), metaadd::Error>(())
/// ```
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "task",
        flag: "task",
        get: |p| p.task.to_string(),
        set: |p, v| {
            p.task = v.parse()?;
            Ok(())
        },
        absent: None,
    },
    Setting {
        key: "loss",
        flag: "loss",
        get: |p| p.resolved_loss().to_string(),
        set: |p, v| {
            p.loss = Some(v.parse()?);
            Ok(())
        },
        absent: None,
    },
    Setting {
        key: "basis",
        flag: "basis",
        get: |p| p.basis.to_string(),
        set: |p, v| {
            p.basis = v.parse()?;
            Ok(())
        },
        absent: None,
    },
    Setting {
        key: "weighting",
        flag: "weighting",
        get: |p| p.weighting.to_string(),
        set: |p, v| {
            p.weighting = v.parse()?;
            Ok(())
        },
        absent: None,
    },
    Setting {
        key: "k",
        flag: "k",
        get: |p| p.k.to_string(),
        set: |p, v| {
            p.k = parsed("k", v)?;
            Ok(())
        },
        absent: None,
    },
    Setting {
        key: "hypergradient",
        flag: "hypergradient",
        get: |p| p.hypergradient.to_string(),
        set: |p, v| {
            p.hypergradient = v.parse()?;
            Ok(())
        },
        absent: None,
    },
    Setting {
        key: "detach_weight_input",
        flag: "detach-weight-input",
        get: |p| p.detach_weight_input.to_string(),
        set: |p, v| {
            p.detach_weight_input = parsed("detach_weight_input", v)?;
            Ok(())
        },
        absent: None,
    },
    Setting {
        key: "normalize_weights",
        flag: "normalize-weights",
        get: |p| p.resolved_normalize_weights().to_string(),
        set: |p, v| {
            p.normalize_weights = Some(parsed("normalize_weights", v)?);
            Ok(())
        },
        // Files written before the option existed did not normalise.
        absent: Some("false"),
    },
    Setting {
        key: "meta_objective",
        flag: "meta-objective",
        get: |p| p.resolved_meta_objective().to_string(),
        set: |p, v| {
            p.meta_objective = Some(v.parse()?);
            Ok(())
        },
        // Files written before the option existed averaged the meta loss plainly.
        absent: Some("mean"),
    },
    Setting {
        key: "weight_curve",
        flag: "weight-curve",
        get: |p| p.weight_curve.to_string(),
        set: |p, v| {
            p.weight_curve = v.parse()?;
            Ok(())
        },
        // Files written before the option existed had a free curve.
        absent: Some("free"),
    },
    Setting {
        key: "class_aware",
        flag: "class-aware",
        get: |p| p.class_aware.to_string(),
        set: |p, v| {
            p.class_aware = parsed("class_aware", v)?;
            Ok(())
        },
        // Files written before the option existed had a loss-only weight net.
        absent: Some("false"),
    },
    Setting {
        key: "lambda",
        flag: "lambda",
        get: |p| p.lambda.to_string(),
        set: |p, v| {
            p.lambda = parsed("lambda", v)?;
            Ok(())
        },
        absent: None,
    },
    Setting {
        key: "eta",
        flag: "eta",
        get: |p| p.eta.map_or("auto".to_string(), |e| e.to_string()),
        set: |p, v| {
            p.eta = match v.trim() {
                "auto" => None,
                v => Some(parsed("eta", v)?),
            };
            Ok(())
        },
        absent: None,
    },
    Setting {
        key: "ridge",
        flag: "ridge",
        get: |p| p.ridge.to_string(),
        set: |p, v| {
            p.ridge = parsed("ridge", v)?;
            Ok(())
        },
        absent: None,
    },
    Setting {
        key: "hidden",
        flag: "hidden",
        get: |p| p.hidden.to_string(),
        set: |p, v| {
            p.hidden = parsed("hidden", v)?;
            Ok(())
        },
        absent: None,
    },
    Setting {
        key: "learning_rate",
        flag: "lr",
        get: |p| p.learning_rate.to_string(),
        set: |p, v| {
            p.learning_rate = parsed("learning_rate", v)?;
            Ok(())
        },
        absent: None,
    },
    Setting {
        key: "weight_decay",
        flag: "weight-decay",
        get: |p| p.weight_decay.to_string(),
        set: |p, v| {
            p.weight_decay = parsed("weight_decay", v)?;
            Ok(())
        },
        absent: None,
    },
    Setting {
        key: "iterations",
        flag: "iterations",
        get: |p| p.iterations.to_string(),
        set: |p, v| {
            p.iterations = parsed("iterations", v)?;
            Ok(())
        },
        absent: None,
    },
    Setting {
        key: "inner_steps",
        flag: "inner-steps",
        get: |p| p.inner_steps.to_string(),
        set: |p, v| {
            p.inner_steps = parsed("inner_steps", v)?;
            Ok(())
        },
        absent: None,
    },
    Setting {
        key: "train_batch",
        flag: "train-batch",
        get: |p| batch_text(p.train_batch),
        set: |p, v| {
            p.train_batch = batch_value("train_batch", v)?;
            Ok(())
        },
        absent: None,
    },
    Setting {
        key: "meta_batch",
        flag: "meta-batch",
        get: |p| batch_text(p.meta_batch),
        set: |p, v| {
            p.meta_batch = batch_value("meta_batch", v)?;
            Ok(())
        },
        absent: None,
    },
    Setting {
        key: "seed",
        flag: "seed",
        get: |p| p.seed.to_string(),
        set: |p, v| {
            p.seed = parsed("seed", v)?;
            Ok(())
        },
        absent: None,
    },
    Setting {
        key: "dtype",
        flag: "dtype",
        get: |p| dtype_name(p.dtype),
        set: |p, v| {
            p.dtype = match v.trim() {
                "f32" => DType::F32,
                "f64" => DType::F64,
                other => {
                    return Err(Error::param(
                        "dtype",
                        format!("`{other}`, expected f32 or f64"),
                    ))
                }
            };
            Ok(())
        },
        absent: None,
    },
    Setting {
        key: "standardize_target",
        flag: "standardize-target",
        get: |p| p.standardize_target.to_string(),
        set: |p, v| {
            p.standardize_target = parsed("standardize_target", v)?;
            Ok(())
        },
        // Older files record their scale, if any, explicitly (`target_mean`, `target_sd`).
        absent: Some("false"),
    },
    Setting {
        key: "final_solve",
        flag: "final-solve",
        get: |p| p.final_solve.to_string(),
        set: |p, v| {
            p.final_solve = parsed("final_solve", v)?;
            Ok(())
        },
        // Models written before the solver existed were the last iterate.
        absent: Some("false"),
    },
    Setting {
        key: "solver_tolerance",
        flag: "solver-tolerance",
        get: |p| p.solver_tolerance.to_string(),
        set: |p, v| {
            p.solver_tolerance = parsed("solver_tolerance", v)?;
            Ok(())
        },
        absent: Some("0.0001"),
    },
    Setting {
        key: "solver_epochs",
        flag: "solver-epochs",
        get: |p| p.solver_epochs.to_string(),
        set: |p, v| {
            p.solver_epochs = parsed("solver_epochs", v)?;
            Ok(())
        },
        absent: Some("20000"),
    },
    Setting {
        key: "design",
        flag: "design",
        get: |p| p.design.to_string(),
        set: |p, v| {
            p.design = v.parse()?;
            Ok(())
        },
        // Files written before the sparse form existed read as `auto`: the form changes a fit
        // by rounding only (like the thread count), so their runs resume and their results
        // files still match with the default flags.
        absent: Some("auto"),
    },
];
