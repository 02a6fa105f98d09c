#![doc = include_str!("../README.md")]

// Layers, each using only those above it: errors, files, the runtime (device, threads, progress,
// shards); data (tables, encodings, data
// sets); the numerical core (basis, losses, weight net, inner step, hypergradients); the
// settings; the fitted model; training; preparation, the λ path, the sweep and experiments.
pub mod atomic;
pub mod error;
pub mod output;
pub mod progress;
pub mod runtime;
pub mod shard;
pub(crate) mod tensor_file;

pub mod data;
pub mod evaluate;

pub mod basis;
pub mod design;
pub mod hypergrad;
pub mod inner;
pub mod loss;
pub mod memory;
pub(crate) mod ops;
pub mod optim;
pub mod solver;
pub mod weightnet;

pub mod params;

pub mod model;

pub mod trainer;

pub mod experiment;
pub mod path;
pub mod prepare;
pub mod sweep;

/// The tensor library the API speaks (`Tensor`, `Device`, `DType`): `metaadd::candle_core`, so
/// that no second dependency line is needed.
pub use candle_core;

pub use basis::{BasisKind, BasisSpec, SplineBasis};
pub use data::table::{Column, Table};
pub use data::Dataset;
pub use error::{Error, Result};
pub use evaluate::Scores;
pub use hypergrad::HypergradMode;
pub use loss::{Loss, Task};
pub use model::{AdditiveModel, MetaAdditiveModel};
pub use params::{FitParams, Weighting};
pub use prepare::{Preparation, Prepared, TaskKind};
pub use trainer::{Fit, IterationMetrics, Trainer};
pub use weightnet::{WeightNet, WeightNetParams};
