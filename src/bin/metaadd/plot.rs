//! `metaadd plot`: shape functions and the learned weight curve, as images and CSV.

use crate::figures::{write_figure, ImageFormat, Panel, Series};
use anyhow::{bail, Context};
use candle_core::Device;
use clap::Args;
use metaadd::data::csv::write_csv;
use metaadd::MetaAdditiveModel;
use std::path::PathBuf;

/// Points on each curve.
const GRID: usize = 200;
/// Panels per row of the shape-function figure.
const COLUMNS: usize = 3;

#[derive(Args)]
pub struct PlotArgs {
    /// A model written by `metaadd fit`.
    #[arg(long)]
    model: PathBuf,
    /// Output folder (created if missing; the files in it are replaced, read-only ones refused).
    #[arg(long)]
    out: PathBuf,
    /// Image format: svg or png.
    #[arg(long, default_value = "svg")]
    format: String,
    /// Plot at most this many selected features (largest group norms first).
    #[arg(long, default_value_t = 12)]
    max_features: usize,
    /// Largest training loss shown on the weight curve [default: from the model's data scale].
    #[arg(long)]
    max_loss: Option<f64>,
}

pub fn run(args: &PlotArgs) -> anyhow::Result<()> {
    let ext = args.format.to_lowercase();
    let format = ImageFormat::from_path(std::path::Path::new(&format!("x.{ext}")))
        .with_context(|| format!("unknown image format `{}`: use svg or png", args.format))?;
    crate::outputs::no_stdout(
        "--out",
        &args.out,
        "plot writes several files into a folder",
    )?;
    crate::outputs::folder(
        "--out",
        &args.out,
        &[
            "shape_functions.csv",
            "weight_curve.csv",
            &format!("shape_functions.{ext}"),
            &format!("weight_curve.{ext}"),
        ],
    )?;
    let model = MetaAdditiveModel::load(&args.model, &Device::Cpu)?;
    let additive = model.additive();
    let names = additive.feature_names();
    let outputs = additive.task().outputs();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let norms = additive.group_norms()?;
    let mut selected = additive.selected_features()?;
    selected.sort_by(|&a, &b| norms[b].total_cmp(&norms[a]));
    if selected.is_empty() {
        eprintln!("warning: the model selects no feature; only the weight curve is drawn");
    }

    let mut panels = Vec::new();
    let mut shape_rows = Vec::new();
    for (rank, &j) in selected.iter().enumerate() {
        let (lo, hi) = additive.basis().range(j)?;
        let grid: Vec<f64> = (0..GRID)
            .map(|i| lo + (hi - lo) * i as f64 / (GRID - 1) as f64)
            .collect();
        // In the target's units when the model was fitted on a standardised target.
        let sd = model.target_scale().map_or(1.0, |s| s.sd());
        let values: Vec<f64> = additive
            .shape_function(j, &grid)?
            .into_iter()
            .map(|v| v * sd)
            .collect();
        for (i, x) in grid.iter().enumerate() {
            for c in 0..outputs {
                shape_rows.push(vec![
                    names[j].clone(),
                    c.to_string(),
                    x.to_string(),
                    values[i * outputs + c].to_string(),
                ]);
            }
        }
        if rank >= args.max_features {
            continue;
        }
        // Several outputs: draw the class whose curve varies most.
        let class = (0..outputs)
            .max_by(|&a, &b| spread(&values, outputs, a).total_cmp(&spread(&values, outputs, b)))
            .unwrap_or(0);
        let suffix = if outputs > 1 {
            format!(" (class {class})")
        } else {
            String::new()
        };
        let curve = values
            .iter()
            .skip(class)
            .step_by(outputs)
            .copied()
            .collect();
        panels.push(Panel {
            rug: additive.basis().knots_raw(j)?,
            ..Panel::curve(
                format!("{}{suffix}   ‖β‖ = {:.3}", names[j], norms[j]),
                names[j].clone(),
                format!("f({})", names[j]),
                grid,
                curve,
            )
        });
    }

    let max_loss = match args.max_loss {
        Some(v) if v.is_finite() && v > 0.0 => v,
        Some(v) => bail!("--max-loss must be positive, got {v}"),
        None => 10.0,
    };
    let losses: Vec<f64> = (0..GRID)
        .map(|i| max_loss * i as f64 / (GRID - 1) as f64)
        .collect();
    // One curve, or one per class for a class-aware weight net.
    let class_names = match model.params().weight_net_classes() {
        0 => Vec::new(),
        k => match model.classes() {
            Some(labels) => labels.names(),
            None => (0..k).map(|c| c.to_string()).collect(),
        },
    };
    let curves: Vec<(String, Vec<f64>)> = if class_names.is_empty() {
        vec![(String::new(), model.weights(&losses)?)]
    } else {
        class_names
            .iter()
            .enumerate()
            .map(|(c, name)| Ok((name.clone(), model.class_weights(&losses, c)?)))
            .collect::<anyhow::Result<_>>()?
    };

    let shapes_csv = args.out.join("shape_functions.csv");
    let header = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    write_csv(
        &shapes_csv,
        &header(&["feature", "output", "x", "f"]),
        &shape_rows,
    )?;
    let weights_csv = args.out.join("weight_curve.csv");
    if class_names.is_empty() {
        let weight_rows: Vec<Vec<String>> = losses
            .iter()
            .zip(&curves[0].1)
            .map(|(l, w)| vec![l.to_string(), w.to_string()])
            .collect();
        write_csv(&weights_csv, &header(&["loss", "weight"]), &weight_rows)?;
    } else {
        let weight_rows: Vec<Vec<String>> = curves
            .iter()
            .flat_map(|(name, weights)| {
                losses
                    .iter()
                    .zip(weights)
                    .map(move |(l, w)| vec![name.clone(), l.to_string(), w.to_string()])
            })
            .collect();
        write_csv(
            &weights_csv,
            &header(&["class", "loss", "weight"]),
            &weight_rows,
        )?;
    }

    let mut written = vec![shapes_csv, weights_csv];
    if !panels.is_empty() {
        let path = args.out.join(format!("shape_functions.{ext}"));
        write_figure(&path, format, &panels, COLUMNS.min(panels.len()))?;
        written.push(path);
    }
    let path = args.out.join(format!("weight_curve.{ext}"));
    let mut weight_panel = Panel {
        y_range: Some((0.0, 1.0)),
        ..Panel::curve(
            "learned weight V(ℓ)".to_string(),
            "training loss ℓ".to_string(),
            "weight".to_string(),
            losses.clone(),
            curves[0].1.clone(),
        )
    };
    if !class_names.is_empty() {
        weight_panel.title = "learned weight V(ℓ, class)".to_string();
        weight_panel.series = curves
            .into_iter()
            .map(|(name, weights)| Series {
                label: format!("class {name}"),
                x: losses.clone(),
                y: weights,
            })
            .collect();
    }
    write_figure(&path, format, &[weight_panel], 1)?;
    written.push(path);
    for p in written {
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// Range of output `c`'s values on the grid.
fn spread(values: &[f64], outputs: usize, c: usize) -> f64 {
    let column = values.iter().skip(c).step_by(outputs);
    let (lo, hi) = column.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
        (lo.min(v), hi.max(v))
    });
    hi - lo
}
