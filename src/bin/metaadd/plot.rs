//! `metaadd plot`: shape functions and the learned weight curve, as images and CSV.

use crate::figures::{write_figure, ImageFormat, Panel, Series};
use anyhow::{bail, Context};
use candle_core::Device;
use clap::Args;
use metaadd::data::csv::write_csv;
use metaadd::{MetaAdditiveModel, Table};
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
    /// Labelled rows (typically the training file): the weight curve then spans their losses
    /// up to the 99th percentile, with the histogram of those losses beneath it.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Largest training loss shown on the weight curve [default: the 99th percentile of the
    /// losses of --data, else of the model's training rows (10 for an older model file)].
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
    // The losses of labelled rows under the model, for the weight curve's range and histogram.
    let data_losses = match &args.data {
        Some(path) => Some(model.sample_losses(&model.read_labelled(&Table::read_csv(path)?)?)?),
        None => None,
    };
    let additive = model.additive();
    let names = additive.feature_names();
    let outputs = additive.task().outputs();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let norms = additive.group_norms()?;
    let selected = additive.selected_by_norm()?;
    if selected.is_empty() {
        eprintln!("warning: the model selects no feature; only the weight curve is drawn");
    }
    if selected.len() > args.max_features {
        eprintln!(
            "note: {} of {} selected features drawn (the largest group norms; --max-features); \
             shape_functions.csv has them all",
            args.max_features,
            selected.len()
        );
    }
    // What the shape functions are in: the target's units, or log-odds.
    let classes = model.classes().map(|c| c.names()).unwrap_or_default();
    let y_unit = |class: usize| match (additive.task(), classes.get(class)) {
        (metaadd::Task::Regression, _) => format!("in {}'s units", model.encoding().target_name()),
        (metaadd::Task::Binary, _) => format!(
            "log-odds of {}",
            classes.get(1).cloned().unwrap_or_else(|| "class 1".into())
        ),
        (_, Some(name)) => format!("logit of class {name}"),
        (_, None) => format!("logit of class {class}"),
    };

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
        // Several outputs: draw the class whose curve varies most (all are in the CSV).
        let class = (0..outputs)
            .max_by(|&a, &b| spread(&values, outputs, a).total_cmp(&spread(&values, outputs, b)))
            .unwrap_or(0);
        let suffix = if outputs > 1 {
            " (the class it moves most)".to_string()
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
                format!("f({}), {}", names[j], y_unit(class)),
                grid,
                curve,
            )
        });
    }

    let max_loss = match (args.max_loss, &data_losses) {
        (Some(v), _) if v.is_finite() && v > 0.0 => v,
        (Some(v), _) => bail!("--max-loss must be positive, got {v}"),
        (None, Some(l)) => match metaadd::evaluate::quantile(l, 0.99) {
            q if q.is_finite() => q.max(1e-12),
            _ => bail!(
                "--data {}: no row has a finite loss under the model",
                args.data
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""))
                    .display()
            ),
        },
        // The model's own training losses, else (an older file) a fixed range.
        (None, None) => model
            .training_loss_q99()
            .filter(|q| q.is_finite() && *q > 0.0)
            .unwrap_or(10.0),
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
    let shapes = args.out.join(format!("shape_functions.{ext}"));
    if !panels.is_empty() {
        write_figure(&shapes, format, &panels, COLUMNS.min(panels.len()))?;
        written.push(shapes);
    } else if shapes.is_file() {
        // An earlier run's figure would show features this model does not select.
        std::fs::remove_file(&shapes).with_context(|| format!("removing {}", shapes.display()))?;
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
    let mut figure = vec![weight_panel];
    if let Some(losses) = &data_losses {
        figure.push(histogram(losses, max_loss));
    }
    write_figure(&path, format, &figure, 1)?;
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

/// The losses' histogram on `[0, max_loss]` (40 bins, drawn as steps; the rows above the
/// range counted in the title).
fn histogram(losses: &[f64], max_loss: f64) -> Panel {
    const BINS: usize = 40;
    let width = max_loss / BINS as f64;
    let mut counts = [0usize; BINS];
    let mut above = 0;
    for &l in losses {
        if l > max_loss {
            above += 1;
        } else if l >= 0.0 {
            counts[((l / width) as usize).min(BINS - 1)] += 1;
        }
    }
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (b, &c) in counts.iter().enumerate() {
        x.extend([b as f64 * width, (b + 1) as f64 * width]);
        y.extend([c as f64, c as f64]);
    }
    Panel::curve(
        format!(
            "losses of the {} rows of --data ({above} above the range)",
            losses.len()
        ),
        "training loss ℓ".into(),
        "rows".into(),
        x,
        y,
    )
}
