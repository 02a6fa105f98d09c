//! Host-side data: tables of raw columns, their preparation into numeric data sets, the
//! encodings a model keeps, hold-outs, CSV files and the synthetic protocols of the paper.
//!
//! Data enter the library as a [`table::Table`] (CSV or in-memory columns) or as plain `f64`
//! rows in a [`Dataset`]. The basis turns features into the design matrix, the only large
//! tensor training touches.

pub mod csv;
pub mod dataset;
pub mod encoding;
pub mod labels;
pub mod split;
pub mod synthetic;
pub mod table;

pub use dataset::Dataset;
