//! Proximal Newton on a working set for the logistic and softmax losses.

use super::bcd::{anderson, pack, prox_step, unpack};
use super::problem::{norm, shifted_exponentials, GroupProblem};
use crate::error::Result;
use crate::loss::Loss;

/// Each row's curvature data for the proximal Newton model, written into `hess` (row-major
/// `[n, C]`): logistic `w_i p(1−p)` (the Hessian itself), softmax `w_i p` (the Hessian is
/// `w_i (diag p − p pᵀ)`); and each row's bound on the largest eigenvalue of its Hessian into
/// `top` (softmax by Gershgorin: `w_i max_c 2 p_c (1 − p_c)`), at least `1e-12·w_i` so that a
/// block whose rows are all fitted to f64's precision still takes a (line-searched) step.
fn hessian_rows(problem: &GroupProblem, f: &[f64], hess: &mut [f64], top: &mut [f64]) {
    let c = problem.outputs;
    for i in 0..problem.n {
        let (row, h) = (&f[i * c..(i + 1) * c], &mut hess[i * c..(i + 1) * c]);
        let w = problem.w[i];
        match problem.loss {
            Loss::Logistic => {
                // σ(f)·σ(−f), each side from its own exponential: no 1 − p that rounds away.
                let e = (-row[0].abs()).exp();
                h[0] = w * e / ((1.0 + e) * (1.0 + e));
                top[i] = h[0];
            }
            _ => {
                let sum = shifted_exponentials(row, h);
                let mut bound = 0.0f64;
                for h in h.iter_mut() {
                    // 1 − p_c as the other classes' share, not by subtraction.
                    let (p, rest) = (*h / sum, (sum - *h) / sum);
                    bound = bound.max(2.0 * p * rest);
                    *h = w * p;
                }
                top[i] = w * bound;
            }
        }
        top[i] = top[i].max(1e-12 * w);
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

/// The quadratic model of the loss at the current point `(β, b)` with outputs' gradients `r`:
/// `rᵀd + ½ dᵀHd` in the outputs' change `d = Φ(x − β) + (xb − b)`, plus the ridge and the
/// group penalty at `x`; its point `(x, xb)`, `d`, and `q = r + H d` (the model's gradient in
/// the outputs) kept in step.
struct Model<'a> {
    problem: &'a GroupProblem,
    ws: &'a [usize],
    r: &'a [f64],
    hess: &'a [f64],
    x: Vec<f64>,
    xb: Vec<f64>,
    d: Vec<f64>,
    q: Vec<f64>,
}

impl<'a> Model<'a> {
    fn new(
        problem: &'a GroupProblem,
        ws: &'a [usize],
        (r, hess): (&'a [f64], &'a [f64]),
        beta: &[f64],
        bias: &[f64],
    ) -> Self {
        Self {
            problem,
            ws,
            r,
            hess,
            x: beta.to_vec(),
            xb: bias.to_vec(),
            d: vec![0.0; r.len()],
            q: r.to_vec(),
        }
    }

    /// Moves the outputs by `u` (row-major `[n, C]`): `d += u`, `q += H u`.
    fn shift(&mut self, u: &[f64]) {
        self.d.iter_mut().zip(u).for_each(|(d, u)| *d += u);
        add_hessian_products(
            self.problem.loss,
            self.problem.outputs,
            self.hess,
            u,
            &mut self.q,
        );
    }

    /// One epoch: the intercept's step on `intercept_lipschitz`, then each block's on its
    /// constant in `lipschitz` (aligned with the working set).
    fn epoch(&mut self, lipschitz: &[f64], intercept_lipschitz: f64, u: &mut [f64]) {
        let problem = self.problem;
        let c = problem.outputs;
        let block = problem.m * c;
        if intercept_lipschitz > 0.0 {
            let mut s = vec![0.0; c];
            for row in self.q.chunks_exact(c) {
                s.iter_mut().zip(row).for_each(|(s, q)| *s -= q);
            }
            s.iter_mut().for_each(|s| *s /= intercept_lipschitz);
            if s.iter().any(|&s| s != 0.0) {
                self.xb.iter_mut().zip(&s).for_each(|(b, s)| *b += s);
                u.chunks_exact_mut(c)
                    .for_each(|row| row.copy_from_slice(&s));
                self.shift(u);
            }
        }
        let (mut g, mut new, mut delta) = (vec![0.0; block], vec![0.0; block], vec![0.0; block]);
        for (&j, &l) in self.ws.iter().zip(lipschitz) {
            if l <= 0.0 {
                continue;
            }
            problem.group_gradient_into(j, &self.q, &self.x, &mut g);
            let old = &self.x[j * block..(j + 1) * block];
            prox_step(old, &g, l, problem.lambda, &mut new);
            for ((dl, v), b) in delta.iter_mut().zip(&new).zip(old) {
                *dl = v - b;
            }
            if delta.iter().any(|&dl| dl != 0.0) {
                u.fill(0.0);
                problem.add_group_outputs(j, &delta, u);
                self.shift(u);
            }
            self.x[j * block..(j + 1) * block].copy_from_slice(&new);
        }
    }

    /// The model's value, up to the constant loss at the current point.
    fn value(&self) -> f64 {
        let quadratic: f64 = self
            .r
            .iter()
            .zip(&self.q)
            .zip(&self.d)
            .map(|((r, q), d)| (r + q) * d)
            .sum();
        0.5 * quadratic + self.problem.penalty(&self.x)
    }

    /// Moves to the Anderson combination of `history` when that lowers the model.
    fn extrapolate(&mut self, history: &[Vec<f64>], beta: &[f64], bias: &[f64]) {
        let Some(z) = anderson(history) else {
            return;
        };
        let problem = self.problem;
        let block = problem.m * problem.outputs;
        let (x, xb) = unpack(self.ws, block, &z, &self.x);
        let mut candidate = Model::new(problem, self.ws, (self.r, self.hess), &x, xb);
        // Its outputs' change from the current point (β, b).
        let mut u = vec![0.0; self.d.len()];
        let mut delta = vec![0.0; block];
        for &j in self.ws {
            for (k, dl) in (j * block..(j + 1) * block).zip(delta.iter_mut()) {
                *dl = x[k] - beta[k];
            }
            problem.add_group_outputs(j, &delta, &mut u);
        }
        for row in u.chunks_exact_mut(problem.outputs) {
            for ((u, a), b) in row.iter_mut().zip(xb).zip(bias) {
                *u += a - b;
            }
        }
        candidate.shift(&u);
        if candidate.value() < self.value() {
            *self = candidate;
        }
    }

    /// The working set's largest violation of the model's optimality conditions.
    fn violation(&self) -> f64 {
        self.problem.ws_violation(self.ws, &self.q, &self.x)
    }
}

/// Proximal Newton on the groups `ws` for the logistic and softmax losses (as skglm's
/// ProxNewton): at the current point, a quadratic model of the loss with each row's own
/// Hessian, minimised with the penalty by block coordinate descent on block constants from
/// each row's curvature (near-separable rows, whose curvature vanishes, no longer hold the
/// steps of the others back) with Anderson extrapolation, then a backtracking line search along
/// the model's minimiser. Stops when the working set's KKT violation (and
/// the intercept's) is below `tolerance` or `budget` model epochs are spent; returns the epochs
/// taken and whether the iterations stalled (no decrease found, at the limit of f64). `f` is
/// kept equal to `Φβ + b`. Reports its epochs to the thread's watcher ([`crate::progress`]),
/// which may stop it.
pub(super) fn newton_epochs(
    problem: &GroupProblem,
    ws: &[usize],
    beta: &mut [f64],
    bias: &mut [f64],
    f: &mut [f64],
    tolerance: f64,
    budget: usize,
) -> Result<(usize, bool)> {
    const MODEL_EPOCHS: usize = 20;
    const ANDERSON: usize = 5;
    let (c, n) = (problem.outputs, problem.n);
    let block = problem.m * c;
    let (mut r, mut hess, mut top) = (vec![0.0; n * c], vec![0.0; n * c], vec![0.0; n]);
    let mut u = vec![0.0; n * c];
    let mut epochs = 0;
    loop {
        problem.residuals_into(f, &mut r);
        let worst = problem.ws_violation(ws, &r, beta);
        if problem.relative(worst) <= tolerance || epochs >= budget {
            return Ok((epochs, false));
        }
        crate::progress::report(crate::progress::Progress::Solver { epochs })?;
        hessian_rows(problem, f, &mut hess, &mut top);
        let lipschitz: Vec<f64> = ws
            .iter()
            .map(|&j| problem.weighted_block_top(j, &top) + problem.ridge)
            .collect();
        let intercept_lipschitz: f64 = top.iter().sum();
        // The model, minimised to 0.3 of the current violation (checked every few epochs).
        let mut model = Model::new(problem, ws, (&r, &hess), beta, bias);
        let mut history = vec![pack(ws, block, &model.x, &model.xb)];
        for inner in 1..=MODEL_EPOCHS.min(budget - epochs) {
            epochs += 1;
            model.epoch(&lipschitz, intercept_lipschitz, &mut u);
            history.push(pack(ws, block, &model.x, &model.xb));
            if history.len() == ANDERSON + 1 {
                model.extrapolate(&history, beta, bias);
                history = vec![pack(ws, block, &model.x, &model.xb)];
            }
            if inner % ANDERSON == 0 && model.violation() <= 0.3 * worst {
                break;
            }
        }
        if !line_search(problem, ws, &model, beta, bias, f) {
            // Not even a tiny step decreases the objective along the model's direction: the
            // point is as good as f64 resolves; the solve ends there.
            return Ok((epochs, true));
        }
    }
}

/// Backtracking from `(β, b)` along the direction `D` to the model's point, as skglm's
/// ProxNewton does it: the first of `t = 1, ½, ¼, …` at which the group penalty's change plus
/// `t` times the smooth part's derivative along `D` *at the trial point* is negative, which by
/// convexity bounds the objective's change from above, so the objective decreases; unlike a
/// comparison of objective values it holds up when those differences are below f64's rounding.
/// The step is then taken (`β`, `b` and the outputs `f` updated). False, and nothing moved,
/// when none is found: the point cannot be improved along `D` at f64's precision.
fn line_search(
    problem: &GroupProblem,
    ws: &[usize],
    model: &Model,
    beta: &mut [f64],
    bias: &mut [f64],
    f: &mut [f64],
) -> bool {
    const HALVINGS: usize = 40;
    let block = problem.m * problem.outputs;
    let x = &model.x;
    let (mut trial_beta, mut trial_f) = (beta.to_vec(), f.to_vec());
    let mut r = vec![0.0; f.len()];
    let mut t = 1.0;
    for _ in 0..HALVINGS {
        for &j in ws {
            for k in j * block..(j + 1) * block {
                trial_beta[k] = beta[k] + t * (x[k] - beta[k]);
            }
        }
        for ((tf, f), d) in trial_f.iter_mut().zip(f.iter()).zip(&model.d) {
            *tf = f + t * d;
        }
        problem.residuals_into(&trial_f, &mut r);
        let derivative = r.iter().zip(&model.d).map(|(r, d)| r * d).sum::<f64>()
            + problem.ridge
                * ws.iter()
                    .flat_map(|&j| j * block..(j + 1) * block)
                    .map(|k| trial_beta[k] * (x[k] - beta[k]))
                    .sum::<f64>();
        // The penalty's change over the working set, group by group without cancellation:
        // ‖a‖ − ‖b‖ = (‖a‖² − ‖b‖²)/(‖a‖ + ‖b‖) with ‖a‖² − ‖b‖² = Σ (a − b)(a + b).
        let change: f64 = ws
            .iter()
            .map(|&j| {
                let range = j * block..(j + 1) * block;
                let (a, b) = (&trial_beta[range.clone()], &beta[range]);
                let (na, nb) = (norm(a), norm(b));
                if na + nb == 0.0 {
                    0.0
                } else {
                    a.iter().zip(b).map(|(a, b)| (a - b) * (a + b)).sum::<f64>() / (na + nb)
                }
            })
            .sum();
        if problem.lambda * change + t * derivative < 0.0 {
            beta.copy_from_slice(&trial_beta);
            f.copy_from_slice(&trial_f);
            for (b, xb) in bias.iter_mut().zip(&model.xb) {
                *b += t * (xb - *b);
            }
            return true;
        }
        t *= 0.5;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;

    /// Rows with confident and uncertain outputs, weights including zero.
    fn case(loss: Loss) -> (GroupProblem, Vec<f64>) {
        let c = if loss == Loss::Softmax { 3 } else { 1 };
        let n = 5;
        let f: Vec<f64> = (0..n * c)
            .map(|k| [0.3, -1.2, 4.0, 0.0, -25.0, 2.5, 0.7][k % 7] * (1.0 + k as f64 / 10.0))
            .collect();
        let y: Vec<f64> = (0..n * c)
            .map(|k| f64::from(k % c == (k / c) % c))
            .collect();
        let weights = vec![1.0, 0.5, 0.0, 2.0, 1.5];
        let design = vec![1.0; n];
        let problem = GroupProblem::new(&design, &y, weights, 1, c, loss, 0.1, 0.0).unwrap();
        (problem, f)
    }

    /// `H u` from [`hessian_rows`] and [`add_hessian_products`] against central differences
    /// of the rows' gradients, and each row's bound against its Hessian's largest eigenvalue.
    #[test]
    fn hessian_products_match_finite_differences_and_the_bound_holds() {
        for loss in [Loss::Logistic, Loss::Softmax] {
            let (problem, f) = case(loss);
            let (n, c) = (problem.n, problem.outputs);
            let (mut hess, mut top) = (vec![0.0; n * c], vec![0.0; n]);
            hessian_rows(&problem, &f, &mut hess, &mut top);
            let u: Vec<f64> = (0..n * c)
                .map(|k| ((k * 7 % 5) as f64 - 2.0) / 3.0)
                .collect();
            let mut hu = vec![0.0; n * c];
            add_hessian_products(loss, c, &hess, &u, &mut hu);
            let eps = 1e-6;
            let shifted = |s: f64| -> Vec<f64> {
                let g: Vec<f64> = f.iter().zip(&u).map(|(f, u)| f + s * u).collect();
                let mut r = vec![0.0; n * c];
                problem.residuals_into(&g, &mut r);
                r
            };
            let (plus, minus) = (shifted(eps), shifted(-eps));
            for k in 0..n * c {
                let fd = (plus[k] - minus[k]) / (2.0 * eps);
                assert!(
                    (fd - hu[k]).abs() <= 1e-8,
                    "{loss:?} [{k}]: {fd} vs {}",
                    hu[k]
                );
            }
            for i in 0..n {
                // The row's Hessian from unit directions.
                let h = DMatrix::from_fn(c, c, |a, b| {
                    let mut e = vec![0.0; n * c];
                    e[i * c + b] = 1.0;
                    let mut out = vec![0.0; n * c];
                    add_hessian_products(loss, c, &hess, &e, &mut out);
                    out[i * c + a]
                });
                let largest = h
                    .symmetric_eigenvalues()
                    .iter()
                    .fold(0.0f64, |a, &b| a.max(b));
                assert!(
                    largest <= top[i] * (1.0 + 1e-12) && top[i] >= 1e-12 * problem.w[i],
                    "{loss:?} row {i}: eigenvalue {largest} above the bound {}",
                    top[i]
                );
            }
        }
    }
}
