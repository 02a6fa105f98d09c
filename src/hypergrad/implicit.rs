//! The implicit (K → ∞) hypergradient at a converged inner solution.
//!
//! At a fixed point `β* = T(β*, φ)` whose zero groups stay zero under small changes of `φ`, the
//! active coefficients `z = (β_A, b)` solve the stationarity condition
//!
//! `S(z, φ) = ∇_z L_w(z, φ) + ridge·β + λ·β_g/‖β_g‖ (g active) = 0`,
//!
//! so `dz/dφ = −(∂S/∂z)⁻¹ ∂S/∂φ` and `dL_meta/dφ = −(∂S/∂φ)ᵀ v` with `(∂S/∂z) v = ∂L_meta/∂z`.
//! `∂S/∂z` is symmetric: `S` is the gradient of `Σ W(ℓ_i) + penalties` with `W' = V_φ` (or, with
//! the weight net's input detached, of `Σ w_i ℓ_i` at fixed `w`). Conjugate gradients therefore
//! apply, and one Hessian–vector product is one first-order backward pass through `S` (docs/design.md §7.8, §13.6).
//! With normalised weights *and* a live weight input, `S` is no gradient and the system is not
//! symmetric: that combination is refused.

use super::{grad_of, parameter_grads, Bilevel, Hypergradient};
use crate::error::{Error, Result};
use crate::inner::{Coefficients, WeightInput};
use crate::ops::scalar;
use crate::weightnet::WeightNet;
use candle_core::{DType, Tensor, Var, D};

/// Stopping rules of the inner solve and of conjugate gradients.
///
/// Tolerances are relative; with f32 tensors they are raised to at least
/// [`ImplicitOptions::F32_FLOOR`], below which f32 round-off dominates.
///
/// ```
/// use metaadd::hypergrad::ImplicitOptions;
/// let opts = ImplicitOptions::default();
/// assert_eq!((opts.inner_tolerance, opts.cg_tolerance), (1e-12, 1e-10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImplicitOptions {
    /// Most inner steps `T` taken to reach the fixed point.
    pub max_inner_steps: usize,
    /// Converged when `‖T(β) − β‖ ≤ tol · max(1, ‖β‖)` (both `β` and `b`).
    pub inner_tolerance: f64,
    /// Most conjugate-gradient iterations.
    pub max_cg_iterations: usize,
    /// Converged when `‖(∂S/∂z) v − ∂L_meta/∂z‖ ≤ tol · ‖∂L_meta/∂z‖`. The residual is
    /// recomputed at the end and an error raised above `10·tol` (the recursively updated
    /// residual drifts from the true one in finite precision).
    pub cg_tolerance: f64,
}

impl ImplicitOptions {
    /// Smallest tolerance used with f32 tensors.
    pub const F32_FLOOR: f64 = 1e-5;

    fn tolerances(&self, dtype: DType) -> (f64, f64) {
        match dtype {
            DType::F64 => (self.inner_tolerance, self.cg_tolerance),
            _ => (
                self.inner_tolerance.max(Self::F32_FLOOR),
                self.cg_tolerance.max(Self::F32_FLOOR),
            ),
        }
    }
}

impl Default for ImplicitOptions {
    fn default() -> Self {
        Self {
            max_inner_steps: 20_000,
            inner_tolerance: 1e-12,
            max_cg_iterations: 1_000,
            cg_tolerance: 1e-10,
        }
    }
}

/// How the implicit hypergradient was reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImplicitReport {
    /// Inner steps taken to the fixed point.
    pub inner_steps: usize,
    /// `‖T(β*) − β*‖ / max(1, ‖β*‖)` at the last step.
    pub fixed_point_residual: f64,
    /// Non-zero groups of `β*`: the coordinates the linear system is solved on.
    pub active_groups: usize,
    /// Conjugate-gradient iterations.
    pub cg_iterations: usize,
    /// The linear system's relative residual `‖(∂S/∂z) v − g‖ / ‖g‖`, recomputed at the end.
    pub cg_residual: f64,
}

/// A converged inner solution.
#[derive(Debug, Clone)]
pub struct FixedPoint {
    /// `β*` and `b*`.
    pub coefficients: Coefficients,
    /// Steps taken.
    pub steps: usize,
    /// Relative size of the last step (see [`ImplicitOptions::inner_tolerance`]).
    pub residual: f64,
}

impl Bilevel {
    /// Iterates `β ← T(β, φ)` from `start` until the relative step is at most `tolerance`
    /// (raised to [`ImplicitOptions::F32_FLOOR`] for f32), failing after `max_steps`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use metaadd::hypergrad::Bilevel;
    /// use metaadd::inner::{Coefficients, InnerStep, Problem};
    /// use metaadd::{Loss, WeightNet};
    /// let dev = Device::Cpu;
    /// let design = Tensor::new(&[[1.0f64, 0.5], [-1.0, 0.2], [0.3, -0.7]], &dev)?;
    /// let target = Tensor::new(&[[1.0f64], [5.0], [0.0]], &dev)?;
    /// let train = Problem::new(&design, &target, Loss::Squared)?;
    /// let step = InnerStep { eta: 0.5, lambda: 0.01, ridge: 0.1, n_features: 2, normalize_weights: false };
    /// let problem = Bilevel { meta: train.clone(), train, step };
    /// let net = WeightNet::new(8, 0, DType::F64, &dev)?;
    /// let start = Coefficients::zeros(2, 1, DType::F64, &dev)?;
    /// let fixed = problem.solve(&start, &net, 10_000, 1e-12)?;
    /// assert!(fixed.residual <= 1e-12);
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    pub fn solve(
        &self,
        start: &Coefficients,
        net: &WeightNet,
        max_steps: usize,
        tolerance: f64,
    ) -> Result<FixedPoint> {
        self.solve_with(start, net, WeightInput::Detached, max_steps, tolerance)
    }

    /// [`Bilevel::solve`] with a choice of weight-net input (frozen losses give the fixed point
    /// of the map that the detached implicit mode differentiates).
    pub(super) fn solve_with(
        &self,
        start: &Coefficients,
        net: &WeightNet,
        input: WeightInput<'_>,
        max_steps: usize,
        tolerance: f64,
    ) -> Result<FixedPoint> {
        let tolerance = match start.beta.dtype() {
            DType::F64 => tolerance,
            _ => tolerance.max(ImplicitOptions::F32_FLOOR),
        };
        let mut c = start.detach();
        let mut residual = f64::INFINITY;
        for steps in 1..=max_steps {
            crate::progress::report(crate::progress::Progress::Solver { epochs: steps })?;
            let next = self.step.apply(&self.train, &c, net, input)?.next.detach();
            let moved =
                squared_norm(&(&next.beta - &c.beta)?)? + squared_norm(&(&next.bias - &c.bias)?)?;
            let size = squared_norm(&c.beta)? + squared_norm(&c.bias)?;
            residual = moved.sqrt() / size.sqrt().max(1.0);
            if !residual.is_finite() {
                return Err(Error::invalid(format!(
                    "the inner solve diverged after {steps} steps (non-finite step): lower eta \
                     or add ridge"
                )));
            }
            c = next;
            if residual <= tolerance {
                return Ok(FixedPoint {
                    coefficients: c,
                    steps,
                    residual,
                });
            }
        }
        Err(Error::invalid(format!(
            "the inner problem did not converge in {max_steps} steps (relative step \
             {residual:.2e} > {tolerance:.0e}): add ridge, raise the step limit or loosen the \
             tolerance"
        )))
    }
}

/// `dL_meta(β*)/dφ` by the implicit function theorem at the fixed point reached from `start`.
pub(super) fn implicit(
    problem: &Bilevel,
    start: &Coefficients,
    net: &WeightNet,
    detach: bool,
    opts: ImplicitOptions,
) -> Result<Hypergradient> {
    // `HypergradOptions::validate` has refused the unsymmetric case.
    let dtype = start.beta.dtype();
    let (inner_tol, cg_tol) = opts.tolerances(dtype);
    let fixed = problem.solve(start, net, opts.max_inner_steps, inner_tol)?;
    let star = &fixed.coefficients;
    let p = problem.step.n_features;
    let active = star.active_groups(p)?;
    let mask = active_mask(&star.beta, p, &active)?;

    let beta = Var::from_tensor(&star.beta)?;
    let bias = Var::from_tensor(&star.bias)?;
    let z = Coefficients {
        beta: beta.as_tensor().clone(),
        bias: bias.as_tensor().clone(),
    };
    let meta_loss = problem.meta.mean_loss(&z)?;
    let store = meta_loss.backward()?;
    let g = Pair {
        beta: (grad_of(&store, &beta)? * &mask)?,
        bias: grad_of(&store, &bias)?,
    };

    // The stationarity map S(z, φ), built once; every product below is a backward pass through it.
    let f = problem.train.outputs(&z)?;
    let losses = problem.train.loss().value(&f, problem.train.target())?;
    let weights = problem
        .train
        .net_weights(net, &if detach { losses.detach() } else { losses })?;
    let (s_beta, s_bias) = problem
        .step
        .smooth_gradient(&problem.train, &z, &f, &weights)?;
    let s_beta = (s_beta + group_lasso_gradient(&z.beta, p, problem.step.lambda)?)?;
    let pullback = |v: &Pair| -> Result<_> {
        let s = ((&s_beta * &v.beta)?.sum_all()? + (&s_bias * &v.bias)?.sum_all()?)?;
        Ok(s.backward()?)
    };
    let hessian_times = |v: &Pair| -> Result<Pair> {
        let store = pullback(v)?;
        Ok(Pair {
            beta: (grad_of(&store, &beta)? * &mask)?,
            bias: grad_of(&store, &bias)?,
        })
    };

    let (v, cg_iterations) = conjugate_gradients(&hessian_times, &g, cg_tol, opts)?;
    let g_norm = g.dot(&g)?.sqrt();
    let cg_residual = if g_norm > 0.0 {
        let r = hessian_times(&v)?.add_scaled(-1.0, &g)?;
        r.dot(&r)?.sqrt() / g_norm
    } else {
        0.0
    };
    if cg_residual.is_nan() || cg_residual > 10.0 * cg_tol {
        return Err(Error::invalid(format!(
            "conjugate gradients stopped at relative residual {cg_residual:.2e}, above 10 × \
             {cg_tol:.0e}, after {cg_iterations} iterations: add ridge or raise the iteration \
             limit"
        )));
    }
    let store = pullback(&v)?;
    let grads = parameter_grads(net, &store)?.try_map(|t| t.neg())?;
    Ok(Hypergradient {
        meta_loss: scalar(&meta_loss)?,
        grads,
        implicit: Some(ImplicitReport {
            inner_steps: fixed.steps,
            fixed_point_residual: fixed.residual,
            active_groups: active.len(),
            cg_iterations,
            cg_residual,
        }),
    })
}

/// Solves `A v = g` for symmetric positive definite `A` given as a product, from `v = 0`.
fn conjugate_gradients(
    a: &dyn Fn(&Pair) -> Result<Pair>,
    g: &Pair,
    tolerance: f64,
    opts: ImplicitOptions,
) -> Result<(Pair, usize)> {
    let mut v = g.scaled(0.0)?;
    let g_norm = g.dot(g)?.sqrt();
    if g_norm == 0.0 {
        return Ok((v, 0));
    }
    let mut r = g.clone();
    let mut d = g.clone();
    let mut rr = g_norm * g_norm;
    for iteration in 1..=opts.max_cg_iterations {
        let ad = a(&d)?;
        let curvature = d.dot(&ad)?;
        // NaN counts as no curvature.
        if curvature.is_nan() || curvature <= 0.0 {
            return Err(Error::invalid(format!(
                "the inner problem is not strongly convex on its active groups at the solution \
                 (curvature {curvature:.2e} along a conjugate direction): add ridge or detach \
                 the weight net's input"
            )));
        }
        let alpha = rr / curvature;
        v = v.add_scaled(alpha, &d)?;
        r = r.add_scaled(-alpha, &ad)?;
        let rr_next = r.dot(&r)?;
        if rr_next.sqrt() <= tolerance * g_norm {
            return Ok((v, iteration));
        }
        d = r.add_scaled(rr_next / rr, &d)?;
        rr = rr_next;
    }
    Ok((v, opts.max_cg_iterations))
}

/// `λ·β_g/‖β_g‖` on every non-zero group (zero on zero groups): the gradient of the group-lasso
/// penalty where it is differentiable.
fn group_lasso_gradient(beta: &Tensor, n_groups: usize, lambda: f64) -> Result<Tensor> {
    let groups = beta.reshape((n_groups, ()))?;
    let norms = groups
        .sqr()?
        .sum_keepdim(D::Minus1)?
        // A floor that f32 can hold: zero groups give 0/floor = 0, never 0/0.
        .maximum(crate::inner::TINY_SQUARED_NORM)?
        .sqrt()?;
    Ok(groups
        .broadcast_div(&norms)?
        .affine(lambda, 0.0)?
        .reshape(beta.shape())?)
}

/// 1 on the rows of active groups, 0 elsewhere, shaped like `beta`.
fn active_mask(beta: &Tensor, n_groups: usize, active: &[usize]) -> Result<Tensor> {
    let mut rows = vec![0.0; n_groups];
    for &j in active {
        rows[j] = 1.0;
    }
    let width = beta.elem_count() / n_groups;
    Ok(Tensor::from_vec(rows, (n_groups, 1), beta.device())?
        .to_dtype(beta.dtype())?
        .broadcast_as((n_groups, width))?
        .reshape(beta.shape())?)
}

fn squared_norm(t: &Tensor) -> Result<f64> {
    scalar(&t.sqr()?.sum_all()?)
}

/// A vector in `(β, b)` space.
#[derive(Debug, Clone)]
struct Pair {
    beta: Tensor,
    bias: Tensor,
}

impl Pair {
    fn dot(&self, other: &Pair) -> Result<f64> {
        Ok(scalar(&(&self.beta * &other.beta)?.sum_all()?)?
            + scalar(&(&self.bias * &other.bias)?.sum_all()?)?)
    }

    fn scaled(&self, a: f64) -> Result<Pair> {
        Ok(Pair {
            beta: self.beta.affine(a, 0.0)?,
            bias: self.bias.affine(a, 0.0)?,
        })
    }

    /// `self + a·other`.
    fn add_scaled(&self, a: f64, other: &Pair) -> Result<Pair> {
        Ok(Pair {
            beta: (&self.beta + other.beta.affine(a, 0.0)?)?,
            bias: (&self.bias + other.bias.affine(a, 0.0)?)?,
        })
    }
}
