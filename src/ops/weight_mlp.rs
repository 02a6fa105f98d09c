//! The weight net `ℓ ↦ σ(W₂ relu(W₁ ℓ + b₁) + b₂)` as one fused CPU pass over the rows.
//!
//! Written with candle's tensor operations, the MLP `1 → h → 1` materialises `n × h` activations
//! several times per call (the pre-activations, the ReLU output, their gradients, the mask), and
//! with `h = 100` those passes dominated the time of one outer iteration (docs/design.md §13.3: ≈ 85%). Here
//! the forward pass computes each row's output from its loss with the hidden layer in registers,
//! and the backward pass recomputes the row's pre-activations instead of storing them: nothing of
//! size `n × h` is ever allocated.
//!
//! The parameters travel as one vector `θ = [b₁ (h), W₁ (h), b₂ (1), W₂ (h)]`, the four weight-net
//! tensors flattened in [`crate::weightnet::PARAMETER_NAMES`] order and joined with
//! `Tensor::cat`, so that candle's autodiff routes `dθ` back to each parameter through the `cat`.
//!
//! Rows are processed in fixed chunks of [`ROW_CHUNK`] (in parallel on rayon's pool when a call
//! is large enough); the parameter gradients of the chunks are added in chunk order, so the
//! result is bit-identical whatever the number of threads. On x86-64 CPUs with AVX2 the loops run
//! as AVX2 kernels chosen at run time, bit-identical to the portable loops.
//!
//! Measured at n = 2000, h = 100, forward and backward together, one thread (2-core AMD EPYC,
//! `examples/bench_weightnet.rs`): f32 72 µs and f64 121 µs against 2200 µs and 3000 µs with
//! tensor operations.

use super::cpu_slice as slice;
use crate::error::{Error, Result};
use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Storage, Tensor, WithDType,
};
use rayon::prelude::*;

/// Rows per work unit. Fixed (not derived from the thread count) so that the order in which the
/// parameter gradients are summed never changes.
pub const ROW_CHUNK: usize = 256;

/// Hidden units processed together; the parameters are zero-padded to a multiple of this.
const LANES: usize = 8;

/// Below this many row × hidden-unit products a call runs on the calling thread.
///
/// Measured on 2 cores (AVX2 kernels, h = 100): alone, a second thread speeds forward + backward
/// up 1.0–1.4× at n = 2000, 1.5× at n = 10 000 and 1.7× at n = 50 000; but inside an outer
/// iteration at n = 2000 (`examples/bench_outer.rs`), where each call takes tens of
/// microseconds between matrix products, handing rows to the rayon pool made the iteration
/// 10–30% slower. So rows are split only from about n = 10 000 at h = 100.
pub(crate) const PARALLEL_MIN_WORK: usize = 1 << 20;

/// `w_i = σ(Σ_j W₂ⱼ relu(W₁ⱼ ℓ_i + b₁ⱼ) + b₂)` for losses `[n]` and packed parameters
/// `θ = [b₁, W₁, b₂, W₂]` (`[3h + 1]`), differentiable in both, without any `n × h` tensor.
///
/// CPU only, f32 or f64. The ReLU's derivative at exactly 0 is 1, as in candle's own `relu`
/// backward.
///
/// (Example: the `two_hidden_units_by_hand` test.)
pub fn weight_mlp(losses: &Tensor, theta: &Tensor) -> Result<Tensor> {
    if losses.rank() != 1 || theta.rank() != 1 {
        return Err(Error::invalid(format!(
            "weight_mlp takes losses [n] and parameters [3h + 1], got {:?} and {:?}",
            losses.dims(),
            theta.dims()
        )));
    }
    hidden_units(theta.elem_count()).map_err(Error::invalid)?;
    if losses.dtype() != theta.dtype() || !matches!(losses.dtype(), DType::F32 | DType::F64) {
        return Err(Error::invalid(format!(
            "weight_mlp needs f32 or f64 losses and parameters of one dtype, got {:?} and {:?}",
            losses.dtype(),
            theta.dtype()
        )));
    }
    if !losses.device().is_cpu() || !theta.device().is_cpu() {
        return Err(Error::invalid("weight_mlp runs on the CPU only"));
    }
    Ok(losses
        .contiguous()?
        .apply_op2(&theta.contiguous()?, WeightMlp)?)
}

/// `h` for a packed parameter vector of `len = 3h + 1` elements.
fn hidden_units(len: usize) -> std::result::Result<usize, String> {
    if len >= 4 && (len - 1).is_multiple_of(3) {
        Ok((len - 1) / 3)
    } else {
        Err(format!(
            "packed weight-net parameters have 3h + 1 elements with h ≥ 1, got {len}"
        ))
    }
}

/// The scalar types of the kernels.
pub(super) trait Real: WithDType {
    fn exp(self) -> Self;

    /// Runs the SIMD forward loop if this CPU has one for `Self`; `false` if not.
    fn forward_simd(p: &Params<Self>, x: &[Self], y: &mut [Self]) -> bool;

    /// Runs the SIMD backward loop if this CPU has one for `Self`; `false` if not.
    fn backward_simd(
        p: &Params<Self>,
        x: &[Self],
        d: &[Self],
        dx: &mut [Self],
        g: &mut Grads<Self>,
    ) -> bool;
}

/// Whether the AVX2 kernels may run (detected once, then cached by std).
#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

macro_rules! real {
    ($t:ident) => {
        impl Real for $t {
            fn exp(self) -> Self {
                $t::exp(self)
            }

            #[allow(unused_variables)]
            fn forward_simd(p: &Params<Self>, x: &[Self], y: &mut [Self]) -> bool {
                #[cfg(target_arch = "x86_64")]
                if has_avx2() {
                    // SAFETY: the CPU supports AVX2.
                    unsafe { avx2::$t::forward(p, x, y) };
                    return true;
                }
                false
            }

            #[allow(unused_variables)]
            fn backward_simd(
                p: &Params<Self>,
                x: &[Self],
                d: &[Self],
                dx: &mut [Self],
                g: &mut Grads<Self>,
            ) -> bool {
                #[cfg(target_arch = "x86_64")]
                if has_avx2() {
                    // SAFETY: the CPU supports AVX2.
                    unsafe { avx2::$t::backward(p, x, d, dx, g) };
                    return true;
                }
                false
            }
        }
    };
}

real!(f32);
real!(f64);

/// The parameters of one call, each zero-padded to a multiple of [`LANES`].
///
/// A padded unit has `W₁ = b₁ = W₂ = 0`: its pre-activation is 0, its output 0 and every
/// gradient through it is `0 · W₂ = 0`, so the padding changes no value.
pub(super) struct Params<T> {
    b1: Vec<[T; LANES]>,
    w1: Vec<[T; LANES]>,
    b2: T,
    w2: Vec<[T; LANES]>,
}

impl<T: Real> Params<T> {
    /// Blocks of [`LANES`] hidden units (the length [`Grads::zeros`] takes).
    pub(super) fn blocks(&self) -> usize {
        self.w1.len()
    }

    pub(super) fn unpack(theta: &[T]) -> candle_core::Result<Self> {
        let h = hidden_units(theta.len()).map_err(candle_core::Error::Msg)?;
        let pad = |v: &[T]| -> Vec<[T; LANES]> {
            v.chunks(LANES)
                .map(|c| {
                    let mut lane = [T::from_f64(0.0); LANES];
                    lane[..c.len()].copy_from_slice(c);
                    lane
                })
                .collect()
        };
        Ok(Self {
            b1: pad(&theta[..h]),
            w1: pad(&theta[h..2 * h]),
            b2: theta[2 * h],
            w2: pad(&theta[2 * h + 1..]),
        })
    }
}

/// Gradients with respect to the padded parameters, accumulated over rows: the same layout.
pub(super) type Grads<T> = Params<T>;

impl<T: Real> Grads<T> {
    pub(super) fn zeros(blocks: usize) -> Self {
        let zero = [T::from_f64(0.0); LANES];
        Self {
            b1: vec![zero; blocks],
            w1: vec![zero; blocks],
            b2: T::from_f64(0.0),
            w2: vec![zero; blocks],
        }
    }

    pub(super) fn add(&mut self, other: &Self) {
        for (a, b) in [
            (&mut self.b1, &other.b1),
            (&mut self.w1, &other.w1),
            (&mut self.w2, &other.w2),
        ] {
            for (a, b) in a.iter_mut().zip(b) {
                for k in 0..LANES {
                    a[k] += b[k];
                }
            }
        }
        self.b2 += other.b2;
    }

    /// Appends `[b₁, W₁, b₂, W₂]` without the padding to `out`.
    pub(super) fn write_packed(&self, h: usize, out: &mut Vec<T>) {
        let flat = |v: &[[T; LANES]]| v.iter().flatten().copied().take(h).collect::<Vec<T>>();
        out.extend(flat(&self.b1));
        out.extend(flat(&self.w1));
        out.push(self.b2);
        out.extend(flat(&self.w2));
    }
}

/// Sum of the lanes in a fixed order (pairwise).
#[inline(always)]
fn lane_sum<T: Real>(v: [T; LANES]) -> T {
    ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]))
}

/// Forward over a block of rows: `y_i = σ(o_i)`.
#[inline(always)]
fn forward_rows_generic<T: Real>(p: &Params<T>, x: &[T], y: &mut [T]) {
    let zero = T::from_f64(0.0);
    for (&xi, yi) in x.iter().zip(y.iter_mut()) {
        let mut acc = [zero; LANES];
        for ((b1, w1), w2) in p.b1.iter().zip(&p.w1).zip(&p.w2) {
            for k in 0..LANES {
                let z = w1[k] * xi + b1[k];
                let a = if z > zero { z } else { zero };
                acc[k] += w2[k] * a;
            }
        }
        *yi = finish(acc, p.b2);
    }
}

/// Backward over a block of rows. `d_i = ∂L/∂o_i` (the gradient before the sigmoid); writes
/// `∂L/∂ℓ_i` to `dx` and adds the parameter gradients of these rows to `g`.
#[inline(always)]
fn backward_rows_generic<T: Real>(p: &Params<T>, x: &[T], d: &[T], dx: &mut [T], g: &mut Grads<T>) {
    let zero = T::from_f64(0.0);
    for ((&xi, &di), dxi) in x.iter().zip(d).zip(dx.iter_mut()) {
        g.b2 += di;
        let mut acc = [zero; LANES];
        for (c, ((b1, w1), w2)) in p.b1.iter().zip(&p.w1).zip(&p.w2).enumerate() {
            let (gb1, gw1, gw2) = (&mut g.b1[c], &mut g.w1[c], &mut g.w2[c]);
            for k in 0..LANES {
                // The pre-activation, recomputed rather than stored.
                let z = w1[k] * xi + b1[k];
                let a = if z > zero { z } else { zero };
                // relu'(z) = 1 for z ≥ 0, as in candle's relu backward.
                let t = di * w2[k];
                let dz = if z >= zero { t } else { zero };
                gw2[k] += di * a;
                gb1[k] += dz;
                gw1[k] += dz * xi;
                acc[k] += dz * w1[k];
            }
        }
        *dxi = lane_sum(acc);
    }
}

pub(super) fn forward_rows<T: Real>(p: &Params<T>, x: &[T], y: &mut [T]) {
    if !T::forward_simd(p, x, y) {
        forward_rows_generic(p, x, y)
    }
}

pub(super) fn backward_rows<T: Real>(
    p: &Params<T>,
    x: &[T],
    d: &[T],
    dx: &mut [T],
    g: &mut Grads<T>,
) {
    if !T::backward_simd(p, x, d, dx, g) {
        backward_rows_generic(p, x, d, dx, g)
    }
}

/// `σ(Σ lanes + b₂)` for the forward pass, shared by every path.
#[inline(always)]
fn finish<T: Real>(acc: [T; LANES], b2: T) -> T {
    let (zero, one) = (T::from_f64(0.0), T::from_f64(1.0));
    // candle_nn's sigmoid: 1 / (e^{−o} + 1).
    one / ((zero - (lane_sum(acc) + b2)).exp() + one)
}

/// AVX2 versions of the two loops, chosen at run time where the CPU has AVX2.
///
/// Each accumulator receives the same additions in the same order as in the generic code, and
/// every operation is the same IEEE operation (no FMA), so both paths give bit-identical
/// results. The backward pass runs hidden-unit blocks in the outer loop and rows in the inner
/// one, which keeps the parameter-gradient accumulators in registers without changing any
/// accumulator's order of additions.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{finish, lane_sum, Grads, Params, LANES};
    use std::arch::x86_64::*;

    macro_rules! kernels {
        ($t:ty, $v:ty, $width:expr, $set1:ident, $zero:ident, $load:ident, $store:ident,
         $add:ident, $mul:ident, $max:ident, $cmp:ident, $and:ident, $fwd:ident, $bwd:ident) => {
            /// Vectors per block of `LANES` hidden units.
            const PARTS: usize = LANES / $width;

            #[target_feature(enable = "avx2")]
            pub(crate) fn $fwd(p: &Params<$t>, x: &[$t], y: &mut [$t]) {
                for (&xi, yi) in x.iter().zip(y.iter_mut()) {
                    let xv = $set1(xi);
                    let zero = $zero();
                    let mut acc = [zero; PARTS];
                    for ((b1, w1), w2) in p.b1.iter().zip(&p.w1).zip(&p.w2) {
                        for (part, acc) in acc.iter_mut().enumerate() {
                            let o = part * $width;
                            // SAFETY: o + $width ≤ LANES, the length of each block.
                            let (w1, b1, w2) = unsafe {
                                (
                                    $load(w1.as_ptr().add(o)),
                                    $load(b1.as_ptr().add(o)),
                                    $load(w2.as_ptr().add(o)),
                                )
                            };
                            let z = $add($mul(w1, xv), b1);
                            // max(z, +0) returns +0 for z ≤ 0 and NaN, like the generic code.
                            let a = $max(z, zero);
                            *acc = $add(*acc, $mul(w2, a));
                        }
                    }
                    let mut lanes = [0.0; LANES];
                    for (part, acc) in acc.iter().enumerate() {
                        // SAFETY: writes $width lanes inside `lanes`.
                        unsafe { $store(lanes.as_mut_ptr().add(part * $width), *acc) };
                    }
                    *yi = finish(lanes, p.b2);
                }
            }

            #[target_feature(enable = "avx2")]
            pub(crate) fn $bwd(
                p: &Params<$t>,
                x: &[$t],
                d: &[$t],
                dx: &mut [$t],
                g: &mut Grads<$t>,
            ) {
                let zero = $zero();
                // Per row, the lanes of ∂L/∂ℓ before their final sum.
                let mut row_acc = vec![[zero; PARTS]; x.len()];
                for c in 0..p.w1.len() {
                    for part in 0..PARTS {
                        let o = part * $width;
                        // SAFETY: o + $width ≤ LANES, the length of each block.
                        let (w1, b1, w2, mut gb1, mut gw1, mut gw2) = unsafe {
                            (
                                $load(p.w1[c].as_ptr().add(o)),
                                $load(p.b1[c].as_ptr().add(o)),
                                $load(p.w2[c].as_ptr().add(o)),
                                $load(g.b1[c].as_ptr().add(o)),
                                $load(g.w1[c].as_ptr().add(o)),
                                $load(g.w2[c].as_ptr().add(o)),
                            )
                        };
                        for ((&xi, &di), acc) in x.iter().zip(d).zip(row_acc.iter_mut()) {
                            let (xv, dv) = ($set1(xi), $set1(di));
                            let z = $add($mul(w1, xv), b1);
                            let a = $max(z, zero);
                            // relu'(z) = 1 for z ≥ 0 (ordered: false for NaN).
                            let dz = $and($cmp::<_CMP_GE_OQ>(z, zero), $mul(dv, w2));
                            gw2 = $add(gw2, $mul(dv, a));
                            gb1 = $add(gb1, dz);
                            gw1 = $add(gw1, $mul(dz, xv));
                            acc[part] = $add(acc[part], $mul(dz, w1));
                        }
                        // SAFETY: as for the loads.
                        unsafe {
                            $store(g.b1[c].as_mut_ptr().add(o), gb1);
                            $store(g.w1[c].as_mut_ptr().add(o), gw1);
                            $store(g.w2[c].as_mut_ptr().add(o), gw2);
                        }
                    }
                }
                for ((&di, acc), dxi) in d.iter().zip(&row_acc).zip(dx.iter_mut()) {
                    g.b2 += di;
                    let mut lanes = [0.0; LANES];
                    for (part, acc) in acc.iter().enumerate() {
                        // SAFETY: writes $width lanes inside `lanes`.
                        unsafe { $store(lanes.as_mut_ptr().add(part * $width), *acc) };
                    }
                    *dxi = lane_sum(lanes);
                }
            }
        };
    }

    pub(super) mod f32 {
        use super::*;
        kernels!(
            f32,
            __m256,
            8,
            _mm256_set1_ps,
            _mm256_setzero_ps,
            _mm256_loadu_ps,
            _mm256_storeu_ps,
            _mm256_add_ps,
            _mm256_mul_ps,
            _mm256_max_ps,
            _mm256_cmp_ps,
            _mm256_and_ps,
            forward,
            backward
        );
    }

    pub(super) mod f64 {
        use super::*;
        kernels!(
            f64,
            __m256d,
            4,
            _mm256_set1_pd,
            _mm256_setzero_pd,
            _mm256_loadu_pd,
            _mm256_storeu_pd,
            _mm256_add_pd,
            _mm256_mul_pd,
            _mm256_max_pd,
            _mm256_cmp_pd,
            _mm256_and_pd,
            forward,
            backward
        );
    }
}

fn parallel(n: usize, h: usize) -> bool {
    n > ROW_CHUNK && n.saturating_mul(h) >= PARALLEL_MIN_WORK && rayon::current_num_threads() > 1
}

fn forward<T: Real>(x: &[T], theta: &[T]) -> candle_core::Result<Vec<T>> {
    let p = Params::unpack(theta)?;
    let mut y = vec![T::from_f64(0.0); x.len()];
    if parallel(x.len(), p.w1.len() * LANES) {
        y.par_chunks_mut(ROW_CHUNK)
            .zip(x.par_chunks(ROW_CHUNK))
            .for_each(|(y, x)| forward_rows(&p, x, y));
    } else {
        forward_rows(&p, x, &mut y);
    }
    Ok(y)
}

/// `[∂L/∂ℓ (n), ∂L/∂θ (3h + 1)]` from the losses, parameters, output `y` and its gradient.
fn backward<T: Real>(x: &[T], theta: &[T], y: &[T], grad: &[T]) -> candle_core::Result<Vec<T>> {
    let p = Params::unpack(theta)?;
    let h = (theta.len() - 1) / 3;
    let n = x.len();
    if y.len() != n || grad.len() != n {
        candle_core::bail!(
            "weight-mlp-backward: {n} losses but {} outputs and {} gradients",
            y.len(),
            grad.len()
        );
    }
    let one = T::from_f64(1.0);
    // candle_nn's sigmoid backward: grad · ((1 − y) · y).
    let d: Vec<T> = grad
        .iter()
        .zip(y)
        .map(|(&g, &y)| g * ((one - y) * y))
        .collect();
    let mut out = vec![T::from_f64(0.0); n];
    let blocks = p.w1.len();
    let chunk = |(dx, (x, d)): (&mut [T], (&[T], &[T]))| {
        let mut g = Grads::zeros(blocks);
        backward_rows(&p, x, d, dx, &mut g);
        g
    };
    let partials: Vec<Grads<T>> = if parallel(n, blocks * LANES) {
        out.par_chunks_mut(ROW_CHUNK)
            .zip(x.par_chunks(ROW_CHUNK).zip(d.par_chunks(ROW_CHUNK)))
            .map(chunk)
            .collect()
    } else {
        out.chunks_mut(ROW_CHUNK)
            .zip(x.chunks(ROW_CHUNK).zip(d.chunks(ROW_CHUNK)))
            .map(chunk)
            .collect()
    };
    // Chunk order, whichever thread computed each chunk.
    let mut total = Grads::zeros(blocks);
    for g in &partials {
        total.add(g);
    }
    out.reserve(3 * h + 1);
    total.write_packed(h, &mut out);
    Ok(out)
}

/// The forward op: `(losses [n], θ [3h + 1]) ↦ w [n]`.
struct WeightMlp;

impl CustomOp2 for WeightMlp {
    fn name(&self) -> &'static str {
        "weight-mlp"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let n = l1.shape().elem_count();
        let out = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                CpuStorage::F32(forward::<f32>(slice(s1, l1)?, slice(s2, l2)?)?)
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                CpuStorage::F64(forward::<f64>(slice(s1, l1)?, slice(s2, l2)?)?)
            }
            _ => candle_core::bail!(
                "weight-mlp: needs f32 or f64 inputs of one dtype, got {:?} and {:?}",
                s1.dtype(),
                s2.dtype()
            ),
        };
        Ok((out, Shape::from(n)))
    }

    fn bwd(
        &self,
        losses: &Tensor,
        theta: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let n = losses.elem_count();
        let packed = losses.apply_op3_no_bwd(
            theta,
            &grad_res.contiguous()?,
            &WeightMlpBackward { y: res.clone() },
        )?;
        Ok((
            Some(packed.narrow(0, 0, n)?),
            Some(packed.narrow(0, n, theta.elem_count())?),
        ))
    }
}

/// The backward op: `(losses, θ, ∂L/∂w) ↦ [∂L/∂losses, ∂L/∂θ]`, given the forward output `y`.
///
/// Itself not differentiable: the exact hypergradient needs first-order derivatives only.
struct WeightMlpBackward {
    y: Tensor,
}

impl CustomOp3 for WeightMlpBackward {
    fn name(&self) -> &'static str {
        "weight-mlp-backward"
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
        let (y_storage, y_layout) = self.y.storage_and_layout();
        let Storage::Cpu(y) = &*y_storage else {
            candle_core::bail!("weight-mlp-backward: output not on the CPU")
        };
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(_), CpuStorage::F32(_), CpuStorage::F32(_)) => {
                CpuStorage::F32(backward::<f32>(
                    slice(s1, l1)?,
                    slice(s2, l2)?,
                    slice(y, y_layout)?,
                    slice(s3, l3)?,
                )?)
            }
            (CpuStorage::F64(_), CpuStorage::F64(_), CpuStorage::F64(_)) => {
                CpuStorage::F64(backward::<f64>(
                    slice(s1, l1)?,
                    slice(s2, l2)?,
                    slice(y, y_layout)?,
                    slice(s3, l3)?,
                )?)
            }
            _ => candle_core::bail!("weight-mlp-backward: mixed or unsupported dtypes"),
        };
        let shape = Shape::from(l1.shape().elem_count() + l2.shape().elem_count());
        Ok((out, shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    #[test]
    fn two_hidden_units_by_hand() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        // h = 2: b₁ = (0.5, −1), W₁ = (1, 2), b₂ = 0.1, W₂ = (−1, 0.5).
        let theta = Tensor::new(&[0.5f64, -1.0, 1.0, 2.0, 0.1, -1.0, 0.5], &dev)?;
        let losses = Tensor::new(&[0.0f64, 3.0], &dev)?;
        let w = weight_mlp(&losses, &theta)?.to_vec1::<f64>()?;
        let sigmoid = |o: f64| 1.0 / (1.0 + (-o).exp());
        // ℓ = 0: hidden (0.5, 0); ℓ = 3: hidden (3.5, 5).
        assert!((w[0] - sigmoid(-0.5 + 0.1)).abs() < 1e-15);
        assert!((w[1] - sigmoid(-3.5 + 2.5 + 0.1)).abs() < 1e-15);
        Ok(())
    }

    fn random(len: usize, lo: f64, hi: f64, rng: &mut StdRng) -> Vec<f64> {
        (0..len).map(|_| rng.random_range(lo..hi)).collect()
    }

    /// Whether this CPU runs the AVX2 kernels.
    fn avx2() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            has_avx2()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// One kernel's results: the forward outputs, then `∂L/∂ℓ` followed by the packed parameter
    /// gradients, as bits.
    type Bits = (Vec<u64>, Vec<u64>);

    fn bits<T: Real>(v: &[T]) -> Vec<u64> {
        v.iter().map(|x| x.to_f64().to_bits()).collect()
    }

    /// Runs a forward and a backward kernel on `(p, x, d)`.
    fn run<T: Real>(
        p: &Params<T>,
        x: &[T],
        d: &[T],
        h: usize,
        forward: impl Fn(&Params<T>, &[T], &mut [T]),
        backward: impl Fn(&Params<T>, &[T], &[T], &mut [T], &mut Grads<T>),
    ) -> Bits {
        let zero = T::from_f64(0.0);
        let mut y = vec![zero; x.len()];
        forward(p, x, &mut y);
        let mut g = Grads::zeros(p.w1.len());
        let mut packed = vec![zero; x.len()];
        backward(p, x, d, &mut packed, &mut g);
        g.write_packed(h, &mut packed);
        (bits(&y), bits(&packed))
    }

    /// The dispatched loops (and, where this CPU has AVX2, the AVX2 kernels called directly)
    /// give exactly the portable loops' bits (h = 13 exercises the padding).
    fn kernels_match_portable<T: Real>(cast: fn(f64) -> T) {
        let mut rng = StdRng::seed_from_u64(1);
        let (n, h) = (300, 13);
        let mut theta: Vec<T> = random(3 * h + 1, -1.0, 1.0, &mut rng)
            .into_iter()
            .map(cast)
            .collect();
        let mut x: Vec<T> = random(n, 0.0, 5.0, &mut rng)
            .into_iter()
            .map(cast)
            .collect();
        // Exact zeros: pre-activations exactly 0 where b₁ = 0.
        x[0] = cast(0.0);
        theta[2] = cast(0.0);
        let d: Vec<T> = random(n, -1.0, 1.0, &mut rng)
            .into_iter()
            .map(cast)
            .collect();
        let p = Params::unpack(&theta).unwrap();
        let portable = run(&p, &x, &d, h, forward_rows_generic, backward_rows_generic);
        // Sanity: the reference computed something.
        assert!(portable.0.iter().any(|&b| b != 0) && portable.1.iter().any(|&b| b != 0));
        let dispatched = run(&p, &x, &d, h, forward_rows, backward_rows);
        let name = std::any::type_name::<T>();
        let kernel = if avx2() { "AVX2" } else { "portable" };
        assert_eq!(
            dispatched, portable,
            "{name}: the dispatched ({kernel}) kernels differ from the portable loops"
        );
        let mut compared = vec![format!("dispatched ({kernel})")];
        if avx2() {
            let simd = run(
                &p,
                &x,
                &d,
                h,
                |p, x, y| assert!(T::forward_simd(p, x, y), "AVX2 detected but not run"),
                |p, x, d, dx, g| {
                    assert!(
                        T::backward_simd(p, x, d, dx, g),
                        "AVX2 detected but not run"
                    )
                },
            );
            assert_eq!(
                simd, portable,
                "{name}: the AVX2 kernels differ from the portable loops"
            );
            compared.push("AVX2".to_string());
        }
        eprintln!(
            "{name}: compared {} against the portable loops: bit-identical",
            compared.join(" and ")
        );
    }

    #[test]
    fn dispatched_and_simd_loops_are_bit_identical_to_the_portable_loops() {
        kernels_match_portable::<f32>(|v| v as f32);
        kernels_match_portable::<f64>(|v| v);
    }
}
