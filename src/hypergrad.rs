//! The exact hypergradient `dF_K/dφ` of the K-step unrolled meta objective (SPEC §4).
//!
//! `F_K(φ) = L_meta(T(·, φ)^K(β₀))`. The K steps are built as one candle graph with the weight
//! net's parameters as the only variables, and one `backward()` on the meta loss gives the
//! derivative of the composed map: no second-order autodiff, since each step's inner gradient is
//! already written in closed form.

use crate::error::{Error, Result};
use crate::inner::{Coefficients, InnerStep, Problem, WeightInput};
use crate::weightnet::WeightNet;
use candle_core::{DType, Tensor};

/// How the weight net's inputs are treated when differentiating through the unroll.
///
/// ```
/// use metaadd::hypergrad::HypergradOptions;
/// let opts = HypergradOptions::new(5).detach_weight_input(true);
/// assert_eq!((opts.k, opts.detach_weight_input), (5, true));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HypergradOptions {
    /// Unroll depth K ≥ 1.
    pub k: usize,
    /// Treat the loss fed to the weight net as a constant (as in Meta-Weight-Net). Off by
    /// default: the exact derivative of the K-step map keeps it in the graph.
    pub detach_weight_input: bool,
}

impl HypergradOptions {
    /// Exact hypergradient through `k` steps.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            detach_weight_input: false,
        }
    }

    /// Sets [`HypergradOptions::detach_weight_input`].
    pub fn detach_weight_input(mut self, yes: bool) -> Self {
        self.detach_weight_input = yes;
        self
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
    /// `dF_K/dφ`, one tensor per weight-net parameter in
    /// [`crate::weightnet::PARAMETER_NAMES`] order.
    pub grads: [Tensor; 4],
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
/// assert_eq!(hg.grads[1].dims(), &[8, 1]);
/// assert!(hg.norm()? > 0.0);
/// # Ok::<(), metaadd::Error>(())
/// ```
pub fn hypergradient(
    problem: &Bilevel,
    start: &Coefficients,
    net: &WeightNet,
    opts: HypergradOptions,
) -> Result<Hypergradient> {
    let inputs = if opts.detach_weight_input {
        UnrollInputs::Detached
    } else {
        UnrollInputs::Live
    };
    let unrolled = problem.unroll(start, net, opts.k, inputs)?;
    let store = unrolled.meta_loss.backward()?;
    let vars = net.vars();
    let mut grads = Vec::with_capacity(4);
    for (var, name) in vars.iter().zip(crate::weightnet::PARAMETER_NAMES) {
        // candle silently leaves out an unreachable variable (SPEC §11): never pass that on as
        // a zero gradient.
        let g = match store.get(var.as_tensor()) {
            Some(g) => g.clone(),
            None => {
                return Err(Error::invalid(format!(
                    "no gradient reached {name}: the meta loss does not depend on it"
                )))
            }
        };
        grads.push(g);
    }
    let grads: [Tensor; 4] = grads
        .try_into()
        .map_err(|_| Error::invalid("weight net must have four parameters"))?;
    Ok(Hypergradient {
        meta_loss: unrolled
            .meta_loss
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?,
        grads,
    })
}
