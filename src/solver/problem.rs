//! The weighted group-lasso problem on the host: its outputs, residuals, objective, KKT
//! violations and block constants.

use crate::error::{Error, Result};
use crate::loss::Loss;
use nalgebra::DMatrix;

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
    pub(super) columns: Vec<f64>,
    /// Encoded targets, row-major `[n, C]`.
    pub(super) y: Vec<f64>,
    /// Weights divided by `n`.
    pub(super) w: Vec<f64>,
    pub(super) n: usize,
    pub(super) groups: usize,
    pub(super) m: usize,
    pub(super) outputs: usize,
    pub(super) loss: Loss,
    pub(super) lambda: f64,
    pub(super) ridge: f64,
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
        let width = design.len().checked_div(n).unwrap_or(0);
        let mut columns = vec![0.0; design.len()];
        if width * n == design.len() {
            for i in 0..n {
                for k in 0..width {
                    columns[k * n + i] = design[i * width + k];
                }
            }
        }
        Self::from_columns(columns, y, weights, groups, outputs, loss, lambda, ridge)
    }

    /// As [`GroupProblem::new`] with the design column-major (column `k` is
    /// `columns[k·n .. (k+1)·n]`), taken as it is: no second copy of it is made.
    #[allow(clippy::too_many_arguments)]
    pub fn from_columns(
        columns: Vec<f64>,
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
        if !columns.len().is_multiple_of(n * groups) {
            return Err(Error::invalid(format!(
                "a design of {} values is not {n} rows of {groups} groups",
                columns.len()
            )));
        }
        let m = columns.len() / n / groups;
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

    pub(super) fn column(&self, k: usize) -> &[f64] {
        &self.columns[k * self.n..(k + 1) * self.n]
    }

    /// The outputs `f = Φβ + b`, row-major `[n, C]`.
    pub(super) fn outputs(&self, beta: &[f64], bias: &[f64]) -> Vec<f64> {
        let (n, c) = (self.n, self.outputs);
        let block = self.m * c;
        let mut f: Vec<f64> = (0..n * c).map(|k| bias[k % c]).collect();
        for j in 0..self.groups {
            self.add_group_outputs(j, &beta[j * block..(j + 1) * block], &mut f);
        }
        f
    }

    /// The weighted loss derivatives `r = w ∘ ℓ'(f)/n`, row-major `[n, C]`, written into `r`.
    pub(super) fn residuals_into(&self, f: &[f64], r: &mut [f64]) {
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
    pub(super) fn residuals(&self, f: &[f64]) -> Vec<f64> {
        let mut r = vec![0.0; f.len()];
        self.residuals_into(f, &mut r);
        r
    }

    /// The mean weighted loss at outputs `f`.
    pub(super) fn loss_value(&self, f: &[f64]) -> f64 {
        let c = self.outputs;
        (0..self.n)
            .map(|i| {
                let rows = i * c..(i + 1) * c;
                self.w[i] * row_value(self.loss, &f[rows.clone()], &self.y[rows])
            })
            .sum()
    }

    /// `Φ_jᵀ r + ρ β_j`, row-major `[m, C]`, written into `g`.
    pub(super) fn group_gradient_into(&self, j: usize, r: &[f64], beta: &[f64], g: &mut [f64]) {
        let (m, c) = (self.m, self.outputs);
        for a in 0..m {
            let k = j * m + a;
            let s = &mut g[a * c..(a + 1) * c];
            if c == 1 {
                s[0] = dot(self.column(k), r) + self.ridge * beta[k];
                continue;
            }
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
    pub(super) fn add_group_outputs(&self, j: usize, delta: &[f64], f: &mut [f64]) {
        let (m, c) = (self.m, self.outputs);
        for a in 0..m {
            let d = &delta[a * c..(a + 1) * c];
            if d.iter().all(|&d| d == 0.0) {
                continue;
            }
            if c == 1 {
                let d = d[0];
                for (f, x) in f.iter_mut().zip(self.column(j * m + a)) {
                    *f += x * d;
                }
                continue;
            }
            for (x, row) in self.column(j * m + a).iter().zip(f.chunks_exact_mut(c)) {
                for (f, d) in row.iter_mut().zip(d) {
                    *f += x * d;
                }
            }
        }
    }

    /// The group penalty `λ Σ_j ‖β_j‖`.
    pub(super) fn group_penalty(&self, beta: &[f64]) -> f64 {
        let block = self.m * self.outputs;
        let group_norms: f64 = (0..self.groups)
            .map(|j| norm(&beta[j * block..(j + 1) * block]))
            .sum();
        self.lambda * group_norms
    }

    /// The group penalty and the ridge `(ρ/2) ‖β‖²`.
    pub(super) fn penalty(&self, beta: &[f64]) -> f64 {
        self.group_penalty(beta) + 0.5 * self.ridge * beta.iter().map(|b| b * b).sum::<f64>()
    }

    /// The objective at `(β, b)`.
    pub fn objective(&self, beta: &[f64], bias: &[f64]) -> f64 {
        self.objective_at(&self.outputs(beta, bias), beta)
    }

    /// The objective at `β` whose outputs are `f`.
    pub(super) fn objective_at(&self, f: &[f64], beta: &[f64]) -> f64 {
        self.loss_value(f) + self.penalty(beta)
    }

    /// Each group's KKT violation and the intercept's: for a zero group `max(0, ‖g_j‖ − λ)`,
    /// for a non-zero one `‖g_j + λ β_j/‖β_j‖‖`, for the intercept `‖Σ_i r_i‖`.
    pub(super) fn violations(&self, r: &[f64], beta: &[f64]) -> (Vec<f64>, f64) {
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
    pub(super) fn group_violation(&self, j: usize, g: &[f64], beta: &[f64]) -> f64 {
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

    /// The largest KKT violation over the groups `ws` and the intercept at `beta`, given the
    /// outputs' gradients `r` (the residuals, or the Newton model's gradient).
    pub(super) fn ws_violation(&self, ws: &[usize], r: &[f64], beta: &[f64]) -> f64 {
        let mut g = vec![0.0; self.m * self.outputs];
        let mut worst = self.intercept_violation(r);
        for &j in ws {
            self.group_gradient_into(j, r, beta, &mut g);
            worst = worst.max(self.group_violation(j, &g, beta));
        }
        worst
    }

    /// The intercept's violation `‖Σ_i r_i‖`.
    pub(super) fn intercept_violation(&self, r: &[f64]) -> f64 {
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

    pub(super) fn relative(&self, violation: f64) -> f64 {
        if self.lambda > 0.0 {
            violation / self.lambda
        } else {
            violation
        }
    }

    /// The largest eigenvalue of `Φ_jᵀ diag(h) Φ_j` (`h` per row, already divided by `n`).
    pub(super) fn weighted_block_top(&self, j: usize, h: &[f64]) -> f64 {
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
    pub(super) fn lipschitz(&self) -> (Vec<f64>, f64) {
        let kappa = self.loss.curvature();
        let blocks = (0..self.groups)
            .map(|j| kappa * self.weighted_block_top(j, &self.w) + self.ridge)
            .collect();
        (blocks, kappa * self.w.iter().sum::<f64>())
    }
}

/// `Σ_i a_i b_i` in eight interleaved partial sums, so that the loop vectorises (one running
/// sum is bound by the latency of each addition).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    const LANES: usize = 8;
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let mut tail = 0.0;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    let mut s = [0.0; LANES];
    for (x, y) in ca.zip(cb) {
        for k in 0..LANES {
            s[k] += x[k] * y[k];
        }
    }
    ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + tail
}

/// Euclidean norm.
pub(super) fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// `softplus(f) = log(1 + eᶠ)`, stable for any `f`.
pub(super) fn softplus(f: f64) -> f64 {
    f.max(0.0) + (-f.abs()).exp().ln_1p()
}

/// The loss of one row (the formulas of [`Loss`], in f64).
pub(super) fn row_value(loss: Loss, f: &[f64], y: &[f64]) -> f64 {
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
pub(super) fn row_derivative(loss: Loss, f: &[f64], y: &[f64], d: &mut [f64]) {
    match loss {
        Loss::Squared => d[0] = f[0] - y[0],
        Loss::Huber { delta } => d[0] = (f[0] - y[0]).clamp(-delta, delta),
        Loss::Logistic => d[0] = 1.0 / (1.0 + (-f[0]).exp()) - y[0],
        Loss::Softmax => {
            // d = eᶠ⁻ᵐᵃˣ / Σ eᶠ⁻ᵐᵃˣ − y.
            let sum = shifted_exponentials(f, d);
            for (d, y) in d.iter_mut().zip(y) {
                *d = *d / sum - y;
            }
        }
    }
}

/// Writes `e^{f_c − max f}` into `out` (one exponential per output) and returns their sum: the
/// softmax probabilities are `out / sum`.
pub(super) fn shifted_exponentials(f: &[f64], out: &mut [f64]) -> f64 {
    let max = f.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let mut sum = 0.0;
    for (o, f) in out.iter_mut().zip(f) {
        *o = (f - max).exp();
        sum += *o;
    }
    sum
}

pub(super) fn logsumexp(f: &[f64]) -> f64 {
    let max = f.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    max + f.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
}
