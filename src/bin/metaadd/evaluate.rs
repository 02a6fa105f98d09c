//! `metaadd evaluate`: a saved model's scores on labelled rows of a CSV file.

use crate::report::{print_table, Report};
use clap::Args;

#[derive(Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    input: crate::args::ModelAndRows,
    /// Print the scores as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &EvaluateArgs) -> anyhow::Result<()> {
    let (model, table) = args.input.load()?;
    let data = model.read_labelled(&table)?;
    let mut report = Report::new();
    report.text("model", args.input.model.display().to_string());
    report.text("data", args.input.data.display().to_string());
    report.count("rows", data.n_samples());
    add_scores(&mut report, &model.evaluate(&data)?, "");
    if args.json {
        println!("{}", report.json());
    } else {
        print_table(&report.rows());
    }
    Ok(())
}

/// Adds each score as `<prefix>name` (e.g. `test macro f1`): MSE, MAE and R² in the target's
/// units, or accuracy, macro-F1, balanced accuracy, ROC-AUC and log-loss.
pub fn add_scores(report: &mut Report, scores: &metaadd::Scores, prefix: &str) {
    for (name, value) in scores.pairs() {
        report.number(&format!("{prefix}{}", name.replace('_', " ")), value);
    }
}
