#![doc = include_str!("../README.md")]

pub mod atomic;
pub mod basis;
pub mod checkpoint;
pub mod data;
pub mod error;
pub mod experiment;
pub mod hypergrad;
pub mod inner;
pub mod loss;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod optim;
pub mod path;
pub mod sweep;
pub mod trainer;
pub mod weightnet;

pub use basis::{BasisKind, BasisSpec, SplineBasis};
pub use data::Dataset;
pub use error::{Error, Result};
pub use hypergrad::HypergradMode;
pub use loss::{Loss, Task};
pub use model::{AdditiveModel, MetaAdditiveModel};
pub use trainer::{Fit, FitParams, IterationMetrics, Trainer, Weighting};
pub use weightnet::WeightNet;
