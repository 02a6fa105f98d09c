//! `metaadd predict`: predictions for the rows of a CSV file.

use crate::outputs::{self, TextOut};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct PredictArgs {
    #[command(flatten)]
    input: crate::args::ModelAndRows,
    /// Output CSV (`-`: standard output) [default: standard output].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Columns of --data copied to the output before the predictions (identifiers, the
    /// truth), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "COLUMN,...")]
    keep: Vec<String>,
}

pub fn run(args: &PredictArgs) -> anyhow::Result<()> {
    let out = match &args.out {
        Some(path) => outputs::text("--out", path)?,
        None => TextOut::Stdout,
    };
    let (model, table) = args.input.load()?;
    let data = model.read_features(&table)?;
    let kept = args
        .keep
        .iter()
        .map(|name| {
            let column = table.column(name.trim())?;
            Ok((0..table.n_rows())
                .map(|i| column.cell_text(i).unwrap_or_default())
                .collect::<Vec<String>>())
        })
        .collect::<metaadd::Result<Vec<_>>>()
        .map_err(|e| anyhow::anyhow!("--keep: {e}"))?;
    // Shortest text that reads back to the model's own precision.
    let dtype = model.additive().dtype();
    let text = |v: f64| metaadd::model::number_text(v, dtype);
    let target = model.encoding().target_name();
    let (headers, rows): (Vec<String>, Vec<Vec<String>>) = match model.classes() {
        None => {
            let f = model.predict_values(&data)?;
            let header = format!("predicted_{target}");
            (vec![header], f.iter().map(|&v| vec![text(v)]).collect())
        }
        Some(labels) => {
            let proba = model.predict_proba_rows(&data)?;
            let predicted = model.predict_labels(&data)?;
            let mut headers: Vec<String> = labels
                .names()
                .iter()
                .map(|l| format!("probability_{l}"))
                .collect();
            headers.push(format!("predicted_{target}"));
            let rows = proba
                .iter()
                .zip(predicted)
                .map(|(p, label)| {
                    let mut row: Vec<String> = p.iter().map(|&v| text(v)).collect();
                    row.push(label);
                    row
                })
                .collect();
            (headers, rows)
        }
    };
    let headers: Vec<String> = args
        .keep
        .iter()
        .map(|k| k.trim().to_string())
        .chain(headers)
        .collect();
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .enumerate()
        .map(|(i, row)| kept.iter().map(|c| c[i].clone()).chain(row).collect())
        .collect();
    out.write_csv(&headers, &rows)
}
