//! AdamW for the weight net, with its state in the open.
//!
//! candle-nn's `AdamW` keeps its moment estimates private, so a checkpoint could not carry them
//! and a resumed run would restart the optimiser cold. This one does the same arithmetic, in the
//! same order (bit-identical steps, tested), and exposes its state.

use crate::error::{Error, Result};
use candle_core::{Tensor, Var};

/// AdamW hyper-parameters (decoupled weight decay), as in candle-nn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWParams {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to `√v̂` in the denominator.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    /// candle-nn's defaults: lr 1e-3, β = (0.9, 0.999), ε = 1e-8, weight decay 0.01.
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// The optimiser's state: steps taken and the two moment estimates of every parameter.
///
/// The moments are in parameter order: the order of the variables given to [`AdamW::new`].
/// For a [`crate::Trainer`]'s optimiser (and so in a model file) that is the weight net's
/// parameters in [`crate::weightnet::PARAMETER_NAMES`] order, written as
/// `optimizer.first.<name>` and `optimizer.second.<name>`.
#[derive(Debug, Clone)]
pub struct AdamWState {
    /// Steps taken so far.
    pub steps: usize,
    /// First moments, one per parameter, in parameter order.
    pub first: Vec<Tensor>,
    /// Second moments, one per parameter, in parameter order.
    pub second: Vec<Tensor>,
}

/// AdamW over a fixed list of parameters.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use metaadd::optim::{AdamW, AdamWParams};
/// let x = Var::new(&[1.0f64, -2.0], &Device::Cpu)?;
/// let mut opt = AdamW::new(vec![x.clone()], AdamWParams { weight_decay: 0.0, ..Default::default() })?;
/// // The first Adam step moves every coordinate by lr against the sign of its gradient.
/// opt.step(&[Tensor::new(&[0.5f64, -3.0], &Device::Cpu)?])?;
/// let moved = x.as_tensor().to_vec1::<f64>()?;
/// assert!((moved[0] - (1.0 - 1e-3)).abs() < 1e-9 && (moved[1] - (-2.0 + 1e-3)).abs() < 1e-9);
/// assert_eq!(opt.state().steps, 1);
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug)]
pub struct AdamW {
    vars: Vec<Var>,
    state: AdamWState,
    params: AdamWParams,
}

impl AdamW {
    /// Zero moments for each of `vars`.
    pub fn new(vars: Vec<Var>, params: AdamWParams) -> Result<Self> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        let first = vars.iter().map(zeros).collect::<candle_core::Result<_>>()?;
        let second = vars.iter().map(zeros).collect::<candle_core::Result<_>>()?;
        Ok(Self {
            vars,
            state: AdamWState {
                steps: 0,
                first,
                second,
            },
            params,
        })
    }

    /// One step with `grads[i]` the gradient of parameter `i`.
    pub fn step(&mut self, grads: &[Tensor]) -> Result<()> {
        if grads.len() != self.vars.len() {
            return Err(Error::invalid(format!(
                "AdamW: {} gradients for {} parameters",
                grads.len(),
                self.vars.len()
            )));
        }
        let p = self.params;
        self.state.steps += 1;
        let t = self.state.steps as i32;
        let scale_m = 1.0 / (1.0 - p.beta1.powi(t));
        let scale_v = 1.0 / (1.0 - p.beta2.powi(t));
        let decay = 1.0 - p.lr * p.weight_decay;
        for (i, (var, g)) in self.vars.iter().zip(grads).enumerate() {
            let m = ((&self.state.first[i] * p.beta1)? + (g * (1.0 - p.beta1))?)?;
            let v = ((&self.state.second[i] * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let m_hat = (&m * scale_m)?;
            let v_hat = (&v * scale_v)?;
            let theta = (var.as_tensor() * decay)?;
            let adjusted = (m_hat / (v_hat.sqrt()? + p.eps)?)?;
            var.set(&(theta - (adjusted * p.lr)?)?)?;
            self.state.first[i] = m;
            self.state.second[i] = v;
        }
        Ok(())
    }

    /// The current state (a copy).
    pub fn state(&self) -> AdamWState {
        self.state.clone()
    }

    /// Replaces the state, after checking that every moment has its parameter's shape and type.
    pub fn set_state(&mut self, state: AdamWState) -> Result<()> {
        if state.first.len() != self.vars.len() || state.second.len() != self.vars.len() {
            return Err(Error::invalid(format!(
                "AdamW state has {} and {} moments for {} parameters",
                state.first.len(),
                state.second.len(),
                self.vars.len()
            )));
        }
        for (i, var) in self.vars.iter().enumerate() {
            for moment in [&state.first[i], &state.second[i]] {
                if moment.dims() != var.dims() || moment.dtype() != var.dtype() {
                    return Err(Error::invalid(format!(
                        "AdamW state: moment of parameter {i} is {:?} {:?}, the parameter is \
                         {:?} {:?}",
                        moment.dims(),
                        moment.dtype(),
                        var.dims(),
                        var.dtype()
                    )));
                }
            }
        }
        self.state = state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::Optimizer;

    /// Twenty steps with random gradients: the same bits as candle-nn's AdamW.
    #[test]
    fn matches_candle_nn_bit_for_bit() {
        let dev = Device::Cpu;
        for dtype in [DType::F32, DType::F64] {
            let init = Tensor::randn(0f32, 1.0, (3, 4), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let ours_var = Var::from_tensor(&init).unwrap();
            let theirs_var = Var::from_tensor(&init).unwrap();
            let params = AdamWParams {
                lr: 3e-3,
                weight_decay: 1e-4,
                ..Default::default()
            };
            let mut ours = AdamW::new(vec![ours_var.clone()], params).unwrap();
            let mut theirs = candle_nn::AdamW::new(
                vec![theirs_var.clone()],
                candle_nn::ParamsAdamW {
                    lr: 3e-3,
                    weight_decay: 1e-4,
                    ..Default::default()
                },
            )
            .unwrap();
            for _ in 0..20 {
                let g = Tensor::randn(0f32, 1.0, (3, 4), &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                ours.step(std::slice::from_ref(&g)).unwrap();
                let mut store = candle_core::backprop::GradStore::default();
                store.insert(theirs_var.as_tensor(), g);
                theirs.step(&store).unwrap();
            }
            let a = ours_var
                .flatten_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap();
            let b = theirs_var
                .flatten_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap();
            assert_eq!(a.to_vec1::<f64>().unwrap(), b.to_vec1::<f64>().unwrap());
        }
    }

    #[test]
    fn state_round_trips_and_is_checked() {
        let dev = Device::Cpu;
        let x = Var::new(&[1.0f32, 2.0], &dev).unwrap();
        let mut opt = AdamW::new(vec![x.clone()], AdamWParams::default()).unwrap();
        opt.step(&[Tensor::new(&[1.0f32, -1.0], &dev).unwrap()])
            .unwrap();
        let state = opt.state();
        let y = Var::new(&[1.0f32, 2.0], &dev).unwrap();
        let mut other = AdamW::new(vec![y], AdamWParams::default()).unwrap();
        other.set_state(state.clone()).unwrap();
        assert_eq!(other.state().steps, 1);
        let mut wrong = state;
        wrong.first[0] = Tensor::zeros(3, DType::F32, &dev).unwrap();
        let e = other.set_state(wrong).unwrap_err().to_string();
        assert!(e.contains("[3]") && e.contains("[2]"), "{e}");
    }
}
