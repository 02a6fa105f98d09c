//! `metaadd inspect`: what a model file holds.

use crate::report::{print_table, selected_features, selected_json, Report};
use candle_core::Device;
use clap::Args;
use metaadd::data::encoding::InputColumn;
use metaadd::params::SETTINGS;
use metaadd::MetaAdditiveModel;
use serde_json::Value;
use std::path::PathBuf;

#[derive(Args)]
pub struct InspectArgs {
    /// A model written by `metaadd fit`.
    #[arg(long)]
    model: PathBuf,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let model = MetaAdditiveModel::load(&args.model, &Device::Cpu)?;
    let additive = model.additive();
    let params = model.params();
    let selected = selected_features(additive)?;
    let names = additive.feature_names();

    let mut report = Report::new();
    report.text("model", args.model.display().to_string());
    report.value(
        "format version",
        Value::from(metaadd::model::file::FORMAT_VERSION),
    );
    report.text("written by", format!("metaadd {}", model.crate_version()));
    report.text("target", additive.target_name());
    if let Some(labels) = model.classes() {
        report.list("class labels", labels.names());
    }
    if let Some(scale) = model.target_scale() {
        report.number("target centre", scale.mean());
        report.number("target scale", scale.sd());
    }
    for input in model.encoding().inputs() {
        if let InputColumn::Categorical { name, levels } = input {
            report.list(&format!("levels of {name}"), levels.clone());
        }
    }
    let (n_train, n_meta) = model.data_sizes();
    report.count("training rows", n_train);
    report.count("meta rows", n_meta);
    report.count("features", names.len());
    for setting in SETTINGS {
        report.value(
            &setting.key.replace('_', " "),
            typed(&(setting.get)(params)),
        );
    }
    report.number("step size", model.eta());
    report.count("selected features", selected.len());
    report.value("selected", selected_json(&selected));

    if args.json {
        println!("{}", report.json());
        return Ok(());
    }
    let mut rows = report.rows();
    rows.pop(); // the selected list gets its own table
    print_table(&rows);
    println!(
        "\n{:>4}  {:<width$}  group norm",
        "rank",
        "feature",
        width = name_width(names)
    );
    for (rank, (name, norm)) in selected.iter().enumerate() {
        println!(
            "{:>4}  {:<width$}  {:.4}",
            rank + 1,
            name,
            norm,
            width = name_width(names)
        );
    }
    Ok(())
}

fn name_width(names: &[String]) -> usize {
    names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(7)
        .max(7)
}

/// A setting's text as JSON: booleans and numbers as such, anything else as a string.
fn typed(text: &str) -> Value {
    match text {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        t => t
            .parse::<u64>()
            .map(Value::from)
            .or_else(|_| t.parse::<f64>().map(Value::from))
            .unwrap_or_else(|_| Value::from(t)),
    }
}
