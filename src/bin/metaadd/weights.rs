//! `metaadd weights`: the per-row weights table of labelled rows under a saved model.

use crate::outputs::{self, TextOut};
use clap::Args;
use metaadd::model::{WeightsTable, DOWN_WEIGHT_THRESHOLD};
use std::path::PathBuf;

#[derive(Args)]
pub struct WeightsArgs {
    #[command(flatten)]
    input: crate::args::ModelAndRows,
    /// Output CSV (`-`: standard output, the default): row (0 = the first data row), line (in the CSV
    /// file), target, prediction, loss, weight, rank (1 = the smallest weight),
    /// down_weighted.
    #[arg(long)]
    out: Option<PathBuf>,
    /// A row is flagged down_weighted when its weight is below this fraction of the mean
    /// weight of the rows.
    #[arg(long, default_value_t = DOWN_WEIGHT_THRESHOLD)]
    down_threshold: f64,
}

pub fn run(args: &WeightsArgs) -> anyhow::Result<()> {
    let out = match &args.out {
        Some(path) => outputs::text("--out", path)?,
        None => TextOut::Stdout,
    };
    let (model, rows) = args.input.load()?;
    let data = model.read_labelled(&rows)?;
    let table = model.weights_table(&data, args.down_threshold)?;
    out.write_csv(&WeightsTable::headers(), &table.text_rows())?;
    eprintln!(
        "{} of {} rows down-weighted (weight below {} of the mean weight {:.4})",
        table.down_weighted(),
        table.rows.len(),
        table.threshold,
        table.mean_weight
    );
    Ok(())
}
