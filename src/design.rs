//! The design a problem multiplies by, and how it is stored for the products.
//!
//! The unrolled steps only multiply by the design `Φ` `[n, p·m]` and by `Φᵀ`, four passes over
//! it per step. For cubic B-splines they can read the sparse form instead of the dense matrix
//! ([`SplineDesign`]: 4 values and an index per row and feature instead of `m` values); a
//! problem then holds that form alone, built from the basis without the dense matrix
//! ([`Design::from_basis`]), and the dense matrix is formed from it only where it is read (an
//! exported problem). The automatic step size ([`Design::gram_product`]) and the solver's f64
//! copy ([`Design::host_columns_f64`]) read whichever form there is, without a copy of it (on
//! the CPU; a GPU's step size multiplies by one f64 copy there).
//! [`DesignStorage`] says which form the products use; `auto` picks the sparse form where it
//! was measured to be faster (benches/scale/RESULTS.md, "Sparse design"). Both forms give the
//! same products to rounding, and the choice depends on the problem's shape, dtype and device
//! only, never on the threads, so a seed still gives the same model bit for bit.

use crate::basis::{BasisKind, BasisSpec, SplineBasis};
use crate::error::{Error, Result};
use crate::ops::ConstantMatrix;
pub use crate::ops::SplineDesign;
use candle_core::{DType, Device, Tensor};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// Which form of the design the unrolled steps' products read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DesignStorage {
    /// The sparse form where it is faster ([`DesignStorage::resolve`]), else dense; on the
    /// sparse form, fused steps from [`FUSED_MIN_ROWS`] rows ([`DesignStorage::fuses`]).
    #[default]
    Auto,
    /// The dense matrix, multiplied by gemm.
    Dense,
    /// The sparse B-spline form (CPU, B-spline bases only).
    Sparse,
    /// The sparse form, with each unrolled step's products, losses and weights fused into one
    /// pass over the rows forward and one backward (see [`Design::fused_steps`]).
    Fused,
}

impl DesignStorage {
    /// All choices, in the order the help lists them.
    pub const ALL: [DesignStorage; 4] = [Self::Auto, Self::Dense, Self::Sparse, Self::Fused];

    /// The name used on the command line and in model files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Dense => "dense",
            Self::Sparse => "sparse",
            Self::Fused => "fused",
        }
    }

    /// Whether the products read the sparse form for a design of `n` rows and `p` features in
    /// `basis` on `device` in `dtype`.
    ///
    /// `auto` takes the sparse form on the CPU for cubic B-splines where it reads
    /// [`SPARSE_MIN_RATIO`] times fewer bytes than the dense form, or
    /// [`SPARSE_MIN_RATIO_OUT_OF_CACHE`] times fewer once the dense design exceeds
    /// [`CACHE_BYTES`] (the crossover measured in benches/scale/RESULTS.md, "Sparse design":
    /// in the cache the dense gemm is faster per byte). In f32 and f64 alike that is m ≥ 9
    /// columns per feature, or m ≥ 6 for a dense design above 32 MiB. `sparse` or
    /// `fused` where the sparse form cannot run (a Bernstein basis, a GPU) is an error naming
    /// why.
    ///
    /// ```
    /// use metaadd::basis::BasisSpec;
    /// use metaadd::candle_core::{DType, Device};
    /// use metaadd::design::DesignStorage;
    /// let (auto, cpu) = (DesignStorage::Auto, Device::Cpu);
    /// assert!(auto.resolve(BasisSpec::bspline(10), (2000, 100), DType::F32, &cpu)?);
    /// assert!(!auto.resolve(BasisSpec::bspline(6), (2000, 100), DType::F32, &cpu)?);
    /// assert!(auto.resolve(BasisSpec::bspline(6), (100_000, 100), DType::F32, &cpu)?);
    /// assert!(!auto.resolve(BasisSpec::bernstein(10), (2000, 100), DType::F64, &cpu)?);
    /// let sparse = DesignStorage::Sparse.resolve(BasisSpec::bernstein(10), (2000, 100), DType::F64, &cpu);
    /// assert!(sparse.is_err());
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    pub fn resolve(
        self,
        basis: BasisSpec,
        (n, p): (usize, usize),
        dtype: DType,
        device: &Device,
    ) -> Result<bool> {
        let possible = match (basis.kind, device.is_cpu(), dtype) {
            (BasisKind::Bernstein, ..) => Err("a Bernstein basis has no zero values to skip"),
            (_, false, _) => Err("the sparse design runs on the CPU only"),
            (_, _, DType::F32 | DType::F64) => Ok(()),
            _ => Err("the sparse design holds f32 or f64 values"),
        };
        match self {
            Self::Dense => Ok(false),
            Self::Sparse | Self::Fused => possible
                .map(|()| true)
                .map_err(|why| Error::param("design", format!("{}: {why}", self.name()))),
            Self::Auto => {
                let size = dtype.size_in_bytes();
                let dense = basis.n_basis * size;
                let sparse = SplineDesign::entry_bytes(basis.degree() + 1, dtype);
                let ratio = dense as f64 / sparse as f64;
                let out_of_cache = n.saturating_mul(p).saturating_mul(dense) > CACHE_BYTES;
                Ok(possible.is_ok()
                    && (ratio >= SPARSE_MIN_RATIO
                        || (out_of_cache && ratio >= SPARSE_MIN_RATIO_OUT_OF_CACHE)))
            }
        }
    }

    /// Whether the unrolled steps on a sparse design of `n` rows run fused
    /// ([`Design::fused_steps`]): always with `fused`, from [`FUSED_MIN_ROWS`] rows with
    /// `auto`, never otherwise.
    ///
    /// ```
    /// use metaadd::design::{DesignStorage, FUSED_MIN_ROWS};
    /// assert!(DesignStorage::Fused.fuses(10));
    /// assert!(!DesignStorage::Auto.fuses(2000) && DesignStorage::Auto.fuses(FUSED_MIN_ROWS));
    /// assert!(!DesignStorage::Sparse.fuses(1_000_000));
    /// ```
    pub fn fuses(self, n: usize) -> bool {
        match self {
            Self::Fused => true,
            Self::Auto => n >= FUSED_MIN_ROWS,
            Self::Dense | Self::Sparse => false,
        }
    }
}

/// From this many rows `auto` fuses the steps on a sparse design (measured in
/// benches/scale/RESULTS.md, "Fused steps").
pub const FUSED_MIN_ROWS: usize = 20_000;

/// Rows per block of [`Design::host_columns_f64`]: 256 rows of 600 columns are 1.2 MB of f64.
pub const SOLVER_COPY_BLOCK: usize = 256;

/// How many times fewer bytes the sparse form must read for `auto` to take it.
pub const SPARSE_MIN_RATIO: f64 = 2.0;

/// The same once the dense design is larger than [`CACHE_BYTES`].
pub const SPARSE_MIN_RATIO_OUT_OF_CACHE: f64 = 1.3;

/// A dense design larger than this (32 MiB, the L3 cache of the machine the crossover was
/// measured on) is read from memory, not from a cache.
pub const CACHE_BYTES: usize = 32 << 20;

impl fmt::Display for DesignStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DesignStorage {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                Error::param(
                    "design",
                    format!("unknown design storage `{s}` (expected auto, dense, sparse or fused)"),
                )
            })
    }
}

/// A problem's design: the dense matrix, or the sparse form the products read.
///
/// With the sparse form the dense matrix is not kept: it is formed from the sparse form the
/// first time [`Design::matrix`] is asked for (a model export, a benchmark's dump), and the
/// solver's f64 copy ([`Design::host_columns_f64`]) is built from the sparse form directly. A
/// fit whose products read the sparse form so holds that form only.
#[derive(Debug, Clone)]
pub struct Design {
    form: Form,
    /// The setting the form came from, which says whether the steps fuse.
    storage: DesignStorage,
}

#[derive(Debug, Clone)]
enum Form {
    Dense(ConstantMatrix),
    /// The sparse form (always on the CPU), and the dense matrix once it has been asked for.
    Sparse(SplineDesign, OnceLock<ConstantMatrix>),
}

impl Design {
    /// A dense design `[n, P]`.
    pub fn dense(matrix: &Tensor) -> Result<Self> {
        Ok(Self {
            form: Form::Dense(ConstantMatrix::new(matrix)?),
            storage: DesignStorage::Dense,
        })
    }

    /// `basis`'s design of the raw rows `x` (`[n, p]` row-major) in `dtype` on `device`, in the
    /// form `storage` takes for it ([`DesignStorage::resolve`]): the sparse form is built
    /// without the dense matrix, the dense one directly in `dtype`.
    ///
    /// ```
    /// use metaadd::basis::{BasisSpec, SplineBasis};
    /// use metaadd::candle_core::{DType, Device};
    /// use metaadd::design::{Design, DesignStorage};
    /// let x: Vec<f64> = (0..40).map(|i| (i as f64 * 0.37).sin()).collect();
    /// let basis = SplineBasis::fit(BasisSpec::bspline(10), &x, 2)?;
    /// let design = Design::from_basis(&basis, &x, DesignStorage::Auto, DType::F64, &Device::Cpu)?;
    /// assert!(design.sparse().is_some()); // m = 10: the sparse form reads fewer bytes
    /// assert_eq!((design.rows(), design.cols()), (20, 20));
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    pub fn from_basis(
        basis: &SplineBasis,
        x: &[f64],
        storage: DesignStorage,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let shape = (x.len() / basis.n_features().max(1), basis.n_features());
        if storage.resolve(basis.spec(), shape, dtype, device)? {
            Ok(Self::sparse_only(basis.sparse_design(x, dtype)?, storage))
        } else {
            Self::dense(&basis.design(x, dtype, device)?)
        }
    }

    /// The same design whose products read `sparse`, which must hold the same matrix (as
    /// [`crate::SplineBasis::sparse_design`] of the rows [`crate::SplineBasis::transform`]
    /// gave); the dense matrix is then dropped (see [`Design`]).
    pub fn with_sparse(self, sparse: SplineDesign) -> Result<Self> {
        let matrix = self.matrix();
        if (sparse.rows(), sparse.cols()) != (self.rows(), self.cols())
            || sparse.dtype() != matrix.dtype()
            || !matrix.device().is_cpu()
        {
            return Err(Error::invalid(format!(
                "a sparse {}×{} {:?} design cannot stand for a dense {:?} {:?} one on {:?}",
                sparse.rows(),
                sparse.cols(),
                sparse.dtype(),
                matrix.dims(),
                matrix.dtype(),
                matrix.device().location()
            )));
        }
        Ok(Self::sparse_only(sparse, DesignStorage::Sparse))
    }

    fn sparse_only(sparse: SplineDesign, storage: DesignStorage) -> Self {
        Self {
            form: Form::Sparse(sparse, OnceLock::new()),
            storage,
        }
    }

    /// The same design, its steps fused as `storage` says ([`DesignStorage::fuses`]).
    pub(crate) fn with_storage(mut self, storage: DesignStorage) -> Self {
        self.storage = storage;
        self
    }

    /// The sparse form, when the unrolled steps read it fused
    /// ([`DesignStorage::fuses`] at this design's rows; so a mini-batch of `auto` below
    /// [`FUSED_MIN_ROWS`] rows is not fused).
    pub fn fused_steps(&self) -> Option<&SplineDesign> {
        match &self.form {
            Form::Sparse(sparse, _) if self.storage.fuses(sparse.rows()) => Some(sparse),
            _ => None,
        }
    }

    /// Whether the design is on the CPU (the sparse form always is).
    pub fn is_cpu(&self) -> bool {
        match &self.form {
            Form::Dense(dense) => dense.matrix().device().is_cpu(),
            Form::Sparse(..) => true,
        }
    }

    /// `(1/n)·[Φ, 1]ᵀ[Φ, 1]·v` for `v` `[P + 1]` in f64, read from whichever form the design
    /// holds (a CPU design; see [`ConstantMatrix::gram_product`]).
    pub fn gram_product(&self, v: &[f64]) -> Result<Vec<f64>> {
        match &self.form {
            Form::Dense(dense) => dense.gram_product(v),
            Form::Sparse(sparse, _) => sparse.gram_product(v),
        }
    }

    /// The dense matrix `[n, P]` (formed from the sparse form on first use, see [`Design`]).
    pub fn matrix(&self) -> &Tensor {
        match &self.form {
            Form::Dense(dense) => dense.matrix(),
            Form::Sparse(sparse, dense) => dense
                .get_or_init(|| {
                    let shape = (sparse.rows(), sparse.cols());
                    let matrix = Tensor::from_vec(sparse.dense_f64(), shape, &Device::Cpu)
                        .and_then(|t| t.to_dtype(sparse.dtype()))
                        .expect("the sparse form's values fill its shape");
                    ConstantMatrix::new(&matrix).expect("a rank-2 matrix")
                })
                .matrix(),
        }
    }

    /// The dense matrix in f64 on the host, column-major (the solver's copy: column `k` is
    /// `[k·n, (k+1)·n)`), built block of rows by block of rows, so that no other copy of the
    /// whole matrix exists beside it: from the sparse form directly when there is one (whether
    /// or not the dense matrix was formed), so that the dense matrix is never formed for it.
    pub fn host_columns_f64(&self) -> Result<Vec<f64>> {
        let (n, cols) = (self.rows(), self.cols());
        let mut columns = vec![0.0; n * cols];
        for start in (0..n).step_by(SOLVER_COPY_BLOCK) {
            let len = SOLVER_COPY_BLOCK.min(n - start);
            let rows = match &self.form {
                Form::Dense(dense) => dense
                    .matrix()
                    .narrow(0, start, len)?
                    .to_dtype(DType::F64)?
                    .flatten_all()?
                    .to_vec1::<f64>()?,
                Form::Sparse(sparse, _) => sparse.dense_f64_rows(start, len),
            };
            for (k, column) in columns.chunks_exact_mut(n).enumerate() {
                let column = &mut column[start..start + len];
                for (c, row) in column.iter_mut().zip(rows.chunks_exact(cols)) {
                    *c = row[k];
                }
            }
        }
        Ok(columns)
    }

    /// The sparse form, when the products read it.
    pub fn sparse(&self) -> Option<&SplineDesign> {
        match &self.form {
            Form::Dense(_) => None,
            Form::Sparse(sparse, _) => Some(sparse),
        }
    }

    /// The values' dtype.
    pub fn dtype(&self) -> DType {
        match &self.form {
            Form::Dense(dense) => dense.matrix().dtype(),
            Form::Sparse(sparse, _) => sparse.dtype(),
        }
    }

    /// Number of rows `n`.
    pub fn rows(&self) -> usize {
        match &self.form {
            Form::Dense(dense) => dense.matrix().dims()[0],
            Form::Sparse(sparse, _) => sparse.rows(),
        }
    }

    /// Number of columns `P`.
    pub fn cols(&self) -> usize {
        match &self.form {
            Form::Dense(dense) => dense.matrix().dims()[1],
            Form::Sparse(sparse, _) => sparse.cols(),
        }
    }

    /// `Φ x` for `x` `[P, c]`; differentiable in `x` only.
    pub fn mul(&self, x: &Tensor) -> Result<Tensor> {
        match &self.form {
            Form::Dense(dense) => dense.mul(x),
            Form::Sparse(sparse, _) => sparse.mul(x),
        }
    }

    /// `Φᵀ z` for `z` `[n, c]`; differentiable in `z` only.
    pub fn mul_t(&self, z: &Tensor) -> Result<Tensor> {
        match &self.form {
            Form::Dense(dense) => dense.mul_t(z),
            Form::Sparse(sparse, _) => sparse.mul_t(z),
        }
    }

    /// Bytes one product reads from the form in use.
    pub fn bytes_per_pass(&self) -> usize {
        match &self.form {
            Form::Dense(_) => self.rows() * self.cols() * self.dtype().size_in_bytes(),
            Form::Sparse(sparse, _) => sparse.bytes_per_pass(),
        }
    }

    /// The rows at `indices` (`u32`), in the form in use.
    pub fn select_rows(&self, indices: &Tensor) -> Result<Self> {
        match &self.form {
            Form::Dense(dense) => Self::dense(&dense.matrix().index_select(indices, 0)?),
            Form::Sparse(sparse, _) => Ok(Self::sparse_only(
                sparse.select_rows(&indices.to_vec1::<u32>()?)?,
                self.storage,
            )),
        }
    }

    /// The same design with the columns of the `m`-column features not in `keep` (`[p]`)
    /// set to zero, in the form in use.
    pub fn keep_features(&self, keep: &[bool]) -> Result<Self> {
        if let Form::Sparse(sparse, _) = &self.form {
            return Ok(Self::sparse_only(sparse.keep_features(keep)?, self.storage));
        }
        let matrix = self.matrix();
        let mask = column_mask(keep, self.cols(), matrix.dtype(), matrix.device())?;
        Self::dense(&matrix.broadcast_mul(&mask.unsqueeze(0)?)?)
    }
}

/// 1 on the `columns / keep.len()` design columns of each feature kept, 0 on the others
/// (`[columns]`).
pub(crate) fn column_mask(
    keep: &[bool],
    columns: usize,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let m = columns / keep.len().max(1);
    let mask: Vec<f64> = keep
        .iter()
        .flat_map(|&k| std::iter::repeat_n(f64::from(u8::from(k)), m))
        .collect();
    Ok(Tensor::from_vec(mask, columns, device)?.to_dtype(dtype)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::basis::SplineBasis;
    use crate::runtime::on_threads;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn max_gap(a: &Tensor, b: &Tensor) -> f64 {
        let scale = b.abs().unwrap().max_all().unwrap();
        let gap = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        let f = |t: Tensor| t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
        f(gap) / f(scale).max(1e-300)
    }

    /// Random rows of `p` features, a basis fitted on them, and the dense and sparse designs.
    fn designs(n: usize, p: usize, spec: BasisSpec, dtype: DType) -> (Tensor, SplineDesign) {
        let mut rng = StdRng::seed_from_u64(7);
        let x: Vec<f64> = (0..n * p)
            .map(|_| rng.random::<f64>().powi(2) * 3.0 - 1.0)
            .collect();
        let basis = SplineBasis::fit(spec, &x, p).unwrap();
        let dense = Tensor::from_vec(
            basis.transform(&x).unwrap(),
            (n, p * spec.n_basis),
            &Device::Cpu,
        )
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
        (dense, basis.sparse_design(&x, dtype).unwrap())
    }

    #[test]
    fn sparse_products_equal_the_dense_ones() {
        for (spec, outputs) in [
            (BasisSpec::bspline(10).orthonormalized(true), 1),
            (BasisSpec::bspline(6), 3),
            (BasisSpec::bspline(4), 1),
            (BasisSpec::bernstein(3), 2),
        ] {
            for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
                // 3000 rows: more than one chunk of rows.
                let (n, p) = (3000, 5);
                let (dense, sparse) = designs(n, p, spec, dtype);
                let cols = p * spec.n_basis;
                let x = Tensor::randn(0.0, 1.0, (cols, outputs), &Device::Cpu)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let z = Tensor::randn(0.0, 1.0, (n, outputs), &Device::Cpu)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let gap = max_gap(&sparse.mul(&x).unwrap(), &dense.matmul(&x).unwrap());
                assert!(gap < tol, "{spec} {dtype:?} Φx: {gap}");
                let gap = max_gap(
                    &sparse.mul_t(&z).unwrap(),
                    &dense.t().unwrap().matmul(&z).unwrap(),
                );
                assert!(gap < tol, "{spec} {dtype:?} Φᵀz: {gap}");
            }
        }
    }

    #[test]
    fn sparse_gradients_are_the_other_product() {
        let (dense, sparse) = designs(700, 3, BasisSpec::bspline(8), DType::F64);
        let x = candle_core::Var::randn(0.0, 1.0, (24, 2), &Device::Cpu).unwrap();
        let w = Tensor::randn(0.0, 1.0, (700, 2), &Device::Cpu).unwrap();
        let grads = (sparse.mul(x.as_tensor()).unwrap() * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gx = grads.get(x.as_tensor()).unwrap();
        assert!(max_gap(gx, &dense.t().unwrap().matmul(&w).unwrap()) < 1e-12);
        let z = candle_core::Var::randn(0.0, 1.0, (700, 1), &Device::Cpu).unwrap();
        let v = Tensor::randn(0.0, 1.0, (24, 1), &Device::Cpu).unwrap();
        let grads = (sparse.mul_t(z.as_tensor()).unwrap() * &v)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gz = grads.get(z.as_tensor()).unwrap();
        assert!(max_gap(gz, &dense.matmul(&v).unwrap()) < 1e-12);
    }

    #[test]
    fn rows_and_kept_features_match_in_both_forms() {
        let (dense, sparse) = designs(900, 4, BasisSpec::bspline(6), DType::F64);
        let design = Design::dense(&dense).unwrap().with_sparse(sparse).unwrap();
        let dense_only = Design::dense(&dense).unwrap();
        let idx = Tensor::new(&[5u32, 0, 899, 5, 17], &Device::Cpu).unwrap();
        let keep = [true, false, true, false];
        let x = Tensor::randn(0.0, 1.0, (24, 1), &Device::Cpu).unwrap();
        for (a, b) in [
            (
                design.select_rows(&idx).unwrap(),
                dense_only.select_rows(&idx).unwrap(),
            ),
            (
                design.keep_features(&keep).unwrap(),
                dense_only.keep_features(&keep).unwrap(),
            ),
        ] {
            assert!(a.sparse().is_some() && b.sparse().is_none());
            assert_eq!(
                a.matrix().to_vec2::<f64>().unwrap(),
                b.matrix().to_vec2::<f64>().unwrap()
            );
            assert!(max_gap(&a.mul(&x).unwrap(), &b.mul(&x).unwrap()) < 1e-12);
        }
    }

    #[test]
    fn sparse_bits_do_not_depend_on_the_threads() {
        // Above the threshold from which the products run on the pool.
        let n = 80_000;
        assert!(n * 7 * 4 >= crate::ops::SPARSE_PARALLEL_MIN_VALUES);
        let (_, sparse) = designs(n, 7, BasisSpec::bspline(8), DType::F32);
        let x = Tensor::randn(0.0f32, 1.0, (56, 1), &Device::Cpu).unwrap();
        let z = Tensor::randn(0.0f32, 1.0, (n, 1), &Device::Cpu).unwrap();
        let on = |threads: usize| {
            on_threads(threads, || {
                (
                    sparse
                        .mul(&x)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap(),
                    sparse
                        .mul_t(&z)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap(),
                )
            })
        };
        assert_eq!(on(1), on(2));
    }

    /// `(1/n)·[Φ, 1]ᵀ[Φ, 1]·v` written out, in f64, from the dense matrix.
    fn gram_by_hand(dense: &Tensor, v: &[f64]) -> Vec<f64> {
        let (n, cols) = dense.dims2().unwrap();
        let a = dense
            .to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let mut out = vec![0.0; cols + 1];
        for row in a.chunks_exact(cols) {
            let s: f64 = row.iter().zip(v).map(|(a, v)| a * v).sum::<f64>() + v[cols];
            for (o, a) in out.iter_mut().zip(row.iter().chain([&1.0])) {
                *o += s * a / n as f64;
            }
        }
        out
    }

    fn relative_gap(a: &[f64], b: &[f64]) -> f64 {
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
            / scale
    }

    /// The step size's Gram product on both forms equals the one written out.
    #[test]
    fn gram_products_of_both_forms_equal_the_written_out_one() {
        for spec in [
            BasisSpec::bspline(10).orthonormalized(true),
            BasisSpec::bspline(5),
        ] {
            for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
                let (n, p) = (3000, 6);
                let (dense, sparse) = designs(n, p, spec, dtype);
                let cols = p * spec.n_basis;
                let mut rng = StdRng::seed_from_u64(3);
                let v: Vec<f64> = (0..=cols).map(|_| rng.random::<f64>() - 0.5).collect();
                let want = gram_by_hand(&dense, &v);
                let dense_form = Design::dense(&dense).unwrap();
                let gap = relative_gap(&dense_form.gram_product(&v).unwrap(), &want);
                assert!(gap < 1e-12, "{spec} {dtype:?} dense: {gap}");
                // Rows of a larger matrix: a view that starts inside its storage.
                let rows = dense.narrow(0, 1000, n - 1000).unwrap();
                let tail = Design::dense(&rows).unwrap().gram_product(&v).unwrap();
                let gap = relative_gap(&tail, &gram_by_hand(&rows, &v));
                assert!(gap < 1e-12, "{spec} {dtype:?} rows 1000..: {gap}");
                let sparse_form = Design::sparse_only(sparse, DesignStorage::Sparse);
                let gap = relative_gap(&sparse_form.gram_product(&v).unwrap(), &want);
                assert!(gap < tol, "{spec} {dtype:?} sparse: {gap}");
            }
        }
        let wrong = Design::dense(&Tensor::zeros((4, 3), DType::F64, &Device::Cpu).unwrap());
        let err = wrong
            .unwrap()
            .gram_product(&[1.0; 3])
            .unwrap_err()
            .to_string();
        assert!(err.contains("vector of 3"), "{err}");
        // No columns: the intercept's column of ones alone.
        let empty = Design::dense(&Tensor::zeros((4, 0), DType::F32, &Device::Cpu).unwrap());
        assert_eq!(empty.unwrap().gram_product(&[2.5]).unwrap(), vec![2.5]);
    }

    #[test]
    fn gram_bits_do_not_depend_on_the_threads() {
        // Above the threshold from which both forms' Gram products run on the pool.
        let n = 80_000;
        let (dense, sparse) = designs(n, 7, BasisSpec::bspline(8), DType::F32);
        assert!(n * 7 * 4 >= crate::ops::SPARSE_PARALLEL_MIN_VALUES);
        let v: Vec<f64> = (0..=56).map(|k| (k as f64 * 0.7).sin()).collect();
        let forms = [
            Design::dense(&dense).unwrap(),
            Design::sparse_only(sparse, DesignStorage::Sparse),
        ];
        let on = |threads: usize| {
            on_threads(threads, || {
                forms
                    .iter()
                    .map(|f| f.gram_product(&v).unwrap())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(on(1), on(2));
    }

    /// Built from the basis, each form holds the design `transform` gives, the dense one
    /// rounded to f32 as `to_dtype` rounds it, and the solver's column-major copy is its
    /// transpose.
    #[test]
    fn designs_built_from_the_basis_hold_the_transform() {
        let mut rng = StdRng::seed_from_u64(5);
        let (n, p) = (700, 4);
        let x: Vec<f64> = (0..n * p)
            .map(|_| rng.random::<f64>() * 4.0 - 2.0)
            .collect();
        let spec = BasisSpec::bspline(9);
        let basis = SplineBasis::fit(spec, &x, p).unwrap();
        let cpu = Device::Cpu;
        for dtype in [DType::F32, DType::F64] {
            let want = Tensor::from_vec(basis.transform(&x).unwrap(), (n, 36), &cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let dense = Design::from_basis(&basis, &x, DesignStorage::Dense, dtype, &cpu).unwrap();
            assert!(dense.sparse().is_none());
            let bits = |t: &Tensor| {
                t.to_dtype(DType::F64)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()
            };
            assert!(bits(dense.matrix()) == bits(&want), "{dtype:?}");
            let transposed = bits(&want.t().unwrap());
            assert!(dense.host_columns_f64().unwrap() == transposed, "{dtype:?}");
            let sparse =
                Design::from_basis(&basis, &x, DesignStorage::Sparse, dtype, &cpu).unwrap();
            assert!(sparse.sparse().is_some());
            if dtype == DType::F64 {
                assert!(sparse.host_columns_f64().unwrap() == transposed);
            }
            // In either dtype: the sparse form's own values, transposed.
            let own = sparse.sparse().unwrap().dense_f64();
            let own = Tensor::from_vec(own, (n, 36), &cpu).unwrap();
            assert!(sparse.host_columns_f64().unwrap() == bits(&own.t().unwrap()));
        }
    }

    /// With the sparse form the dense matrix is dropped, and formed again from it on demand
    /// with the basis's own bits (f64); the solver's copy never forms it.
    #[test]
    fn the_dense_matrix_is_formed_from_the_sparse_form_on_demand() {
        let (dense, sparse) = designs(
            600,
            3,
            BasisSpec::bspline(7).orthonormalized(true),
            DType::F64,
        );
        let design = Design::dense(&dense).unwrap().with_sparse(sparse).unwrap();
        let formed = |d: &Design| match &d.form {
            Form::Sparse(_, dense) => dense.get().is_some(),
            Form::Dense(_) => panic!("the sparse form replaces the dense matrix"),
        };
        assert!(!formed(&design), "the dense matrix is not kept");
        let columns = dense
            .t()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert!(design.host_columns_f64().unwrap() == columns);
        let want = dense.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        assert!(!formed(&design), "the solver's copy does not form it");
        let formed = design
            .matrix()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert!(formed == want);
        assert_eq!(design.bytes_per_pass(), 600 * 3 * (4 * 8 + 2));
    }

    #[test]
    fn a_wrong_sparse_design_is_refused() {
        let (dense, sparse) = designs(50, 2, BasisSpec::bspline(6), DType::F64);
        let other = dense.narrow(0, 0, 40).unwrap();
        assert!(Design::dense(&other)
            .unwrap()
            .with_sparse(sparse.clone())
            .is_err());
        let f32 = dense.to_dtype(DType::F32).unwrap();
        assert!(Design::dense(&f32)
            .unwrap()
            .with_sparse(sparse.clone())
            .is_err());
        let x = Tensor::zeros((11, 1), DType::F64, &Device::Cpu).unwrap();
        assert!(sparse.mul(&x).is_err());
        assert!("sparse".parse::<DesignStorage>().unwrap() == DesignStorage::Sparse);
        let err = "spares".parse::<DesignStorage>().unwrap_err().to_string();
        assert!(err.contains("spares"), "{err}");
    }
}
