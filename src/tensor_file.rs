//! Safetensors files with string metadata, as model files and exported problems use them:
//! written with a sorted header (the same content gives the same bytes), read through one
//! checked getter that refuses a missing tensor, another shape or another dtype before any
//! data is read, as candle-nn's `VarBuilder::get` does.

use crate::error::{Error, Result};
use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use safetensors::SafeTensors;
use std::collections::HashMap;

/// Serialises tensors (any device) and string metadata, the header's keys sorted.
pub fn serialize(
    tensors: Vec<(String, Tensor)>,
    metadata: HashMap<String, String>,
) -> std::result::Result<Vec<u8>, String> {
    let host = tensors
        .into_iter()
        .map(|(name, t)| Ok((name, t.to_device(&Device::Cpu)?)))
        .collect::<std::result::Result<Vec<_>, candle_core::Error>>()
        .map_err(|e| e.to_string())?;
    let bytes = safetensors::serialize(host, Some(metadata)).map_err(|e| e.to_string())?;
    with_sorted_header(&bytes)
}

/// A safetensors file's tensors and metadata, read with checks; every error is a
/// [`Error::ModelFile`] (its path filled in by the caller).
pub struct TensorReader<'a> {
    file: SafeTensors<'a>,
    metadata: HashMap<String, String>,
}

impl<'a> TensorReader<'a> {
    /// Parses the header (tensor data is read only by [`TensorReader::get`]).
    pub fn new(bytes: &'a [u8]) -> Result<Self> {
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a safetensors file ({e})")))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let file = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("corrupted ({e})")))?;
        Ok(Self { file, metadata })
    }

    /// The string metadata.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Metadata value `key`; a missing key is an error naming it.
    pub fn meta(&self, key: &str) -> Result<&str> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| bad(format!("metadata key `{key}` is missing")))
    }

    /// Whether the file holds a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.file.tensor(name).is_ok()
    }

    /// Tensor `name` with exactly `shape` and `dtype`, on the CPU.
    ///
    /// Shape and dtype are checked on the header before any data is read: a header may
    /// declare any shape (huge dimensions next to a zero one hold no data at all) and any
    /// dtype, which must not reach the tensor library.
    pub fn get(&self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let view = self
            .file
            .tensor(name)
            .map_err(|_| bad(format!("tensor `{name}` is missing")))?;
        if view.shape() != shape {
            return Err(bad(format!(
                "tensor `{name}` has shape {:?}, expected {shape:?}",
                view.shape()
            )));
        }
        if view.dtype() != safetensors::Dtype::from(dtype) {
            return Err(bad(format!(
                "tensor `{name}` has dtype {:?}, expected {dtype:?}",
                view.dtype()
            )));
        }
        let t = view
            .load(&Device::Cpu)
            .map_err(|e| bad(format!("tensor `{name}` cannot be read: {e}")))?;
        if t.dims() != shape || t.dtype() != dtype {
            return Err(bad(format!(
                "tensor `{name}` reads as {:?} {:?}, expected {dtype:?} {shape:?}",
                t.dtype(),
                t.dims()
            )));
        }
        Ok(t)
    }

    /// [`TensorReader::get`] for a tensor whose values must all be finite (fitted
    /// coefficients, weight-net parameters: a NaN or infinity means the file is damaged).
    pub fn get_finite(&self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let t = self.get(name, shape, dtype)?;
        let values: Vec<f64> = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!(
                "tensor `{name}` has the non-finite value {} at flat index {pos}",
                values[pos]
            )));
        }
        Ok(t)
    }
}

/// A model-file error; the loader fills in the path.
pub fn bad(reason: impl Into<String>) -> Error {
    Error::ModelFile {
        path: std::path::PathBuf::new(),
        reason: reason.into(),
    }
}

/// Rewrites a safetensors header with every JSON object's keys sorted.
///
/// The `safetensors` crate writes the metadata from a `HashMap`, whose order changes from run
/// to run; sorting makes the same model give the same bytes. Tensor offsets are relative to the
/// end of the header, so only the header changes.
fn with_sorted_header(bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let header_len = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or("serialized model has no header")? as usize;
    let header = bytes
        .get(8..8 + header_len)
        .ok_or("serialized model header is truncated")?;
    let value: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| format!("serialized header: {e}"))?;
    let mut json = sorted_json(&value);
    // safetensors pads the header with spaces to a multiple of 8 bytes.
    json.extend(std::iter::repeat_n(b' ', (8 - json.len() % 8) % 8));
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&bytes[8 + header_len..]);
    Ok(out)
}

fn sorted_json(value: &serde_json::Value) -> Vec<u8> {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let mut out = b"{".to_vec();
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(
                    serde_json::Value::String(key.clone())
                        .to_string()
                        .into_bytes(),
                );
                out.push(b':');
                out.extend(sorted_json(v));
            }
            out.push(b'}');
            out
        }
        other => other.to_string().into_bytes(),
    }
}
