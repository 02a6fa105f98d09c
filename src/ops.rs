//! Custom candle operations.
//!
//! [`ConstantMatrix`] multiplies by a fixed matrix (the design Φ). candle's own `matmul`
//! differentiates with respect to *both* operands, so every unrolled step would compute and keep
//! an `n × P` gradient for the constant design (docs/design.md §13.2: 6–15× the memory, 2–3 extra passes).
//! Here the backward pass is only the product with the transpose, formed once as a view.
//!
//! [`weight_mlp`] is the weight net's forward and backward as one fused pass over the rows, with
//! no `n × h` activations (see its module docs).

use crate::error::{Error, Result};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp1, Layout, Shape, Storage, Tensor};

/// A scalar tensor of any float dtype as `f64`.
pub(crate) fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?)
}

/// A contiguous CPU slice of `T` from a custom op's storage and its layout.
fn cpu_slice<'a, T: candle_core::WithDType>(
    s: &'a CpuStorage,
    l: &Layout,
) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&s.as_slice::<T>()?[start..end]),
        None => candle_core::bail!("a custom op's input is not contiguous"),
    }
}

mod spline_design;
mod weight_mlp;
pub use spline_design::SplineDesign;
pub(crate) use spline_design::Values as SparseValues;
#[cfg(test)]
pub(crate) use spline_design::PARALLEL_MIN_VALUES as SPARSE_PARALLEL_MIN_VALUES;
pub use weight_mlp::weight_mlp;
#[cfg(test)]
pub(crate) use weight_mlp::PARALLEL_MIN_WORK;

/// A matrix `A` (`r × k`) that takes part in products but never receives a gradient.
///
/// `A` is stored once, contiguously; `Aᵀ` is a transposed view of the same storage, which gemm
/// multiplies by streaming `A`'s rows. A second, contiguous copy of `Aᵀ` would double the memory
/// the products stream through: with a 2000 × 1000 design, a training and a meta set, that pushed
/// the working set out of a 32 MiB L3 cache and made each matrix–vector product 1.2× (f64) to
/// 1.7× (f32) slower.
///
/// (Example: the `products_with_a_and_its_transpose` test.)
#[derive(Debug, Clone)]
pub struct ConstantMatrix {
    a: Tensor,
    a_t: Tensor,
}

impl ConstantMatrix {
    /// Wraps a rank-2 tensor, detached from any graph.
    pub fn new(a: &Tensor) -> Result<Self> {
        if a.rank() != 2 {
            return Err(Error::invalid(format!(
                "a constant matrix must have rank 2, got shape {:?}",
                a.dims()
            )));
        }
        let a = a.detach().contiguous()?;
        let a_t = a.t()?;
        Ok(Self { a, a_t })
    }

    /// The matrix `A`.
    pub fn matrix(&self) -> &Tensor {
        &self.a
    }

    /// `(1/r)·[A, 1]ᵀ[A, 1]·v` for `v` `[k + 1]`, in f64 (the stored values widened), one pass
    /// over `A`'s rows in fixed chunks whose partial sums are added in order: the automatic
    /// step size's power iteration, without a copy of the design. CPU only.
    pub fn gram_product(&self, v: &[f64]) -> Result<Vec<f64>> {
        let (r, k) = self.a.dims2()?;
        if v.len() != k + 1 {
            return Err(Error::invalid(format!(
                "Gram product of a {k}-column matrix with a vector of {}",
                v.len()
            )));
        }
        if k == 0 {
            // `[1]` alone: every row's `s_i` is the intercept's `v`.
            return Ok(vec![v[0]]);
        }
        let (storage, layout) = self.a.storage_and_layout();
        let values = layout.start_offset()..layout.start_offset() + r * k;
        match &*storage {
            Storage::Cpu(CpuStorage::F32(a)) => Ok(dense_gram(&a[values], r, k, v)),
            Storage::Cpu(CpuStorage::F64(a)) => Ok(dense_gram(&a[values], r, k, v)),
            Storage::Cpu(_) => Err(Error::invalid(
                "Gram product: an f32 or f64 matrix expected",
            )),
            _ => Err(Error::invalid(
                "Gram product: the matrix must be on the CPU",
            )),
        }
    }

    /// `A x` for `x` of shape `[k, c]`; differentiable in `x` only.
    pub fn mul(&self, x: &Tensor) -> Result<Tensor> {
        apply(&self.a, &self.a_t, x)
    }

    /// `Aᵀ z` for `z` of shape `[r, c]`; differentiable in `z` only.
    pub fn mul_t(&self, z: &Tensor) -> Result<Tensor> {
        apply(&self.a_t, &self.a, z)
    }
}

/// `(1/r)·[A, 1]ᵀ[A, 1]·v` for a row-major `A` `[r, k]`: each row's `s_i = a_iᵀv₁..k + v_{k+1}`,
/// then `Σ_i s_i·[a_i, 1]`, by chunks of rows ([`spline_design::chunk_rows`]: a function of
/// `r` only) added in chunk order, so that the bits do not depend on the threads.
fn dense_gram<T: candle_core::WithDType>(a: &[T], r: usize, k: usize, v: &[f64]) -> Vec<f64> {
    let rows = spline_design::chunk_rows(r);
    let chunk = |index: usize| {
        let mut partial = vec![0.0; k + 1];
        let start = index * rows;
        let block = &a[start * k..(start + rows).min(r) * k];
        for row in block.chunks_exact(k) {
            // Four accumulators, so that the adds need not wait on each other.
            let mut acc = [0.0f64; 4];
            let (quads, rest) = row.split_at(k / 4 * 4);
            for (x, v) in quads.chunks_exact(4).zip(v.chunks_exact(4)) {
                for t in 0..4 {
                    acc[t] += x[t].to_f64() * v[t];
                }
            }
            let tail: f64 = rest
                .iter()
                .zip(&v[k / 4 * 4..k])
                .map(|(x, v)| x.to_f64() * v)
                .sum();
            let s = (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail + v[k];
            for (o, x) in partial.iter_mut().zip(row) {
                *o += s * x.to_f64();
            }
            partial[k] += s;
        }
        partial
    };
    let parallel = r * k >= spline_design::PARALLEL_MIN_VALUES && rayon::current_num_threads() > 1;
    let total = spline_design::sum_in_chunk_order(r.div_ceil(rows), k + 1, parallel, chunk);
    total.iter().map(|t| t / r as f64).collect()
}

fn apply(a: &Tensor, a_t: &Tensor, x: &Tensor) -> Result<Tensor> {
    let (k, _) = x.dims2()?;
    if k != a.dims()[1] {
        return Err(Error::invalid(format!(
            "cannot multiply a {:?} matrix by a {:?} tensor",
            a.dims(),
            x.dims()
        )));
    }
    Ok(x.contiguous()?.apply_op1(LeftMul {
        a: a.clone(),
        a_t: a_t.clone(),
    })?)
}

/// Products with at least this many entries of `A` (16 MiB in f32) are split into [`BLOCKS`]
/// blocks of the design's rows.
const SPLIT_MIN_ENTRIES: usize = 1 << 22;

/// Blocks of a split product. Fixed, not derived from the threads, so that a product's bits
/// depend on its size only; few, since each gemm call has a fixed cost (with blocks of 2048
/// rows, one thread lost 20% at n = 20 000).
const BLOCKS: usize = 8;

/// `A x` on the CPU. gemm runs a matrix–vector product on one thread whatever it is given, so a
/// large product is split into blocks of the design's rows that run on rayon's pool, one gemm
/// each: `Φβ` by blocks of its rows, `Φᵀr` by blocks of the sum, the partial products added in
/// block order. Products below [`SPLIT_MIN_ENTRIES`] (the cache-resident sizes, where a second
/// thread does not help) and wide ones are one gemm. (Measured in benches/scale/RESULTS.md.)
fn in_blocks(
    a: &CpuStorage,
    a_layout: &Layout,
    x: &CpuStorage,
    x_layout: &Layout,
    (b, r, c, k): (usize, usize, usize, usize),
) -> candle_core::Result<CpuStorage> {
    use rayon::prelude::*;
    let whole = || a.matmul(x, (b, r, c, k), a_layout, x_layout);
    if r.saturating_mul(k) < SPLIT_MIN_ENTRIES || c > 16 {
        return whole();
    }
    // One gemm per block of `len` design rows, in block order: `product(start, rows)`.
    let blocks =
        |len: usize, product: &(dyn Fn(usize, usize) -> candle_core::Result<CpuStorage> + Sync)| {
            let size = len.div_ceil(BLOCKS);
            (0..len.div_ceil(size))
                .into_par_iter()
                .map(|i| product(i * size, size.min(len - i * size)))
                .collect::<candle_core::Result<Vec<CpuStorage>>>()
        };
    if a_layout.is_contiguous() {
        // Φβ: each block of rows gives its rows of the result.
        let parts = blocks(r, &|start, rows| {
            a.matmul(
                x,
                (1, rows, c, k),
                &a_layout.narrow(0, start, rows)?,
                x_layout,
            )
        })?;
        return combine(&parts, false);
    }
    if a_layout.stride() == [1, r] {
        // Φᵀr: `A = Φᵀ`; each block of Φ's rows (A's columns) gives a partial sum.
        let parts = blocks(k, &|start, rows| {
            let a_sub = a_layout.narrow(1, start, rows)?;
            a.matmul(
                x,
                (1, r, c, rows),
                &a_sub,
                &x_layout.narrow(0, start, rows)?,
            )
        })?;
        return combine(&parts, true);
    }
    whole()
}

/// The blocks' values one after the other, or (`add`) added element by element in block
/// order.
fn combine(blocks: &[CpuStorage], add: bool) -> candle_core::Result<CpuStorage> {
    fn join<T: candle_core::WithDType>(
        blocks: &[CpuStorage],
        add: bool,
    ) -> candle_core::Result<Vec<T>> {
        let mut out: Vec<T> = Vec::new();
        for block in blocks {
            let values = block.as_slice::<T>()?;
            if add && !out.is_empty() {
                for (o, &v) in out.iter_mut().zip(values) {
                    *o += v;
                }
            } else {
                out.extend_from_slice(values);
            }
        }
        Ok(out)
    }
    match blocks.first() {
        Some(CpuStorage::F32(_)) => Ok(CpuStorage::F32(join(blocks, add)?)),
        Some(CpuStorage::F64(_)) => Ok(CpuStorage::F64(join(blocks, add)?)),
        _ => candle_core::bail!("constant matmul: blocks of f32 or f64 expected"),
    }
}

/// `x ↦ A x` with backward `g ↦ Aᵀ g`.
struct LeftMul {
    a: Tensor,
    a_t: Tensor,
}

impl LeftMul {
    fn dims(&self, layout: &Layout) -> candle_core::Result<((usize, usize, usize, usize), Shape)> {
        let (r, k) = self.a.dims2()?;
        let (k2, c) = layout.shape().dims2()?;
        if k != k2 || !layout.is_contiguous() {
            candle_core::bail!(
                "constant matmul: {:?} by {:?}",
                self.a.dims(),
                layout.dims()
            );
        }
        Ok(((1, r, c, k), Shape::from((r, c))))
    }
}

impl CustomOp1 for LeftMul {
    fn name(&self) -> &'static str {
        "constant-matmul"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (bmnk, shape) = self.dims(layout)?;
        let (storage, a_layout) = self.a.storage_and_layout();
        match &*storage {
            Storage::Cpu(a) => Ok((in_blocks(a, a_layout, x, layout, bmnk)?, shape)),
            _ => candle_core::bail!("constant matmul: matrix and argument on different devices"),
        }
    }

    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (bmnk, shape) = self.dims(layout)?;
        let (storage, a_layout) = self.a.storage_and_layout();
        match &*storage {
            Storage::Cuda(a) => Ok((a.matmul(x, bmnk, a_layout, layout)?, shape)),
            _ => candle_core::bail!("constant matmul: matrix and argument on different devices"),
        }
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grad = grad_res.contiguous()?.apply_op1(LeftMul {
            a: self.a_t.clone(),
            a_t: self.a.clone(),
        })?;
        Ok(Some(grad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    #[test]
    fn products_with_a_and_its_transpose() -> Result<()> {
        let a = Tensor::new(&[[1.0f64, 2.0], [3.0, 4.0], [5.0, 6.0]], &Device::Cpu)?;
        let a = ConstantMatrix::new(&a)?;
        let x = Tensor::new(&[[1.0f64], [1.0]], &Device::Cpu)?;
        assert_eq!(
            a.mul(&x)?.flatten_all()?.to_vec1::<f64>()?,
            vec![3.0, 7.0, 11.0]
        );
        let z = Tensor::new(&[[1.0f64], [0.0], [1.0]], &Device::Cpu)?;
        assert_eq!(
            a.mul_t(&z)?.flatten_all()?.to_vec1::<f64>()?,
            vec![6.0, 8.0]
        );
        Ok(())
    }

    #[test]
    fn backward_is_the_transpose_product_and_the_matrix_gets_no_gradient() {
        let dev = Device::Cpu;
        let a = Tensor::new(&[[1.0f64, 2.0], [3.0, 4.0], [5.0, 6.0]], &dev).unwrap();
        let a_var = Var::from_tensor(&a).unwrap();
        let x = Var::new(&[[0.5f64, -1.0], [2.0, 1.0]], &dev).unwrap();
        let c = ConstantMatrix::new(a_var.as_tensor()).unwrap();
        let y = c.mul(x.as_tensor()).unwrap();
        assert_eq!(
            y.to_vec2::<f64>().unwrap(),
            a.matmul(x.as_tensor()).unwrap().to_vec2::<f64>().unwrap()
        );
        let weights = Tensor::new(&[[1.0f64, 0.0], [0.0, 2.0], [1.0, 1.0]], &dev).unwrap();
        let grads = (y * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gx = grads.get(x.as_tensor()).expect("gradient reaches x");
        assert_eq!(
            gx.to_vec2::<f64>().unwrap(),
            a.t()
                .unwrap()
                .matmul(&weights)
                .unwrap()
                .to_vec2::<f64>()
                .unwrap()
        );
        assert!(
            grads.get(a_var.as_tensor()).is_none(),
            "A must stay constant"
        );
    }

    /// A product large enough to be split: the same values as one gemm (to rounding), and
    /// the same bits on 1 and 2 threads.
    #[test]
    fn split_products_match_one_gemm_and_do_not_depend_on_the_threads() -> Result<()> {
        let dev = Device::Cpu;
        // Rows not a multiple of the blocks, so that the last block is shorter.
        let (r, k) = (4099, SPLIT_MIN_ENTRIES / 4096 + 1);
        let values: Vec<f64> = (0..r * k)
            .map(|i| ((i * 37 % 101) as f64 - 50.0) / 7.0)
            .collect();
        let a = Tensor::from_vec(values, (r, k), &dev)?;
        let x = Tensor::from_vec(
            (0..k).map(|i| (i % 13) as f64 - 6.0).collect(),
            (k, 1),
            &dev,
        )?;
        let z = Tensor::from_vec(
            (0..r).map(|i| (i % 11) as f64 / 3.0).collect(),
            (r, 1),
            &dev,
        )?;
        let c = ConstantMatrix::new(&a)?;
        let close = |got: &Tensor, want: &Tensor| -> Result<()> {
            let (got, want) = (
                got.flatten_all()?.to_vec1::<f64>()?,
                want.flatten_all()?.to_vec1::<f64>()?,
            );
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-10 * w.abs().max(1.0), "{g} vs {w}");
            }
            Ok(())
        };
        close(&c.mul(&x)?, &a.matmul(&x)?)?;
        close(&c.mul_t(&z)?, &a.t()?.matmul(&z)?)?;
        let on = |threads: usize| -> Result<(Vec<f64>, Vec<f64>)> {
            crate::runtime::on_threads(threads, || {
                Ok((
                    c.mul(&x)?.flatten_all()?.to_vec1::<f64>()?,
                    c.mul_t(&z)?.flatten_all()?.to_vec1::<f64>()?,
                ))
            })
        };
        assert_eq!(on(1)?, on(2)?);
        Ok(())
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let dev = Device::Cpu;
        let c = ConstantMatrix::new(&Tensor::zeros((3, 2), DType::F32, &dev).unwrap()).unwrap();
        let x = Tensor::zeros((3, 1), DType::F32, &dev).unwrap();
        assert!(c.mul(&x).is_err());
        assert!(ConstantMatrix::new(&Tensor::zeros(3, DType::F32, &dev).unwrap()).is_err());
    }
}
