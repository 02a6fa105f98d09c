//! Model files: save/load reproduces predictions bit for bit; bad files give named errors.

use candle_core::{DType, Device, Tensor};
use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
use metaadd::{Error, FitParams, MetaAdditiveModel, Task};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("metaadd-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn trained(dtype: DType, task: Task) -> (MetaAdditiveModel, Tensor) {
    let splits = RegressionProtocol::new(RegressionNoise::B)
        .n(120)
        .n_features(9)
        .generate(2)
        .unwrap();
    let relabel = |d: &metaadd::Dataset| match task {
        Task::Regression => d.clone(),
        _ => d
            .with_targets(d.y().iter().map(|&y| f64::from(y > 0.0)).collect())
            .unwrap(),
    };
    let fit = FitParams::new(task)
        .dtype(dtype)
        .iterations(20)
        .k(2)
        .hidden(16)
        .fit(&relabel(&splits.train), &relabel(&splits.meta))
        .unwrap();
    let x = Tensor::from_vec(splits.test.x().to_vec(), (120, 9), &Device::Cpu).unwrap();
    (fit.model, x)
}

#[test]
fn save_then_load_predicts_bit_for_bit() {
    for (dtype, task) in [
        (DType::F32, Task::Regression),
        (DType::F64, Task::Regression),
        (DType::F32, Task::Binary),
    ] {
        let (model, x) = trained(dtype, task);
        let path = temp_path(&format!("roundtrip-{dtype:?}-{task}.safetensors"));
        model.save(&path).unwrap();
        let loaded = MetaAdditiveModel::load(&path, &Device::Cpu).unwrap();
        let flat = |t: Tensor| t.flatten_all().unwrap().to_dtype(DType::F64).unwrap();
        let a = flat(model.predict(&x).unwrap()).to_vec1::<f64>().unwrap();
        let b = flat(loaded.predict(&x).unwrap()).to_vec1::<f64>().unwrap();
        assert_eq!(a, b, "{dtype:?} {task}: predictions differ after reload");
        assert_eq!(
            model.weights(&[0.1, 1.0, 10.0]).unwrap(),
            loaded.weights(&[0.1, 1.0, 10.0]).unwrap()
        );
        assert_eq!(
            loaded.additive().feature_names(),
            model.additive().feature_names()
        );
        assert_eq!(loaded.additive().task(), task);
        assert_eq!(loaded.params().k, 2);
        assert_eq!(loaded.eta(), model.eta());
        assert_eq!(loaded.data_sizes(), (120, 120));
        // The training losses' 99th percentile (the weight curve's range) is kept.
        let q = model.training_loss_q99().unwrap();
        assert!(q.is_finite() && q > 0.0, "{q}");
        assert_eq!(loaded.training_loss_q99(), Some(q));
    }
}

#[test]
fn the_same_model_gives_the_same_bytes() {
    let (model, _) = trained(DType::F32, Task::Regression);
    let (again, _) = trained(DType::F32, Task::Regression);
    let (a, b) = (
        temp_path("same-a.safetensors"),
        temp_path("same-b.safetensors"),
    );
    model.save(&a).unwrap();
    again.save(&b).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn shipped_demo_model_loads_and_predicts() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo-regression.safetensors");
    let model = MetaAdditiveModel::load(&path, &Device::Cpu).unwrap();
    let selected = model.additive().selected_features().unwrap();
    assert_eq!(
        selected,
        (0..8).collect::<Vec<_>>(),
        "demo model selects x1..x8"
    );
    // The demo's own protocol: fresh clean test data from another seed.
    let p = model.additive().feature_names().len();
    let splits = RegressionProtocol::new(RegressionNoise::B)
        .n(500)
        .n_features(p)
        .generate(99)
        .unwrap();
    let pred = model.predict_values(&splits.test).unwrap();
    let mse = metaadd::evaluate::mse(&pred, splits.test.y());
    assert!(mse < 0.05, "demo model test MSE {mse}");
}

/// Rewrites a valid model file with some tensors or metadata changed.
fn rewrite(
    src: &Path,
    dst: &Path,
    edit_tensors: impl Fn(&mut Vec<(String, Tensor)>),
    edit_meta: impl Fn(&mut HashMap<String, String>),
) {
    let bytes = std::fs::read(src).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    let mut tensors: Vec<(String, Tensor)> = tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    edit_tensors(&mut tensors);
    edit_meta(&mut meta);
    safetensors::serialize_to_file(tensors, Some(meta), dst).unwrap();
}

fn load_error(path: &Path) -> String {
    match MetaAdditiveModel::load(path, &Device::Cpu) {
        Ok(_) => panic!("{} loaded although it is bad", path.display()),
        Err(e @ (Error::ModelFile { .. } | Error::Io { .. })) => e.to_string(),
        Err(other) => panic!("unexpected error kind: {other:?}"),
    }
}

#[test]
fn bad_model_files_give_errors_that_name_the_problem() {
    let (model, _) = trained(DType::F32, Task::Regression);
    let good = temp_path("good.safetensors");
    model.save(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let missing = temp_path("does-not-exist.safetensors");
    assert!(load_error(&missing).contains("does-not-exist.safetensors"));

    let truncated = temp_path("truncated.safetensors");
    for cut in [0, 4, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&truncated, &bytes[..cut]).unwrap();
        let e = load_error(&truncated);
        assert!(e.contains("truncated.safetensors"), "{e}");
    }

    let garbage = temp_path("garbage.safetensors");
    let mut corrupted = bytes.clone();
    for b in corrupted.iter_mut().skip(8).take(40) {
        *b = b'#';
    }
    std::fs::write(&garbage, &corrupted).unwrap();
    assert!(load_error(&garbage).contains("not a safetensors file"));

    let out = temp_path("edited.safetensors");
    rewrite(
        &good,
        &out,
        |t| t.retain(|(n, _)| n != "model.beta"),
        |_| {},
    );
    assert!(load_error(&out).contains("tensor `model.beta` is missing"));

    rewrite(
        &good,
        &out,
        |t| {
            for (name, tensor) in t.iter_mut() {
                if name == "basis.knots" {
                    *tensor = tensor.narrow(1, 0, 3).unwrap();
                }
            }
        },
        |_| {},
    );
    let e = load_error(&out);
    assert!(e.contains("basis.knots") && e.contains("expected"), "{e}");

    rewrite(
        &good,
        &out,
        |_| {},
        |m| {
            m.insert("format_version".into(), "7".into());
        },
    );
    assert!(load_error(&out).contains("format version 7 is not supported"));

    rewrite(
        &good,
        &out,
        |_| {},
        |m| {
            m.remove("format");
        },
    );
    assert!(load_error(&out).contains("not a metaadd model"));

    rewrite(
        &good,
        &out,
        |_| {},
        |m| {
            m.insert("basis".into(), "wavelets(m=3)".into());
        },
    );
    assert!(load_error(&out).contains("wavelets"));

    // A plain safetensors file without metadata.
    let plain = temp_path("plain.safetensors");
    let t = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
    safetensors::serialize_to_file(vec![("x".to_string(), t)], None, &plain).unwrap();
    assert!(load_error(&plain).contains("not a metaadd model"));
}
