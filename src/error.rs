//! One typed error for the whole library.

use std::path::PathBuf;

/// Everything that can go wrong in `metaadd`.
///
/// Each variant names the offending input (tensor, file, shape, iteration) so that a user
/// can find the problem without a debugger.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed inside candle.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),

    /// An argument or input does not have the shape, size or value the call needs.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A configuration value is out of range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter's name as the builder spells it.
        name: &'static str,
        /// Why the value was refused.
        reason: String,
    },

    /// Class labels do not fit the task; `row` is the zero-based data row, where one applies.
    #[error("{}{reason}", row.map(|r| format!("row {r}: ")).unwrap_or_default())]
    Label {
        /// The first offending row, if the problem is a single value.
        row: Option<usize>,
        /// What is wrong.
        reason: String,
    },

    /// A NaN or infinity appeared during training.
    #[error("training diverged at outer iteration {iteration}: {quantity} is not finite")]
    NonFinite {
        /// Zero-based outer iteration.
        iteration: usize,
        /// The quantity that became NaN or infinite.
        quantity: String,
    },

    /// The caller's watcher stopped the computation (see [`crate::progress`]).
    #[error("interrupted")]
    Interrupted,

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A data file is missing, malformed or unsuitable.
    #[error("{path}: {reason}")]
    Data {
        /// The file involved.
        path: PathBuf,
        /// What is wrong, with line and column where one applies.
        reason: String,
    },

    /// A model file is malformed, incomplete or of an unsupported format.
    #[error("model file {path}: {reason}")]
    ModelFile {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// `Result` with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }

    pub(crate) fn param(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            name,
            reason: reason.into(),
        }
    }
}
