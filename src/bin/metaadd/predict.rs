//! `metaadd predict`: predictions for the rows of a CSV file.

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use clap::Args;
use metaadd::data::csv::{write_csv, write_csv_to, CsvTable};
use metaadd::{MetaAdditiveModel, Task};
use std::path::PathBuf;

#[derive(Args)]
pub struct PredictArgs {
    /// A model written by `metaadd fit`.
    #[arg(long)]
    model: PathBuf,
    /// Rows to predict (CSV with a header row; the model's feature columns in any order).
    #[arg(long)]
    data: PathBuf,
    /// Output CSV [default: standard output].
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: &PredictArgs) -> anyhow::Result<()> {
    let model = MetaAdditiveModel::load(&args.model, &Device::Cpu)?;
    let additive = model.additive();
    let table = CsvTable::read(&args.data)?;
    let x = table.matrix(additive.feature_names())?;
    let n = table.n_rows();
    let x = Tensor::from_vec(x, (n, additive.feature_names().len()), &Device::Cpu)?;
    // Shortest text that reads back to the model's own precision.
    let text = |v: f64| match additive.dtype() {
        DType::F32 => (v as f32).to_string(),
        _ => v.to_string(),
    };
    let (headers, rows): (Vec<String>, Vec<Vec<String>>) = match additive.task() {
        Task::Regression => {
            let f = additive
                .predict(&x)?
                .flatten_all()?
                .to_dtype(DType::F64)?
                .to_vec1::<f64>()?;
            let f = match model.target_scale() {
                Some(scale) => scale.decode(&f),
                None => f,
            };
            let header = format!("predicted_{}", additive.target_name());
            (vec![header], f.iter().map(|&v| vec![text(v)]).collect())
        }
        _ => {
            let labels = model
                .class_labels()
                .context("classification model without class labels")?;
            let proba = additive
                .predict_proba(&x)?
                .to_dtype(DType::F64)?
                .to_vec2::<f64>()?;
            let mut headers: Vec<String> = labels
                .values()
                .iter()
                .map(|l| format!("probability_{l}"))
                .collect();
            headers.push(format!("predicted_{}", additive.target_name()));
            let rows = proba
                .iter()
                .map(|p| {
                    let best = (0..p.len()).fold(0, |b, c| if p[c] > p[b] { c } else { b });
                    let mut row: Vec<String> = p.iter().map(|&v| text(v)).collect();
                    row.push(labels.decode(best).unwrap_or(f64::NAN).to_string());
                    row
                })
                .collect();
            (headers, rows)
        }
    };
    match &args.out {
        Some(path) => write_csv(path, &headers, &rows)?,
        None => write_csv_to(
            std::io::stdout().lock(),
            std::path::Path::new("standard output"),
            &headers,
            &rows,
        )?,
    }
    Ok(())
}
