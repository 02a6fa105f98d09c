//! The inner problem with the sample weights held fixed, solved to a certificate:
//!
//! ```text
//! min_{β, b}  (1/n) Σ_i w_i ℓ(y_i, Φ_i β + b) + λ Σ_j ‖β_j‖₂ + (ρ/2) ‖β‖²
//! ```
//!
//! (docs/design.md §5; with normalised weights `w` is divided by its mean first). Block
//! coordinate descent on working sets, with Anderson extrapolation, in f64 on the host, as
//! skglm and celer do it:
//!
//! - **Working sets.** The full gradient gives each group's violation of the optimality (KKT)
//!   conditions; the solver works on the active groups and the worst violators only, doubling the
//!   set while the conditions fail outside it.
//! - **Block steps** with each block's own Lipschitz constant `κ·μ_max(Φ_jᵀ W Φ_j)/n + ρ` (`κ` the
//!   loss's curvature bound: 1 squared and Huber, ¼ logistic, ½ softmax), a majorisation, so
//!   every step decreases the objective; the intercept is unpenalised.
//! - **Anderson extrapolation** of the last iterates every few epochs, kept only when it lowers
//!   the objective.
//! - **Proximal Newton** for the logistic and softmax losses: the block steps run on the loss's
//!   second-order model with each row's own Hessian (fitted rows, whose curvature vanishes, no
//!   longer bound everyone's step), then a backtracking line search along the model's minimiser.
//! - **Stopping rule**: the largest KKT violation over all groups and the intercept, relative to
//!   λ (absolute when λ = 0), below the tolerance; or the epoch limit, or a Newton line search
//!   that finds no decrease (in practice a tolerance below what f64 resolves), reported as not
//!   converged.
//!
//! The unrolled steps that the hypergradient differentiates are not this solver (they stay the
//! proximal gradient steps of [`crate::inner::InnerStep`]); this one gives the model that a fit
//! reports and the fits of the λ path.

mod bcd;
mod newton;
mod problem;

pub use problem::GroupProblem;

use bcd::working_set_epochs;
use newton::newton_epochs;

use crate::error::{Error, Result};
use crate::loss::Loss;
use std::time::Instant;

/// How far and how long to solve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SolverOptions {
    /// Largest KKT violation relative to λ at which the solution is accepted.
    pub tolerance: f64,
    /// Epochs (passes over the working set) at the most.
    pub max_epochs: usize,
}

impl Default for SolverOptions {
    /// Tolerance 1e-4 relative to λ, at most 20 000 epochs.
    fn default() -> Self {
        Self {
            tolerance: 1e-4,
            max_epochs: 20_000,
        }
    }
}

/// What a solve achieved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SolveReport {
    /// The largest KKT violation at the returned point, relative to λ (absolute when λ = 0).
    pub kkt: f64,
    /// The objective at the returned point.
    pub objective: f64,
    /// Epochs taken (passes over working sets; for the logistic and softmax losses, over the
    /// Newton model, the line searches' evaluations not counted).
    pub epochs: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Whether the tolerance was reached within the epoch limit.
    pub converged: bool,
}
/// Solves `problem` from `(β, b)` (a warm start, overwritten with the solution; `β` row-major
/// `[p·m, C]`, `b` `[C]`). With `allowed`, groups outside it are held at zero.
pub fn solve(
    problem: &GroupProblem,
    beta: &mut [f64],
    bias: &mut [f64],
    options: SolverOptions,
    allowed: Option<&[bool]>,
) -> Result<SolveReport> {
    let start = Instant::now();
    let (c, m, p) = (problem.outputs, problem.m, problem.groups);
    let block = m * c;
    if beta.len() != p * block || bias.len() != c {
        return Err(Error::invalid(format!(
            "coefficients of {} and {} values for {p} groups of {m}×{c} and {c} intercepts",
            beta.len(),
            bias.len()
        )));
    }
    if !(options.tolerance.is_finite() && options.tolerance > 0.0) {
        return Err(Error::param(
            "tolerance",
            format!("must be positive, got {}", options.tolerance),
        ));
    }
    let allowed: Vec<bool> = match allowed {
        Some(a) if a.len() == p => a.to_vec(),
        Some(a) => {
            return Err(Error::invalid(format!(
                "{} allowed flags for {p} groups",
                a.len()
            )))
        }
        None => vec![true; p],
    };
    for j in (0..p).filter(|&j| !allowed[j]) {
        beta[j * block..(j + 1) * block].fill(0.0);
    }
    let newton = matches!(problem.loss, Loss::Logistic | Loss::Softmax);
    // The first-order block constants (the Newton phase makes its own each round).
    let (lipschitz, intercept_lipschitz) = if newton {
        (Vec::new(), 0.0)
    } else {
        problem.lipschitz()
    };
    let mut f;
    let mut epochs = 0;
    let mut ws_size = 10usize;
    // Whether the last round could lower the objective no further (f64's limit): the solve
    // then ends, reported as not converged.
    let mut stalled = false;
    loop {
        // The outputs afresh each round: the phases update them by increments, and the
        // certificate is computed at Φβ + b itself.
        f = problem.outputs(beta, bias);
        let r = problem.residuals(&f);
        let (mut v, intercept) = problem.violations(&r, beta);
        for j in 0..p {
            if !allowed[j] {
                v[j] = 0.0;
            }
        }
        let worst = problem.relative(v.iter().copied().fold(intercept, f64::max));
        if worst <= options.tolerance || epochs >= options.max_epochs || stalled {
            let objective = problem.objective(beta, bias);
            return Ok(SolveReport {
                kkt: worst,
                objective,
                epochs,
                seconds: start.elapsed().as_secs_f64(),
                converged: worst <= options.tolerance,
            });
        }
        // The working set: every active group, then the worst violators.
        let active: Vec<usize> = (0..p)
            .filter(|&j| beta[j * block..(j + 1) * block].iter().any(|&b| b != 0.0))
            .collect();
        ws_size = ws_size.max(2 * active.len()).min(p);
        let mut order: Vec<usize> = (0..p).filter(|&j| allowed[j]).collect();
        order.sort_by(|&a, &b| {
            let score = |j: usize| {
                if active.contains(&j) {
                    f64::INFINITY
                } else {
                    v[j]
                }
            };
            score(b).total_cmp(&score(a))
        });
        order.truncate(ws_size.max(active.len()));
        order.sort_unstable();
        let ws = order;
        // Solve on the working set to a fraction of the current violation.
        let inner_tolerance = (0.3 * worst).max(0.5 * options.tolerance);
        let budget = options.max_epochs - epochs;
        let taken = if newton {
            let (taken, halted) =
                newton_epochs(problem, &ws, beta, bias, &mut f, inner_tolerance, budget)?;
            stalled = halted;
            taken
        } else {
            working_set_epochs(
                problem,
                &ws,
                (&lipschitz, intercept_lipschitz),
                beta,
                bias,
                &mut f,
                inner_tolerance,
                budget,
            )?
        };
        epochs += taken;
        ws_size = (2 * ws_size).min(p);
    }
}
