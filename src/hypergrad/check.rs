//! Central finite differences of the function each hypergradient mode differentiates.
//!
//! Each mode is the exact derivative of *some* function of `φ`; this module builds that function
//! ([`Objective`]) with everything the mode holds fixed held fixed, and compares.

use super::{
    hypergradient, Bilevel, HypergradMode, HypergradOptions, ImplicitReport, UnrollInputs,
};
use crate::error::{Error, Result};
use crate::inner::{Coefficients, WeightInput};
use crate::weightnet::{WeightNet, WeightNetParams};
use candle_core::{DType, Tensor};
use rand::{rngs::StdRng, seq::index::sample, SeedableRng};

/// Inner-solve tolerance for the implicit mode's objective: tighter than the mode's own, so that
/// solve error stays far below the finite-difference signal.
const OBJECTIVE_SOLVE_TOLERANCE: f64 = 1e-14;

/// The scalar function of `φ` that a mode's hypergradient is the exact derivative of.
#[derive(Debug, Clone)]
pub struct Objective {
    problem: Bilevel,
    start: Coefficients,
    kind: ObjectiveKind,
    opts: HypergradOptions,
}

#[derive(Debug, Clone)]
enum ObjectiveKind {
    /// `L_meta` after `k` steps from `start`, weight-net inputs live or frozen per step.
    Unroll {
        k: usize,
        frozen: Option<Vec<Tensor>>,
    },
    /// `L_meta` at the fixed point from `start`, weight-net input live or frozen.
    FixedPoint { frozen: Option<Tensor> },
}

impl Objective {
    /// The objective of `opts.mode` at `(start, net)`: for `exact` and `exact-recompute` `F_K`;
    /// for `truncated(t)` the last `t` steps from `β_{K−t}` held at its value; for `one-step` one
    /// step; for `implicit` the meta loss at the converged inner solution. With
    /// `detach_weight_input` the weight net's inputs are frozen at their values under `net`.
    pub fn new(
        problem: &Bilevel,
        start: &Coefficients,
        net: &WeightNet,
        opts: HypergradOptions,
    ) -> Result<Self> {
        opts.validate(problem.step.normalize_weights)?;
        let detach = opts.detach_weight_input;
        let unroll = |start: Coefficients, k: usize, detach: bool| -> Result<Self> {
            let frozen = if detach {
                Some(
                    problem
                        .unroll(&start, net, k, UnrollInputs::Detached)?
                        .weight_inputs,
                )
            } else {
                None
            };
            Ok(Self {
                problem: problem.clone(),
                start,
                kind: ObjectiveKind::Unroll { k, frozen },
                opts,
            })
        };
        match opts.mode {
            HypergradMode::Exact | HypergradMode::ExactRecompute => {
                unroll(start.detach(), opts.k, detach)
            }
            HypergradMode::OneStep => unroll(start.detach(), 1, true),
            HypergradMode::Truncated(t) => {
                let skipped = opts.k - t;
                let mut c = start.detach();
                if skipped > 0 {
                    c = problem
                        .unroll(&c, net, skipped, UnrollInputs::Detached)?
                        .last
                        .detach();
                }
                unroll(c, t, detach)
            }
            HypergradMode::Implicit => {
                let frozen = if detach {
                    let fixed = problem.solve(
                        start,
                        net,
                        opts.implicit.max_inner_steps,
                        OBJECTIVE_SOLVE_TOLERANCE,
                    )?;
                    Some(problem.train.losses(&fixed.coefficients)?.detach())
                } else {
                    None
                };
                Ok(Self {
                    problem: problem.clone(),
                    start: start.detach(),
                    kind: ObjectiveKind::FixedPoint { frozen },
                    opts,
                })
            }
        }
    }

    /// The objective's value with the weight net `net`.
    pub fn value(&self, net: &WeightNet) -> Result<f64> {
        let loss = match &self.kind {
            ObjectiveKind::Unroll { k, frozen } => {
                let inputs = frozen
                    .as_deref()
                    .map_or(UnrollInputs::Live, UnrollInputs::Frozen);
                self.problem.unroll(&self.start, net, *k, inputs)?.meta_loss
            }
            ObjectiveKind::FixedPoint { frozen } => {
                let input = frozen
                    .as_ref()
                    .map_or(WeightInput::Detached, WeightInput::Frozen);
                let fixed = self.problem.solve_with(
                    &self.start,
                    net,
                    input,
                    self.opts.implicit.max_inner_steps,
                    OBJECTIVE_SOLVE_TOLERANCE,
                )?;
                self.problem.meta.mean_loss(&fixed.coefficients)?
            }
        };
        crate::ops::scalar(&loss)
    }
}

/// How many entries to check and the difference step.
///
/// ```
/// use metaadd::hypergrad::CheckOptions;
/// let opts = CheckOptions::default();
/// assert_eq!((opts.step, opts.entries_per_tensor), (1e-5, None));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckOptions {
    /// Central-difference step `h` in each parameter.
    pub step: f64,
    /// Check at most this many entries of each tensor, drawn with `seed`; all when `None`.
    pub entries_per_tensor: Option<usize>,
    /// Seed of the drawn entries.
    pub seed: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            step: 1e-5,
            entries_per_tensor: None,
            seed: 0,
        }
    }
}

/// The comparison for one parameter tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorCheck {
    /// Tensor name (see [`WeightNetParams::NAMES`]).
    pub name: &'static str,
    /// Entries compared.
    pub checked: usize,
    /// Entries in the tensor.
    pub total: usize,
    /// `‖analytic‖` over the checked entries.
    pub analytic_norm: f64,
    /// `‖finite differences‖` over the checked entries.
    pub difference_norm: f64,
    /// `‖analytic − finite differences‖ / ‖finite differences‖` (the absolute difference when
    /// the differences are all zero).
    pub relative_error: f64,
    /// Largest absolute difference of one entry.
    pub max_abs_error: f64,
}

/// The result of [`check_gradient`].
#[derive(Debug, Clone, PartialEq)]
pub struct GradientCheck {
    /// The objective's value at the given weight net.
    pub value: f64,
    /// One entry per weight-net tensor, in [`WeightNetParams::NAMES`] order.
    pub tensors: Vec<TensorCheck>,
    /// The relative error over all checked entries together.
    pub relative_error: f64,
    /// How the implicit mode converged; `None` for the other modes.
    pub implicit: Option<ImplicitReport>,
}

/// Compares the hypergradient of `opts.mode` with central finite differences of its
/// [`Objective`], per weight-net tensor. Needs f64 tensors: in f32 the differences are noise.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use metaadd::hypergrad::{check_gradient, Bilevel, CheckOptions, HypergradOptions};
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
/// let check = check_gradient(&problem, &start, &net, HypergradOptions::new(3), CheckOptions::default())?;
/// assert!(check.relative_error < 1e-6);
/// assert_eq!(check.tensors.len(), 4);
/// # Ok::<(), metaadd::Error>(())
/// ```
pub fn check_gradient(
    problem: &Bilevel,
    start: &Coefficients,
    net: &WeightNet,
    opts: HypergradOptions,
    check: CheckOptions,
) -> Result<GradientCheck> {
    if start.beta.dtype() != DType::F64 {
        return Err(Error::invalid(format!(
            "finite differences need f64 tensors, got {:?}",
            start.beta.dtype()
        )));
    }
    if !(check.step.is_finite() && check.step > 0.0) {
        return Err(Error::param(
            "step",
            format!("must be positive, got {}", check.step),
        ));
    }
    let analytic = hypergradient(problem, start, net, opts)?;
    let objective = Objective::new(problem, start, net, opts)?;
    let params: [Vec<f64>; 4] = net
        .tensors()
        .try_map(|t| t.flatten_all()?.to_vec1::<f64>())?
        .into_array();
    let mut rng = StdRng::seed_from_u64(check.seed);
    let (mut diff_sq, mut fd_sq) = (0.0, 0.0);
    let mut tensors = Vec::with_capacity(4);
    // Entries checked so far, of all the tensors', reported to the thread's watcher.
    let to_check: usize = params
        .iter()
        .map(|p| check.entries_per_tensor.map_or(p.len(), |n| n.min(p.len())))
        .sum();
    let mut checked = 0;
    for (which, (name, grad)) in analytic.grads.named().into_iter().enumerate() {
        let grad = grad.flatten_all()?.to_vec1::<f64>()?;
        let total = grad.len();
        let mut entries: Vec<usize> = match check.entries_per_tensor {
            Some(n) if n < total => sample(&mut rng, total, n).into_vec(),
            _ => (0..total).collect(),
        };
        entries.sort_unstable();
        let (mut a_sq, mut f_sq, mut d_sq, mut max_abs) = (0.0, 0.0, 0.0, 0.0f64);
        for &i in &entries {
            checked += 1;
            crate::progress::report(crate::progress::Progress::Step {
                done: checked,
                total: to_check,
            })?;
            let shifted = |delta: f64| -> Result<f64> {
                let mut p = params.clone();
                p[which][i] += delta;
                objective.value(&with_parameters(net, p)?)
            };
            let fd = (shifted(check.step)? - shifted(-check.step)?) / (2.0 * check.step);
            let d = grad[i] - fd;
            a_sq += grad[i] * grad[i];
            f_sq += fd * fd;
            d_sq += d * d;
            max_abs = max_abs.max(d.abs());
        }
        diff_sq += d_sq;
        fd_sq += f_sq;
        tensors.push(TensorCheck {
            name,
            checked: entries.len(),
            total,
            analytic_norm: a_sq.sqrt(),
            difference_norm: f_sq.sqrt(),
            relative_error: relative(d_sq, f_sq),
            max_abs_error: max_abs,
        });
    }
    Ok(GradientCheck {
        value: analytic.meta_loss,
        tensors,
        relative_error: relative(diff_sq, fd_sq),
        implicit: analytic.implicit,
    })
}

/// `‖d‖/‖r‖` from squared norms; the absolute `‖d‖` when the reference is zero.
pub(crate) fn relative(diff_sq: f64, reference_sq: f64) -> f64 {
    if reference_sq > 0.0 {
        (diff_sq / reference_sq).sqrt()
    } else {
        diff_sq.sqrt()
    }
}

/// `net`'s shapes with the given flattened values (in [`WeightNetParams::NAMES`] order).
fn with_parameters(net: &WeightNet, values: [Vec<f64>; 4]) -> Result<WeightNet> {
    let tensors = net
        .tensors()
        .zip(WeightNetParams::from_array(values))
        .try_map(|(t, v)| Tensor::from_vec(v, t.shape(), t.device()))?;
    Ok(WeightNet::from_tensors(&tensors)?.with_curve(net.curve()))
}
