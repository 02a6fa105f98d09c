//! The `metaadd` command line.

mod args;
mod check_grad;
mod demo;
mod evaluate;
mod experiment;
mod figures;
mod fit;
mod hypergrad;
mod inspect;
mod outputs;
mod plot;
mod predict;
mod report;
mod sweep_k;
mod weights;

use clap::{Parser, Subcommand};

// mimalloc for speed (docs/design.md §13.4), counted for the peak-memory figures of `sweep-k`.
#[global_allocator]
static GLOBAL: metaadd::memory::PeakAlloc<mimalloc::MiMalloc> =
    metaadd::memory::PeakAlloc::new(mimalloc::MiMalloc);

/// Meta Additive Models: sparse additive models with meta-learned sample weights.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fit a model on a CSV file, learning sample weights on a clean meta set.
    Fit(Box<fit::FitArgs>),
    /// Predict the rows of a CSV file with a saved model.
    Predict(predict::PredictArgs),
    /// Score a saved model on labelled rows of a CSV file (MSE, MAE, R², or accuracy,
    /// macro-F1, balanced accuracy, ROC-AUC, log-loss).
    Evaluate(evaluate::EvaluateArgs),
    /// Each labelled row's target, prediction, loss and weight under a saved model, ranked,
    /// with the down-weighted rows flagged.
    Weights(weights::WeightsArgs),
    /// Show a saved model: selected features, settings, data, versions.
    Inspect(inspect::InspectArgs),
    /// Draw shape functions and the weight curve (SVG or PNG, plus CSV).
    Plot(plot::PlotArgs),
    /// Write a bilevel problem and its hypergradient to safetensors, to check elsewhere.
    Hypergrad(Box<hypergrad::HypergradArgs>),
    /// Check a hypergradient mode against central finite differences, per weight-net tensor.
    CheckGrad(Box<check_grad::CheckGradArgs>),
    /// Compare hypergradient modes over unroll depths K: accuracy, outcome, time and memory.
    SweepK(Box<sweep_k::SweepArgs>),
    /// Train MAM and a uniform-weight model on the paper's regression protocol with noise B.
    Demo(demo::DemoArgs),
    /// Run the paper's experiments: every baseline over seeds, as a markdown table.
    Experiment(Box<experiment::ExperimentArgs>),
}

fn main() {
    let result = match Cli::parse().command {
        Command::Fit(args) => fit::run(&args),
        Command::Predict(args) => predict::run(&args),
        Command::Evaluate(args) => evaluate::run(&args),
        Command::Weights(args) => weights::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Plot(args) => plot::run(&args),
        Command::Hypergrad(args) => hypergrad::run(&args),
        Command::CheckGrad(args) => check_grad::run(&args),
        Command::SweepK(args) => sweep_k::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Experiment(args) => experiment::run(&args),
    };
    if let Err(e) = result {
        if is_broken_pipe(&e) {
            // The reader went away (`metaadd predict ... | head`): not an error of ours.
            std::process::exit(0);
        }
        // One message: the outermost context, then its causes.
        let mut message = e.to_string();
        for cause in e.chain().skip(1) {
            // Library errors already include their source's text.
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(&format!(": {text}"));
            }
        }
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
