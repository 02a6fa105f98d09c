//! metaadd: Meta Additive Models.

pub mod basis;
pub mod data;
pub mod error;
pub mod hypergrad;
pub mod inner;
pub mod loss;
pub mod ops;
pub mod weightnet;

pub use data::Dataset;
pub use error::{Error, Result};
pub use loss::{Loss, Task};
pub use weightnet::WeightNet;
