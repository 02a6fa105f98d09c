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
//!   longer bound everyone's step), then a backtracking line search on the objective.
//! - **Stopping rule**: the largest KKT violation over all groups and the intercept, relative to
//!   λ (absolute when λ = 0), below the tolerance; or the epoch limit, reported as not converged.
//!
//! The unrolled steps that the hypergradient differentiates are not this solver (they stay the
//! proximal gradient steps of [`crate::inner::InnerStep`]); this one gives the model that a fit
//! reports and the fits of the λ path.

use crate::error::{Error, Result};
use crate::loss::Loss;
use nalgebra::{DMatrix, DVector};
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
    /// Epochs taken (over working sets).
    pub epochs: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Whether the tolerance was reached within the epoch limit.
    pub converged: bool,
}

/// A weighted group-lasso problem on the host, in f64.
///
/// ```
/// use metaadd::solver::{solve, GroupProblem, SolverOptions};
/// use metaadd::Loss;
/// // Two groups of two columns; y depends on the first group only.
/// let design = vec![1.0, 0.0, 0.5, 0.1,  0.0, 1.0, -0.5, 0.2,  -1.0, 0.0, 0.3, -0.1,  0.0, -1.0, -0.3, -0.2];
/// let y = vec![2.0, 1.0, -2.0, -1.0];
/// let problem = GroupProblem::new(&design, &y, vec![1.0; 4], 2, 1, Loss::Squared, 0.1, 0.0)?;
/// let (mut beta, mut bias) = (vec![0.0; 4], vec![0.0]);
/// let report = solve(&problem, &mut beta, &mut bias, SolverOptions::default(), None)?;
/// assert!(report.converged && report.kkt <= 1e-4);
/// assert_eq!(&beta[2..], &[0.0, 0.0]); // the second group is dropped exactly
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct GroupProblem {
    /// Column-major design: column `k` is `columns[k·n .. (k+1)·n]`.
    columns: Vec<f64>,
    /// Encoded targets, row-major `[n, C]`.
    y: Vec<f64>,
    /// Weights divided by `n`.
    w: Vec<f64>,
    n: usize,
    groups: usize,
    m: usize,
    outputs: usize,
    loss: Loss,
    lambda: f64,
    ridge: f64,
}

impl GroupProblem {
    /// `design` row-major `[n, p·m]` (feature `j` owns columns `j·m … j·m+m−1`), `y` the
    /// encoded targets row-major `[n, C]`, `weights` `[n]` (non-negative, as they enter the
    /// objective), `groups = p`, `outputs = C`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        design: &[f64],
        y: &[f64],
        weights: Vec<f64>,
        groups: usize,
        outputs: usize,
        loss: Loss,
        lambda: f64,
        ridge: f64,
    ) -> Result<Self> {
        let n = weights.len();
        if n == 0 || groups == 0 || outputs == 0 {
            return Err(Error::invalid("an empty group-lasso problem"));
        }
        if !design.len().is_multiple_of(n * groups) {
            return Err(Error::invalid(format!(
                "a design of {} values is not {n} rows of {groups} groups",
                design.len()
            )));
        }
        let columns_count = design.len() / n;
        let m = columns_count / groups;
        if y.len() != n * outputs {
            return Err(Error::invalid(format!(
                "{} targets for {n} rows of {outputs} outputs",
                y.len()
            )));
        }
        if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
            return Err(Error::invalid(format!(
                "the weight {w} is not a finite non-negative number"
            )));
        }
        if !(lambda.is_finite() && lambda >= 0.0 && ridge.is_finite() && ridge >= 0.0) {
            return Err(Error::invalid(format!(
                "λ = {lambda} and ridge = {ridge} must be finite and not negative"
            )));
        }
        let mut columns = vec![0.0; design.len()];
        for i in 0..n {
            for k in 0..columns_count {
                columns[k * n + i] = design[i * columns_count + k];
            }
        }
        Ok(Self {
            columns,
            y: y.to_vec(),
            w: weights.into_iter().map(|w| w / n as f64).collect(),
            n,
            groups,
            m,
            outputs,
            loss,
            lambda,
            ridge,
        })
    }

    fn column(&self, k: usize) -> &[f64] {
        &self.columns[k * self.n..(k + 1) * self.n]
    }

    /// The outputs `f = Φβ + b`, row-major `[n, C]`.
    fn outputs(&self, beta: &[f64], bias: &[f64]) -> Vec<f64> {
        let (n, c) = (self.n, self.outputs);
        let block = self.m * c;
        let mut f: Vec<f64> = (0..n * c).map(|k| bias[k % c]).collect();
        for j in 0..self.groups {
            self.add_group_outputs(j, &beta[j * block..(j + 1) * block], &mut f);
        }
        f
    }

    /// The weighted loss derivatives `r = w ∘ ℓ'(f)/n`, row-major `[n, C]`, written into `r`.
    fn residuals_into(&self, f: &[f64], r: &mut [f64]) {
        let c = self.outputs;
        for i in 0..self.n {
            let rows = i * c..(i + 1) * c;
            row_derivative(
                self.loss,
                &f[rows.clone()],
                &self.y[rows.clone()],
                &mut r[rows.clone()],
            );
            for v in &mut r[rows] {
                *v *= self.w[i];
            }
        }
    }

    /// [`GroupProblem::residuals_into`] into a new vector.
    fn residuals(&self, f: &[f64]) -> Vec<f64> {
        let mut r = vec![0.0; f.len()];
        self.residuals_into(f, &mut r);
        r
    }

    /// The mean weighted loss at outputs `f`.
    fn loss_value(&self, f: &[f64]) -> f64 {
        let c = self.outputs;
        (0..self.n)
            .map(|i| {
                let rows = i * c..(i + 1) * c;
                self.w[i] * row_value(self.loss, &f[rows.clone()], &self.y[rows])
            })
            .sum()
    }

    /// `Φ_jᵀ r + ρ β_j`, row-major `[m, C]`, written into `g`.
    fn group_gradient_into(&self, j: usize, r: &[f64], beta: &[f64], g: &mut [f64]) {
        let (m, c) = (self.m, self.outputs);
        for a in 0..m {
            let k = j * m + a;
            let s = &mut g[a * c..(a + 1) * c];
            s.fill(0.0);
            // Rows outer, outputs inner: `r` is read in order.
            for (x, row) in self.column(k).iter().zip(r.chunks_exact(c)) {
                for (s, r) in s.iter_mut().zip(row) {
                    *s += x * r;
                }
            }
            for (s, b) in s.iter_mut().zip(&beta[k * c..(k + 1) * c]) {
                *s += self.ridge * b;
            }
        }
    }

    /// Adds `Φ_j Δ` to the outputs `f` (`Δ` row-major `[m, C]`), skipping zero rows of `Δ`.
    fn add_group_outputs(&self, j: usize, delta: &[f64], f: &mut [f64]) {
        let (m, c) = (self.m, self.outputs);
        for a in 0..m {
            let d = &delta[a * c..(a + 1) * c];
            if d.iter().all(|&d| d == 0.0) {
                continue;
            }
            for (x, row) in self.column(j * m + a).iter().zip(f.chunks_exact_mut(c)) {
                for (f, d) in row.iter_mut().zip(d) {
                    *f += x * d;
                }
            }
        }
    }

    fn penalty(&self, beta: &[f64]) -> f64 {
        let block = self.m * self.outputs;
        let group_norms: f64 = (0..self.groups)
            .map(|j| norm(&beta[j * block..(j + 1) * block]))
            .sum();
        self.lambda * group_norms + 0.5 * self.ridge * beta.iter().map(|b| b * b).sum::<f64>()
    }

    /// The objective at `(β, b)`.
    pub fn objective(&self, beta: &[f64], bias: &[f64]) -> f64 {
        self.objective_at(&self.outputs(beta, bias), beta)
    }

    /// The objective at `β` whose outputs are `f`.
    fn objective_at(&self, f: &[f64], beta: &[f64]) -> f64 {
        self.loss_value(f) + self.penalty(beta)
    }

    /// Each group's KKT violation and the intercept's: for a zero group `max(0, ‖g_j‖ − λ)`,
    /// for a non-zero one `‖g_j + λ β_j/‖β_j‖‖`, for the intercept `‖Σ_i r_i‖`.
    fn violations(&self, r: &[f64], beta: &[f64]) -> (Vec<f64>, f64) {
        let mut g = vec![0.0; self.m * self.outputs];
        let v = (0..self.groups)
            .map(|j| {
                self.group_gradient_into(j, r, beta, &mut g);
                self.group_violation(j, &g, beta)
            })
            .collect();
        (v, self.intercept_violation(r))
    }

    /// Group `j`'s KKT violation given its gradient `g`: `max(0, ‖g‖ − λ)` at zero,
    /// `‖g + λ β_j/‖β_j‖‖` elsewhere.
    fn group_violation(&self, j: usize, g: &[f64], beta: &[f64]) -> f64 {
        let block = self.m * self.outputs;
        let b = &beta[j * block..(j + 1) * block];
        let nb = norm(b);
        if nb == 0.0 {
            (norm(g) - self.lambda).max(0.0)
        } else {
            g.iter()
                .zip(b)
                .map(|(g, b)| (g + self.lambda * b / nb).powi(2))
                .sum::<f64>()
                .sqrt()
        }
    }

    /// The intercept's violation `‖Σ_i r_i‖`.
    fn intercept_violation(&self, r: &[f64]) -> f64 {
        let c = self.outputs;
        (0..c)
            .map(|o| (0..self.n).map(|i| r[i * c + o]).sum::<f64>().powi(2))
            .sum::<f64>()
            .sqrt()
    }

    /// The largest KKT violation at `(β, b)`, relative to λ (absolute when λ = 0).
    pub fn kkt(&self, beta: &[f64], bias: &[f64]) -> f64 {
        let r = self.residuals(&self.outputs(beta, bias));
        let (v, intercept) = self.violations(&r, beta);
        self.relative(v.into_iter().fold(intercept, f64::max))
    }

    fn relative(&self, violation: f64) -> f64 {
        if self.lambda > 0.0 {
            violation / self.lambda
        } else {
            violation
        }
    }

    /// The largest eigenvalue of `Φ_jᵀ diag(h) Φ_j` (`h` per row, already divided by `n`).
    fn weighted_block_top(&self, j: usize, h: &[f64]) -> f64 {
        let m = self.m;
        let mut gram = DMatrix::<f64>::zeros(m, m);
        for a in 0..m {
            let ca = self.column(j * m + a);
            for b in a..m {
                let cb = self.column(j * m + b);
                let s: f64 = (0..self.n).map(|i| h[i] * ca[i] * cb[i]).sum();
                gram[(a, b)] = s;
                gram[(b, a)] = s;
            }
        }
        gram.symmetric_eigenvalues()
            .iter()
            .fold(0.0f64, |x, &y| x.max(y))
    }

    /// Each block's Lipschitz constant `κ·μ_max(Φ_jᵀ W Φ_j)/n + ρ`, and the intercept's `κ·Σw/n`.
    fn lipschitz(&self) -> (Vec<f64>, f64) {
        let kappa = self.loss.curvature();
        let blocks = (0..self.groups)
            .map(|j| kappa * self.weighted_block_top(j, &self.w) + self.ridge)
            .collect();
        (blocks, kappa * self.w.iter().sum::<f64>())
    }
}

/// Euclidean norm.
fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// `softplus(f) = log(1 + eᶠ)`, stable for any `f`.
fn softplus(f: f64) -> f64 {
    f.max(0.0) + (-f.abs()).exp().ln_1p()
}

/// The loss of one row (the formulas of [`Loss`], in f64).
fn row_value(loss: Loss, f: &[f64], y: &[f64]) -> f64 {
    match loss {
        Loss::Squared => 0.5 * (f[0] - y[0]) * (f[0] - y[0]),
        Loss::Huber { delta } => {
            let r = f[0] - y[0];
            let c = r.clamp(-delta, delta);
            c * r - 0.5 * c * c
        }
        Loss::Logistic => softplus(f[0]) - y[0] * f[0],
        Loss::Softmax => logsumexp(f) - f.iter().zip(y).map(|(f, y)| f * y).sum::<f64>(),
    }
}

/// The derivative of one row's loss in its outputs, written into `d`.
fn row_derivative(loss: Loss, f: &[f64], y: &[f64], d: &mut [f64]) {
    match loss {
        Loss::Squared => d[0] = f[0] - y[0],
        Loss::Huber { delta } => d[0] = (f[0] - y[0]).clamp(-delta, delta),
        Loss::Logistic => d[0] = 1.0 / (1.0 + (-f[0]).exp()) - y[0],
        Loss::Softmax => {
            // One exponential per output: d = eᶠ⁻ᵐᵃˣ / Σ eᶠ⁻ᵐᵃˣ − y.
            let max = f.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            let mut sum = 0.0;
            for (d, f) in d.iter_mut().zip(f) {
                *d = (f - max).exp();
                sum += *d;
            }
            for (d, y) in d.iter_mut().zip(y) {
                *d = *d / sum - y;
            }
        }
    }
}

fn logsumexp(f: &[f64]) -> f64 {
    let max = f.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    max + f.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
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
    let (lipschitz, intercept_lipschitz) = problem.lipschitz();
    let mut f = problem.outputs(beta, bias);
    let mut epochs = 0;
    let mut ws_size = 10usize;
    loop {
        let r = problem.residuals(&f);
        let (mut v, intercept) = problem.violations(&r, beta);
        for j in 0..p {
            if !allowed[j] {
                v[j] = 0.0;
            }
        }
        let worst = problem.relative(v.iter().copied().fold(intercept, f64::max));
        if worst <= options.tolerance || epochs >= options.max_epochs {
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
        epochs += if matches!(problem.loss, Loss::Logistic | Loss::Softmax) {
            newton_epochs(problem, &ws, beta, bias, &mut f, inner_tolerance, budget)
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
            )
        };
        ws_size = (2 * ws_size).min(p);
    }
}

/// Block coordinate descent with Anderson extrapolation on the groups `ws` until their KKT
/// violation (and the intercept's) is below `tolerance` or `budget` epochs are spent; returns
/// the epochs taken. `f` is kept equal to `Φβ + b`.
#[allow(clippy::too_many_arguments)]
fn working_set_epochs(
    problem: &GroupProblem,
    ws: &[usize],
    (lipschitz, intercept_lipschitz): (&[f64], f64),
    beta: &mut [f64],
    bias: &mut [f64],
    f: &mut [f64],
    tolerance: f64,
    budget: usize,
) -> usize {
    const ANDERSON: usize = 5;
    let (c, m, n) = (problem.outputs, problem.m, problem.n);
    let block = m * c;
    let lambda = problem.lambda;
    // Iterates of (β_ws, b) for the extrapolation.
    let pack = |beta: &[f64], bias: &[f64]| pack(ws, block, beta, bias);
    let mut history: Vec<Vec<f64>> = vec![pack(beta, bias)];
    let mut r = vec![0.0; n * c];
    // Whether `r` holds the residuals of the current `f`: a block that stays where it is (a
    // zero group held at zero) leaves them valid, and they are not recomputed (for logistic
    // and softmax losses, n·C exponentials each time).
    let mut fresh = false;
    let (mut g, mut new, mut delta) = (vec![0.0; block], vec![0.0; block], vec![0.0; block]);
    let mut epoch = 0;
    while epoch < budget {
        epoch += 1;
        // The intercept, then each block: a majorised step on its own Lipschitz constant.
        if intercept_lipschitz > 0.0 {
            if !fresh {
                problem.residuals_into(f, &mut r);
            }
            for o in 0..c {
                let step = (0..n).map(|i| r[i * c + o]).sum::<f64>() / intercept_lipschitz;
                if step != 0.0 {
                    bias[o] -= step;
                    for i in 0..n {
                        f[i * c + o] -= step;
                    }
                    fresh = false;
                }
            }
        }
        for &j in ws {
            let l = lipschitz[j];
            if l <= 0.0 {
                continue;
            }
            if !fresh {
                problem.residuals_into(f, &mut r);
                fresh = true;
            }
            problem.group_gradient_into(j, &r, beta, &mut g);
            let old = &beta[j * block..(j + 1) * block];
            for ((u, b), g) in new.iter_mut().zip(old).zip(&g) {
                *u = b - g / l;
            }
            let nu = norm(&new);
            let shrink = if nu > lambda / l {
                1.0 - lambda / (l * nu)
            } else {
                0.0
            };
            new.iter_mut().for_each(|u| *u *= shrink);
            for ((d, u), b) in delta.iter_mut().zip(&new).zip(old) {
                *d = u - b;
            }
            if delta.iter().any(|&d| d != 0.0) {
                problem.add_group_outputs(j, &delta, f);
                fresh = false;
            }
            beta[j * block..(j + 1) * block].copy_from_slice(&new);
        }
        history.push(pack(beta, bias));
        if history.len() == ANDERSON + 1 {
            extrapolate(problem, ws, &history, beta, bias, f);
            fresh = false;
            history.clear();
            history.push(pack(beta, bias));
        }
        if epoch % ANDERSON == 0 || epoch == budget {
            if !fresh {
                problem.residuals_into(f, &mut r);
                fresh = true;
            }
            let mut worst = problem.intercept_violation(&r);
            for &j in ws {
                problem.group_gradient_into(j, &r, beta, &mut g);
                worst = worst.max(problem.group_violation(j, &g, beta));
            }
            if problem.relative(worst) <= tolerance {
                break;
            }
        }
    }
    epoch
}

/// Anderson extrapolation of the iterates in `history` (K + 1 of them): the affine combination
/// of the last K that minimises the norm of the combined differences; `None` when the
/// differences are degenerate.
fn anderson(history: &[Vec<f64>]) -> Option<Vec<f64>> {
    let k = history.len() - 1;
    let dim = history[0].len();
    let u = DMatrix::from_fn(dim, k, |row, col| history[col + 1][row] - history[col][row]);
    let gram = u.transpose() * &u;
    let scale = gram.diagonal().iter().fold(0.0f64, |a, &b| a.max(b));
    if scale.is_nan() || scale <= 0.0 {
        return None;
    }
    let regularised = gram + DMatrix::identity(k, k) * (1e-10 * scale);
    let z = regularised.lu().solve(&DVector::from_element(k, 1.0))?;
    let total: f64 = z.iter().sum();
    if !(total.is_finite() && total.abs() > 0.0) {
        return None;
    }
    let weights: Vec<f64> = z.iter().map(|z| z / total).collect();
    Some(
        (0..dim)
            .map(|d| (0..k).map(|i| weights[i] * history[i + 1][d]).sum())
            .collect(),
    )
}

/// The groups `ws` of `beta` and the intercepts, packed (the iterates Anderson combines).
fn pack(ws: &[usize], block: usize, beta: &[f64], bias: &[f64]) -> Vec<f64> {
    let mut x: Vec<f64> = ws
        .iter()
        .flat_map(|&j| beta[j * block..(j + 1) * block].iter().copied())
        .collect();
    x.extend_from_slice(bias);
    x
}

/// The inverse of [`pack`]: `beta` with the groups `ws` from `x`, and the intercepts.
fn unpack<'a>(ws: &[usize], block: usize, x: &'a [f64], beta: &[f64]) -> (Vec<f64>, &'a [f64]) {
    let mut full = beta.to_vec();
    for (slot, &j) in ws.iter().enumerate() {
        full[j * block..(j + 1) * block].copy_from_slice(&x[slot * block..(slot + 1) * block]);
    }
    (full, &x[ws.len() * block..])
}

/// Anderson extrapolation of the iterates in `history`, taken when it lowers the objective,
/// else the iterate stays.
fn extrapolate(
    problem: &GroupProblem,
    ws: &[usize],
    history: &[Vec<f64>],
    beta: &mut [f64],
    bias: &mut [f64],
    f: &mut [f64],
) {
    let Some(x) = anderson(history) else {
        return;
    };
    let (candidate_beta, candidate_bias) = unpack(ws, problem.m * problem.outputs, &x, beta);
    let current = problem.objective_at(f, beta);
    let candidate_f = problem.outputs(&candidate_beta, candidate_bias);
    if problem.objective_at(&candidate_f, &candidate_beta) < current {
        beta.copy_from_slice(&candidate_beta);
        bias.copy_from_slice(candidate_bias);
        f.copy_from_slice(&candidate_f);
    }
}

/// Each row's curvature data for the proximal Newton model, written into `hess` (row-major
/// `[n, C]`): logistic `w_i p(1−p)` (the Hessian itself), softmax `w_i p` (the Hessian is
/// `w_i (diag p − p pᵀ)`); and each row's bound on the largest eigenvalue of its Hessian into
/// `top` (softmax by Gershgorin: `w_i max_c 2 p_c (1 − p_c)`).
fn hessian_rows(problem: &GroupProblem, f: &[f64], hess: &mut [f64], top: &mut [f64]) {
    let c = problem.outputs;
    for i in 0..problem.n {
        let (row, h) = (&f[i * c..(i + 1) * c], &mut hess[i * c..(i + 1) * c]);
        let w = problem.w[i];
        match problem.loss {
            Loss::Logistic => {
                let p = 1.0 / (1.0 + (-row[0]).exp());
                h[0] = w * p * (1.0 - p);
                top[i] = h[0];
            }
            _ => {
                let max = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
                let mut sum = 0.0;
                for (h, f) in h.iter_mut().zip(row) {
                    *h = (f - max).exp();
                    sum += *h;
                }
                let mut bound = 0.0f64;
                for h in h.iter_mut() {
                    let p = *h / sum;
                    bound = bound.max(2.0 * p * (1.0 - p));
                    *h = w * p;
                }
                top[i] = w * bound;
            }
        }
    }
}

/// Adds `H_i u_i` to `q_i` for every row (`hess` from [`hessian_rows`]).
fn add_hessian_products(loss: Loss, c: usize, hess: &[f64], u: &[f64], q: &mut [f64]) {
    for ((h, u), q) in hess
        .chunks_exact(c)
        .zip(u.chunks_exact(c))
        .zip(q.chunks_exact_mut(c))
    {
        if loss == Loss::Logistic {
            q[0] += h[0] * u[0];
        } else {
            // w (p ∘ u − p (pᵀu)), with h = w p and Σ p = 1: pᵀu = hᵀu / w = hᵀu / Σ h.
            let w: f64 = h.iter().sum();
            if w == 0.0 {
                continue;
            }
            let pu = h.iter().zip(u).map(|(h, u)| h * u).sum::<f64>() / w;
            for ((q, h), u) in q.iter_mut().zip(h).zip(u) {
                *q += h * (u - pu);
            }
        }
    }
}

/// Proximal Newton on the groups `ws` for the logistic and softmax losses (as skglm's
/// ProxNewton): at the current point, a quadratic model of the loss with each row's own
/// Hessian, minimised with the penalty by block coordinate descent on block constants from
/// each row's curvature (near-separable rows, whose curvature vanishes, no longer hold the
/// steps of the others back), then a backtracking line search on the objective along the
/// model's minimiser. Stops when the working set's KKT violation (and the intercept's) is below
/// `tolerance` or `budget` model epochs are spent; returns the epochs taken. `f` is kept equal
/// to `Φβ + b`.
fn newton_epochs(
    problem: &GroupProblem,
    ws: &[usize],
    beta: &mut [f64],
    bias: &mut [f64],
    f: &mut [f64],
    tolerance: f64,
    budget: usize,
) -> usize {
    const MODEL_EPOCHS: usize = 20;
    const ANDERSON: usize = 5;
    const CHECK_EVERY: usize = 5;
    const ARMIJO: f64 = 1e-4;
    const HALVINGS: usize = 40;
    let (c, m, n) = (problem.outputs, problem.m, problem.n);
    let block = m * c;
    let (lambda, ridge) = (problem.lambda, problem.ridge);
    let (mut r, mut hess, mut top) = (vec![0.0; n * c], vec![0.0; n * c], vec![0.0; n]);
    let (mut g, mut new, mut delta) = (vec![0.0; block], vec![0.0; block], vec![0.0; block]);
    let mut u = vec![0.0; n * c];
    // The working set's largest violation at (x, xb), given the rows' gradients `q`.
    let violation = |q: &[f64], x: &[f64], g: &mut [f64]| -> f64 {
        let mut worst = problem.intercept_violation(q);
        for &j in ws {
            problem.group_gradient_into(j, q, x, g);
            worst = worst.max(problem.group_violation(j, g, x));
        }
        worst
    };
    let mut epochs = 0;
    loop {
        problem.residuals_into(f, &mut r);
        let worst = violation(&r, beta, &mut g);
        if problem.relative(worst) <= tolerance || epochs >= budget {
            return epochs;
        }
        hessian_rows(problem, f, &mut hess, &mut top);
        let lipschitz: Vec<f64> = ws
            .iter()
            .map(|&j| problem.weighted_block_top(j, &top) + ridge)
            .collect();
        let intercept_lipschitz: f64 = top.iter().sum();
        // The model's minimiser (x, xb) from the current point; d = Φ(x − β) + (xb − b) and
        // q = r + H d, the model's gradient in the outputs.
        let (mut x, mut xb) = (beta.to_vec(), bias.to_vec());
        let mut d = vec![0.0; n * c];
        let mut q = r.clone();
        let mut history = vec![pack(ws, block, &x, &xb)];
        for inner in 1..=MODEL_EPOCHS.min(budget - epochs) {
            epochs += 1;
            if intercept_lipschitz > 0.0 {
                let mut s = vec![0.0; c];
                for row in q.chunks_exact(c) {
                    s.iter_mut().zip(row).for_each(|(s, q)| *s -= q);
                }
                s.iter_mut().for_each(|s| *s /= intercept_lipschitz);
                if s.iter().any(|&s| s != 0.0) {
                    xb.iter_mut().zip(&s).for_each(|(b, s)| *b += s);
                    for (urow, drow) in u.chunks_exact_mut(c).zip(d.chunks_exact_mut(c)) {
                        urow.copy_from_slice(&s);
                        drow.iter_mut().zip(&s).for_each(|(d, s)| *d += s);
                    }
                    add_hessian_products(problem.loss, c, &hess, &u, &mut q);
                }
            }
            for (&j, &l) in ws.iter().zip(&lipschitz) {
                if l <= 0.0 {
                    continue;
                }
                problem.group_gradient_into(j, &q, &x, &mut g);
                let old = &x[j * block..(j + 1) * block];
                for ((v, b), g) in new.iter_mut().zip(old).zip(&g) {
                    *v = b - g / l;
                }
                let nv = norm(&new);
                let shrink = if nv > lambda / l {
                    1.0 - lambda / (l * nv)
                } else {
                    0.0
                };
                new.iter_mut().for_each(|v| *v *= shrink);
                for ((dl, v), b) in delta.iter_mut().zip(&new).zip(old) {
                    *dl = v - b;
                }
                if delta.iter().any(|&dl| dl != 0.0) {
                    u.fill(0.0);
                    problem.add_group_outputs(j, &delta, &mut u);
                    d.iter_mut().zip(&u).for_each(|(d, u)| *d += u);
                    add_hessian_products(problem.loss, c, &hess, &u, &mut q);
                }
                x[j * block..(j + 1) * block].copy_from_slice(&new);
            }
            history.push(pack(ws, block, &x, &xb));
            if history.len() == ANDERSON + 1 {
                if let Some(z) = anderson(&history) {
                    let (cx, cxb) = unpack(ws, block, &z, &x);
                    // The candidate's d and q, and the model objective ½ Σ (r + q)·d + the
                    // ridge and group penalties, at both points.
                    let mut cd = vec![0.0; n * c];
                    for &j in ws {
                        for k in j * block..(j + 1) * block {
                            delta[k - j * block] = cx[k] - beta[k];
                        }
                        problem.add_group_outputs(j, &delta, &mut cd);
                    }
                    for row in cd.chunks_exact_mut(c) {
                        for ((d, a), b) in row.iter_mut().zip(cxb).zip(bias.iter()) {
                            *d += a - b;
                        }
                    }
                    let mut cq = r.clone();
                    add_hessian_products(problem.loss, c, &hess, &cd, &mut cq);
                    let model = |q: &[f64], d: &[f64], x: &[f64]| {
                        0.5 * r
                            .iter()
                            .zip(q)
                            .zip(d)
                            .map(|((r, q), d)| (r + q) * d)
                            .sum::<f64>()
                            + problem.penalty(x)
                    };
                    if model(&cq, &cd, &cx) < model(&q, &d, &x) {
                        x = cx;
                        xb.copy_from_slice(cxb);
                        d = cd;
                        q = cq;
                    }
                }
                history.clear();
                history.push(pack(ws, block, &x, &xb));
            }
            if inner % CHECK_EVERY == 0 && violation(&q, &x, &mut g) <= 0.3 * worst {
                break;
            }
        }
        // Backtracking along (x − β, xb − b): sufficient decrease of the objective against
        // the model's directional derivative plus the change of the penalty.
        let smooth_slope: f64 = r.iter().zip(&d).map(|(r, d)| r * d).sum::<f64>()
            + ridge * beta.iter().zip(&x).map(|(b, x)| b * (x - b)).sum::<f64>();
        let penalty_now = problem.penalty(beta);
        let slope = smooth_slope + problem.penalty(&x) - penalty_now;
        let current = problem.objective_at(f, beta);
        let (mut t, mut accepted) = (1.0, false);
        let mut trial_beta = beta.to_vec();
        let mut trial_f = f.to_vec();
        for _ in 0..HALVINGS {
            for &j in ws {
                for k in j * block..(j + 1) * block {
                    trial_beta[k] = beta[k] + t * (x[k] - beta[k]);
                }
            }
            for ((tf, f), d) in trial_f.iter_mut().zip(f.iter()).zip(&d) {
                *tf = f + t * d;
            }
            if problem.objective_at(&trial_f, &trial_beta) <= current + ARMIJO * t * slope {
                accepted = true;
                break;
            }
            t *= 0.5;
        }
        if !accepted {
            // No decrease along the model's direction (rounding near the optimum): finish
            // with first-order steps, which decrease the objective by construction.
            let (lipschitz, intercept_lipschitz) = problem.lipschitz();
            return epochs
                + working_set_epochs(
                    problem,
                    ws,
                    (&lipschitz, intercept_lipschitz),
                    beta,
                    bias,
                    f,
                    tolerance,
                    budget - epochs,
                );
        }
        beta.copy_from_slice(&trial_beta);
        f.copy_from_slice(&trial_f);
        for (b, xb) in bias.iter_mut().zip(&xb) {
            *b += t * (xb - *b);
        }
    }
}
