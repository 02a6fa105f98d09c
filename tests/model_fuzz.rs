//! The model-file loader never panics: whatever the bytes, [`MetaAdditiveModel::load`] returns
//! `Ok` or an error, and a model it returns predicts (finite values or not) without panicking.
//!
//! Inputs tried (proptest, a bounded number of cases per property):
//!
//! * random byte strings of 0 to 4096 bytes, bare and behind a plausible 8-byte header length
//!   (these must be refused);
//! * valid model files (a tiny regression and a tiny binary model fitted here, and the
//!   repository's `models/demo-regression.safetensors`), mutated by: flipping random bytes,
//!   truncating at a random length, overwriting a random range of the JSON header with random
//!   bytes, setting the header length prefix to a random value, replacing one metadata value
//!   with garbage (empty, negative, huge, NaN, JSON of the wrong kind, other keys' values),
//!   removing or adding a metadata key, changing one tensor's shape (random, huge, zero-sized,
//!   or a reshape with the same element count), dtype (any safetensors dtype, with or without a
//!   shape that keeps the byte count), data offsets, removing or renaming a tensor, and
//!   overwriting one stored value with NaN, ±infinity, a huge or negative number or zero;
//! * valid files with one tensor replaced, the file kept a valid safetensors file (offsets
//!   recomputed): by one of any dtype and any shape with matching data (small shapes, and
//!   zero-sized ones with dimensions up to 2^64 − 1 beside the zero), or by the same shape
//!   holding random and special values (NaN, ±infinity, ±1e300, zero), sorted or not;
//! * a valid file whose `format_version` is larger than [`FORMAT_VERSION`], which must be
//!   refused with a message naming that version;
//! * named kinds of damage (duplicate feature names, format version 0 or `-1`, an empty task,
//!   a huge basis size, a NaN or infinite coefficient, a shape `[0, 2^62, 2^62]` holding no
//!   data, a wrong dtype, wrong or repeated class labels, half a target scale), each refused
//!   with its own message.
//!
//! `PROPTEST_CASES=N` runs N cases per property instead of 200; `METAADD_FUZZ_LOG=1` (with
//! `--nocapture`) prints what each case gave, to see which checks the mutations reach.

use candle_core::{DType, Device, Tensor};
use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
use metaadd::model::file::FORMAT_VERSION;
use metaadd::{FitParams, MetaAdditiveModel, Task};
use proptest::prelude::*;
use serde_json::{Map, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Cases per property: together the file runs in a few seconds in release mode. Set
/// `PROPTEST_CASES` for a longer search.
const CASES: u32 = 200;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// A directory for this test process, removed whenever it is empty (after the last case).
fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        std::env::temp_dir().join(format!("metaadd-model-fuzz-{}", std::process::id()))
    })
}

/// A uniquely named file in the scratch directory, deleted when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(bytes: &[u8]) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = scratch_dir().join(format!(
            "case-{}.safetensors",
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        // Another test thread may remove the directory when it is empty for a moment.
        for _ in 0..100 {
            let _ = std::fs::create_dir_all(scratch_dir());
            if std::fs::write(&path, bytes).is_ok() {
                return Scratch(path);
            }
        }
        panic!("cannot write {}", path.display())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        // Succeeds only once the directory is empty, that is after the last case.
        let _ = std::fs::remove_dir(scratch_dir());
    }
}

/// Valid model files: tiny regression and binary fits, and the demo model.
fn valid_files() -> &'static [Vec<u8>] {
    static FILES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FILES.get_or_init(|| {
        let splits = RegressionProtocol::new(RegressionNoise::A)
            .n(60)
            .n_features(8)
            .generate(0)
            .unwrap();
        let binary = |d: &metaadd::Dataset| {
            d.with_targets(d.y().iter().map(|&y| f64::from(y > 0.0)).collect())
                .unwrap()
        };
        let regression = FitParams::new(Task::Regression)
            .iterations(3)
            .fit(&splits.train, &splits.meta)
            .unwrap()
            .model;
        let classifier = FitParams::new(Task::Binary)
            .dtype(DType::F64)
            .iterations(3)
            .hidden(4)
            .fit(&binary(&splits.train), &binary(&splits.meta))
            .unwrap()
            .model;
        let mut files = Vec::new();
        for model in [regression, classifier] {
            let file = Scratch::new(b"");
            model.save(&file.0).unwrap();
            files.push(std::fs::read(&file.0).unwrap());
        }
        let demo = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/demo-regression.safetensors"
        );
        files.push(std::fs::read(demo).unwrap());
        files
    })
}

/// What loading `bytes` did; a panic is turned into `Err` with its message.
enum Outcome {
    Loaded,
    Refused(String),
}

fn try_load(bytes: &[u8]) -> Result<Outcome, String> {
    let file = Scratch::new(bytes);
    let result = catch_unwind(AssertUnwindSafe(|| {
        let result = MetaAdditiveModel::load(&file.0, &Device::Cpu);
        if std::env::var_os("METAADD_FUZZ_LOG").is_some() {
            match &result {
                Ok(_) => eprintln!("fuzz outcome: loaded"),
                Err(e) => eprintln!("fuzz outcome: {e}"),
            }
        }
        match result {
            Ok(model) => {
                use_model(&model);
                Outcome::Loaded
            }
            Err(e) => Outcome::Refused(e.to_string()),
        }
    }));
    result.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(no message)".to_string())
    })
}

/// Predicts on a few rows and evaluates the weight curve; results may be anything, errors are
/// fine, a panic is not (the caller catches it).
fn use_model(model: &MetaAdditiveModel) {
    let p = model.additive().feature_names().len();
    let x: Vec<f64> = (0..4 * p).map(|i| (i as f64 - 3.0) * 0.7).collect();
    if let Ok(x) = Tensor::from_vec(x, (4, p), &Device::Cpu) {
        let _ = model.predict(&x);
        if model.additive().task() != Task::Regression {
            let _ = model.predict_proba(&x);
            let _ = model.additive().class_indices(&x);
        }
    }
    let _ = model.weights(&[0.0, 0.5, 3.0, 1e6]);
    let _ = model.additive().group_norms();
    let _ = model.additive().shape_function(0, &[-1.0, 0.0, 1.0]);
}

/// The parsed JSON header of a valid file and the data after it.
fn split(bytes: &[u8]) -> (Map<String, Value>, &[u8]) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    match header {
        Value::Object(map) => (map, &bytes[8 + n..]),
        other => panic!("header is not an object: {other}"),
    }
}

/// A file from a header and data, with a correct length prefix.
fn join(header: &Map<String, Value>, data: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(header).unwrap();
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(data);
    out
}

const METADATA_KEYS: &[&str] = &[
    "format",
    "format_version",
    "crate_version",
    "feature_names",
    "target_name",
    "task",
    "loss",
    "basis",
    "weighting",
    "hypergradient",
    "k",
    "detach_weight_input",
    "normalize_weights",
    "lambda",
    "eta",
    "ridge",
    "hidden",
    "learning_rate",
    "weight_decay",
    "iterations",
    "inner_steps",
    "train_batch",
    "meta_batch",
    "seed",
    "dtype",
    "n_train",
    "n_meta",
    "class_labels",
    "target_mean",
    "target_sd",
    "inputs",
    "step_size",
    "standardize_target",
    "final_solve",
    "solver_tolerance",
    "solver_epochs",
    "solved_kkt",
    "solved_objective",
    "solved_epochs",
    "solved_converged",
];

const TENSOR_NAMES: &[&str] = &[
    "basis.mean",
    "basis.scale",
    "basis.knots",
    "basis.centre",
    "basis.transform",
    "model.beta",
    "model.bias",
    "weightnet.fc1.bias",
    "weightnet.fc1.weight",
    "weightnet.fc2.bias",
    "weightnet.fc2.weight",
];

/// Every dtype name safetensors knows, with its size in bits, and two it does not.
const DTYPES: &[(&str, usize)] = &[
    ("BOOL", 8),
    ("F4", 4),
    ("F6_E2M3", 6),
    ("F6_E3M2", 6),
    ("U8", 8),
    ("I8", 8),
    ("F8_E5M2", 8),
    ("F8_E4M3", 8),
    ("F8_E8M0", 8),
    ("I16", 16),
    ("U16", 16),
    ("F16", 16),
    ("BF16", 16),
    ("I32", 32),
    ("U32", 32),
    ("F32", 32),
    ("C64", 64),
    ("F64", 64),
    ("I64", 64),
    ("U64", 64),
    ("F128", 128),
    ("f64", 64),
];

fn garbage_value() -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(vec![
        "",
        " ",
        "-1",
        "-0",
        "0",
        "1",
        "2",
        "1e308",
        "-1e308",
        "1e-320",
        "NaN",
        "inf",
        "-inf",
        "4294967296",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "99999999999999999999999999999999",
        "[]",
        "[\"a\"]",
        "[\"a\",\"a\",\"b\"]",
        "[\"x1\",\"x2\"]",
        "[1,1]",
        "[0,1,2]",
        "[1.5,-2.5]",
        "[NaN]",
        "{",
        "{}",
        "null",
        "true",
        "false",
        "all",
        "regression",
        "binary",
        "multiclass(0)",
        "multiclass(1)",
        "multiclass(3)",
        "multiclass(18446744073709551615)",
        "squared",
        "logistic",
        "softmax",
        "huber(0)",
        "huber(-1)",
        "huber(NaN)",
        "bspline(m=0,orthonormal=false)",
        "bspline(m=3,orthonormal=false)",
        "bspline(m=1000,orthonormal=true)",
        "bspline(m=18446744073709551615,orthonormal=true)",
        "bernstein(m=1,orthonormal=true)",
        "bernstein(m=6)",
        "bspline(",
        "meta",
        "uniform",
        "huber(1e308)",
        "tilted(-1e308)",
        "tilted(NaN)",
        "exact",
        "f16",
        "f32",
        "f64",
        "metaadd",
    ])
    .prop_map(str::to_string);
    prop_oneof![
        4 => fixed,
        1 => any::<i64>().prop_map(|v| v.to_string()),
        1 => any::<u64>().prop_map(|v| v.to_string()),
        1 => any::<f64>().prop_map(|v| v.to_string()),
        1 => "\\PC{0,24}",
    ]
}

/// One change to a parsed header (and, for [`Edit::Value`], to the data).
#[derive(Debug, Clone)]
enum Edit {
    SetMeta(usize, String),
    RemoveMeta(usize),
    RemoveAllMeta,
    Shape(usize, Vec<u64>),
    Reshape(usize, u64),
    Dtype(usize, usize),
    DtypeKeepBytes(usize, usize),
    Offsets(usize, u64, u64),
    RemoveTensor(usize),
    RenameTensor(usize, String),
    Value(usize, u64, f64),
}

fn edit() -> impl Strategy<Value = Edit> {
    let meta = 0..METADATA_KEYS.len();
    let tensor = 0..TENSOR_NAMES.len();
    let dim = prop_oneof![
        4 => 0u64..25,
        1 => Just(u64::MAX),
        1 => Just(1u64 << 32),
        1 => Just(1u64 << 62),
        1 => any::<u64>(),
    ];
    let special = prop::sample::select(vec![
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MAX,
        -f64::MAX,
        1e300,
        -1.0,
        0.0,
        -0.0,
        f64::MIN_POSITIVE,
        5e-324,
    ]);
    prop_oneof![
        6 => (meta.clone(), garbage_value()).prop_map(|(k, v)| Edit::SetMeta(k, v)),
        2 => meta.prop_map(Edit::RemoveMeta),
        1 => Just(Edit::RemoveAllMeta),
        2 => (tensor.clone(), prop::collection::vec(dim, 0..5))
            .prop_map(|(t, s)| Edit::Shape(t, s)),
        2 => (tensor.clone(), any::<u64>()).prop_map(|(t, s)| Edit::Reshape(t, s)),
        1 => (tensor.clone(), 0..DTYPES.len()).prop_map(|(t, d)| Edit::Dtype(t, d)),
        2 => (tensor.clone(), 0..DTYPES.len()).prop_map(|(t, d)| Edit::DtypeKeepBytes(t, d)),
        1 => (tensor.clone(), any::<u64>(), any::<u64>())
            .prop_map(|(t, a, b)| Edit::Offsets(t, a % 20_000, b % 20_000)),
        1 => tensor.clone().prop_map(Edit::RemoveTensor),
        1 => (tensor.clone(), "[a-z._]{0,12}").prop_map(|(t, n)| Edit::RenameTensor(t, n)),
        3 => (tensor, any::<u64>(), special).prop_map(|(t, i, v)| Edit::Value(t, i, v)),
    ]
}

fn shape_of(entry: &Value) -> Vec<u64> {
    entry["shape"]
        .as_array()
        .map(|dims| dims.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// The element count of a shape, if it is small enough to work with here.
fn small_count(shape: &[u64]) -> Option<u64> {
    shape
        .iter()
        .try_fold(1u64, |a, &b| a.checked_mul(b))
        .filter(|&n| n <= 1 << 20)
}

/// Applies `edit` to a valid file's header and data.
fn apply(edit: &Edit, header: &mut Map<String, Value>, data: &mut [u8]) {
    let meta = |header: &mut Map<String, Value>| -> Map<String, Value> {
        match header.get("__metadata__") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        }
    };
    match edit {
        Edit::SetMeta(k, v) => {
            let mut m = meta(header);
            m.insert(METADATA_KEYS[*k].to_string(), Value::String(v.clone()));
            header.insert("__metadata__".into(), Value::Object(m));
        }
        Edit::RemoveMeta(k) => {
            let mut m = meta(header);
            m.remove(METADATA_KEYS[*k]);
            header.insert("__metadata__".into(), Value::Object(m));
        }
        Edit::RemoveAllMeta => {
            header.remove("__metadata__");
        }
        Edit::Shape(t, shape) => {
            if let Some(entry) = header.get_mut(TENSOR_NAMES[*t]) {
                entry["shape"] = Value::from(shape.clone());
            }
        }
        Edit::Reshape(t, seed) => {
            // Another shape with the same element count.
            let Some(entry) = header.get_mut(TENSOR_NAMES[*t]) else {
                return;
            };
            let Some(count) = small_count(&shape_of(entry)) else {
                return;
            };
            let divisors: Vec<u64> = (1..=count).filter(|d| count % d == 0).collect();
            let d = divisors
                .get(*seed as usize % divisors.len().max(1))
                .copied();
            let shape: Vec<u64> = match (seed / 7 % 5, d) {
                (0, _) => vec![count],
                (1, _) => vec![1, count],
                (2, _) => vec![count, 1, 1],
                (_, Some(d)) => vec![d, count / d],
                (_, None) => vec![],
            };
            entry["shape"] = Value::from(shape);
        }
        Edit::Dtype(t, d) => {
            if let Some(entry) = header.get_mut(TENSOR_NAMES[*t]) {
                entry["dtype"] = Value::from(DTYPES[*d].0);
            }
        }
        Edit::DtypeKeepBytes(t, d) => {
            // Another dtype, the last dimension scaled so that the byte count stays.
            let Some(entry) = header.get_mut(TENSOR_NAMES[*t]) else {
                return;
            };
            let bits_now = DTYPES
                .iter()
                .find(|(name, _)| Some(*name) == entry["dtype"].as_str())
                .map_or(8, |(_, bits)| *bits) as u64;
            let (name, bits) = DTYPES[*d];
            let mut shape = shape_of(entry);
            let Some(count) = small_count(&shape) else {
                return;
            };
            let total_bits = count * bits_now;
            let Some(others) = small_count(&shape[..shape.len().saturating_sub(1)]) else {
                return;
            };
            if let Some(last) = shape.last_mut() {
                if others > 0 && total_bits.is_multiple_of(others * bits as u64) {
                    *last = total_bits / (others * bits as u64);
                }
            }
            entry["dtype"] = Value::from(name);
            entry["shape"] = Value::from(shape);
        }
        Edit::Offsets(t, a, b) => {
            if let Some(entry) = header.get_mut(TENSOR_NAMES[*t]) {
                entry["data_offsets"] = Value::from(vec![*a, *b]);
            }
        }
        Edit::RemoveTensor(t) => {
            header.remove(TENSOR_NAMES[*t]);
        }
        Edit::RenameTensor(t, name) => {
            if let Some(entry) = header.remove(TENSOR_NAMES[*t]) {
                header.insert(name.clone(), entry);
            }
        }
        Edit::Value(t, i, v) => {
            let Some(entry) = header.get(TENSOR_NAMES[*t]) else {
                return;
            };
            let offset = |k: usize| entry["data_offsets"][k].as_u64().map(|o| o as usize);
            let (Some(start), Some(end)) = (offset(0), offset(1)) else {
                return;
            };
            if start > end || end > data.len() {
                return;
            }
            let bytes: Vec<u8> = match entry["dtype"].as_str() {
                Some("F64") => v.to_le_bytes().to_vec(),
                _ => (*v as f32).to_le_bytes().to_vec(),
            };
            let count = (end - start) / bytes.len();
            if count > 0 {
                let at = start + (*i as usize % count) * bytes.len();
                data[at..at + bytes.len()].copy_from_slice(&bytes);
            }
        }
    }
}

/// A file like `header` + `data` with tensor `name` replaced by `dtype`, `shape` and `bytes`,
/// every tensor's data offsets recomputed so that the file stays a valid safetensors file.
fn with_tensor(
    header: &Map<String, Value>,
    data: &[u8],
    name: &str,
    dtype: &str,
    shape: &[u64],
    bytes: &[u8],
) -> Vec<u8> {
    let offsets = |entry: &Value| {
        let at = |k: usize| entry["data_offsets"][k].as_u64().unwrap() as usize;
        (at(0), at(1))
    };
    let mut entries: Vec<(&String, &Value)> = header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .collect();
    entries.sort_by_key(|(_, entry)| offsets(entry));
    let mut out = Map::new();
    if let Some(meta) = header.get("__metadata__") {
        out.insert("__metadata__".into(), meta.clone());
    }
    let mut out_data = Vec::new();
    for (key, entry) in entries {
        let start = out_data.len();
        if key == name {
            out_data.extend_from_slice(bytes);
            out.insert(
                key.clone(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [start, out_data.len()]}),
            );
        } else {
            let (s, e) = offsets(entry);
            out_data.extend_from_slice(&data[s..e]);
            let mut entry = entry.clone();
            entry["data_offsets"] = Value::from(vec![start, out_data.len()]);
            out.insert(key.clone(), entry);
        }
    }
    join(&out, &out_data)
}

/// Shapes for a replacement tensor: small ones, and ones whose element count is zero only
/// because of a zero dimension next to huge ones.
fn replacement_shape() -> impl Strategy<Value = Vec<u64>> {
    prop_oneof![
        3 => prop::collection::vec(0u64..12, 0..4),
        1 => prop::collection::vec(
            prop_oneof![Just(0u64), Just(1 << 31), Just(1 << 32), Just(1 << 62), Just(u64::MAX)],
            1..5,
        )
        .prop_map(|mut shape| {
            shape[0] = 0;
            shape
        }),
    ]
}

fn base_file() -> impl Strategy<Value = usize> {
    0..3usize
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        match try_load(&bytes) {
            Err(panic) => prop_assert!(false, "load panicked: {}", panic),
            Ok(Outcome::Loaded) => prop_assert!(false, "random bytes loaded as a model"),
            Ok(Outcome::Refused(_)) => {}
        }
    }

    #[test]
    fn random_bytes_behind_a_plausible_length_are_refused(
        len in 0u64..4096,
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
    ) {
        let mut file = len.to_le_bytes().to_vec();
        file.extend_from_slice(&bytes);
        match try_load(&file) {
            Err(panic) => prop_assert!(false, "load panicked: {}", panic),
            Ok(Outcome::Loaded) => prop_assert!(false, "random bytes loaded as a model"),
            Ok(Outcome::Refused(_)) => {}
        }
    }

    #[test]
    fn flipped_bytes_never_panic(
        base in base_file(),
        flips in prop::collection::vec((any::<usize>(), 1u8..=255), 1..16),
    ) {
        let mut bytes = valid_files()[base].clone();
        let n = bytes.len();
        for (at, mask) in flips {
            bytes[at % n] ^= mask;
        }
        if let Err(panic) = try_load(&bytes) {
            prop_assert!(false, "load panicked: {}", panic);
        }
    }

    #[test]
    fn truncated_files_are_refused(base in base_file(), keep in any::<usize>()) {
        let bytes = &valid_files()[base];
        let keep = keep % bytes.len();
        match try_load(&bytes[..keep]) {
            Err(panic) => prop_assert!(false, "load panicked at length {}: {}", keep, panic),
            Ok(Outcome::Loaded) => prop_assert!(false, "a file cut at {} bytes loaded", keep),
            Ok(Outcome::Refused(_)) => {}
        }
    }

    #[test]
    fn overwritten_header_ranges_never_panic(
        base in base_file(),
        start in any::<usize>(),
        patch in prop::collection::vec(any::<u8>(), 1..64),
        printable in any::<bool>(),
    ) {
        let mut bytes = valid_files()[base].clone();
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let start = 8 + start % header_len;
        for (k, b) in patch.into_iter().enumerate() {
            if let Some(slot) = bytes.get_mut(start + k).filter(|_| start + k < 8 + header_len) {
                // Printable bytes keep more of the JSON parseable.
                *slot = if printable { b' ' + b % 95 } else { b };
            }
        }
        if let Err(panic) = try_load(&bytes) {
            prop_assert!(false, "load panicked: {}", panic);
        }
    }

    #[test]
    fn wrong_header_lengths_never_panic(base in base_file(), len in any::<u64>()) {
        let mut bytes = valid_files()[base].clone();
        bytes[..8].copy_from_slice(&len.to_le_bytes());
        if let Err(panic) = try_load(&bytes) {
            prop_assert!(false, "load panicked with header length {}: {}", len, panic);
        }
    }

    #[test]
    fn edited_headers_and_values_never_panic(
        base in base_file(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let (mut header, data) = split(&valid_files()[base]);
        let mut data = data.to_vec();
        for e in &edits {
            apply(e, &mut header, &mut data);
        }
        if let Err(panic) = try_load(&join(&header, &data)) {
            prop_assert!(false, "load panicked after {:?}: {}", edits, panic);
        }
    }

    #[test]
    fn tensors_of_any_dtype_and_shape_never_panic(
        base in base_file(),
        tensor in 0..TENSOR_NAMES.len(),
        dtype in 0..DTYPES.len() - 2,
        shape in replacement_shape(),
        seed in any::<u64>(),
    ) {
        let (header, data) = split(&valid_files()[base]);
        let (dtype, bits) = DTYPES[dtype];
        // Random bytes, as many as the shape holds (when that is a whole number of bytes).
        let count = shape.iter().try_fold(1u64, |a, &b| a.checked_mul(b)).unwrap_or(0);
        let len = (count * bits as u64).div_ceil(8) as usize;
        let bytes: Vec<u8> = (0..len as u64)
            .map(|i| (seed.wrapping_mul(i + 1).wrapping_add(i) >> 13) as u8)
            .collect();
        let file = with_tensor(&header, data, TENSOR_NAMES[tensor], dtype, &shape, &bytes);
        if let Err(panic) = try_load(&file) {
            prop_assert!(false, "load panicked with {} {:?}: {}", dtype, shape, panic);
        }
    }

    #[test]
    fn stored_values_of_any_kind_never_panic(
        base in base_file(),
        tensor in 0..TENSOR_NAMES.len(),
        values in prop::collection::vec(
            prop_oneof![
                4 => -10.0f64..10.0,
                1 => prop::sample::select(vec![
                    0.0, -0.0, 1.0, -1.0, 1e300, -1e300, f64::MAX, f64::MIN_POSITIVE,
                    f64::NAN, f64::INFINITY, f64::NEG_INFINITY,
                ]),
            ],
            1..64,
        ),
        sorted in any::<bool>(),
    ) {
        // Every value of one tensor replaced, cycling through `values` (sorted if asked, so
        // that knot vectors are sometimes increasing).
        let (header, data) = split(&valid_files()[base]);
        let name = TENSOR_NAMES[tensor];
        let entry = &header[name];
        let (dtype, shape) = (entry["dtype"].as_str().unwrap(), shape_of(entry));
        let count = shape.iter().product::<u64>() as usize;
        let mut cycled: Vec<f64> = values.iter().copied().cycle().take(count).collect();
        if sorted {
            cycled.sort_by(f64::total_cmp);
        }
        let bytes: Vec<u8> = match dtype {
            "F64" => cycled.iter().flat_map(|v| v.to_le_bytes()).collect(),
            _ => cycled.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect(),
        };
        let file = with_tensor(&header, data, name, dtype, &shape, &bytes);
        if let Err(panic) = try_load(&file) {
            prop_assert!(false, "load panicked with {} = {:?}: {}", name, values, panic);
        }
    }

    #[test]
    fn newer_format_versions_are_refused_naming_the_version(
        base in base_file(),
        version in (FORMAT_VERSION as u64 + 1)..=u32::MAX as u64,
    ) {
        let (mut header, data) = split(&valid_files()[base]);
        apply(
            &Edit::SetMeta(1, version.to_string()),
            &mut header,
            &mut data.to_vec(),
        );
        match try_load(&join(&header, data)) {
            Err(panic) => prop_assert!(false, "load panicked: {}", panic),
            Ok(Outcome::Loaded) => prop_assert!(false, "format version {} loaded", version),
            Ok(Outcome::Refused(message)) => prop_assert!(
                message.contains(&format!("format version {version} is not supported")),
                "{}",
                message
            ),
        }
    }
}

#[test]
fn unmodified_files_load_and_rewritten_headers_still_load() {
    for (k, bytes) in valid_files().iter().enumerate() {
        assert!(matches!(try_load(bytes), Ok(Outcome::Loaded)), "file {k}");
        // The rewriting used above keeps a valid file valid.
        let (header, data) = split(bytes);
        assert!(
            matches!(try_load(&join(&header, data)), Ok(Outcome::Loaded)),
            "file {k} after rewriting its header"
        );
        let entry = &header["model.bias"];
        let (s, e) = (
            entry["data_offsets"][0].as_u64().unwrap() as usize,
            entry["data_offsets"][1].as_u64().unwrap() as usize,
        );
        let same = with_tensor(
            &header,
            data,
            "model.bias",
            entry["dtype"].as_str().unwrap(),
            &shape_of(entry),
            &data[s..e],
        );
        assert!(
            matches!(try_load(&same), Ok(Outcome::Loaded)),
            "file {k} after rebuilding its tensors"
        );
    }
}

#[test]
fn the_next_format_version_is_refused_with_a_clear_message() {
    let (mut header, data) = split(&valid_files()[0]);
    let next = FORMAT_VERSION + 1;
    apply(
        &Edit::SetMeta(1, next.to_string()),
        &mut header,
        &mut data.to_vec(),
    );
    match try_load(&join(&header, data)) {
        Ok(Outcome::Refused(message)) => {
            assert!(message.contains("model file"), "{message}");
            assert!(
                message.contains(&format!(
                    "format version {next} is not supported (this build reads versions 1 to \
                     {FORMAT_VERSION})"
                )),
                "{message}"
            );
        }
        Ok(Outcome::Loaded) => panic!("format version {next} loaded"),
        Err(panic) => panic!("load panicked: {panic}"),
    }
}

#[test]
fn specific_damage_gives_named_errors() {
    let files = valid_files();
    let (header, data) = split(&files[0]);
    let (binary_header, binary_data) = split(&files[1]);
    let edited = |header: &Map<String, Value>, data: &[u8], edit: Edit| {
        let (mut header, mut data) = (header.clone(), data.to_vec());
        apply(&edit, &mut header, &mut data);
        join(&header, &data)
    };
    let beta = TENSOR_NAMES
        .iter()
        .position(|&n| n == "model.beta")
        .unwrap();
    let meta_key = |key: &str| METADATA_KEYS.iter().position(|&k| k == key).unwrap();
    let names = r#"["x1","x2","x3","x1","x5","x6","x7","x8"]"#.to_string();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty file", vec![], "not a safetensors file"),
        (
            "truncated header",
            files[0][..100].to_vec(),
            "not a safetensors file",
        ),
        (
            "truncated data",
            files[0][..files[0].len() - 1].to_vec(),
            "not a safetensors file",
        ),
        (
            "duplicate feature names",
            edited(
                &header,
                data,
                Edit::SetMeta(meta_key("feature_names"), names),
            ),
            "metadata `feature_names` lists `x1` twice",
        ),
        (
            "format version 0",
            edited(
                &header,
                data,
                Edit::SetMeta(meta_key("format_version"), "0".into()),
            ),
            "format version 0 is not supported",
        ),
        (
            "negative format version",
            edited(
                &header,
                data,
                Edit::SetMeta(meta_key("format_version"), "-1".into()),
            ),
            "metadata `format_version` has the unreadable value `-1`",
        ),
        (
            "empty task",
            edited(
                &header,
                data,
                Edit::SetMeta(meta_key("task"), String::new()),
            ),
            "metadata `task`: invalid input: unknown task ``",
        ),
        (
            "huge basis size",
            edited(
                &header,
                data,
                Edit::SetMeta(
                    meta_key("basis"),
                    "bspline(m=99999999999,orthonormal=true)".into(),
                ),
            ),
            "metadata `basis`: invalid input: cannot parse basis spec \
             `bspline(m=99999999999,orthonormal=true)`",
        ),
        (
            "NaN coefficient",
            edited(&header, data, Edit::Value(beta, 0, f64::NAN)),
            "tensor `model.beta` has the non-finite value NaN at flat index 0",
        ),
        (
            "infinite binary coefficient",
            edited(
                &binary_header,
                binary_data,
                Edit::Value(beta, 2, f64::INFINITY),
            ),
            "tensor `model.beta` has the non-finite value inf at flat index 2",
        ),
        (
            "huge shape holding no data",
            with_tensor(
                &header,
                data,
                "basis.mean",
                "F64",
                &[0, 1 << 62, 1 << 62],
                &[],
            ),
            "tensor `basis.mean` has shape [0, 4611686018427387904, 4611686018427387904], \
             expected [8]",
        ),
        (
            "wrong dtype",
            with_tensor(&header, data, "basis.mean", "I64", &[8], &[0; 64]),
            "tensor `basis.mean` has dtype I64, expected F64",
        ),
        (
            "too many class labels",
            edited(
                &binary_header,
                binary_data,
                Edit::SetMeta(meta_key("class_labels"), "[0,1,2]".into()),
            ),
            "metadata `class_labels` has 3 labels for a binary task",
        ),
        (
            "repeated class labels",
            edited(
                &binary_header,
                binary_data,
                Edit::SetMeta(meta_key("class_labels"), "[1,1]".into()),
            ),
            "class labels must be distinct finite values",
        ),
        (
            "one of target mean and sd",
            edited(&header, data, Edit::RemoveMeta(meta_key("target_sd"))),
            "metadata holds only one of `target_mean` and `target_sd`",
        ),
    ];
    let mut failures = Vec::new();
    for (name, bytes, expected) in &cases {
        match try_load(bytes) {
            Ok(Outcome::Refused(message)) if message.contains(expected) => {}
            Ok(Outcome::Refused(message)) => failures.push(format!("{name}: {message}")),
            Ok(Outcome::Loaded) => failures.push(format!("{name}: loaded")),
            Err(panic) => failures.push(format!("{name}: panicked: {panic}")),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
