//! The meta-weight network `V_φ: ℓ ↦ w ∈ (0, 1)`, an MLP 1 → h → 1 (ReLU, sigmoid).

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Tensor names of the four parameters, in sorted order (the order they are initialised in).
pub const PARAMETER_NAMES: [&str; 4] = [
    "weightnet.fc1.bias",
    "weightnet.fc1.weight",
    "weightnet.fc2.bias",
    "weightnet.fc2.weight",
];

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
#[derive(Debug, Clone)]
pub struct WeightNet {
    fc1_bias: Var,
    fc1_weight: Var,
    fc2_bias: Var,
    fc2_weight: Var,
}

impl WeightNet {
    /// A network with `hidden` units initialised like PyTorch's `nn.Linear`
    /// (`U(−1/√fan_in, 1/√fan_in)` for weights and biases) from `StdRng::seed_from_u64(seed)`,
    /// parameters drawn in sorted name order.
    pub fn new(hidden: usize, seed: u64, dtype: DType, device: &Device) -> Result<Self> {
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
        Self::from_tensors(&[
            t(fc1_bias, (hidden, 1))?.flatten_all()?,
            t(fc1_weight, (hidden, 1))?,
            t(fc2_bias, (1, 1))?.flatten_all()?,
            t(fc2_weight, (1, hidden))?,
        ])
    }

    /// Rebuilds a network from its four tensors in [`PARAMETER_NAMES`] order, checking shapes.
    pub fn from_tensors(tensors: &[Tensor]) -> Result<Self> {
        let [b1, w1, b2, w2] = tensors else {
            return Err(Error::invalid(format!(
                "a weight net has 4 parameter tensors, got {}",
                tensors.len()
            )));
        };
        let hidden = b1.elem_count();
        let expect = |t: &Tensor, name: &str, dims: &[usize]| -> Result<()> {
            if t.dims() == dims {
                Ok(())
            } else {
                Err(Error::invalid(format!(
                    "{name} has shape {:?}, expected {dims:?}",
                    t.dims()
                )))
            }
        };
        expect(b1, PARAMETER_NAMES[0], &[hidden])?;
        expect(w1, PARAMETER_NAMES[1], &[hidden, 1])?;
        expect(b2, PARAMETER_NAMES[2], &[1])?;
        expect(w2, PARAMETER_NAMES[3], &[1, hidden])?;
        if hidden == 0 {
            return Err(Error::invalid("weight net has no hidden units"));
        }
        Ok(Self {
            fc1_bias: Var::from_tensor(&b1.detach())?,
            fc1_weight: Var::from_tensor(&w1.detach())?,
            fc2_bias: Var::from_tensor(&b2.detach())?,
            fc2_weight: Var::from_tensor(&w2.detach())?,
        })
    }

    /// The parameters in [`PARAMETER_NAMES`] order.
    pub fn vars(&self) -> [&Var; 4] {
        [
            &self.fc1_bias,
            &self.fc1_weight,
            &self.fc2_bias,
            &self.fc2_weight,
        ]
    }

    /// Detached copies of the parameters in [`PARAMETER_NAMES`] order.
    pub fn tensors(&self) -> [Tensor; 4] {
        self.vars().map(|v| v.as_tensor().detach())
    }

    /// Number of hidden units `h`.
    pub fn hidden(&self) -> usize {
        self.fc1_bias.elem_count()
    }

    /// Weights `w_i = σ(W₂ relu(W₁ ℓ_i + b₁) + b₂)` for losses of shape `[n]`.
    pub fn forward(&self, losses: &Tensor) -> Result<Tensor> {
        let n = losses.elem_count();
        // [n, 1] · [1, h] as a broadcast product: an outer product needs no matmul.
        let w1 = self.fc1_weight.as_tensor().reshape((1, self.hidden()))?;
        let hidden = losses
            .reshape((n, 1))?
            .broadcast_mul(&w1)?
            .broadcast_add(&self.fc1_bias.as_tensor().unsqueeze(0)?)?
            .relu()?;
        let out = hidden
            .matmul(&self.fc2_weight.as_tensor().t()?)?
            .broadcast_add(self.fc2_bias.as_tensor())?;
        Ok(candle_nn::ops::sigmoid(&out)?.reshape(n)?)
    }
}
