//! The B-spline design in its sparse form: each row of a feature's block is a few non-zero
//! B-spline values times a small transform, less a centring row.
//!
//! A feature's design block is `Φ_j = S_j A_j − 1 o_jᵀ`: `S_j` (`n × (m+1)`) holds the raw
//! B-splines at the training values, of which a cubic spline has 4 non-zero in each row; `A_j`
//! (`(m+1) × m`) drops the redundant column and orthonormalises; `o_j = A_jᵀ c_j` subtracts
//! the training means `c_j`. Storing each row's 4 values and the index of the first, instead
//! of its `m` dense entries, reads 18 bytes per row and feature in f32 (34 in f64, with a
//! 2-byte index) where the dense design reads `4m` (`8m`): 2.2× (2.4×) fewer at `m = 10`. The
//! products with it are
//!
//! - `Φβ = Σ_j S_j (A_j β_j) − Σ_j o_jᵀβ_j`: the small `γ_j = A_j β_j` first, then each row
//!   gathers 4 entries of `γ_j` per feature;
//! - `Φᵀz`: each row scatters `v·z_i` into a small `δ_j` (`m + 1` entries per feature), then
//!   `A_jᵀ δ_j − o_j Σ_i z_i`.
//!
//! Rows are taken in fixed chunks whose size depends on `n` only; the chunks' partial sums in
//! `Φᵀz` are added in chunk order, so the bits do not depend on the threads. Both products are
//! one candle op each whose backward is the other, like [`super::ConstantMatrix`]'s.
//!
//! CPU only (f32 or f64); the dense design serves other devices.

use crate::error::{Error, Result};
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;
use std::sync::Arc;

mod fused;

/// A design `[n, p·m]` stored as each row's non-zero raw B-spline values per feature.
///
/// Build one from a fitted basis with [`crate::basis::SplineBasis::sparse_design`].
#[derive(Debug, Clone)]
pub struct SplineDesign {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    n: usize,
    p: usize,
    m: usize,
    /// Non-zero values per row and feature (`degree + 1`).
    width: usize,
    /// `[n, p]`: the raw function of each row's first non-zero value, `≤ m + 1 − width`.
    first: Vec<u16>,
    arrays: Arrays,
}

#[derive(Debug)]
enum Arrays {
    F32(Parts<f32>),
    F64(Parts<f64>),
}

/// A design's non-zero values `[n, p, width]` as they are stored: in its dtype.
#[derive(Debug, Clone)]
pub(crate) enum Values {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Values {
    /// Empty, for `capacity` values stored in `dtype` (f32 or f64).
    pub(crate) fn with_capacity(dtype: DType, capacity: usize) -> Result<Self> {
        match dtype {
            DType::F32 => Ok(Self::F32(Vec::with_capacity(capacity))),
            DType::F64 => Ok(Self::F64(Vec::with_capacity(capacity))),
            other => Err(Error::invalid(format!(
                "sparse design: f32 or f64, not {other:?}"
            ))),
        }
    }

    /// Appends `values`, rounded to the stored dtype.
    pub(crate) fn extend(&mut self, values: &[f64]) {
        match self {
            Self::F32(v) => v.extend(values.iter().map(|&x| x as f32)),
            Self::F64(v) => v.extend_from_slice(values),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F64(v) => v.len(),
        }
    }
}

#[derive(Debug, Clone)]
struct Parts<T> {
    /// `[n, p, width]`.
    values: Vec<T>,
    /// `[p, m+1, m]`.
    transform: Vec<T>,
    /// `[p, m]`.
    offset: Vec<T>,
}

impl<T: WithDType> Parts<T> {
    fn new(values: Vec<T>, transform: &[f64], offset: &[f64]) -> Self {
        let cast = |v: &[f64]| v.iter().map(|&x| T::from_f64(x)).collect();
        Self {
            values,
            transform: cast(transform),
            offset: cast(offset),
        }
    }
}

impl SplineDesign {
    /// A design of `n` rows and `p` features of `m` columns each from each row's `width`
    /// non-zero raw values `[n, p, width]` starting at raw function `first` `[n, p]`, the
    /// transforms `[p, m+1, m]` and the centring rows `[p, m]`, stored in `dtype` (f32 or f64).
    pub fn new(
        shape: (usize, usize, usize, usize),
        first: Vec<u16>,
        values: &[f64],
        transform: &[f64],
        offset: &[f64],
        dtype: DType,
    ) -> Result<Self> {
        let mut stored = Values::with_capacity(dtype, values.len())?;
        stored.extend(values);
        Self::from_values(shape, first, stored, transform, offset)
    }

    /// As [`SplineDesign::new`], with the values already stored in the design's dtype (so
    /// that building a large design holds them once, not in f64 beside).
    pub(crate) fn from_values(
        (n, p, m, width): (usize, usize, usize, usize),
        first: Vec<u16>,
        values: Values,
        transform: &[f64],
        offset: &[f64],
    ) -> Result<Self> {
        let raw = m + 1;
        let sizes = [
            ("first", first.len(), n * p),
            ("values", values.len(), n * p * width),
            ("transform", transform.len(), p * raw * m),
            ("offset", offset.len(), p * m),
        ];
        for (what, got, want) in sizes {
            if got != want {
                return Err(Error::invalid(format!(
                    "sparse design: {what} has {got} entries, expected {want}"
                )));
            }
        }
        if width == 0 || width > raw {
            return Err(Error::invalid(format!(
                "sparse design: {width} non-zero values per row of {raw} raw functions"
            )));
        }
        if let Some(pos) = first.iter().position(|&f| f as usize + width > raw) {
            return Err(Error::invalid(format!(
                "sparse design: row {} feature {} starts at raw function {} of {raw}",
                pos / p.max(1),
                pos % p.max(1),
                first[pos]
            )));
        }
        let arrays = match values {
            Values::F32(values) => Arrays::F32(Parts::new(values, transform, offset)),
            Values::F64(values) => Arrays::F64(Parts::new(values, transform, offset)),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                n,
                p,
                m,
                width,
                first,
                arrays,
            }),
        })
    }

    /// Number of rows `n`.
    pub fn rows(&self) -> usize {
        self.inner.n
    }

    /// Number of columns `p·m`.
    pub fn cols(&self) -> usize {
        self.inner.p * self.inner.m
    }

    /// The storage's dtype.
    pub fn dtype(&self) -> DType {
        match self.inner.arrays {
            Arrays::F32(_) => DType::F32,
            Arrays::F64(_) => DType::F64,
        }
    }

    /// Bytes stored and read per row and feature: `width` values in `dtype` and a 2-byte index.
    pub fn entry_bytes(width: usize, dtype: DType) -> usize {
        width * dtype.size_in_bytes() + std::mem::size_of::<u16>()
    }

    /// Bytes the products read per pass over the rows (values and indices).
    pub fn bytes_per_pass(&self) -> usize {
        let i = &self.inner;
        i.n * i.p * Self::entry_bytes(i.width, self.dtype())
    }

    /// The rows at `indices` (for mini-batches).
    pub fn select_rows(&self, indices: &[u32]) -> Result<Self> {
        let i = &self.inner;
        if let Some(&bad) = indices.iter().find(|&&r| r as usize >= i.n) {
            return Err(Error::invalid(format!(
                "sparse design: row {bad} of {} rows",
                i.n
            )));
        }
        let gather = |len: usize| {
            move |r: &u32| {
                let r = *r as usize;
                r * len..(r + 1) * len
            }
        };
        let first = indices
            .iter()
            .map(gather(i.p))
            .flat_map(|range| i.first[range].iter().copied())
            .collect();
        fn pick<T: Copy>(
            src: &Parts<T>,
            ranges: impl Iterator<Item = std::ops::Range<usize>>,
        ) -> Parts<T> {
            Parts {
                values: ranges.flat_map(|r| src.values[r].iter().copied()).collect(),
                transform: src.transform.clone(),
                offset: src.offset.clone(),
            }
        }
        let ranges = indices.iter().map(gather(i.p * i.width));
        let arrays = match &i.arrays {
            Arrays::F32(parts) => Arrays::F32(pick(parts, ranges)),
            Arrays::F64(parts) => Arrays::F64(pick(parts, ranges)),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                n: indices.len(),
                first,
                arrays,
                ..**i
            }),
        })
    }

    /// The same design with the columns of the features not in `keep` (`[p]`) set to zero.
    pub fn keep_features(&self, keep: &[bool]) -> Result<Self> {
        let i = &self.inner;
        if keep.len() != i.p {
            return Err(Error::invalid(format!(
                "sparse design: {} features to keep or drop, the design has {}",
                keep.len(),
                i.p
            )));
        }
        fn mask<T: WithDType>(src: &Parts<T>, keep: &[bool], m: usize) -> Parts<T> {
            let mut out = src.clone();
            let block = (m + 1) * m;
            for (j, _) in keep.iter().enumerate().filter(|(_, &k)| !k) {
                out.transform[j * block..(j + 1) * block].fill(T::zero());
                out.offset[j * m..(j + 1) * m].fill(T::zero());
            }
            out
        }
        let arrays = match &i.arrays {
            Arrays::F32(parts) => Arrays::F32(mask(parts, keep, i.m)),
            Arrays::F64(parts) => Arrays::F64(mask(parts, keep, i.m)),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                first: i.first.clone(),
                arrays,
                ..**i
            }),
        })
    }

    /// The dense matrix `[n, p·m]` in f64, row-major: each entry `Σ_t v_t A_j[f + t, k] − o_jk`,
    /// added in the order [`crate::SplineBasis::transform`] adds them (so an f64 design gives
    /// its bits back).
    pub fn dense_f64(&self) -> Vec<f64> {
        self.dense_f64_rows(0, self.inner.n)
    }

    /// Rows `start .. start + len` of [`SplineDesign::dense_f64`].
    ///
    /// # Panics
    ///
    /// If the rows are not all in the design (`start + len > n`).
    pub fn dense_f64_rows(&self, start: usize, len: usize) -> Vec<f64> {
        fn fill<T: WithDType>(d: &Inner, parts: &Parts<T>, start: usize, len: usize) -> Vec<f64> {
            let (p, m, raw, width) = (d.p, d.m, d.m + 1, d.width);
            let mut out = vec![0.0; len * p * m];
            for (i, row) in (start..).zip(out.chunks_exact_mut(p * m)) {
                for (j, block) in row.chunks_exact_mut(m).enumerate() {
                    let first = d.first[i * p + j] as usize;
                    let values = &parts.values[(i * p + j) * width..][..width];
                    for (o, &c) in block.iter_mut().zip(&parts.offset[j * m..][..m]) {
                        *o = -c.to_f64();
                    }
                    for (t, &v) in values.iter().enumerate() {
                        let a = &parts.transform[(j * raw + first + t) * m..][..m];
                        for (o, &a) in block.iter_mut().zip(a) {
                            *o += v.to_f64() * a.to_f64();
                        }
                    }
                }
            }
            out
        }
        let d = &*self.inner;
        assert!(
            start + len <= d.n,
            "rows {start}..{} of {}",
            start + len,
            d.n
        );
        match &d.arrays {
            Arrays::F32(parts) => fill(d, parts, start, len),
            Arrays::F64(parts) => fill(d, parts, start, len),
        }
    }

    /// `(1/n)·[Φ, 1]ᵀ[Φ, 1]·v` for `v` `[p·m + 1]`, in f64 (the stored values widened), with
    /// partial sums added in a fixed order: the automatic step size's power iteration reads
    /// the design through this, one pass per iteration and no copy of it.
    pub fn gram_product(&self, v: &[f64]) -> Result<Vec<f64>> {
        let d = &*self.inner;
        if v.len() != d.p * d.m + 1 {
            return Err(Error::invalid(format!(
                "Gram product of a {}-column design with a vector of {}",
                d.p * d.m,
                v.len()
            )));
        }
        if d.p * d.m == 0 {
            // `[1]` alone: every row's `s_i` is the intercept's `v`.
            return Ok(vec![v[0]]);
        }
        Ok(match &d.arrays {
            Arrays::F32(parts) => gram(d, parts, v),
            Arrays::F64(parts) => gram(d, parts, v),
        })
    }

    /// `Φ x` for `x` `[p·m, c]`; differentiable in `x`.
    pub fn mul(&self, x: &Tensor) -> Result<Tensor> {
        self.apply(x, false)
    }

    /// `Φᵀ z` for `z` `[n, c]`; differentiable in `z`.
    pub fn mul_t(&self, z: &Tensor) -> Result<Tensor> {
        self.apply(z, true)
    }

    fn apply(&self, x: &Tensor, transpose: bool) -> Result<Tensor> {
        let want = if transpose { self.rows() } else { self.cols() };
        match x.dims() {
            &[k, _] if k == want => {}
            dims => {
                return Err(Error::invalid(format!(
                    "cannot multiply a sparse {}×{} design{} by a {dims:?} tensor",
                    self.rows(),
                    self.cols(),
                    if transpose { " transposed" } else { "" }
                )))
            }
        }
        if !x.device().is_cpu() {
            return Err(Error::invalid(
                "the sparse design runs on the CPU only; use the dense design on a GPU",
            ));
        }
        if x.dtype() != self.dtype() {
            return Err(Error::invalid(format!(
                "sparse design in {:?} multiplied by a {:?} tensor",
                self.dtype(),
                x.dtype()
            )));
        }
        Ok(x.contiguous()?.apply_op1(Product {
            design: self.clone(),
            transpose,
        })?)
    }
}

/// `(1/n)·[Φ, 1]ᵀ[Φ, 1]·v` for `v` `[p·m + 1]`, in f64 whatever the stored dtype: the Gram
/// product of the automatic step size's power iteration ([`crate::inner::InnerStep`]).
fn gram<T: WithDType>(d: &Inner, parts: &Parts<T>, v: &[f64]) -> Vec<f64> {
    let (p, m, raw, width) = (d.p, d.m, d.m + 1, d.width);
    let f = |x: &T| x.to_f64();
    // γ_j = A_j v_j `[p, m+1]`, and the centring and intercept terms of `[Φ, 1] v`.
    let mut gamma = vec![0.0; p * raw];
    let mut shift = v[p * m];
    for j in 0..p {
        let vj = &v[j * m..][..m];
        for r in 0..raw {
            let a = &parts.transform[(j * raw + r) * m..][..m];
            gamma[j * raw + r] = a.iter().zip(vj).map(|(a, x)| f(a) * x).sum();
        }
        let o = &parts.offset[j * m..][..m];
        shift -= o.iter().zip(vj).map(|(o, x)| f(o) * x).sum::<f64>();
    }
    // Each chunk's `Σ_i s_i·(raw values of row i)` `[p, m+1]` followed by its `Σ_i s_i`.
    let rows = chunk_rows(d.n);
    let chunk = |index: usize| {
        let (start, len) = (index * rows, rows.min(d.n - index * rows));
        let mut partial = vec![0.0; p * raw + 1];
        let first = &d.first[start * p..(start + len) * p];
        let values = &parts.values[start * p * width..(start + len) * p * width];
        // Cubic B-splines with the width a constant the loops are unrolled for.
        if width == 4 {
            gram_rows(first, values, &gamma, shift, (p, raw, 4), &mut partial);
        } else {
            gram_rows(first, values, &gamma, shift, (p, raw, width), &mut partial);
        }
        partial
    };
    let total = sum_in_chunk_order(d.n.div_ceil(rows), p * raw + 1, parallel(d), chunk);
    let sum = total[p * raw];
    let n = d.n as f64;
    let mut out = vec![0.0; p * m + 1];
    for j in 0..p {
        let o = &parts.offset[j * m..][..m];
        for (k, out) in out[j * m..][..m].iter_mut().enumerate() {
            let column =
                (0..raw).map(|r| f(&parts.transform[(j * raw + r) * m + k]) * total[j * raw + r]);
            *out = (column.sum::<f64>() - f(&o[k]) * sum) / n;
        }
    }
    out[p * m] = sum / n;
    out
}

/// `partial = [Σ_i s_i·(raw values of row i) (p, m+1), Σ_i s_i] +=` a chunk's rows'
/// contributions, `s_i = Σ_j φ_ij·γ_j + shift` (see `gram`).
#[inline(always)]
fn gram_rows<T: WithDType>(
    first: &[u16],
    values: &[T],
    gamma: &[f64],
    shift: f64,
    (p, raw, width): (usize, usize, usize),
    partial: &mut [f64],
) {
    for (first, values) in first.chunks_exact(p).zip(values.chunks_exact(p * width)) {
        let term = |j: usize| {
            let g = &gamma[j * raw + first[j] as usize..][..width];
            let v = &values[j * width..][..width];
            v.iter().zip(g).map(|(v, g)| v.to_f64() * g).sum::<f64>()
        };
        // Four features into four accumulators, so that the adds need not wait on each other.
        let mut acc = [0.0f64; 4];
        for q in 0..p / 4 {
            for (u, acc) in acc.iter_mut().enumerate() {
                *acc += term(4 * q + u);
            }
        }
        let tail: f64 = (p / 4 * 4..p).map(term).sum();
        let s = shift + (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail;
        for (j, (&first, values)) in first.iter().zip(values.chunks_exact(width)).enumerate() {
            let out = &mut partial[j * raw + first as usize..][..width];
            for (o, v) in out.iter_mut().zip(values) {
                *o += s * v.to_f64();
            }
        }
        partial[p * raw] += s;
    }
}

/// Rows per chunk: a function of `n` only (at most 64 chunks, at least 512 rows each), so that
/// the partial sums of `Φᵀz` are always the same.
pub(crate) fn chunk_rows(n: usize) -> usize {
    n.div_ceil(64).max(512)
}

/// The partial sums `chunk(0)`, …, `chunk(chunks − 1)` of `len` values each (one per chunk of
/// rows), computed on rayon's pool when `parallel`, added element by element in chunk order
/// whichever thread computed each: so the bits do not depend on the threads.
pub(crate) fn sum_in_chunk_order<T: WithDType>(
    chunks: usize,
    len: usize,
    parallel: bool,
    chunk: impl Fn(usize) -> Vec<T> + Sync + Send,
) -> Vec<T> {
    let partials = map_chunks(chunks, parallel, chunk);
    let mut total = vec![T::zero(); len];
    for partial in &partials {
        for (t, &v) in total.iter_mut().zip(partial) {
            *t += v;
        }
    }
    total
}

/// `chunk(0)`, …, `chunk(chunks − 1)` in chunk order, computed on rayon's pool when
/// `parallel`.
pub(crate) fn map_chunks<R: Send>(
    chunks: usize,
    parallel: bool,
    chunk: impl Fn(usize) -> R + Sync + Send,
) -> Vec<R> {
    if parallel {
        (0..chunks).into_par_iter().map(chunk).collect()
    } else {
        (0..chunks).map(chunk).collect()
    }
}

/// Below this many stored values (n = 5 243 rows at p = 100) a product runs on the calling
/// thread: at n = 2000, p = 100 handing the chunks to a second thread made a pair of products
/// 1.0–1.5× slower (benches/scale/RESULTS.md).
pub(crate) const PARALLEL_MIN_VALUES: usize = 1 << 21;

fn parallel(d: &Inner) -> bool {
    d.n * d.p * d.width >= PARALLEL_MIN_VALUES && rayon::current_num_threads() > 1
}

/// The scalar types of the products, with their loops over one row's features for cubic
/// B-splines (4 non-zero values per feature).
///
/// Four features at a time go into four accumulators: with one, each multiply–add waits for
/// the previous one (the adder's latency), 4–5 cycles per feature. On x86-64 the loops are
/// SSE2 (every x86-64 CPU has it), written out because the compiler left the portable loop
/// scalar; they add in the portable loop's order, so both give the same bits.
trait Real: WithDType {
    /// `Σ_j Σ_t v_jt·γ[j·raw + first_j + t]`.
    fn dot4(first: &[u16], values: &[Self], gamma: &[Self], raw: usize) -> Self;

    /// `δ[j·raw + first_j + t] += s·v_jt` for every feature `j`.
    fn scatter4(first: &[u16], values: &[Self], s: Self, delta: &mut [Self], raw: usize);
}

/// Checks a row's slices against each other. With the invariant `first_j + 4 ≤ raw` that
/// [`SplineDesign::new`] checks for every row (and that row selection and feature masks keep,
/// since they copy checked indices) every access of the SIMD loops is then in bounds: their
/// safety rests on that invariant of this module's private data.
#[inline(always)]
fn check_row<T>(first: &[u16], values: &[T], target: &[T], raw: usize) {
    assert!(values.len() == 4 * first.len() && target.len() == first.len() * raw);
    debug_assert!(first.iter().all(|&f| f as usize + 4 <= raw));
}

#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn dot4_portable<T: WithDType>(first: &[u16], values: &[T], gamma: &[T], raw: usize) -> T {
    let term = |j: usize, t: usize| values[4 * j + t] * gamma[j * raw + first[j] as usize + t];
    let mut acc = [[T::zero(); 4]; 4];
    let quads = first.len() / 4;
    for q in 0..quads {
        for (u, acc) in acc.iter_mut().enumerate() {
            for (t, a) in acc.iter_mut().enumerate() {
                *a += term(4 * q + u, t);
            }
        }
    }
    for j in 4 * quads..first.len() {
        for (t, a) in acc[0].iter_mut().enumerate() {
            *a += term(j, t);
        }
    }
    let s: [T; 4] = std::array::from_fn(|t| (acc[0][t] + acc[1][t]) + (acc[2][t] + acc[3][t]));
    (s[0] + s[1]) + (s[2] + s[3])
}

#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn scatter4_portable<T: WithDType>(first: &[u16], values: &[T], s: T, delta: &mut [T], raw: usize) {
    for (j, &f) in first.iter().enumerate() {
        for t in 0..4 {
            delta[j * raw + f as usize + t] += values[4 * j + t] * s;
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
macro_rules! portable {
    ($t:ty) => {
        impl Real for $t {
            fn dot4(first: &[u16], values: &[Self], gamma: &[Self], raw: usize) -> Self {
                dot4_portable(first, values, gamma, raw)
            }
            fn scatter4(first: &[u16], values: &[Self], s: Self, delta: &mut [Self], raw: usize) {
                scatter4_portable(first, values, s, delta, raw)
            }
        }
    };
}
#[cfg(not(target_arch = "x86_64"))]
portable!(f32);
#[cfg(not(target_arch = "x86_64"))]
portable!(f64);

#[cfg(target_arch = "x86_64")]
impl Real for f32 {
    #[inline(always)]
    fn dot4(first: &[u16], values: &[f32], gamma: &[f32], raw: usize) -> f32 {
        use std::arch::x86_64::*;
        check_row(first, values, gamma, raw);
        let (v, g) = (values.as_ptr(), gamma.as_ptr());
        // SAFETY: in bounds by `check_row` and the design's invariant; SSE2 is part of x86-64.
        unsafe {
            let term = |j: usize| {
                let f = *first.get_unchecked(j) as usize;
                _mm_mul_ps(_mm_loadu_ps(v.add(4 * j)), _mm_loadu_ps(g.add(j * raw + f)))
            };
            let mut acc = [_mm_setzero_ps(); 4];
            let quads = first.len() / 4;
            for q in 0..quads {
                for (u, a) in acc.iter_mut().enumerate() {
                    *a = _mm_add_ps(*a, term(4 * q + u));
                }
            }
            for j in 4 * quads..first.len() {
                acc[0] = _mm_add_ps(acc[0], term(j));
            }
            let s = _mm_add_ps(_mm_add_ps(acc[0], acc[1]), _mm_add_ps(acc[2], acc[3]));
            let mut lanes = [0f32; 4];
            _mm_storeu_ps(lanes.as_mut_ptr(), s);
            (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
        }
    }

    #[inline(always)]
    fn scatter4(first: &[u16], values: &[f32], s: f32, delta: &mut [f32], raw: usize) {
        use std::arch::x86_64::*;
        check_row(first, values, delta, raw);
        let (v, d) = (values.as_ptr(), delta.as_mut_ptr());
        // SAFETY: as in `dot4`.
        unsafe {
            let s = _mm_set1_ps(s);
            for (j, &f) in first.iter().enumerate() {
                let at = d.add(j * raw + f as usize);
                let add = _mm_mul_ps(_mm_loadu_ps(v.add(4 * j)), s);
                _mm_storeu_ps(at, _mm_add_ps(_mm_loadu_ps(at), add));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl Real for f64 {
    #[inline(always)]
    fn dot4(first: &[u16], values: &[f64], gamma: &[f64], raw: usize) -> f64 {
        use std::arch::x86_64::*;
        check_row(first, values, gamma, raw);
        let (v, g) = (values.as_ptr(), gamma.as_ptr());
        // SAFETY: as in f32's `dot4`.
        unsafe {
            // Lanes 0–1 and 2–3 of feature j's four products.
            let term = |j: usize| {
                let f = *first.get_unchecked(j) as usize;
                let (vj, gj) = (v.add(4 * j), g.add(j * raw + f));
                (
                    _mm_mul_pd(_mm_loadu_pd(vj), _mm_loadu_pd(gj)),
                    _mm_mul_pd(_mm_loadu_pd(vj.add(2)), _mm_loadu_pd(gj.add(2))),
                )
            };
            let mut lo = [_mm_setzero_pd(); 4];
            let mut hi = [_mm_setzero_pd(); 4];
            let quads = first.len() / 4;
            for q in 0..quads {
                for u in 0..4 {
                    let (a, b) = term(4 * q + u);
                    lo[u] = _mm_add_pd(lo[u], a);
                    hi[u] = _mm_add_pd(hi[u], b);
                }
            }
            for j in 4 * quads..first.len() {
                let (a, b) = term(j);
                lo[0] = _mm_add_pd(lo[0], a);
                hi[0] = _mm_add_pd(hi[0], b);
            }
            let sum = |x: [__m128d; 4]| _mm_add_pd(_mm_add_pd(x[0], x[1]), _mm_add_pd(x[2], x[3]));
            let mut lanes = [0f64; 4];
            _mm_storeu_pd(lanes.as_mut_ptr(), sum(lo));
            _mm_storeu_pd(lanes.as_mut_ptr().add(2), sum(hi));
            (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
        }
    }

    #[inline(always)]
    fn scatter4(first: &[u16], values: &[f64], s: f64, delta: &mut [f64], raw: usize) {
        use std::arch::x86_64::*;
        check_row(first, values, delta, raw);
        let (v, d) = (values.as_ptr(), delta.as_mut_ptr());
        // SAFETY: as in f32's `dot4`.
        unsafe {
            let s = _mm_set1_pd(s);
            for (j, &f) in first.iter().enumerate() {
                let (at, vj) = (d.add(j * raw + f as usize), v.add(4 * j));
                _mm_storeu_pd(
                    at,
                    _mm_add_pd(_mm_loadu_pd(at), _mm_mul_pd(_mm_loadu_pd(vj), s)),
                );
                let at = at.add(2);
                let add = _mm_mul_pd(_mm_loadu_pd(vj.add(2)), s);
                _mm_storeu_pd(at, _mm_add_pd(_mm_loadu_pd(at), add));
            }
        }
    }
}

/// `Σ_t v_t g_t` over one row's features, `g` the gathered `γ_j` entries.
#[inline(always)]
fn row_dot<T: Real>(first: &[u16], values: &[T], gamma: &[T], raw: usize, width: usize) -> T {
    if width == 4 {
        return T::dot4(first, values, gamma, raw);
    }
    let mut acc = T::zero();
    for (j, (&f, v)) in first.iter().zip(values.chunks_exact(width)).enumerate() {
        let g = &gamma[j * raw + f as usize..][..width];
        for (&v, &g) in v.iter().zip(g) {
            acc += v * g;
        }
    }
    acc
}

/// `δ_j[f..f+width] += s·v` over one row's features.
#[inline(always)]
fn row_scatter<T: Real>(
    first: &[u16],
    values: &[T],
    s: T,
    delta: &mut [T],
    raw: usize,
    width: usize,
) {
    if width == 4 {
        return T::scatter4(first, values, s, delta, raw);
    }
    for (j, (&f, v)) in first.iter().zip(values.chunks_exact(width)).enumerate() {
        let d = &mut delta[j * raw + f as usize..][..width];
        for (d, &v) in d.iter_mut().zip(v) {
            *d += v * s;
        }
    }
}

/// A chunk of rows of the sparse design.
struct Rows<'a, T> {
    /// `[rows, p]`.
    first: &'a [u16],
    /// `[rows, p, width]`.
    values: &'a [T],
    p: usize,
    raw: usize,
    width: usize,
}

impl<'a, T> Rows<'a, T> {
    fn of(d: &'a Inner, parts: &'a Parts<T>, start: usize, len: usize) -> Self {
        let (p, width) = (d.p, d.width);
        Self {
            first: &d.first[start * p..(start + len) * p],
            values: &parts.values[start * p * width..(start + len) * p * width],
            p,
            raw: d.m + 1,
            width,
        }
    }
}

/// `out[i, c] = Σ_j φ_ij·γ_j[c] − centre[c]` for a chunk's rows, `γ` `[c, p, m+1]`.
#[inline(always)]
fn dot_rows<T: Real>(rows: &Rows<'_, T>, gamma: &[T], centre: &[T], out: &mut [T]) {
    let (p, raw, width, c) = (rows.p, rows.raw, rows.width, centre.len());
    for (i, out) in out.chunks_exact_mut(c).enumerate() {
        let first = &rows.first[i * p..][..p];
        let values = &rows.values[i * p * width..][..p * width];
        for (cc, o) in out.iter_mut().enumerate() {
            let g = &gamma[cc * p * raw..][..p * raw];
            *o = row_dot(first, values, g, raw, width) - centre[cc];
        }
    }
}

/// `partial = [δ (c, p, m+1), Σ_i z_i (c)] += ` a chunk's rows' contributions.
#[inline(always)]
fn scatter_rows<T: Real>(rows: &Rows<'_, T>, z: &[T], c: usize, partial: &mut [T]) {
    let (p, raw, width) = (rows.p, rows.raw, rows.width);
    let len = c * p * raw;
    for (i, zs) in z.chunks_exact(c).enumerate() {
        let first = &rows.first[i * p..][..p];
        let values = &rows.values[i * p * width..][..p * width];
        for (cc, &s) in zs.iter().enumerate() {
            row_scatter(
                first,
                values,
                s,
                &mut partial[cc * p * raw..][..p * raw],
                raw,
                width,
            );
            partial[len + cc] += s;
        }
    }
}

/// `γ` `[c, p, m+1]` (each `A_j x_j`) and the centring term `[c]` (`Σ_j o_j·x_j`) of `Φ x`.
fn gamma<T: Real>(d: &Inner, parts: &Parts<T>, x: &[T], c: usize) -> (Vec<T>, Vec<T>) {
    let (p, m, raw) = (d.p, d.m, d.m + 1);
    let mut gamma = vec![T::zero(); c * p * raw];
    let mut centre = vec![T::zero(); c];
    // Row by row of each transform (contiguous), for every output.
    for j in 0..p {
        let xj = &x[j * m * c..][..m * c];
        for r in 0..raw {
            let a = &parts.transform[(j * raw + r) * m..][..m];
            for cc in 0..c {
                let mut acc = T::zero();
                for (k, &a) in a.iter().enumerate() {
                    acc += a * xj[k * c + cc];
                }
                gamma[(cc * p + j) * raw + r] = acc;
            }
        }
        let o = &parts.offset[j * m..][..m];
        for (cc, centre) in centre.iter_mut().enumerate() {
            for (k, &o) in o.iter().enumerate() {
                *centre += o * xj[k * c + cc];
            }
        }
    }
    (gamma, centre)
}

/// `Φ x`, `x` `[p·m, c]` row-major; `[n, c]`.
fn forward<T: Real>(d: &Inner, parts: &Parts<T>, x: &[T], c: usize) -> Vec<T> {
    let (gamma, centre) = gamma(d, parts, x, c);
    let mut out = vec![T::zero(); d.n * c];
    let rows = chunk_rows(d.n);
    let chunk = |(index, out): (usize, &mut [T])| {
        let rows = Rows::of(d, parts, index * rows, out.len() / c);
        dot_rows(&rows, &gamma, &centre, out)
    };
    if parallel(d) {
        out.par_chunks_mut(rows * c).enumerate().for_each(chunk);
    } else {
        out.chunks_mut(rows * c).enumerate().for_each(chunk);
    }
    out
}

/// `Φᵀ z`, `z` `[n, c]` row-major; `[p·m, c]`.
fn transpose<T: Real>(d: &Inner, parts: &Parts<T>, z: &[T], c: usize) -> Vec<T> {
    let rows = chunk_rows(d.n);
    // Each chunk's `δ` `[c, p, m+1]` followed by its `Σ z_i` `[c]`.
    let len = c * d.p * (d.m + 1);
    let chunk = |index: usize| {
        let (start, len_rows) = (index * rows, rows.min(d.n - index * rows));
        let mut partial = vec![T::zero(); len + c];
        let rows = Rows::of(d, parts, start, len_rows);
        scatter_rows(
            &rows,
            &z[start * c..(start + len_rows) * c],
            c,
            &mut partial,
        );
        partial
    };
    let total = sum_in_chunk_order(d.n.div_ceil(rows), len + c, parallel(d), chunk);
    from_sums(d, parts, &total, c)
}

/// `Φᵀ z` `[p·m, c]` from the sums over the rows `[δ (c, p, m+1), Σ z_i (c)]`.
fn from_sums<T: Real>(d: &Inner, parts: &Parts<T>, total: &[T], c: usize) -> Vec<T> {
    let (p, m, raw) = (d.p, d.m, d.m + 1);
    let (delta, sums) = total.split_at(c * p * raw);
    // `A_jᵀ δ_j` row by row of `A_j` (contiguous), less `o_j Σ z`.
    let mut out = vec![T::zero(); p * m * c];
    for j in 0..p {
        for cc in 0..c {
            let d = &delta[(cc * p + j) * raw..][..raw];
            for (k, o) in parts.offset[j * m..][..m].iter().enumerate() {
                out[(j * m + k) * c + cc] = T::zero() - *o * sums[cc];
            }
            for (r, &d) in d.iter().enumerate() {
                let a = &parts.transform[(j * raw + r) * m..][..m];
                for (k, &a) in a.iter().enumerate() {
                    out[(j * m + k) * c + cc] += a * d;
                }
            }
        }
    }
    out
}

/// `x ↦ Φx` (or `Φᵀx`) with backward the other product.
struct Product {
    design: SplineDesign,
    transpose: bool,
}

impl CustomOp1 for Product {
    fn name(&self) -> &'static str {
        "sparse-design-product"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = &*self.design.inner;
        let (k, c) = layout.shape().dims2()?;
        let (want, out_rows) = if self.transpose {
            (d.n, d.p * d.m)
        } else {
            (d.p * d.m, d.n)
        };
        if k != want || !layout.is_contiguous() {
            candle_core::bail!("sparse design product: argument {:?}", layout.dims());
        }
        if c == 0 {
            let empty = match &d.arrays {
                Arrays::F32(_) => CpuStorage::F32(Vec::new()),
                Arrays::F64(_) => CpuStorage::F64(Vec::new()),
            };
            return Ok((empty, Shape::from((out_rows, 0))));
        }
        let range = layout.start_offset()..layout.start_offset() + k * c;
        let out = match (&d.arrays, x) {
            (Arrays::F32(parts), CpuStorage::F32(x)) => CpuStorage::F32(if self.transpose {
                transpose(d, parts, &x[range], c)
            } else {
                forward(d, parts, &x[range], c)
            }),
            (Arrays::F64(parts), CpuStorage::F64(x)) => CpuStorage::F64(if self.transpose {
                transpose(d, parts, &x[range], c)
            } else {
                forward(d, parts, &x[range], c)
            }),
            _ => candle_core::bail!("sparse design product: design and argument dtypes differ"),
        };
        Ok((out, Shape::from((out_rows, c))))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grad = grad_res.contiguous()?.apply_op1(Product {
            design: self.design.clone(),
            transpose: !self.transpose,
        })?;
        Ok(Some(grad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// The SIMD loops add in the portable loops' order: the same bits, for feature counts
    /// with and without a remainder of four.
    fn simd_matches_portable<T: Real>(cast: fn(f64) -> T) {
        let mut rng = StdRng::seed_from_u64(3);
        let raw = 7;
        for p in [1, 4, 7, 13] {
            let first: Vec<u16> = (0..p).map(|_| rng.random_range(0..=3)).collect();
            let mut random = |len: usize| -> Vec<T> {
                (0..len)
                    .map(|_| cast(rng.random_range(-2.0..2.0)))
                    .collect()
            };
            let (values, gamma) = (random(4 * p), random(p * raw));
            let bits = |v: T| v.to_f64().to_bits();
            assert_eq!(
                bits(T::dot4(&first, &values, &gamma, raw)),
                bits(dot4_portable(&first, &values, &gamma, raw)),
                "dot, p = {p}"
            );
            let s = cast(0.37);
            let (mut simd, mut portable) = (gamma.clone(), gamma);
            T::scatter4(&first, &values, s, &mut simd, raw);
            scatter4_portable(&first, &values, s, &mut portable, raw);
            let all = |v: &[T]| v.iter().map(|&x| bits(x)).collect::<Vec<_>>();
            assert_eq!(all(&simd), all(&portable), "scatter, p = {p}");
        }
    }

    #[test]
    fn simd_loops_give_the_portable_loops_bits() {
        simd_matches_portable::<f32>(|x| x as f32);
        simd_matches_portable::<f64>(|x| x);
    }
}
