//! One unrolled step's products with the sparse design, fused into one pass over the rows for
//! the forward and one for the backward.
//!
//! A step needs the smooth gradient `Φᵀ(w∘g)` with `f = Φβ + b`, the losses `ℓ_i = ℓ(f_i, y_i)`,
//! their gradients `g_i = ∂ℓ/∂f_i` and the weights `w_i = V_θ(ℓ_i)`. Written as tensor
//! operations that is one pass over the design for `Φβ` and one for `Φᵀ(w∘g)`, and the backward
//! two more (`Φ·Ḡ` and `Φᵀ·∂L/∂f`). Here each block of rows small enough to stay in the cache
//! ([`BLOCK_BYTES`]) is read from memory once: its outputs `f_i`, then its losses and weights
//! (the weight net's own row kernels, [`crate::ops::weight_mlp`]), then the scatter of
//! `w_i g_i φ_i`, which finds the rows in the cache. The backward does the same with
//! `q_i = φ_i Ḡβ + Ḡb` beside `f_i`.
//!
//! The weight normalisation needs the mean of all weights before any row's share is known, so
//! the op returns the unnormalised sums and `Σ w_i`, and the caller divides (a scalar op that
//! autodiff differentiates): the backward then receives `∂L/∂Σw` as one number, and every
//! row's `∂L/∂w_i = q_i·g_i + ∂L/∂Σw` is known within the row's own pass.
//!
//! The op's output is one flat vector `[Φᵀ(w∘g) (P·C), Σ w_i g_i (C), Σ w_i, ℓ (n), w (n),
//! f (n·C)]` (see [`StepSums`]; the outputs `f` and weights are there for the backward, which
//! reads them back instead of computing them again); its inputs are `β` `[P, C]`, `b` `[C]` and the packed weight-net
//! parameters `θ` `[3h + 1]`. Rows are taken in the design's fixed chunks and the chunks'
//! partial sums added in chunk order, so the bits do not depend on the threads. The losses are
//! evaluated in f64 (their formulas as [`Loss::value`] and [`Loss::derivative`] write them)
//! and rounded to the design's dtype.
//!
//! The backward returns constants: a second derivative through a fused step would be zero.
//! Nothing takes one (the implicit mode's Hessian products use the two-pass gradient).

use super::{
    chunk_rows, dot_rows, from_sums, gamma, map_chunks, parallel, scatter_rows, Arrays, Inner,
    Parts, Real, Rows, SplineDesign,
};
use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::ops::cpu_slice as slice;
use crate::ops::weight_mlp::{backward_rows, forward_rows, Grads, Params, Real as NetReal};
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Storage, Tensor, WithDType};
use std::ops::Deref;

/// Block of rows (values and indices) read per round: the rows are read again from the cache
/// for the scatter, so a block must stay there (256 KiB: half a 512 KiB L2; at least 16 rows,
/// so larger where a row is above 16 KiB).
pub(crate) const BLOCK_BYTES: usize = 256 << 10;

/// One fused step's outputs, cut from the op's flat output (each still in the graph).
#[derive(Debug, Clone)]
pub(crate) struct StepSums {
    /// `Φᵀ(w∘g)` `[P, C]`, unnormalised and undivided by `n`.
    pub weighted: Tensor,
    /// `Σ_i w_i g_i` `[C]`.
    pub weighted_sum: Tensor,
    /// `Σ_i w_i`, a scalar.
    pub weight_sum: Tensor,
    /// The losses `ℓ_i` `[n]`.
    pub losses: Tensor,
    /// The weights `w_i = V_θ(ℓ_i)` `[n]`.
    pub weights: Tensor,
}

impl SplineDesign {
    /// One step's sums in one pass over the rows (see the module docs): `target` `[n, C]`, `β`
    /// `[P, C]`, `b` `[C]`, `θ` `[3h + 1]` all in the design's dtype on the CPU; `live` lets the
    /// weights' dependence on the losses into the backward (the exact derivative), otherwise
    /// the weight net's input is a constant (`detach_weight_input`).
    pub(crate) fn step_sums(
        &self,
        target: &Tensor,
        loss: Loss,
        live: bool,
        (beta, bias, theta): (&Tensor, &Tensor, &Tensor),
    ) -> Result<StepSums> {
        let d = &*self.inner;
        let (n, columns) = (d.n, d.p * d.m);
        let (rows, outputs) = target.dims2()?;
        let shapes_agree = rows == n
            && (outputs == 1 || loss == Loss::Softmax)
            && beta.dims() == [columns, outputs]
            && bias.dims() == [outputs]
            && theta.rank() == 1;
        if !shapes_agree {
            return Err(Error::invalid(format!(
                "fused step on a sparse {n}×{columns} design with the {loss} loss: targets {:?}, \
                 β {:?}, b {:?}, θ {:?}",
                target.dims(),
                beta.dims(),
                bias.dims(),
                theta.dims()
            )));
        }
        let tensors = [target, beta, bias, theta];
        if tensors
            .iter()
            .any(|t| t.dtype() != self.dtype() || !t.device().is_cpu())
        {
            return Err(Error::invalid(format!(
                "fused step: targets, β, b and θ must be {:?} on the CPU like the design",
                self.dtype()
            )));
        }
        let op = FusedStep {
            design: self.clone(),
            target: target.detach().contiguous()?,
            loss,
            live,
        };
        let flat = beta
            .contiguous()?
            .apply_op3(&bias.contiguous()?, &theta.contiguous()?, op)?;
        let weighted = columns * outputs;
        Ok(StepSums {
            weighted: flat.narrow(0, 0, weighted)?.reshape((columns, outputs))?,
            weighted_sum: flat.narrow(0, weighted, outputs)?,
            weight_sum: flat.narrow(0, weighted + outputs, 1)?.squeeze(0)?,
            losses: flat.narrow(0, weighted + outputs + 1, n)?,
            weights: flat.narrow(0, weighted + outputs + 1 + n, n)?,
        })
    }
}

/// The op: `(β, b, θ) ↦ [Φᵀ(w∘g), Σ w g, Σ w, ℓ, w, f]` for a fixed design, targets and loss.
struct FusedStep {
    design: SplineDesign,
    target: Tensor,
    loss: Loss,
    live: bool,
}

/// The weights and outputs `[w (n), f (n·C)]` of the op's flat output `res`.
fn rows_of(res: &Tensor, columns: usize, c: usize) -> candle_core::Result<Tensor> {
    let start = columns * c + c + 1;
    let n = (res.elem_count() - start) / (2 + c);
    res.narrow(0, start + n, n * (1 + c))
}

/// The values of a contiguous CPU tensor held by [`Tensor::storage_and_layout`], without
/// copying them.
fn values<'a, T: WithDType>(
    (storage, layout): &'a (impl Deref<Target = Storage>, &Layout),
) -> candle_core::Result<&'a [T]> {
    match &**storage {
        Storage::Cpu(s) => slice(s, layout),
        _ => candle_core::bail!("fused step: a tensor is not on the CPU"),
    }
}

impl CustomOp3 for FusedStep {
    fn name(&self) -> &'static str {
        "sparse-fused-step"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = &*self.design.inner;
        let c = l2.shape().elem_count();
        let target = self.target.storage_and_layout();
        let (out, len) = match &d.arrays {
            Arrays::F32(parts) => {
                let cx = self.context(d, parts, c, values(&target)?, slice(s3, l3)?)?;
                let out = forward(cx, slice(s1, l1)?, slice(s2, l2)?);
                let len = out.len();
                (CpuStorage::F32(out), len)
            }
            Arrays::F64(parts) => {
                let cx = self.context(d, parts, c, values(&target)?, slice(s3, l3)?)?;
                let out = forward(cx, slice(s1, l1)?, slice(s2, l2)?);
                let len = out.len();
                (CpuStorage::F64(out), len)
            }
        };
        Ok((out, Shape::from(len)))
    }

    fn bwd(
        &self,
        beta: &Tensor,
        bias: &Tensor,
        theta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = &*self.design.inner;
        let (gb, gbias, gtheta) = match &d.arrays {
            Arrays::F32(parts) => self.backward_in(parts, (beta, bias, theta), res, grad)?,
            Arrays::F64(parts) => self.backward_in(parts, (beta, bias, theta), res, grad)?,
        };
        Ok((Some(gb), Some(gbias), Some(gtheta)))
    }
}

impl FusedStep {
    /// The backward in the design's dtype `T`: `(∂L/∂β, ∂L/∂b, ∂L/∂θ)` as tensors.
    fn backward_in<T: Real + NetReal>(
        &self,
        parts: &Parts<T>,
        (beta, bias, theta): (&Tensor, &Tensor, &Tensor),
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let d = &*self.design.inner;
        let (c, columns) = (bias.elem_count(), d.p * d.m);
        let (theta, rows, grad) = (
            theta.contiguous()?,
            rows_of(res, columns, c)?.contiguous()?,
            grad.contiguous()?,
        );
        let held = [&self.target, &theta, &rows, &grad].map(|t| t.storage_and_layout());
        let context = self.context(d, parts, c, values(&held[0])?, values(&held[1])?)?;
        let theta_len = context.theta_len;
        let (a, b, t) = backward(context, values(&held[2])?, values(&held[3])?);
        Ok((
            Tensor::from_vec(a, (columns, c), beta.device())?,
            Tensor::from_vec(b, c, bias.device())?,
            Tensor::from_vec(t, theta_len, beta.device())?,
        ))
    }
}

/// What both passes read besides `β` and `b`.
struct Context<'a, T> {
    d: &'a Inner,
    parts: &'a Parts<T>,
    /// `[n, C]` row-major.
    target: &'a [T],
    c: usize,
    loss: Loss,
    live: bool,
    net: Params<T>,
    /// `3h + 1`.
    theta_len: usize,
}

impl FusedStep {
    /// The context of a pass on `C = c` outputs with the targets `target` and the packed
    /// parameters `theta`.
    fn context<'a, T: Real + NetReal>(
        &self,
        d: &'a Inner,
        parts: &'a Parts<T>,
        c: usize,
        target: &'a [T],
        theta: &[T],
    ) -> candle_core::Result<Context<'a, T>> {
        Ok(Context {
            d,
            parts,
            target,
            c,
            loss: self.loss,
            live: self.live,
            net: Params::unpack(theta)?,
            theta_len: theta.len(),
        })
    }
}

/// Rows per block: as many as fit [`BLOCK_BYTES`], at least 16.
fn block_rows<T: candle_core::WithDType>(d: &Inner) -> usize {
    let per_row = d.p * SplineDesign::entry_bytes(d.width, T::DTYPE);
    (BLOCK_BYTES / per_row.max(1)).max(16)
}

/// One row's loss `ℓ(f, y)`, writing its gradient `∂ℓ/∂f` to `g` (all `[C]`): the formulas of
/// [`Loss::value`] and [`Loss::derivative`] (src/loss.rs) for one row, in f64. The squared,
/// Huber and logistic losses have one output ([`SplineDesign::step_sums`] checks).
fn row_loss(loss: Loss, f: &[f64], y: &[f64], g: &mut [f64]) -> f64 {
    match loss {
        Loss::Squared => {
            let r = f[0] - y[0];
            g[0] = r;
            r * r * 0.5
        }
        Loss::Huber { delta } => {
            let r = f[0] - y[0];
            let c = r.clamp(-delta, delta);
            g[0] = c;
            c * r - c * c * 0.5
        }
        Loss::Logistic => {
            // softplus(f) = m + log(e^{−m} + e^{f−m}), m = max(f, 0), as `Loss::value` writes it.
            let m = f[0].max(0.0);
            let softplus = ((-m).exp() + (f[0] - m).exp()).ln() + m;
            g[0] = (f[0] - softplus).exp() - y[0];
            softplus - y[0] * f[0]
        }
        Loss::Softmax => {
            let m = f.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = f.iter().map(|&f| (f - m).exp()).sum::<f64>().ln() + m;
            let mut dot = 0.0;
            for ((g, &f), &y) in g.iter_mut().zip(f).zip(y) {
                *g = (f - lse).exp() - y;
                dot += y * f;
            }
            lse - dot
        }
    }
}

/// `H u` for the Hessian `H = ∂²ℓ/∂f²` of one row, from its outputs `f`, targets `y` and
/// gradient `g` (all `[C]`).
fn row_hessian_product(
    loss: Loss,
    (f, y, g): (&[f64], &[f64], &[f64]),
    u: &[f64],
    out: &mut [f64],
) {
    match loss {
        Loss::Squared => out[0] = u[0],
        // The clamp's derivative: 1 inside `[−δ, δ]` (a measure-zero choice at its ends).
        Loss::Huber { delta } => {
            out[0] = if (f[0] - y[0]).abs() <= delta {
                u[0]
            } else {
                0.0
            }
        }
        Loss::Logistic => {
            // σ(f) from `f` itself (`g + y` would cancel where y = 1 and σ is tiny).
            let m = f[0].max(0.0);
            let s = (f[0] - (((-m).exp() + (f[0] - m).exp()).ln() + m)).exp();
            out[0] = s * (1.0 - s) * u[0];
        }
        Loss::Softmax => {
            // diag(p) − p pᵀ with p = g + y.
            let pu: f64 = g.iter().zip(y).zip(u).map(|((g, y), u)| (g + y) * u).sum();
            for (((o, g), y), u) in out.iter_mut().zip(g).zip(y).zip(u) {
                *o = (g + y) * (u - pu);
            }
        }
    }
}

/// Per block of rows: the outputs `f` `[rows, C]`, the losses, their gradients and the weights.
struct Block<T> {
    f: Vec<T>,
    g: Vec<f64>,
    losses: Vec<T>,
    weights: Vec<T>,
}

impl<T: Real + NetReal> Block<T> {
    fn new(rows: usize, c: usize) -> Self {
        Self {
            f: vec![T::zero(); rows * c],
            g: vec![0.0; rows * c],
            losses: vec![T::zero(); rows],
            weights: vec![T::zero(); rows],
        }
    }

    /// `f_i = (φ_i γ − centre) + b` for the block's `len` rows, their losses, gradients and
    /// weights.
    fn evaluate(&mut self, cx: &Context<'_, T>, rows: &Rows<'_, T>, at: &Point<'_, T>) {
        let (c, len) = (cx.c, rows.first.len() / rows.p);
        let f = &mut self.f[..len * c];
        dot_rows(rows, at.gamma, at.centre, f);
        for f in f.chunks_exact_mut(c) {
            for (f, &b) in f.iter_mut().zip(at.bias) {
                *f += b;
            }
        }
        self.losses_and_gradients(cx, (at.start, len));
        forward_rows(&cx.net, &self.losses[..len], &mut self.weights[..len]);
    }

    /// The losses and their gradients of the block's `len` rows from their outputs `f`, the
    /// first being row `start`.
    fn losses_and_gradients(&mut self, cx: &Context<'_, T>, (start, len): (usize, usize)) {
        let c = cx.c;
        let (mut fr, mut yr) = (vec![0.0; c], vec![0.0; c]);
        let rows = self.f[..len * c]
            .chunks_exact(c)
            .zip(self.g.chunks_exact_mut(c));
        for (i, (f, g)) in rows.enumerate() {
            for (fr, f) in fr.iter_mut().zip(f) {
                *fr = f.to_f64();
            }
            for (yr, y) in yr.iter_mut().zip(&cx.target[(start + i) * c..][..c]) {
                *yr = y.to_f64();
            }
            self.losses[i] = T::from_f64(row_loss(cx.loss, &fr, &yr, g));
        }
    }
}

/// Where a block's outputs are evaluated: `γ` and the centring term of `Φβ`, the `b` added to
/// each row's outputs, and the block's first row.
struct Point<'a, T> {
    gamma: &'a [T],
    centre: &'a [T],
    bias: &'a [T],
    start: usize,
}

/// The forward pass: `[Φᵀ(w∘g) (P·C), Σ w g (C), Σ w, ℓ (n), w (n), f (n·C)]`.
fn forward<T: Real + NetReal>(cx: Context<'_, T>, beta: &[T], bias: &[T]) -> Vec<T> {
    let (d, c) = (cx.d, cx.c);
    let (gamma, centre) = gamma(d, cx.parts, beta, c);
    let (rows, block) = (chunk_rows(d.n), block_rows::<T>(d));
    let len = c * d.p * (d.m + 1);
    // Each chunk's `[δ (C, p, m+1), Σ w g (C), Σ w]`, losses, weights and outputs.
    let chunk = |index: usize| {
        let (start, end) = (index * rows, ((index + 1) * rows).min(d.n));
        let mut partial = vec![T::zero(); len + c + 1];
        let mut losses = Vec::with_capacity(end - start);
        let mut weights = Vec::with_capacity(end - start);
        let mut outputs = Vec::with_capacity((end - start) * c);
        let mut b = Block::new(block, c);
        let mut z = vec![T::zero(); block * c];
        for from in (start..end).step_by(block) {
            let count = block.min(end - from);
            let rows = Rows::of(d, cx.parts, from, count);
            let at = Point {
                gamma: &gamma,
                centre: &centre,
                bias,
                start: from,
            };
            b.evaluate(&cx, &rows, &at);
            // z_i = w_i g_i, scattered while the block is in the cache.
            for ((z, &w), g) in z
                .chunks_exact_mut(c)
                .zip(&b.weights[..count])
                .zip(b.g.chunks_exact(c))
            {
                for (z, &g) in z.iter_mut().zip(g) {
                    *z = T::from_f64(w.to_f64() * g);
                }
                partial[len + c] += w;
            }
            scatter_rows(&rows, &z[..count * c], c, &mut partial);
            losses.extend_from_slice(&b.losses[..count]);
            weights.extend_from_slice(&b.weights[..count]);
            outputs.extend_from_slice(&b.f[..count * c]);
        }
        (partial, [losses, weights, outputs])
    };
    let parts = map_chunks(d.n.div_ceil(rows), parallel(d), chunk);
    let mut total = vec![T::zero(); len + c + 1];
    for (partial, ..) in &parts {
        for (t, &v) in total.iter_mut().zip(partial) {
            *t += v;
        }
    }
    let mut out = from_sums(d, cx.parts, &total[..len + c], c);
    out.extend_from_slice(&total[len..]);
    out.reserve((2 + c) * d.n);
    for piece in 0..3 {
        for (_, rows) in &parts {
            out.extend_from_slice(&rows[piece]);
        }
    }
    out
}

/// The backward pass: `(∂L/∂β (P·C), ∂L/∂b (C), ∂L/∂θ (3h + 1))` from the forward's weights
/// and outputs `res` (`[w (n), f (n·C)]`) and the upstream gradient `grad` of the flat output.
fn backward<T: Real + NetReal>(
    cx: Context<'_, T>,
    res: &[T],
    grad: &[T],
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (d, c) = (cx.d, cx.c);
    let (columns, raw) = (d.p * d.m, d.m + 1);
    let (g_beta, rest) = grad.split_at(columns * c);
    let (g_bias, rest) = rest.split_at(c);
    let (g_sum, rest) = rest.split_at(1);
    let (g_losses, rest) = rest.split_at(d.n);
    let (g_weights, g_outputs) = rest.split_at(d.n);
    // The forward's weights and outputs, read back rather than computed again.
    let (weights, outputs) = res.split_at(d.n);
    let (g_sum, zero, one) = (g_sum[0], T::zero(), T::one());
    let (gamma_g, centre_g) = gamma(d, cx.parts, g_beta, c);
    let (rows, block) = (chunk_rows(d.n), block_rows::<T>(d));
    let len = c * d.p * raw;
    let blocks = cx.net.blocks();
    // Each chunk's `[δ (C, p, m+1), Σ ∂L/∂f (C)]` and its weight-net parameter gradients.
    let chunk = |index: usize| {
        let (start, end) = (index * rows, ((index + 1) * rows).min(d.n));
        let mut partial = vec![zero; len + c];
        let mut net = Grads::zeros(blocks);
        let mut b = Block::new(block, c);
        let (mut pre, mut dl) = (vec![zero; block], vec![zero; block]);
        let mut q = vec![zero; block * c];
        let (mut hu, mut u) = (vec![0.0; c], vec![0.0; c]);
        let (mut fr, mut yr) = (vec![0.0; c], vec![0.0; c]);
        let mut z = vec![zero; block * c];
        for from in (start..end).step_by(block) {
            let count = block.min(end - from);
            let rows = Rows::of(d, cx.parts, from, count);
            b.f[..count * c].copy_from_slice(&outputs[from * c..(from + count) * c]);
            b.weights[..count].copy_from_slice(&weights[from..from + count]);
            b.losses_and_gradients(&cx, (from, count));
            // q_i = φ_i Ḡβ + Ḡb: the upstream gradient of row i's `w_i g_i`.
            dot_rows(&rows, &gamma_g, &centre_g, &mut q[..count * c]);
            for i in 0..count {
                let q = &mut q[i * c..][..c];
                for (q, &gb) in q.iter_mut().zip(g_bias) {
                    *q += gb;
                }
                let g = &b.g[i * c..][..c];
                let dw: f64 = q.iter().zip(g).map(|(q, g)| q.to_f64() * g).sum::<f64>()
                    + g_sum.to_f64()
                    + g_weights[from + i].to_f64();
                let w = b.weights[i];
                // Through the sigmoid, as candle_nn's backward writes it: grad·((1 − w)·w).
                pre[i] = T::from_f64(dw) * ((one - w) * w);
            }
            backward_rows(
                &cx.net,
                &b.losses[..count],
                &pre[..count],
                &mut dl[..count],
                &mut net,
            );
            // z_i = ∂L/∂f_i, scattered while the block is in the cache.
            for (i, dl) in dl[..count].iter().enumerate() {
                let row = from + i;
                let w = b.weights[i].to_f64();
                let through_net = if cx.live { dl.to_f64() } else { 0.0 };
                let dloss = through_net + g_losses[row].to_f64();
                for cc in 0..c {
                    fr[cc] = b.f[i * c + cc].to_f64();
                    yr[cc] = cx.target[row * c + cc].to_f64();
                    u[cc] = w * q[i * c + cc].to_f64();
                }
                let g = &b.g[i * c..][..c];
                row_hessian_product(cx.loss, (&fr, &yr, g), &u, &mut hu);
                for cc in 0..c {
                    let upstream = g_outputs[row * c + cc].to_f64();
                    z[i * c + cc] = T::from_f64(hu[cc] + g[cc] * dloss + upstream);
                }
            }
            scatter_rows(&rows, &z[..count * c], c, &mut partial);
        }
        (partial, net)
    };
    let parts = map_chunks(d.n.div_ceil(rows), parallel(d), chunk);
    let mut total = vec![zero; len + c];
    let mut net = Grads::zeros(blocks);
    for (partial, grads) in &parts {
        for (t, &v) in total.iter_mut().zip(partial) {
            *t += v;
        }
        net.add(grads);
    }
    let g_beta = from_sums(d, cx.parts, &total, c);
    let g_bias = total[len..].to_vec();
    let mut g_theta = Vec::with_capacity(cx.theta_len);
    net.write_packed((cx.theta_len - 1) / 3, &mut g_theta);
    (g_beta, g_bias, g_theta)
}
