//! The meta-weight network `V_φ: ℓ ↦ w ∈ (0, 1)`, an MLP 1 → h → 1 (ReLU, sigmoid), free or
//! held monotone in the loss ([`WeightCurve`]).

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Tensor names of the four parameters, in sorted order (the order they are initialised in):
/// [`WeightNetParams::NAMES`].
pub const PARAMETER_NAMES: [&str; 4] = [
    "weightnet.fc1.bias",
    "weightnet.fc1.weight",
    "weightnet.fc2.bias",
    "weightnet.fc2.weight",
];

/// One value per weight-net parameter: the tensors themselves (the default), their gradients,
/// shapes, flattened values, …
///
/// Wherever the four are listed, iterated or written, it is in [`WeightNetParams::NAMES`] order
/// (`fc1.bias`, `fc1.weight`, `fc2.bias`, `fc2.weight`; sorted, the order they are initialised
/// in).
///
/// ```
/// use metaadd::weightnet::WeightNetParams;
/// let shapes = WeightNetParams { fc1_bias: 3, fc1_weight: 3, fc2_bias: 1, fc2_weight: 3 };
/// assert_eq!(shapes.iter().sum::<usize>(), 10);
/// let named = shapes.named();
/// assert_eq!(named[1], ("weightnet.fc1.weight", &3));
/// assert_eq!(shapes.map(|n| 2 * n).into_array(), [6, 6, 2, 6]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WeightNetParams<T = Tensor> {
    /// `fc1.bias`, `[h]`.
    pub fc1_bias: T,
    /// `fc1.weight`, `[h, 1]`.
    pub fc1_weight: T,
    /// `fc2.bias`, `[1]`.
    pub fc2_bias: T,
    /// `fc2.weight`, `[1, h]`.
    pub fc2_weight: T,
}

impl<T> WeightNetParams<T> {
    /// The tensor names of the four parameters, in the order of every iteration (as
    /// [`PARAMETER_NAMES`]).
    pub const NAMES: [&'static str; 4] = PARAMETER_NAMES;

    /// From values in [`WeightNetParams::NAMES`] order.
    pub fn from_array([fc1_bias, fc1_weight, fc2_bias, fc2_weight]: [T; 4]) -> Self {
        Self {
            fc1_bias,
            fc1_weight,
            fc2_bias,
            fc2_weight,
        }
    }

    /// The values in [`WeightNetParams::NAMES`] order.
    pub fn into_array(self) -> [T; 4] {
        [
            self.fc1_bias,
            self.fc1_weight,
            self.fc2_bias,
            self.fc2_weight,
        ]
    }

    /// References to the values.
    pub fn as_ref(&self) -> WeightNetParams<&T> {
        WeightNetParams {
            fc1_bias: &self.fc1_bias,
            fc1_weight: &self.fc1_weight,
            fc2_bias: &self.fc2_bias,
            fc2_weight: &self.fc2_weight,
        }
    }

    /// The values in [`WeightNetParams::NAMES`] order.
    pub fn iter(&self) -> std::array::IntoIter<&T, 4> {
        self.as_ref().into_array().into_iter()
    }

    /// `(tensor name, value)` pairs in [`WeightNetParams::NAMES`] order.
    pub fn named(&self) -> [(&'static str, &T); 4] {
        self.as_ref().with_names().into_array()
    }

    /// Each value paired with its tensor name.
    pub fn with_names(self) -> WeightNetParams<(&'static str, T)> {
        self.zip(WeightNetParams::from_array(Self::NAMES))
            .map(|(value, name)| (name, value))
    }

    /// `f` applied to each value, in [`WeightNetParams::NAMES`] order.
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> WeightNetParams<U> {
        WeightNetParams {
            fc1_bias: f(self.fc1_bias),
            fc1_weight: f(self.fc1_weight),
            fc2_bias: f(self.fc2_bias),
            fc2_weight: f(self.fc2_weight),
        }
    }

    /// `f` applied to each value in [`WeightNetParams::NAMES`] order, stopping at the first
    /// error.
    pub fn try_map<U, E>(
        self,
        mut f: impl FnMut(T) -> std::result::Result<U, E>,
    ) -> std::result::Result<WeightNetParams<U>, E> {
        Ok(WeightNetParams {
            fc1_bias: f(self.fc1_bias)?,
            fc1_weight: f(self.fc1_weight)?,
            fc2_bias: f(self.fc2_bias)?,
            fc2_weight: f(self.fc2_weight)?,
        })
    }

    /// The values of `self` and `other` paired parameter by parameter.
    pub fn zip<U>(self, other: WeightNetParams<U>) -> WeightNetParams<(T, U)> {
        WeightNetParams {
            fc1_bias: (self.fc1_bias, other.fc1_bias),
            fc1_weight: (self.fc1_weight, other.fc1_weight),
            fc2_bias: (self.fc2_bias, other.fc2_bias),
            fc2_weight: (self.fc2_weight, other.fc2_weight),
        }
    }
}

impl<T> IntoIterator for WeightNetParams<T> {
    type Item = T;
    type IntoIter = std::array::IntoIter<T, 4>;

    /// The values in [`WeightNetParams::NAMES`] order.
    fn into_iter(self) -> Self::IntoIter {
        self.into_array().into_iter()
    }
}

impl<'a, T> IntoIterator for &'a WeightNetParams<T> {
    type Item = &'a T;
    type IntoIter = std::array::IntoIter<&'a T, 4>;

    /// The values in [`WeightNetParams::NAMES`] order.
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The meta-weight MLP. Its parameters are candle [`Var`]s so that `backward()` on the meta
/// loss yields the hypergradient.
///
/// Shapes follow `candle_nn::Linear`: `fc1.weight [h, 1]`, `fc1.bias [h]`, `fc2.weight [1, h]`,
/// `fc2.bias [1]`.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use metaadd::WeightNet;
/// let net = WeightNet::new(100, 7, DType::F64, &Device::Cpu)?;
/// let losses = Tensor::new(&[0.1f64, 5.0, 50.0], &Device::Cpu)?;
/// let w = net.forward(&losses)?.to_vec1::<f64>()?;
/// assert!(w.iter().all(|&w| w > 0.0 && w < 1.0));
/// // Same seed, same network.
/// let again = WeightNet::new(100, 7, DType::F64, &Device::Cpu)?;
/// assert_eq!(again.forward(&losses)?.to_vec1::<f64>()?, w);
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug)]
pub struct WeightNet {
    params: WeightNetParams<Var>,
    curve: WeightCurve,
}

/// The shape the weight curve `ℓ ↦ w` is held to.
///
/// A monotone curve comes from a reparametrisation, so the hypergradient stays exact: with the
/// stored (free) parameters `u = fc1.weight` and `v = fc2.weight`, the net uses
/// `W₁ = softplus(u) ≥ 0` (every hidden unit `relu(W₁ℓ + b₁)` is then non-decreasing in `ℓ`) and
/// `W₂ = ∓softplus(v)/√h` (minus: non-increasing, plus: non-decreasing), so the sigmoid of their
/// sum is monotone whatever the parameters; autodiff differentiates through the softplus. (The
/// `1/√h` keeps the initial curve's slope moderate: all `h` units now push the same way.) A
/// monotone curve is learned with normalised weights by default
/// ([`crate::FitParams::resolved_normalize_weights`]): only its shape then counts, not its level.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use metaadd::weightnet::{WeightCurve, WeightNet};
/// let losses = Tensor::new(&[0.0f64, 0.5, 1.0, 2.0, 4.0, 8.0], &Device::Cpu)?;
/// for seed in 0..5 {
///     let net = WeightNet::new(16, seed, DType::F64, &Device::Cpu)?.with_curve(WeightCurve::Decreasing);
///     let w = net.forward(&losses)?.to_vec1::<f64>()?;
///     assert!(w.windows(2).all(|p| p[1] <= p[0]), "{w:?}");
/// }
/// assert_eq!("increasing".parse::<WeightCurve>()?, WeightCurve::Increasing);
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightCurve {
    /// Any shape (the plain MLP).
    #[default]
    Free,
    /// Non-increasing in the loss: large losses (outliers, flipped labels) never weigh more.
    Decreasing,
    /// Non-decreasing in the loss: hard samples (a rare class) never weigh less.
    Increasing,
}

impl std::fmt::Display for WeightCurve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WeightCurve::Free => "free",
            WeightCurve::Decreasing => "decreasing",
            WeightCurve::Increasing => "increasing",
        })
    }
}

impl std::str::FromStr for WeightCurve {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "free" => Ok(WeightCurve::Free),
            "decreasing" => Ok(WeightCurve::Decreasing),
            "increasing" => Ok(WeightCurve::Increasing),
            other => Err(Error::param(
                "weight_curve",
                format!("unknown weight curve `{other}`: expected free, decreasing or increasing"),
            )),
        }
    }
}

/// `σ(W₂ relu(W₁[:, 0] ℓ + b₁ + shift) + b₂)` for losses `[n]` with tensor operations; `shift`
/// `[n, h]` is each row's class column of a class-aware net.
fn mlp(p: &WeightNetParams, losses: &Tensor, shift: Option<&Tensor>) -> Result<Tensor> {
    let n = losses.elem_count();
    let h = p.fc1_bias.elem_count();
    // [n, 1] · [1, h] as a broadcast product: an outer product needs no matmul.
    let w1 = p.fc1_weight.narrow(1, 0, 1)?.reshape((1, h))?;
    let mut pre = losses
        .reshape((n, 1))?
        .broadcast_mul(&w1)?
        .broadcast_add(&p.fc1_bias.unsqueeze(0)?)?;
    if let Some(shift) = shift {
        pre = (pre + shift)?;
    }
    let out = pre
        .relu()?
        .matmul(&p.fc2_weight.t()?)?
        .broadcast_add(&p.fc2_bias)?;
    Ok(candle_nn::ops::sigmoid(&out)?.reshape(n)?)
}

/// The class inputs of a net whose `fc1.weight` is `w1` (`[h, 1 + classes]`; 0 for `[h, 1]`).
fn class_inputs(w1: &Tensor) -> usize {
    match w1.dims() {
        [_, inputs] => inputs.saturating_sub(1),
        _ => 0,
    }
}

/// `softplus(x) = log(1 + eˣ)`, written so that no exponential overflows.
fn softplus(x: &Tensor) -> Result<Tensor> {
    let soft = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    Ok((x.relu()? + soft)?)
}

/// A clone owns copies of the parameters. (candle's `Var` clones share storage, so a derived
/// clone would move whenever an optimiser stepped the original: a snapshot must be a copy.)
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use metaadd::WeightNet;
/// let net = WeightNet::new(4, 0, DType::F64, &Device::Cpu)?;
/// let snapshot = net.clone();
/// net.vars().fc1_bias.set(&Tensor::zeros(4, DType::F64, &Device::Cpu)?)?;
/// assert_ne!(snapshot.tensors().fc1_bias.to_vec1::<f64>()?, vec![0.0; 4]);
/// # Ok::<(), metaadd::Error>(())
/// ```
impl Clone for WeightNet {
    fn clone(&self) -> Self {
        let copy = |v: &Var| {
            Var::from_tensor(
                &v.as_tensor()
                    .copy()
                    .expect("copying a weight-net parameter"),
            )
            .expect("a copied tensor is not a variable")
        };
        Self {
            params: self.params.as_ref().map(copy),
            curve: self.curve,
        }
    }
}

impl WeightNet {
    /// A network with `hidden` units initialised like PyTorch's `nn.Linear`
    /// (`U(−1/√fan_in, 1/√fan_in)` for weights and biases) from `StdRng::seed_from_u64(seed)`,
    /// parameters drawn in sorted name order.
    pub fn new(hidden: usize, seed: u64, dtype: DType, device: &Device) -> Result<Self> {
        Self::with_classes(hidden, 0, seed, dtype, device)
    }

    /// A class-aware network (in the spirit of CMW-Net): its input is the loss and the
    /// sample's class one-hot, `w_i = σ(W₂ relu(W₁ [ℓ_i, e_{c_i}] + b₁) + b₂)`, so that
    /// `fc1.weight` is `[h, 1 + classes]` and each class shifts the hidden units by its own
    /// column. The loss column and the other parameters are drawn exactly as by
    /// [`WeightNet::new`] with the same seed, and the class columns start at zero: the net
    /// starts as the loss-only net and learns how classes differ. `classes = 0` is
    /// [`WeightNet::new`].
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use metaadd::WeightNet;
    /// let net = WeightNet::with_classes(8, 3, 1, DType::F64, &Device::Cpu)?;
    /// assert_eq!((net.classes(), net.vars().fc1_weight.dims()), (3, &[8, 4][..]));
    /// let losses = Tensor::new(&[0.5f64, 0.5], &Device::Cpu)?;
    /// let classes = Tensor::new(&[0u32, 2], &Device::Cpu)?;
    /// let w = net.forward_classes(&losses, Some(&classes))?.to_vec1::<f64>()?;
    /// // At the start the class columns are zero: both rows weigh as the loss-only net says.
    /// let plain = WeightNet::new(8, 1, DType::F64, &Device::Cpu)?.forward(&losses)?.to_vec1::<f64>()?;
    /// assert!((w[0] - plain[0]).abs() < 1e-15 && (w[1] - plain[1]).abs() < 1e-15);
    /// assert!(net.forward(&losses).is_err()); // a class-aware net needs the classes
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    pub fn with_classes(
        hidden: usize,
        classes: usize,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if hidden == 0 {
            return Err(Error::param(
                "hidden",
                "the weight net needs at least one unit",
            ));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut uniform = |len: usize, fan_in: usize| -> Vec<f64> {
            let bound = 1.0 / (fan_in as f64).sqrt();
            (0..len).map(|_| rng.random_range(-bound..bound)).collect()
        };
        // Sorted name order: fc1.bias, fc1.weight, fc2.bias, fc2.weight.
        let fc1_bias = uniform(hidden, 1);
        let fc1_weight = uniform(hidden, 1);
        let fc2_bias = uniform(1, hidden);
        let fc2_weight = uniform(hidden, hidden);
        let t = |v: Vec<f64>, shape: (usize, usize)| -> Result<Tensor> {
            Ok(Tensor::from_vec(v, shape, device)?.to_dtype(dtype)?)
        };
        // The loss column, then the class columns at zero.
        let fc1_weight: Vec<f64> = fc1_weight
            .into_iter()
            .flat_map(|w| std::iter::once(w).chain(std::iter::repeat_n(0.0, classes)))
            .collect();
        Self::from_tensors(&WeightNetParams {
            fc1_bias: t(fc1_bias, (hidden, 1))?.flatten_all()?,
            fc1_weight: t(fc1_weight, (hidden, 1 + classes))?,
            fc2_bias: t(fc2_bias, (1, 1))?.flatten_all()?,
            fc2_weight: t(fc2_weight, (1, hidden))?,
        })
    }

    /// The shapes of a net with `hidden` units and `classes` class inputs (0: loss only):
    /// `[h]`, `[h, 1 + classes]`, `[1]`, `[1, h]`.
    pub fn shapes(hidden: usize, classes: usize) -> WeightNetParams<Vec<usize>> {
        WeightNetParams {
            fc1_bias: vec![hidden],
            fc1_weight: vec![hidden, 1 + classes],
            fc2_bias: vec![1],
            fc2_weight: vec![1, hidden],
        }
    }

    /// Number of class inputs: 0 for a loss-only net (see [`WeightNet::with_classes`]).
    pub fn classes(&self) -> usize {
        class_inputs(self.params.fc1_weight.as_tensor())
    }

    /// Rebuilds a network from its four tensors (copied into new variables, detached from any
    /// graph), checking their shapes: see [`WeightNet::shapes`].
    pub fn from_tensors(tensors: &WeightNetParams) -> Result<Self> {
        let hidden = tensors.fc1_bias.elem_count();
        let classes = class_inputs(&tensors.fc1_weight);
        for ((name, t), dims) in tensors
            .named()
            .into_iter()
            .zip(Self::shapes(hidden, classes))
        {
            if t.dims() != dims.as_slice() {
                return Err(Error::invalid(format!(
                    "{name} has shape {:?}, expected {dims:?}",
                    t.dims()
                )));
            }
        }
        if hidden == 0 {
            return Err(Error::invalid("weight net has no hidden units"));
        }
        Ok(Self {
            params: tensors
                .as_ref()
                .try_map(|t| Var::from_tensor(&t.detach()))?,
            curve: WeightCurve::Free,
        })
    }

    /// The same parameters read as a net of the given curve shape (see [`WeightCurve`]).
    pub fn with_curve(mut self, curve: WeightCurve) -> Self {
        self.curve = curve;
        self
    }

    /// The curve shape the net is held to.
    pub fn curve(&self) -> WeightCurve {
        self.curve
    }

    /// The parameters the MLP computes with, still attached to the stored ones: the stored
    /// ones for a free curve, `W₁ = softplus(u)` and `W₂ = ∓softplus(v)/√h` for a monotone one.
    fn effective(&self) -> Result<WeightNetParams> {
        let p = &self.params;
        let (w1, w2) = (p.fc1_weight.as_tensor(), p.fc2_weight.as_tensor());
        let scale = 1.0 / (self.hidden() as f64).sqrt();
        // Only the loss column is held non-negative: class columns shift units freely.
        let loss_column = |w1: &Tensor| -> Result<Tensor> {
            let classes = self.classes();
            let loss = softplus(&w1.narrow(1, 0, 1)?)?;
            if classes == 0 {
                Ok(loss)
            } else {
                Ok(Tensor::cat(&[&loss, &w1.narrow(1, 1, classes)?], 1)?)
            }
        };
        let sign = match self.curve {
            WeightCurve::Free => None,
            WeightCurve::Decreasing => Some(-1.0),
            WeightCurve::Increasing => Some(1.0),
        };
        let (w1, w2) = match sign {
            None => (w1.clone(), w2.clone()),
            Some(sign) => (loss_column(w1)?, softplus(w2)?.affine(sign * scale, 0.0)?),
        };
        Ok(WeightNetParams {
            fc1_bias: p.fc1_bias.as_tensor().clone(),
            fc1_weight: w1,
            fc2_bias: p.fc2_bias.as_tensor().clone(),
            fc2_weight: w2,
        })
    }

    /// The parameters.
    pub fn vars(&self) -> &WeightNetParams<Var> {
        &self.params
    }

    /// Detached copies of the parameters.
    pub fn tensors(&self) -> WeightNetParams {
        self.params.as_ref().map(|v| v.as_tensor().detach())
    }

    /// Number of hidden units `h`.
    pub fn hidden(&self) -> usize {
        self.params.fc1_bias.elem_count()
    }

    /// Weights `w_i = σ(W₂ relu(W₁ ℓ_i + b₁) + b₂)` for losses of shape `[n]`.
    ///
    /// On the CPU in f32 or f64 this is the fused [`crate::ops::weight_mlp`] (one pass over the
    /// rows for the forward and one for the backward, no `n × h` activations); elsewhere it is
    /// the same MLP written with candle's tensor operations.
    pub fn forward(&self, losses: &Tensor) -> Result<Tensor> {
        if self.classes() > 0 {
            return Err(Error::invalid(format!(
                "a class-aware weight net ({} classes) needs each sample's class",
                self.classes()
            )));
        }
        let fused = losses.device().is_cpu()
            && self.params.fc1_weight.device().is_cpu()
            && matches!(losses.dtype(), DType::F32 | DType::F64);
        if fused {
            let n = losses.elem_count();
            crate::ops::weight_mlp(&losses.reshape(n)?, &self.packed_parameters()?)
        } else {
            self.forward_reference(losses)
        }
    }

    /// `θ = [b₁, W₁, b₂, W₂]` flattened and joined, `[3h + 1]`, still attached to the four
    /// parameters (candle routes `dθ` back to each of them through the `cat`).
    pub(crate) fn packed_parameters(&self) -> Result<Tensor> {
        let p = self.effective()?;
        Ok(Tensor::cat(
            &[
                p.fc1_bias,
                p.fc1_weight.flatten_all()?,
                p.fc2_bias,
                p.fc2_weight.flatten_all()?,
            ],
            0,
        )?)
    }

    /// Weights of losses `[n]` whose rows have classes `classes` (`u32` `[n]`): a class-aware
    /// net needs them, a loss-only net ignores them (and is [`WeightNet::forward`]).
    pub fn forward_classes(&self, losses: &Tensor, classes: Option<&Tensor>) -> Result<Tensor> {
        let k = self.classes();
        if k == 0 {
            return self.forward(losses);
        }
        let classes = classes.ok_or_else(|| {
            Error::invalid(format!(
                "a class-aware weight net ({k} classes) needs each sample's class"
            ))
        })?;
        let n = losses.elem_count();
        if classes.elem_count() != n {
            return Err(Error::invalid(format!(
                "{} classes for {n} losses",
                classes.elem_count()
            )));
        }
        let p = self.effective()?;
        // Row i's class column of W₁, `[n, h]`.
        let shift = p
            .fc1_weight
            .narrow(1, 1, k)?
            .t()?
            .contiguous()?
            .index_select(&classes.flatten_all()?, 0)?;
        mlp(&p, losses, Some(&shift))
    }

    /// The forward pass with candle's tensor operations (materialises `n × h` activations): the
    /// path on devices other than the CPU, and the reference the fused op is tested against.
    #[doc(hidden)]
    pub fn forward_reference(&self, losses: &Tensor) -> Result<Tensor> {
        mlp(&self.effective()?, losses, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::backprop::GradStore;
    use rand::Rng;

    /// Losses in `[0, 50)` (and a few exact zeros) at least `margin` away from every ReLU kink of
    /// `net`: `|W₁ⱼ ℓ + b₁ⱼ| ≥ margin` for every unit (0 when no margin is needed).
    fn losses(net: &WeightNet, n: usize, seed: u64, margin: f64) -> Vec<f64> {
        let WeightNetParams {
            fc1_bias: b1,
            fc1_weight: w1,
            ..
        } = net.tensors();
        let b1 = b1.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
        let w1 = w1.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
        let w1 = w1.to_vec1::<f64>().unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| loop {
                // Heavy-tailed like real losses: mostly small, some large.
                let l: f64 = rng.random_range(0.0..1.0f64).powi(3) * 50.0;
                if b1.iter().zip(&w1).all(|(b, w)| (w * l + b).abs() >= margin) {
                    break l;
                }
            })
            .collect()
    }

    fn max_rel_diff(a: &Tensor, b: &Tensor) -> f64 {
        let a = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
        let b = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
        let (a, b) = (a.to_vec1::<f64>().unwrap(), b.to_vec1::<f64>().unwrap());
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
        a.iter()
            .zip(&b)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    /// `S = Σ cᵢ wᵢ` through `forward`, and its gradients: losses first, then the four
    /// parameters.
    fn objective_grads(
        net: &WeightNet,
        losses: &Tensor,
        c: &Tensor,
        fused: bool,
    ) -> (Tensor, Vec<Tensor>) {
        let l = Var::from_tensor(losses).unwrap();
        let w = if fused {
            net.forward(l.as_tensor()).unwrap()
        } else {
            net.forward_reference(l.as_tensor()).unwrap()
        };
        let store: GradStore = (&w * c).unwrap().sum_all().unwrap().backward().unwrap();
        let mut grads = vec![store.get(l.as_tensor()).expect("d/dlosses").clone()];
        for v in net.vars() {
            grads.push(store.get(v.as_tensor()).expect("d/dparameter").clone());
        }
        (w, grads)
    }

    fn coefficients(n: usize, seed: u64, dtype: DType) -> Tensor {
        let mut rng = StdRng::seed_from_u64(seed);
        let c: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Tensor::from_vec(c, n, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    #[test]
    fn fused_forward_and_gradients_match_the_tensor_op_path() {
        // h = 100 (padding-free) and h = 7 (padded); n = 3000 spans several row chunks.
        for (dtype, hidden, n, fwd_tol, grad_tol) in [
            (DType::F64, 100, 3000, 1e-14, 1e-12),
            (DType::F64, 7, 777, 1e-14, 1e-12),
            (DType::F32, 100, 3000, 1e-5, 1e-4),
            (DType::F32, 7, 777, 1e-5, 1e-4),
        ] {
            let net = WeightNet::new(hidden, 3, dtype, &Device::Cpu).unwrap();
            let l = Tensor::from_vec(losses(&net, n, 5, 0.0), n, &Device::Cpu).unwrap();
            let l = l.to_dtype(dtype).unwrap();
            let c = coefficients(n, 9, dtype);
            let (w_fused, g_fused) = objective_grads(&net, &l, &c, true);
            let (w_ref, g_ref) = objective_grads(&net, &l, &c, false);
            assert_eq!(w_fused.dims(), &[n]);
            let err = max_rel_diff(&w_fused, &w_ref);
            assert!(err <= fwd_tol, "{dtype:?} h={hidden}: forward {err:e}");
            let mut worst = 0.0f64;
            for (i, (a, b)) in g_fused.iter().zip(&g_ref).enumerate() {
                assert_eq!(a.dims(), b.dims());
                let err = max_rel_diff(a, b);
                worst = worst.max(err);
                assert!(
                    err <= grad_tol,
                    "{dtype:?} h={hidden}: gradient {i} {err:e}"
                );
            }
            eprintln!(
                "{dtype:?} h={hidden} n={n}: fused vs tensor ops, forward {err:.1e}, gradients {worst:.1e}"
            );
        }
    }

    #[test]
    fn relu_derivative_at_zero_follows_candle() {
        // b₁ = 0 for some units and a loss of exactly 0: pre-activations exactly 0.
        let dev = Device::Cpu;
        let net = WeightNet::from_tensors(&WeightNetParams {
            fc1_bias: Tensor::new(&[0.0f64, 0.3, 0.0, -0.2], &dev).unwrap(),
            fc1_weight: Tensor::new(&[[0.5f64], [-1.0], [-0.7], [0.2]], &dev).unwrap(),
            fc2_bias: Tensor::new(&[0.1f64], &dev).unwrap(),
            fc2_weight: Tensor::new(&[[0.9f64, -0.4, 1.3, 0.6]], &dev).unwrap(),
        })
        .unwrap();
        let l = Tensor::new(&[0.0f64, 0.0, 1.0, 2.5], &dev).unwrap();
        let c = Tensor::new(&[1.0f64, -0.5, 0.25, 2.0], &dev).unwrap();
        let (_, fused) = objective_grads(&net, &l, &c, true);
        let (_, reference) = objective_grads(&net, &l, &c, false);
        for (a, b) in fused.iter().zip(&reference) {
            assert!(max_rel_diff(a, b) <= 1e-15, "{a} vs {b}");
        }
    }

    #[test]
    fn fused_gradients_match_central_finite_differences() {
        let dev = Device::Cpu;
        let (hidden, n, eps) = (10, 600, 1e-6);
        let net = WeightNet::new(hidden, 11, DType::F64, &dev).unwrap();
        // Every pre-activation at least 1e-3 from the kink: a step of 1e-6 never crosses it.
        let x = losses(&net, n, 13, 1e-3);
        let c = coefficients(n, 17, DType::F64);
        let l = Tensor::from_vec(x.clone(), n, &dev).unwrap();
        let (_, grads) = objective_grads(&net, &l, &c, true);
        let objective = |net: &WeightNet, x: &[f64]| -> f64 {
            let l = Tensor::from_vec(x.to_vec(), x.len(), &dev).unwrap();
            let w = net.forward(&l).unwrap();
            (w * &c)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let params: [Vec<f64>; 4] = net
            .tensors()
            .map(|t| t.flatten_all().unwrap().to_vec1::<f64>().unwrap())
            .into_array();
        let mut worst = 0.0f64;
        // Parameters: perturb each element of each tensor.
        for (which, (name, values)) in WeightNetParams::<()>::NAMES.iter().zip(&params).enumerate()
        {
            let analytic = grads[which + 1]
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let scale = analytic.iter().fold(0.0f64, |m, g| m.max(g.abs()));
            for j in 0..values.len() {
                let shifted = |delta: f64| {
                    let mut values = params.clone();
                    values[which][j] += delta;
                    let tensors = net
                        .tensors()
                        .zip(WeightNetParams::from_array(values))
                        .map(|(t, v)| Tensor::from_vec(v, t.shape(), &dev).unwrap());
                    objective(&WeightNet::from_tensors(&tensors).unwrap(), &x)
                };
                let fd = (shifted(eps) - shifted(-eps)) / (2.0 * eps);
                let err = (fd - analytic[j]).abs() / scale;
                worst = worst.max(err);
                assert!(err <= 1e-6, "{name} [{j}]: fd {fd} vs {}", analytic[j]);
            }
        }
        // Losses: every 7th row.
        let analytic = grads[0].to_vec1::<f64>().unwrap();
        let scale = analytic.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        for i in (0..n).step_by(7) {
            let shifted = |delta: f64| {
                let mut v = x.clone();
                v[i] += delta;
                objective(&net, &v)
            };
            let fd = (shifted(eps) - shifted(-eps)) / (2.0 * eps);
            let err = (fd - analytic[i]).abs() / scale;
            worst = worst.max(err);
            assert!(err <= 1e-6, "loss {i}: fd {fd} vs {}", analytic[i]);
        }
        eprintln!("fused weight net: worst central-difference error {worst:.2e} (relative to the largest gradient entry)");
    }

    #[test]
    fn fused_results_are_bit_identical_across_runs_and_thread_counts() {
        let dev = Device::Cpu;
        // Large enough for the rows to be split over threads.
        let n = 12_000;
        assert!(n * 100 >= crate::ops::PARALLEL_MIN_WORK);
        let net = WeightNet::new(100, 21, DType::F64, &dev).unwrap();
        let l = Tensor::from_vec(losses(&net, n, 23, 0.0), n, &dev).unwrap();
        let c = coefficients(n, 29, DType::F64);
        let run = |threads: usize| -> Vec<Vec<f64>> {
            crate::runtime::on_threads(threads, || {
                let (w, grads) = objective_grads(&net, &l, &c, true);
                std::iter::once(w)
                    .chain(grads)
                    .map(|t| t.flatten_all().unwrap().to_vec1::<f64>().unwrap())
                    .collect()
            })
        };
        let one = run(1);
        assert_eq!(one, run(1));
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
    }

    #[test]
    fn fused_op_rejects_bad_inputs() {
        let dev = Device::Cpu;
        let l = Tensor::new(&[1.0f64, 2.0], &dev).unwrap();
        // 3h + 1 elements are needed.
        let theta = Tensor::zeros(6, DType::F64, &dev).unwrap();
        assert!(crate::ops::weight_mlp(&l, &theta).is_err());
        let theta = Tensor::zeros(7, DType::F32, &dev).unwrap();
        assert!(crate::ops::weight_mlp(&l, &theta).is_err());
        let theta = Tensor::zeros((7, 1), DType::F64, &dev).unwrap();
        assert!(crate::ops::weight_mlp(&l, &theta).is_err());
        let net = WeightNet::new(4, 0, DType::F32, &dev).unwrap();
        assert!(net.forward(&l).is_err(), "f64 losses into an f32 net");
        // Losses of any shape with n elements, as before.
        let net = WeightNet::new(4, 0, DType::F64, &dev).unwrap();
        let column = l.reshape((2, 1)).unwrap();
        assert_eq!(net.forward(&column).unwrap().dims(), &[2]);
    }
}
