//! The inner step `T(β, φ)`: one proximal gradient step on the weighted training loss (docs/design.md §5).
//!
//! Everything here is tensor operations on the step's inputs, so a chain of steps is one candle
//! graph through which `backward()` differentiates exactly.

use crate::basis::SplineBasis;
use crate::design::{Design, DesignStorage, SplineDesign};
use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::weightnet::WeightNet;
use candle_core::{DType, Device, Tensor, D};

/// Squared group norms are clamped to this before `sqrt`, whose derivative at 0 is infinite.
/// A group that small is always thresholded to zero, so the clamp never changes a value.
pub(crate) const TINY_SQUARED_NORM: f64 = 1e-30;

/// A design matrix with its encoded targets and loss: the training set of the inner problem or
/// the meta set of the outer one.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use metaadd::inner::{Coefficients, Problem};
/// use metaadd::Loss;
/// let design = Tensor::new(&[[1.0f64, 0.0], [0.0, 1.0]], &Device::Cpu)?;
/// let target = Tensor::new(&[[1.0f64], [2.0]], &Device::Cpu)?;
/// let problem = Problem::new(&design, &target, Loss::Squared)?;
/// let zero = Coefficients::zeros(2, 1, design.dtype(), design.device())?;
/// // ½·1² and ½·2², averaged.
/// assert_eq!(problem.mean_loss(&zero)?.to_scalar::<f64>()?, 1.25);
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Problem {
    design: Design,
    target: Tensor,
    loss: Loss,
    /// With [`Problem::class_balanced`]: each row's share `1/(K·n_class)` of the mean loss.
    row_weights: Option<Tensor>,
    /// Each row's class (`u32` `[n]`) for a classification loss: the input of a class-aware
    /// weight net.
    classes: Option<Tensor>,
}

impl Problem {
    /// `design` is `[n, P]`, `target` the encoded targets `[n, C]` (see
    /// [`crate::Task::encode_targets`]).
    pub fn new(design: &Tensor, target: &Tensor, loss: Loss) -> Result<Self> {
        Self::from_design(Design::dense(design)?, target, loss)
    }

    /// As [`Problem::new`] for a design in either form (see [`Design::from_basis`]).
    pub fn from_design(design: Design, target: &Tensor, loss: Loss) -> Result<Self> {
        let (n, _) = target.dims2().map_err(|_| {
            Error::invalid(format!("targets must be [n, C], got {:?}", target.dims()))
        })?;
        if n != design.rows() || n == 0 {
            return Err(Error::invalid(format!(
                "design has {} rows but targets have {n}",
                design.rows()
            )));
        }
        let mut problem = Self {
            design,
            target: target.detach(),
            loss,
            row_weights: None,
            classes: None,
        };
        // The class of a row: its 0/1 target (one output) or the column of its one-hot target.
        problem.classes = match loss {
            Loss::Logistic => Some(target.ge(0.5)?.to_dtype(DType::U32)?.flatten_all()?),
            Loss::Softmax => Some(target.argmax(1)?),
            Loss::Squared | Loss::Huber { .. } => None,
        };
        Ok(problem)
    }

    /// Each row's class (`u32` `[n]`; `None` for a regression loss).
    pub fn classes(&self) -> Option<&Tensor> {
        self.classes.as_ref()
    }

    /// The weights `V_φ(ℓ)` of this problem's rows at losses `losses` `[n]`, the rows' classes
    /// fed to a class-aware net.
    pub fn net_weights(&self, net: &WeightNet, losses: &Tensor) -> Result<Tensor> {
        net.forward_classes(losses, self.classes())
    }

    /// The same rows with a class-balanced [`Problem::mean_loss`]: each class's losses
    /// averaged, then the classes present averaged, so that a rare class counts as much as a
    /// common one. Needs a classification loss (the class of a row is its 0/1 target, or the
    /// column of its one-hot target).
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use metaadd::inner::{Coefficients, Problem};
    /// use metaadd::Loss;
    /// // Three rows of class 0 and one of class 1, all predicted at logit 0 except one.
    /// let design = Tensor::new(&[[0.0f64], [0.0], [0.0], [1.0]], &Device::Cpu)?;
    /// let target = Tensor::new(&[[0.0f64], [0.0], [0.0], [1.0]], &Device::Cpu)?;
    /// let problem = Problem::new(&design, &target, Loss::Logistic)?.class_balanced()?;
    /// let c = Coefficients { beta: Tensor::new(&[[2.0f64]], &Device::Cpu)?, bias: Tensor::new(&[0.0f64], &Device::Cpu)? };
    /// let (zero, one) = (2f64.ln(), (1.0 + (-2f64).exp()).ln());
    /// let balanced = problem.mean_loss(&c)?.to_scalar::<f64>()?;
    /// assert!((balanced - (zero + one) / 2.0).abs() < 1e-15);
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    pub fn class_balanced(mut self) -> Result<Self> {
        let classes = match &self.classes {
            Some(classes) => classes.to_vec1::<u32>()?,
            None => {
                return Err(Error::invalid(format!(
                    "a class-balanced mean needs a classification loss, not {}",
                    self.loss
                )))
            }
        };
        let counts = class_counts(&classes);
        let present = counts.iter().filter(|&&n| n > 0).count() as f64;
        let weights: Vec<f64> = classes
            .iter()
            .map(|&c| 1.0 / (present * counts[c as usize] as f64))
            .collect();
        let n = weights.len();
        self.row_weights = Some(
            Tensor::from_vec(weights, n, self.target.device())?.to_dtype(self.target.dtype())?,
        );
        Ok(self)
    }

    /// Whether [`Problem::mean_loss`] is class-balanced.
    pub fn is_class_balanced(&self) -> bool {
        self.row_weights.is_some()
    }

    /// Each row's share of [`Problem::mean_loss`] `[n]` (they sum to 1): `1/n` each, or
    /// `1/(K·n_class)` when class-balanced.
    pub fn row_weights(&self) -> Result<Tensor> {
        match &self.row_weights {
            Some(w) => Ok(w.clone()),
            None => {
                let n = self.n_samples();
                Ok(Tensor::full(1.0 / n as f64, n, self.target.device())?
                    .to_dtype(self.target.dtype())?)
            }
        }
    }

    /// The rows at `indices` (a `u32` tensor), for mini-batches; a class-balanced problem
    /// stays balanced over the rows kept.
    pub fn rows(&self, indices: &Tensor) -> Result<Self> {
        let design = self.design.select_rows(indices)?;
        let target = self.target.index_select(indices, 0)?;
        let rows = Self::from_design(design, &target, self.loss)?;
        if self.is_class_balanced() {
            rows.class_balanced()
        } else {
            Ok(rows)
        }
    }

    /// Number of samples `n`.
    pub fn n_samples(&self) -> usize {
        self.design.rows()
    }

    /// Number of design columns `P = p·m`.
    pub fn n_columns(&self) -> usize {
        self.design.cols()
    }

    /// The loss.
    pub fn loss(&self) -> Loss {
        self.loss
    }

    /// The design matrix `[n, P]`.
    pub fn design(&self) -> &Tensor {
        self.design.matrix()
    }

    /// The design the products read: dense, or in its sparse form (built so by
    /// [`crate::design::Design::from_basis`] for [`Problem::from_design`], or after
    /// [`Problem::with_sparse_design`]).
    pub fn products(&self) -> &Design {
        &self.design
    }

    /// The same problem whose products read `sparse`, the sparse form of the same design (see
    /// [`crate::design`]).
    pub fn with_sparse_design(mut self, sparse: SplineDesign) -> Result<Self> {
        self.design = self.design.with_sparse(sparse)?;
        Ok(self)
    }

    /// The same problem whose products read the sparse form of its design where `storage`
    /// takes it ([`DesignStorage::resolve`]); the design must be `basis`'s transform of the raw
    /// rows `x`.
    pub fn with_design_storage(
        self,
        storage: DesignStorage,
        basis: &SplineBasis,
        x: &[f64],
    ) -> Result<Self> {
        let dtype = self.design.dtype();
        let shape = (self.n_samples(), basis.n_features());
        if storage.resolve(basis.spec(), shape, dtype, self.target.device())? {
            let mut problem = self.with_sparse_design(basis.sparse_design(x, dtype)?)?;
            problem.design = problem.design.with_storage(storage);
            Ok(problem)
        } else {
            Ok(self)
        }
    }

    /// The same problem with the design columns of the features not in `keep` (`[p]`) set to
    /// zero: their gradients, and so their coefficients, stay exactly zero.
    pub fn keep_features(&self, keep: &[bool]) -> Result<Self> {
        let mut problem = self.clone();
        problem.design = self.design.keep_features(keep)?;
        Ok(problem)
    }

    /// The encoded targets `[n, C]`.
    pub fn target(&self) -> &Tensor {
        &self.target
    }

    /// Model outputs `f = Φβ + b`, `[n, C]`.
    pub fn outputs(&self, c: &Coefficients) -> Result<Tensor> {
        Ok(self.design.mul(&c.beta)?.broadcast_add(&c.bias)?)
    }

    /// Per-sample losses `[n]`.
    pub fn losses(&self, c: &Coefficients) -> Result<Tensor> {
        self.loss.value(&self.outputs(c)?, &self.target)
    }

    /// Mean loss, a scalar tensor (the meta loss when this is the meta set); class-balanced
    /// after [`Problem::class_balanced`].
    pub fn mean_loss(&self, c: &Coefficients) -> Result<Tensor> {
        let losses = self.losses(c)?;
        Ok(match &self.row_weights {
            None => losses.mean_all()?,
            Some(w) => (losses * w)?.sum_all()?,
        })
    }
}

/// Spline coefficients `β` `[P, C]` and intercept `b` `[C]`.
#[derive(Debug, Clone)]
pub struct Coefficients {
    /// Feature-major coefficients: feature `j` owns rows `j·m … j·m+m−1`.
    pub beta: Tensor,
    /// One intercept per output.
    pub bias: Tensor,
}

impl Coefficients {
    /// All zeros.
    pub fn zeros(columns: usize, outputs: usize, dtype: DType, device: &Device) -> Result<Self> {
        Ok(Self {
            beta: Tensor::zeros((columns, outputs), dtype, device)?,
            bias: Tensor::zeros(outputs, dtype, device)?,
        })
    }

    /// The same values cut from any graph.
    pub fn detach(&self) -> Self {
        Self {
            beta: self.beta.detach(),
            bias: self.bias.detach(),
        }
    }

    /// `‖β_j‖₂` for each of `n_features` groups.
    pub fn group_norms(&self, n_features: usize) -> Result<Vec<f64>> {
        Ok(self
            .beta
            .reshape((n_features, ()))?
            .sqr()?
            .sum(1)?
            .sqrt()?
            .to_dtype(DType::F64)?
            .to_vec1()?)
    }

    /// Indices of groups with a non-zero coefficient.
    pub fn active_groups(&self, n_features: usize) -> Result<Vec<usize>> {
        Ok(self
            .group_norms(n_features)?
            .iter()
            .enumerate()
            .filter(|(_, &norm)| norm > 0.0)
            .map(|(j, _)| j)
            .collect())
    }
}

/// What the weight net is fed inside a step.
#[derive(Debug, Clone, Copy)]
pub enum WeightInput<'a> {
    /// The step's own losses, kept in the graph: the exact derivative of the K-step map.
    Live,
    /// The step's own losses as constants (`detach_weight_input`).
    Detached,
    /// Given losses `[n]` instead of the step's own (the map whose weight-net inputs are
    /// frozen; used to check the detached mode by finite differences).
    Frozen(&'a Tensor),
}

/// One proximal gradient step `T(β, φ)` with step size `eta`, group-lasso strength `lambda` and
/// an optional ridge term `ridge·½‖β‖²` on `n_features` groups.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use metaadd::inner::{Coefficients, InnerStep, Problem};
/// use metaadd::Loss;
/// let design = Tensor::new(&[[1.0f64, 0.0], [0.0, 1.0]], &Device::Cpu)?;
/// let target = Tensor::new(&[[4.0f64], [0.1]], &Device::Cpu)?;
/// let problem = Problem::new(&design, &target, Loss::Squared)?;
/// let step = InnerStep { eta: 1.0, lambda: 0.2, ridge: 0.0, n_features: 2, normalize_weights: false };
/// let start = Coefficients::zeros(2, 1, DType::F64, &Device::Cpu)?;
/// let weights = Tensor::new(&[1.0f64, 1.0], &Device::Cpu)?;
/// let next = step.apply_with_weights(&problem, &start, &weights)?;
/// // Feature 2's gradient (0.05) is below the threshold ηλ = 0.2: the group drops out.
/// assert_eq!(next.active_groups(2)?, vec![0]);
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InnerStep {
    /// Step size η.
    pub eta: f64,
    /// Group-lasso strength λ.
    pub lambda: f64,
    /// Ridge strength (0 for none).
    pub ridge: f64,
    /// Number of groups `p`; the design has `p·m` columns.
    pub n_features: usize,
    /// Divide the weights by their mean before the step, so that only their ratios matter
    /// (as in Meta-Weight-Net's code); otherwise their overall scale also scales the step.
    pub normalize_weights: bool,
}

/// The result of [`InnerStep::apply`].
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// `T(β, φ)`.
    pub next: Coefficients,
    /// The step's per-sample losses `ℓ_i(β)` `[n]`.
    pub losses: Tensor,
    /// The weights `w_i` used `[n]`.
    pub weights: Tensor,
}

impl InnerStep {
    /// `T(β, φ)` with weights `w = V_φ(ℓ(β))` computed from `net`.
    pub fn apply(
        &self,
        problem: &Problem,
        c: &Coefficients,
        net: &WeightNet,
        input: WeightInput<'_>,
    ) -> Result<StepOutput> {
        if let Some(out) = self.apply_fused(problem, c, net, input)? {
            return Ok(out);
        }
        let f = problem.outputs(c)?;
        let losses = problem.loss.value(&f, &problem.target)?;
        let weights = match input {
            WeightInput::Live => problem.net_weights(net, &losses)?,
            WeightInput::Detached => problem.net_weights(net, &losses.detach())?,
            WeightInput::Frozen(frozen) => problem.net_weights(net, frozen)?,
        };
        let next = self.step_from_outputs(problem, c, &f, &weights)?;
        Ok(StepOutput {
            next,
            losses,
            weights,
        })
    }

    /// [`InnerStep::apply`] in one pass over the rows each way, where the design's steps fuse
    /// ([`Design::fused_steps`]) and the op covers the net and input (a loss-only weight net
    /// on the CPU in f32 or f64, its input live or detached); `None` otherwise.
    fn apply_fused(
        &self,
        problem: &Problem,
        c: &Coefficients,
        net: &WeightNet,
        input: WeightInput<'_>,
    ) -> Result<Option<StepOutput>> {
        let Some(sparse) = problem.design.fused_steps() else {
            return Ok(None);
        };
        let live = match input {
            WeightInput::Live => true,
            WeightInput::Detached => false,
            WeightInput::Frozen(_) => return Ok(None),
        };
        // A class-aware net, or several outputs of a one-output loss (the two-pass path
        // names that error), take two passes.
        let outputs = problem.target.dim(1)?;
        if net.classes() > 0 || (outputs > 1 && problem.loss != Loss::Softmax) {
            return Ok(None);
        }
        let theta = net.packed_parameters()?;
        if !theta.device().is_cpu() || theta.dtype() != sparse.dtype() {
            return Ok(None);
        }
        let sums = sparse.step_sums(
            &problem.target,
            problem.loss,
            live,
            (&c.beta, &c.bias, &theta),
        )?;
        let n = problem.n_samples() as f64;
        // `Φᵀ(w∘g)/n`, or with the weights divided by their mean `Σw/n`: `Φᵀ(w∘g)/Σw`.
        let (mut grad_beta, grad_bias) = if self.normalize_weights {
            let mean = sums
                .weight_sum
                .affine(1.0 / n, 0.0)?
                .clamp(1e-30, f64::INFINITY)?;
            let scale = mean.affine(n, 0.0)?.recip()?;
            (
                sums.weighted.broadcast_mul(&scale)?,
                sums.weighted_sum.broadcast_mul(&scale)?,
            )
        } else {
            (
                sums.weighted.affine(1.0 / n, 0.0)?,
                sums.weighted_sum.affine(1.0 / n, 0.0)?,
            )
        };
        if self.ridge > 0.0 {
            grad_beta = (grad_beta + c.beta.affine(self.ridge, 0.0)?)?;
        }
        let next = self.proximal(c, grad_beta, grad_bias)?;
        Ok(Some(StepOutput {
            next,
            losses: sums.losses,
            weights: sums.weights,
        }))
    }

    /// `T(β)` with given weights `[n]` (uniform weights, or weights held fixed).
    pub fn apply_with_weights(
        &self,
        problem: &Problem,
        c: &Coefficients,
        weights: &Tensor,
    ) -> Result<Coefficients> {
        let f = problem.outputs(c)?;
        self.step_from_outputs(problem, c, &f, weights)
    }

    fn step_from_outputs(
        &self,
        problem: &Problem,
        c: &Coefficients,
        f: &Tensor,
        weights: &Tensor,
    ) -> Result<Coefficients> {
        let (grad_beta, grad_bias) = self.smooth_gradient(problem, c, f, weights)?;
        self.proximal(c, grad_beta, grad_bias)
    }

    /// The proximal gradient step from `c` along the smooth gradient (ridge included).
    fn proximal(
        &self,
        c: &Coefficients,
        grad_beta: Tensor,
        grad_bias: Tensor,
    ) -> Result<Coefficients> {
        let u = (&c.beta - grad_beta.affine(self.eta, 0.0)?)?;
        Ok(Coefficients {
            beta: group_soft_threshold(&u, self.n_features, self.eta * self.lambda)?,
            bias: (&c.bias - grad_bias.affine(self.eta, 0.0)?)?,
        })
    }

    /// The gradient of the smooth part (weighted loss and ridge) with respect to `β` and `b`,
    /// with the weights treated as given; `f` are the outputs at `c`.
    pub(crate) fn smooth_gradient(
        &self,
        problem: &Problem,
        c: &Coefficients,
        f: &Tensor,
        weights: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let n = problem.n_samples() as f64;
        let normalized;
        let weights = if self.normalize_weights {
            // The mean of sigmoid outputs is positive; the floor only guards f32 underflow.
            let mean = weights.mean_all()?.clamp(1e-30, f64::INFINITY)?;
            normalized = weights.broadcast_div(&mean)?;
            &normalized
        } else {
            weights
        };
        let residual = problem
            .loss
            .derivative(f, &problem.target)?
            .broadcast_mul(&weights.unsqueeze(1)?)?
            .affine(1.0 / n, 0.0)?;
        let mut grad_beta = problem.design.mul_t(&residual)?;
        if self.ridge > 0.0 {
            grad_beta = (grad_beta + c.beta.affine(self.ridge, 0.0)?)?;
        }
        Ok((grad_beta, residual.sum(0)?))
    }

    /// The smallest group-lasso strength at which `β = 0` solves the inner problem with uniform
    /// weights: `max_j ‖∇_j L(0, b*)‖₂`, with the intercept `b*` fitted (by gradient steps on
    /// `b` alone) and the ridge irrelevant at `β = 0`. The top of a λ path.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use metaadd::inner::{Coefficients, InnerStep, Problem};
    /// use metaadd::Loss;
    /// let dev = Device::Cpu;
    /// let design = Tensor::new(&[[1.0f64, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], &dev)?;
    /// let target = Tensor::new(&[[3.0f64], [1.0], [2.5], [1.5]], &dev)?;
    /// let problem = Problem::new(&design, &target, Loss::Squared)?;
    /// let step = InnerStep { eta: 1.0, lambda: 0.0, ridge: 0.0, n_features: 2, normalize_weights: false };
    /// // b* = 2; group gradients Φ_jᵀ(b* − y)/n = −0.5 and −0.25.
    /// assert!((step.lambda_max(&problem)? - 0.5).abs() < 1e-12);
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    pub fn lambda_max(&self, problem: &Problem) -> Result<f64> {
        let (dtype, device) = (problem.products().dtype(), problem.target().device());
        // The intercept-only fit in f64 with step 1/curvature (exact in one step for the
        // squared loss); at β = 0 the outputs are the intercept itself, no design product.
        let target = problem.target().to_dtype(DType::F64)?;
        let (n, outputs) = target.dims2()?;
        let step = 1.0 / problem.loss().curvature();
        let mut bias = Tensor::zeros(outputs, DType::F64, device)?;
        for _ in 0..100_000 {
            let f = bias
                .unsqueeze(0)?
                .broadcast_as((n, outputs))?
                .contiguous()?;
            let grad = problem.loss().derivative(&f, &target)?.mean(0)?;
            bias = (&bias - grad.affine(step, 0.0)?)?;
            let moved = grad.abs()?.max(0)?.to_scalar::<f64>()? * step;
            let size = bias.abs()?.max(0)?.to_scalar::<f64>()?;
            if moved.is_nan() || moved <= 1e-13 * (1.0 + size) {
                break;
            }
        }
        let c = Coefficients {
            beta: Tensor::zeros((problem.n_columns(), outputs), dtype, device)?,
            bias: bias.to_dtype(dtype)?,
        };
        let ones = Tensor::ones(n, dtype, device)?;
        let f = problem.outputs(&c)?;
        let (grad, _) = self.smooth_gradient(problem, &c, &f, &ones)?;
        let norms = Coefficients {
            beta: grad,
            bias: c.bias,
        }
        .group_norms(self.n_features)?;
        let max = norms.into_iter().fold(0.0, f64::max);
        if !max.is_finite() {
            return Err(Error::invalid(
                "λ_max is not finite: the intercept fit diverged",
            ));
        }
        Ok(max)
    }

    /// A safe step size `1/L` for a design `[n, P]` and loss: `L` bounds the curvature of the
    /// (weights ≤ 1) inner loss, estimated by power iteration on `ΦᵀΦ/n` (intercept included).
    /// As [`InnerStep::design_step_size`] for a dense design.
    pub fn safe_step_size(design: &Tensor, loss: Loss, ridge: f64) -> Result<f64> {
        Self::design_step_size(&Design::dense(design)?, loss, ridge)
    }

    /// [`InnerStep::safe_step_size`] for a design in either form: on the CPU the power
    /// iteration reads an f32 or f64 design in place, in f64, one pass per iteration
    /// ([`Design::gram_product`]); on a GPU, or in another dtype, it multiplies by one f64
    /// copy of it, made once.
    pub fn design_step_size(design: &Design, loss: Loss, ridge: f64) -> Result<f64> {
        let columns = design.cols();
        let in_place = matches!(design.dtype(), DType::F32 | DType::F64);
        let eig = if design.is_cpu() && in_place {
            top_eigenvalue(columns + 1, |v| design.gram_product(v))?
        } else {
            let a = design.matrix().to_dtype(DType::F64)?;
            top_eigenvalue(columns + 1, |v| tensor_gram_product(&a, v))?
        };
        // 5% margin for the power-iteration estimate from below.
        let lipschitz = 1.05 * eig * loss.curvature() + ridge;
        if !(lipschitz.is_finite() && lipschitz > 0.0) {
            return Err(Error::invalid(
                "cannot pick a step size: the design matrix is zero",
            ));
        }
        Ok(1.0 / lipschitz)
    }
}

/// [`Design::gram_product`] by tensor products on `a`'s device, `a` `[n, P]` in f64.
fn tensor_gram_product(a: &Tensor, v: &[f64]) -> Result<Vec<f64>> {
    let (n, columns) = a.dims2()?;
    let top = Tensor::from_slice(&v[..columns], (columns, 1), a.device())?;
    let u = a.matmul(&top)?.affine(1.0, v[columns])?;
    let mut out = a.t()?.matmul(&u)?.flatten_all()?.to_vec1::<f64>()?;
    out.push(u.sum_all()?.to_scalar::<f64>()?);
    Ok(out.into_iter().map(|x| x / n as f64).collect())
}

/// The largest eigenvalue of a symmetric positive semi-definite operator `apply` on vectors of
/// `dim`, by power iteration from the vector of ones (at most 100 iterations, until two
/// estimates agree to 10⁻⁶); an estimate from below.
fn top_eigenvalue(dim: usize, mut apply: impl FnMut(&[f64]) -> Result<Vec<f64>>) -> Result<f64> {
    let mut v = vec![1.0; dim];
    let mut eig = 0.0;
    for _ in 0..100 {
        let av = apply(&v)?;
        let norm = av.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            break;
        }
        let converged = (norm - eig).abs() <= 1e-6 * norm;
        eig = norm;
        v = av.iter().map(|x| x / norm).collect();
        if converged {
            break;
        }
    }
    Ok(eig)
}

/// Group soft-threshold `u_j · max(0, 1 − t/‖u_j‖₂)` over `n_groups` equal row blocks of `u`.
///
/// A group that is exactly zero stays zero, with zero (never NaN) derivative.
pub fn group_soft_threshold(u: &Tensor, n_groups: usize, threshold: f64) -> Result<Tensor> {
    let shape = u.shape().clone();
    let groups = u.reshape((n_groups, ()))?;
    let norms = groups
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .maximum(TINY_SQUARED_NORM)?
        .sqrt()?;
    let scale = norms.recip()?.affine(-threshold, 1.0)?.relu()?;
    Ok(groups.broadcast_mul(&scale)?.reshape(shape)?)
}

/// How many rows each class has (`classes` as [`Problem::classes`] holds them), indexed by
/// class up to the largest present.
pub(crate) fn class_counts(classes: &[u32]) -> Vec<usize> {
    let mut counts = vec![0usize; classes.iter().max().map_or(0, |&c| c as usize + 1)];
    for &c in classes {
        counts[c as usize] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    #[test]
    fn group_soft_threshold_shrinks_zeroes_and_keeps_gradients_finite() {
        let dev = Device::Cpu;
        // Groups of 2 rows × 1 output: norms 5, 0.3 and exactly 0.
        let u = Var::new(&[[3.0f64], [4.0], [0.3], [0.0], [0.0], [0.0]], &dev).unwrap();
        let out = group_soft_threshold(u.as_tensor(), 3, 0.5).unwrap();
        let v = out.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        // (1 − 0.5/5)·(3, 4); the small group drops out exactly; zero stays zero.
        assert!((v[0] - 2.7).abs() < 1e-15 && (v[1] - 3.6).abs() < 1e-15);
        assert_eq!(&v[2..], &[0.0; 4]);
        let grads = out.sum_all().unwrap().backward().unwrap();
        let g = grads.get(u.as_tensor()).expect("gradient reaches u");
        let g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        assert!(g.iter().all(|x| x.is_finite()), "{g:?}");
        assert_eq!(&g[2..], &[0.0; 4]);
        // Idempotent at zero and the identity with no threshold.
        let zero = Tensor::zeros((4, 2), DType::F32, &dev).unwrap();
        let z = group_soft_threshold(&zero, 2, 0.1).unwrap();
        assert_eq!(z.sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
        let same = group_soft_threshold(u.as_tensor(), 3, 0.0).unwrap();
        assert_eq!(
            same.flatten_all().unwrap().to_vec1::<f64>().unwrap()[..3],
            [3.0, 4.0, 0.3]
        );
    }

    /// A problem on `p` features of `n` rows of a cubic B-spline design (m = 6) whose steps
    /// read the sparse form, two-pass or fused as `storage` says, with targets for `loss`.
    fn spline_problem(
        n: usize,
        p: usize,
        loss: Loss,
        dtype: DType,
        storage: DesignStorage,
    ) -> Problem {
        use crate::basis::{BasisSpec, SplineBasis};
        let x: Vec<f64> = (0..n * p)
            .map(|i| ((i * 7919 % 1013) as f64 / 101.0).sin() * 2.0)
            .collect();
        let basis = SplineBasis::fit(BasisSpec::bspline(6), &x, p).unwrap();
        let design = Design::from_basis(&basis, &x, storage, dtype, &Device::Cpu).unwrap();
        let outputs = if loss == Loss::Softmax { 3 } else { 1 };
        let target: Vec<f64> = (0..n * outputs)
            .map(|k| {
                let (i, c) = (k / outputs, k % outputs);
                let s = x[i * p] - 0.5 * x[i * p + 1] + ((i * 31 % 17) as f64 - 8.0) / 4.0;
                match loss {
                    Loss::Squared | Loss::Huber { .. } => s,
                    Loss::Logistic => f64::from(s > 0.0),
                    Loss::Softmax => f64::from(i % 3 == c),
                }
            })
            .collect();
        let target = Tensor::from_vec(target, (n, outputs), &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        Problem::from_design(design, &target, loss).unwrap()
    }

    /// `max |a − b| / max |b|`.
    fn relative_gap(a: &Tensor, b: &Tensor) -> f64 {
        let f = |t: &Tensor| t.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
        let (a, b) = (f(a), f(b));
        let scale = b
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let gap = (a - &b).unwrap().abs().unwrap().max_all().unwrap();
        gap.to_scalar::<f64>().unwrap() / scale.max(1e-300)
    }

    /// The fused step against the same step in two passes on the same sparse design: its
    /// outputs, and the gradient of a functional of all of them (next β and b, losses,
    /// weights) with respect to β, b and the four weight-net parameters, for every loss, with
    /// and without normalised weights and ridge, live and detached weight inputs, f64 and f32.
    /// (n = 1500 rows of p = 40 features: three chunks of rows, each of several blocks.)
    #[test]
    fn fused_steps_give_the_two_pass_step_and_its_gradient() {
        use crate::weightnet::WeightCurve;
        let (n, p) = (1500, 40);
        for (dtype, tol) in [(DType::F64, 1e-11), (DType::F32, 2e-4)] {
            for loss in [
                Loss::Squared,
                Loss::Huber { delta: 0.7 },
                Loss::Logistic,
                Loss::Softmax,
            ] {
                let two_pass = spline_problem(n, p, loss, dtype, DesignStorage::Sparse);
                let fused = spline_problem(n, p, loss, dtype, DesignStorage::Fused);
                assert!(fused.products().fused_steps().is_some());
                assert!(two_pass.products().fused_steps().is_none());
                let outputs = fused.target().dim(1).unwrap();
                let columns = p * 6;
                let draw = |len: usize, seed: usize, scale: f64| {
                    let v: Vec<f64> = (0..len)
                        .map(|k| ((k * 7 + seed * 13) as f64 * 0.37).sin() * scale)
                        .collect();
                    Tensor::from_vec(v, len, &Device::Cpu)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap()
                };
                for (case, (normalize, ridge, live)) in [
                    (false, 0.0, true),
                    (true, 0.0, true),
                    (false, 0.1, false),
                    (true, 0.1, false),
                ]
                .into_iter()
                .enumerate()
                {
                    let curve = if case == 1 {
                        WeightCurve::Decreasing
                    } else {
                        WeightCurve::Free
                    };
                    let net = WeightNet::new(10, case as u64, dtype, &Device::Cpu)
                        .unwrap()
                        .with_curve(curve);
                    let step = InnerStep {
                        eta: 0.5,
                        lambda: 0.02,
                        ridge,
                        n_features: p,
                        normalize_weights: normalize,
                    };
                    let beta = Var::from_tensor(
                        &draw(columns * outputs, 1, 0.3)
                            .reshape((columns, outputs))
                            .unwrap(),
                    )
                    .unwrap();
                    let bias = Var::from_tensor(&draw(outputs, 2, 0.5)).unwrap();
                    let c = Coefficients {
                        beta: beta.as_tensor().clone(),
                        bias: bias.as_tensor().clone(),
                    };
                    let input = if live {
                        WeightInput::Live
                    } else {
                        WeightInput::Detached
                    };
                    let run = |problem: &Problem| {
                        let out = step.apply(problem, &c, &net, input).unwrap();
                        let functional = [
                            (&out.next.beta, draw(columns * outputs, 3, 1.0)),
                            (&out.next.bias, draw(outputs, 4, 1.0)),
                            (&out.losses, draw(n, 5, 0.1)),
                            (&out.weights, draw(n, 6, 0.1)),
                        ]
                        .into_iter()
                        .map(|(t, r)| (t.flatten_all().unwrap() * r).unwrap().sum_all().unwrap())
                        .reduce(|a, b| (a + b).unwrap())
                        .unwrap();
                        let store = functional.backward().unwrap();
                        let mut grads = vec![
                            store.get(beta.as_tensor()).unwrap().clone(),
                            store.get(bias.as_tensor()).unwrap().clone(),
                        ];
                        for v in net.vars().iter() {
                            grads.push(store.get(v.as_tensor()).unwrap().clone());
                        }
                        (out, grads)
                    };
                    let ((a, ga), (b, gb)) = (run(&fused), run(&two_pass));
                    let what =
                        format!("{dtype:?} {loss} normalize {normalize} ridge {ridge} live {live}");
                    for (name, x, y) in [
                        ("next β", &a.next.beta, &b.next.beta),
                        ("next b", &a.next.bias, &b.next.bias),
                        ("losses", &a.losses, &b.losses),
                        ("weights", &a.weights, &b.weights),
                    ] {
                        let gap = relative_gap(x, y);
                        assert!(gap <= tol, "{what}: {name} {gap:e}");
                    }
                    let names = ["β", "b", "fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"];
                    for ((name, x), y) in names.iter().zip(&ga).zip(&gb) {
                        let gap = relative_gap(x, y);
                        assert!(gap <= tol, "{what}: d/d{name} {gap:e}");
                    }
                }
            }
        }
    }

    /// The fused step's bits do not depend on the threads (a design large enough for the pool).
    #[test]
    fn fused_steps_give_the_same_bits_on_one_and_two_threads() {
        let (n, p) = (14_000, 40);
        assert!(n * p * 4 >= crate::ops::SPARSE_PARALLEL_MIN_VALUES);
        let problem = spline_problem(n, p, Loss::Logistic, DType::F64, DesignStorage::Fused);
        let net = WeightNet::new(10, 3, DType::F64, &Device::Cpu).unwrap();
        let step = InnerStep {
            eta: 0.5,
            lambda: 0.02,
            ridge: 0.0,
            n_features: p,
            normalize_weights: true,
        };
        let run = |threads: usize| {
            crate::runtime::on_threads(threads, || {
                let beta =
                    Var::from_tensor(&Tensor::full(0.01f64, (p * 6, 1), &Device::Cpu).unwrap())
                        .unwrap();
                let c = Coefficients {
                    beta: beta.as_tensor().clone(),
                    bias: Tensor::new(&[0.2f64], &Device::Cpu).unwrap(),
                };
                let out = step.apply(&problem, &c, &net, WeightInput::Live).unwrap();
                let grads = out
                    .next
                    .beta
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let values = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
                let mut bits = values(&out.next.beta);
                bits.extend(values(grads.get(beta.as_tensor()).unwrap()));
                for v in net.vars().iter() {
                    bits.extend(values(grads.get(v.as_tensor()).unwrap()));
                }
                bits.into_iter().map(f64::to_bits).collect::<Vec<_>>()
            })
        };
        assert_eq!(run(1), run(2));
    }

    /// The step size read from either form of a design: the same to rounding (f64) or to the
    /// forms' f32 values.
    #[test]
    fn both_design_forms_give_the_step_size() {
        use crate::basis::{BasisSpec, SplineBasis};
        use crate::design::DesignStorage;
        let (n, p) = (2000, 5);
        let x: Vec<f64> = (0..n * p)
            .map(|i| ((i * 7919 % 1000) as f64).sqrt())
            .collect();
        let basis = SplineBasis::fit(BasisSpec::bspline(8), &x, p).unwrap();
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            let eta = |storage| {
                let design = Design::from_basis(&basis, &x, storage, dtype, &Device::Cpu).unwrap();
                InnerStep::design_step_size(&design, Loss::Logistic, 0.1).unwrap()
            };
            let (dense, sparse) = (eta(DesignStorage::Dense), eta(DesignStorage::Sparse));
            assert!(
                (dense - sparse).abs() <= tol * dense,
                "{dtype:?}: {dense} vs {sparse}"
            );
            // The GPU's path (tensor products on one f64 copy), here on the CPU: the same
            // operator, summed in another order.
            let matrix =
                Design::from_basis(&basis, &x, DesignStorage::Dense, dtype, &Device::Cpu).unwrap();
            let a = matrix.matrix().to_dtype(DType::F64).unwrap();
            let v: Vec<f64> = (0..=a.dim(1).unwrap()).map(|k| (k as f64).cos()).collect();
            let (by_tensor, by_rows) = (
                tensor_gram_product(&a, &v).unwrap(),
                matrix.gram_product(&v).unwrap(),
            );
            let scale = by_rows.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            for (t, r) in by_tensor.iter().zip(&by_rows) {
                assert!((t - r).abs() <= 1e-12 * scale, "{dtype:?}: {t} vs {r}");
            }
            // The step size against the power iteration written with candle's products on
            // `[Φ, 1]` (the code before the in-place pass).
            let ones = Tensor::ones((n, 1), DType::F64, &Device::Cpu).unwrap();
            let a1 = Tensor::cat(&[&a, &ones], 1).unwrap();
            let eig = top_eigenvalue(a.dim(1).unwrap() + 1, |v| {
                let v = Tensor::from_slice(v, (v.len(), 1), &Device::Cpu)?;
                let av = a1
                    .t()?
                    .matmul(&a1.matmul(&v)?)?
                    .affine(1.0 / n as f64, 0.0)?;
                Ok(av.flatten_all()?.to_vec1::<f64>()?)
            })
            .unwrap();
            let reference = 1.0 / (1.05 * eig * Loss::Logistic.curvature() + 0.1);
            let gap = (reference - dense).abs() / dense;
            assert!(gap <= 1e-12, "{dtype:?}: {reference} vs {dense}");
        }
    }

    #[test]
    fn safe_step_size_is_the_inverse_curvature() {
        let dev = Device::Cpu;
        // Orthogonal centred columns of mean square 1 (and an intercept): ΦᵀΦ/n has eigenvalue 1.
        let design = Tensor::new(
            &[[1.0f64, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]],
            &dev,
        )
        .unwrap();
        let eta = InnerStep::safe_step_size(&design, Loss::Squared, 0.0).unwrap();
        assert!((eta - 1.0 / 1.05).abs() < 1e-9, "{eta}");
        let eta = InnerStep::safe_step_size(&design, Loss::Logistic, 0.0).unwrap();
        assert!((eta - 4.0 / 1.05).abs() < 1e-8, "{eta}");
        // Another dtype goes through one f64 copy (±1 are exact in f16).
        let half = design.to_dtype(DType::F16).unwrap();
        let eta = InnerStep::safe_step_size(&half, Loss::Squared, 0.0).unwrap();
        assert!((eta - 1.0 / 1.05).abs() < 1e-9, "{eta}");
    }
}
