//! `metaadd inspect`: what a model file holds.

use crate::report::{print_table, Report};
use candle_core::Device;
use clap::Args;
use metaadd::MetaAdditiveModel;
use serde_json::{json, Value};
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
    let norms = additive.group_norms()?;
    let mut ranked: Vec<usize> = additive.selected_features()?;
    ranked.sort_by(|&a, &b| norms[b].total_cmp(&norms[a]));
    let names = additive.feature_names();

    let mut report = Report::new();
    report.text("model", args.model.display().to_string());
    report.text(
        "format version",
        metaadd::checkpoint::FORMAT_VERSION.to_string(),
    );
    report.text("written by", format!("metaadd {}", model.crate_version()));
    report.text("task", additive.task().to_string());
    report.text("target", additive.target_name());
    if let Some(labels) = model.class_labels() {
        report.list(
            "class labels",
            labels.values().iter().map(f64::to_string).collect(),
        );
    }
    let (n_train, n_meta) = model.data_sizes();
    report.count("training rows", n_train);
    report.count("meta rows", n_meta);
    report.count("features", names.len());
    report.text("loss", params.resolved_loss().to_string());
    report.text("basis", params.basis.to_string());
    report.text("weighting", params.weighting.to_string());
    report.count("K", params.k);
    report.text("hypergradient", params.hypergradient.to_string());
    report.text(
        "detach weight input",
        params.detach_weight_input.to_string(),
    );
    report.text("normalize weights", params.normalize_weights.to_string());
    report.number("lambda", params.lambda);
    report.number("eta", model.eta());
    report.number("ridge", params.ridge);
    report.count("hidden units", params.hidden);
    report.number("learning rate", params.learning_rate);
    report.number("weight decay", params.weight_decay);
    report.count("iterations", params.iterations);
    report.count("inner steps", params.inner_steps);
    let batch = |b: Option<usize>| b.map_or("all".to_string(), |b| b.to_string());
    report.text("train batch", batch(params.train_batch));
    report.text("meta batch", batch(params.meta_batch));
    report.text("seed", params.seed.to_string());
    report.text("dtype", format!("{:?}", params.dtype).to_lowercase());
    report.count("selected features", ranked.len());
    let selected: Vec<Value> = ranked
        .iter()
        .map(|&j| json!({"feature": names[j], "group_norm": norms[j]}))
        .collect();
    report.value("selected", Value::from(selected));

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
    for (rank, &j) in ranked.iter().enumerate() {
        println!(
            "{:>4}  {:<width$}  {:.4}",
            rank + 1,
            names[j],
            norms[j],
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
