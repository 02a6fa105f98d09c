//! Block coordinate descent on a working set, with Anderson extrapolation.

use super::problem::{norm, GroupProblem};
use crate::error::Result;
use nalgebra::{DMatrix, DVector};

/// The block step `new = prox_{λ/l ‖·‖}(old − g/l)`: a gradient step shrunk toward zero,
/// exactly zero when its norm is at most `λ/l`.
pub(super) fn prox_step(old: &[f64], g: &[f64], l: f64, lambda: f64, new: &mut [f64]) {
    for ((u, b), g) in new.iter_mut().zip(old).zip(g) {
        *u = b - g / l;
    }
    let nu = norm(new);
    let shrink = if nu > lambda / l {
        1.0 - lambda / (l * nu)
    } else {
        0.0
    };
    new.iter_mut().for_each(|u| *u *= shrink);
}

/// Block coordinate descent with Anderson extrapolation on the groups `ws` until their KKT
/// violation (and the intercept's) is below `tolerance` or `budget` epochs are spent; returns
/// the epochs taken. `f` is kept equal to `Φβ + b`. Reports its epochs to the thread's
/// watcher ([`crate::progress`]), which may stop it.
#[allow(clippy::too_many_arguments)]
pub(super) fn working_set_epochs(
    problem: &GroupProblem,
    ws: &[usize],
    (lipschitz, intercept_lipschitz): (&[f64], f64),
    beta: &mut [f64],
    bias: &mut [f64],
    f: &mut [f64],
    tolerance: f64,
    budget: usize,
) -> Result<usize> {
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
            prox_step(old, &g, l, lambda, &mut new);
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
            crate::progress::report(crate::progress::Progress::Solver { epochs: epoch })?;
            if !fresh {
                problem.residuals_into(f, &mut r);
                fresh = true;
            }
            if problem.relative(problem.ws_violation(ws, &r, beta)) <= tolerance {
                break;
            }
        }
    }
    Ok(epoch)
}

/// Anderson extrapolation of the iterates in `history` (K + 1 of them): the affine combination
/// of the last K that minimises the norm of the combined differences; `None` when the
/// differences are degenerate.
pub(super) fn anderson(history: &[Vec<f64>]) -> Option<Vec<f64>> {
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
pub(super) fn pack(ws: &[usize], block: usize, beta: &[f64], bias: &[f64]) -> Vec<f64> {
    let mut x: Vec<f64> = ws
        .iter()
        .flat_map(|&j| beta[j * block..(j + 1) * block].iter().copied())
        .collect();
    x.extend_from_slice(bias);
    x
}

/// The inverse of [`pack`]: `beta` with the groups `ws` from `x`, and the intercepts.
pub(super) fn unpack<'a>(
    ws: &[usize],
    block: usize,
    x: &'a [f64],
    beta: &[f64],
) -> (Vec<f64>, &'a [f64]) {
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
