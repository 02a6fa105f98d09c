//! Hypergradients: the derivative of the meta loss with respect to the weight net's parameters
//! `φ` (docs/design.md §7), by every method a researcher compares ([`HypergradMode`]).
//!
//! `F_K(φ) = L_meta(T(·, φ)^K(β₀))`. The K steps are built as one candle graph with the weight
//! net's parameters as the only variables, and one `backward()` on the meta loss gives the
//! derivative of the composed map: no second-order autodiff, since each step's inner gradient is
//! already written in closed form. The other modes trade this graph's memory for recomputation
//! (`exact-recompute`), cut it short (`truncated(k)`, `one-step`), or replace the unroll by its
//! K → ∞ limit (`implicit`).

mod check;
pub mod export;
mod implicit;

pub(crate) use check::relative;
pub use check::{check_gradient, CheckOptions, GradientCheck, Objective, TensorCheck};
pub use implicit::{FixedPoint, ImplicitOptions, ImplicitReport};

use crate::error::{Error, Result};
use crate::inner::{Coefficients, InnerStep, Problem, WeightInput};
use crate::ops::scalar;
use crate::weightnet::{WeightNet, WeightNetParams};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

/// How the hypergradient is computed (docs/design.md §7).
///
/// ```
/// use metaadd::hypergrad::HypergradMode;
/// let mode: HypergradMode = "truncated(3)".parse()?;
/// assert_eq!(mode, HypergradMode::Truncated(3));
/// assert_eq!(mode.to_string(), "truncated(3)");
/// assert_eq!("exact-recompute".parse::<HypergradMode>()?, HypergradMode::ExactRecompute);
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HypergradMode {
    /// Reverse mode through one graph of all K steps: memory grows with K·n.
    #[default]
    Exact,
    /// The same value as [`HypergradMode::Exact`], keeping only `β₀..β_K` and rebuilding one
    /// step at a time on the way back (vector–Jacobian products): memory grows with K·p·m.
    ExactRecompute,
    /// K steps forward, backpropagation through the last `k` only.
    Truncated(usize),
    /// One step with the weight net's input detached (Meta-Weight-Net, the original MAM code);
    /// ignores K.
    OneStep,
    /// The K → ∞ reference: the implicit function theorem at the converged inner solution,
    /// restricted to its active groups, solved by conjugate gradients (see
    /// [`ImplicitOptions`]); ignores K.
    Implicit,
}

impl std::fmt::Display for HypergradMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact => write!(f, "exact"),
            Self::ExactRecompute => write!(f, "exact-recompute"),
            Self::Truncated(k) => write!(f, "truncated({k})"),
            Self::OneStep => write!(f, "one-step"),
            Self::Implicit => write!(f, "implicit"),
        }
    }
}

impl std::str::FromStr for HypergradMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::param(
                "hypergradient mode",
                format!(
                    "unknown mode `{s}`: use exact, exact-recompute, truncated(k), one-step or \
                     implicit"
                ),
            )
        };
        match s.trim() {
            "exact" => Ok(Self::Exact),
            "exact-recompute" => Ok(Self::ExactRecompute),
            "one-step" => Ok(Self::OneStep),
            "implicit" => Ok(Self::Implicit),
            other => {
                let k = other
                    .strip_prefix("truncated(")
                    .and_then(|rest| rest.strip_suffix(')'))
                    .ok_or_else(bad)?;
                let k: usize = k.trim().parse().map_err(|_| bad())?;
                if k == 0 {
                    return Err(Error::param(
                        "hypergradient mode",
                        "truncated(k) needs k ≥ 1",
                    ));
                }
                Ok(Self::Truncated(k))
            }
        }
    }
}

/// Unroll depth, mode, and how the weight net's inputs are treated.
///
/// ```
/// use metaadd::hypergrad::{HypergradMode, HypergradOptions};
/// let opts = HypergradOptions::new(5).detach_weight_input(true).mode(HypergradMode::Truncated(2));
/// assert_eq!((opts.k, opts.detach_weight_input), (5, true));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HypergradOptions {
    /// Unroll depth K ≥ 1.
    pub k: usize,
    /// Treat the loss fed to the weight net as a constant (as in Meta-Weight-Net). Off by
    /// default: the exact derivative of the K-step map keeps it in the graph.
    pub detach_weight_input: bool,
    /// How the derivative is taken.
    pub mode: HypergradMode,
    /// Stopping rules of [`HypergradMode::Implicit`].
    pub implicit: ImplicitOptions,
}

impl HypergradOptions {
    /// Exact hypergradient through `k` steps.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            detach_weight_input: false,
            mode: HypergradMode::Exact,
            implicit: ImplicitOptions::default(),
        }
    }

    /// Sets [`HypergradOptions::detach_weight_input`].
    pub fn detach_weight_input(mut self, yes: bool) -> Self {
        self.detach_weight_input = yes;
        self
    }

    /// Sets [`HypergradOptions::mode`].
    pub fn mode(mut self, mode: HypergradMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets [`HypergradOptions::implicit`].
    pub fn implicit(mut self, options: ImplicitOptions) -> Self {
        self.implicit = options;
        self
    }

    /// Checks that the mode can be taken at this depth, with weights normalised or not: K ≥ 1,
    /// `truncated(t)` with `1 ≤ t ≤ K`, and no `implicit` with normalised weights and a live
    /// weight-net input (whose linear system is not symmetric).
    ///
    /// ```
    /// use metaadd::hypergrad::{HypergradMode, HypergradOptions};
    /// assert!(HypergradOptions::new(3).mode(HypergradMode::Truncated(4)).validate(false).is_err());
    /// let implicit = HypergradOptions::new(1).mode(HypergradMode::Implicit);
    /// assert!(implicit.validate(true).is_err());
    /// assert!(implicit.detach_weight_input(true).validate(true).is_ok());
    /// ```
    pub fn validate(&self, normalize_weights: bool) -> Result<()> {
        if self.k == 0 {
            return Err(Error::param("k", "the unroll depth must be at least 1"));
        }
        match self.mode {
            HypergradMode::Truncated(t) if t == 0 || t > self.k => Err(Error::param(
                "hypergradient",
                format!("truncated({t}) needs 1 ≤ {t} ≤ K = {}", self.k),
            )),
            HypergradMode::Implicit if normalize_weights && !self.detach_weight_input => {
                Err(Error::param(
                    "hypergradient",
                    "implicit needs a symmetric system: with normalize_weights, also detach the \
                     weight net's input (detach_weight_input)",
                ))
            }
            _ => Ok(()),
        }
    }
}

/// The bilevel problem at one outer iteration: the training set the inner steps run on, the
/// meta set that scores them, and the inner step.
#[derive(Debug, Clone)]
pub struct Bilevel {
    /// Training set of the inner problem.
    pub train: Problem,
    /// Clean meta set of the outer problem.
    pub meta: Problem,
    /// The inner step `T`.
    pub step: InnerStep,
}

/// What the weight net is fed along an unroll.
#[derive(Debug, Clone, Copy)]
pub enum UnrollInputs<'a> {
    /// Each step's own losses, in the graph (the exact K-step map).
    Live,
    /// Each step's own losses as constants.
    Detached,
    /// Given losses, one `[n]` tensor per step: the map whose weight-net inputs are frozen.
    Frozen(&'a [Tensor]),
}

/// The K-step forward pass: meta loss in the graph and the path it took.
#[derive(Debug, Clone)]
pub struct Unrolled {
    /// `F_K`, a scalar tensor still attached to the graph.
    pub meta_loss: Tensor,
    /// `β_K`, attached.
    pub last: Coefficients,
    /// The losses fed to the weight net at steps `1..=K` (detached values).
    pub weight_inputs: Vec<Tensor>,
}

impl Bilevel {
    /// Runs `k` inner steps from `start` (treated as a constant) and evaluates the meta loss.
    pub fn unroll(
        &self,
        start: &Coefficients,
        net: &WeightNet,
        k: usize,
        inputs: UnrollInputs<'_>,
    ) -> Result<Unrolled> {
        if k == 0 {
            return Err(Error::param("k", "the unroll depth must be at least 1"));
        }
        if let UnrollInputs::Frozen(f) = inputs {
            if f.len() != k {
                return Err(Error::invalid(format!(
                    "{} frozen weight inputs given for {k} steps",
                    f.len()
                )));
            }
        }
        let mut c = start.detach();
        let mut weight_inputs = Vec::with_capacity(k);
        for i in 0..k {
            let input = match inputs {
                UnrollInputs::Live => WeightInput::Live,
                UnrollInputs::Detached => WeightInput::Detached,
                UnrollInputs::Frozen(f) => WeightInput::Frozen(&f[i]),
            };
            let out = self.step.apply(&self.train, &c, net, input)?;
            weight_inputs.push(out.losses.detach());
            c = out.next;
        }
        Ok(Unrolled {
            meta_loss: self.meta.mean_loss(&c)?,
            last: c,
            weight_inputs,
        })
    }
}

/// The hypergradient and the meta loss it was taken at.
#[derive(Debug, Clone)]
pub struct Hypergradient {
    /// `F_K(φ)`.
    pub meta_loss: f64,
    /// `dF_K/dφ`, one tensor per weight-net parameter, each of its parameter's shape.
    pub grads: WeightNetParams,
    /// How the implicit mode converged; `None` for the other modes.
    pub implicit: Option<ImplicitReport>,
}

impl Hypergradient {
    /// Euclidean norm over all four gradient tensors.
    pub fn norm(&self) -> Result<f64> {
        let mut sq = 0.0;
        for g in &self.grads {
            sq += g
                .to_dtype(DType::F64)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f64>()?;
        }
        Ok(sq.sqrt())
    }
}

/// The exact hypergradient `dF_K/dφ` at `start` by reverse mode through all K steps.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use metaadd::hypergrad::{hypergradient, Bilevel, HypergradOptions};
/// use metaadd::inner::{Coefficients, InnerStep, Problem};
/// use metaadd::{Loss, WeightNet};
/// let dev = Device::Cpu;
/// let design = Tensor::new(&[[1.0f64, 0.5], [-1.0, 0.2], [0.3, -0.7]], &dev)?;
/// let target = Tensor::new(&[[1.0f64], [5.0], [0.0]], &dev)?;
/// let train = Problem::new(&design, &target, Loss::Squared)?;
/// let step = InnerStep { eta: 0.5, lambda: 0.01, ridge: 0.0, n_features: 2, normalize_weights: false };
/// let problem = Bilevel { meta: train.clone(), train, step };
/// let net = WeightNet::new(8, 0, DType::F64, &dev)?;
/// let start = Coefficients::zeros(2, 1, DType::F64, &dev)?;
/// let hg = hypergradient(&problem, &start, &net, HypergradOptions::new(3))?;
/// assert_eq!(hg.grads.fc1_weight.dims(), &[8, 1]);
/// assert!(hg.norm()? > 0.0);
/// # Ok::<(), metaadd::Error>(())
/// ```
pub fn hypergradient(
    problem: &Bilevel,
    start: &Coefficients,
    net: &WeightNet,
    opts: HypergradOptions,
) -> Result<Hypergradient> {
    opts.validate(problem.step.normalize_weights)?;
    let inputs = if opts.detach_weight_input {
        UnrollInputs::Detached
    } else {
        UnrollInputs::Live
    };
    match opts.mode {
        HypergradMode::Exact => through_graph(problem, start, net, opts.k, inputs),
        HypergradMode::OneStep => through_graph(problem, start, net, 1, UnrollInputs::Detached),
        HypergradMode::Truncated(t) => {
            // The first K − t steps run without a graph: their β is a constant to the rest.
            let input = weight_input(opts.detach_weight_input);
            let mut c = start.detach();
            for _ in 0..opts.k - t {
                c = detached_step(problem, &c, net, input)?;
            }
            through_graph(problem, &c, net, t, inputs)
        }
        HypergradMode::ExactRecompute => recompute(problem, start, net, opts),
        HypergradMode::Implicit => {
            implicit::implicit(problem, start, net, opts.detach_weight_input, opts.implicit)
        }
    }
}

/// One graph through `k` steps and one `backward()`.
fn through_graph(
    problem: &Bilevel,
    start: &Coefficients,
    net: &WeightNet,
    k: usize,
    inputs: UnrollInputs<'_>,
) -> Result<Hypergradient> {
    let unrolled = problem.unroll(start, net, k, inputs)?;
    let store = unrolled.meta_loss.backward()?;
    let grads = parameter_grads(net, &store)?;
    Ok(Hypergradient {
        meta_loss: scalar(&unrolled.meta_loss)?,
        grads,
        implicit: None,
    })
}

/// The weight-net input of a step with or without `detach_weight_input`.
fn weight_input(detach: bool) -> WeightInput<'static> {
    if detach {
        WeightInput::Detached
    } else {
        WeightInput::Live
    }
}

/// `T(c, φ)` as a constant: no graph is kept.
fn detached_step(
    problem: &Bilevel,
    c: &Coefficients,
    net: &WeightNet,
    input: WeightInput<'_>,
) -> Result<Coefficients> {
    Ok(problem
        .step
        .apply(&problem.train, c, net, input)?
        .next
        .detach())
}

/// `β₀..β_k` without any graph (`β₀ = start`).
fn forward_path(
    problem: &Bilevel,
    start: &Coefficients,
    net: &WeightNet,
    k: usize,
    input: WeightInput<'_>,
) -> Result<Vec<Coefficients>> {
    let mut path = Vec::with_capacity(k + 1);
    path.push(start.detach());
    for i in 0..k {
        let next = detached_step(problem, &path[i], net, input)?;
        path.push(next);
    }
    Ok(path)
}

/// Reverse sweep over a stored path: at step i, rebuild `T(β_{i−1}, φ)` with `β_{i−1}` as a
/// variable, and backpropagate the cotangent `ḡ_i` through it alone, which gives
/// `ḡ_{i−1} = ḡ_iᵀ ∂T/∂β` and adds `ḡ_iᵀ ∂T/∂φ` to the hypergradient.
fn recompute(
    problem: &Bilevel,
    start: &Coefficients,
    net: &WeightNet,
    opts: HypergradOptions,
) -> Result<Hypergradient> {
    let input = weight_input(opts.detach_weight_input);
    let mut path = forward_path(problem, start, net, opts.k, input)?;
    let last = path.pop().ok_or_else(|| Error::invalid("empty unroll"))?;
    let (beta, bias) = (Var::from_tensor(&last.beta)?, Var::from_tensor(&last.bias)?);
    let meta_loss = problem.meta.mean_loss(&Coefficients {
        beta: beta.as_tensor().clone(),
        bias: bias.as_tensor().clone(),
    })?;
    let store = meta_loss.backward()?;
    let mut cotangent = (grad_of(&store, &beta)?, grad_of(&store, &bias)?);
    let mut total: Option<WeightNetParams> = None;
    while let Some(c) = path.pop() {
        let (beta, bias) = (Var::from_tensor(&c.beta)?, Var::from_tensor(&c.bias)?);
        let here = Coefficients {
            beta: beta.as_tensor().clone(),
            bias: bias.as_tensor().clone(),
        };
        let next = problem.step.apply(&problem.train, &here, net, input)?.next;
        let vjp =
            ((next.beta * &cotangent.0)?.sum_all()? + (next.bias * &cotangent.1)?.sum_all()?)?;
        let store = vjp.backward()?;
        let grads = parameter_grads(net, &store)?;
        total = Some(match total {
            None => grads,
            Some(sum) => sum.zip(grads).try_map(|(a, b)| a + b)?,
        });
        cotangent = (grad_of(&store, &beta)?, grad_of(&store, &bias)?);
    }
    let grads = total.ok_or_else(|| Error::invalid("empty unroll"))?;
    Ok(Hypergradient {
        meta_loss: scalar(&meta_loss)?,
        grads,
        implicit: None,
    })
}

/// The gradient of `var` in `store`; zero when the differentiated quantity does not depend on it.
fn grad_of(store: &GradStore, var: &Var) -> Result<Tensor> {
    match store.get(var.as_tensor()) {
        Some(g) => Ok(g.clone()),
        None => Ok(var.as_tensor().zeros_like()?),
    }
}

/// The weight net's four parameter gradients from a backward pass.
fn parameter_grads(net: &WeightNet, store: &GradStore) -> Result<WeightNetParams> {
    net.vars().as_ref().with_names().try_map(|(name, var)| {
        // candle silently leaves out an unreachable variable (docs/design.md §13.5): never pass that on as
        // a zero gradient.
        match store.get(var.as_tensor()) {
            Some(g) => Ok(g.clone()),
            None => Err(Error::invalid(format!(
                "no gradient reached {name}: the meta loss does not depend on it"
            ))),
        }
    })
}
