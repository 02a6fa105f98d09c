//! The per-row weights table: for each labelled row its target, the model's prediction, its
//! training loss and the weight the fitted weighting gives it, ranked, with the rows the
//! weighting down-weights flagged. It is MAM's main diagnostic (which rows it treats as
//! corrupted), and the CLI's `weights` command and `fit --weights-out` write it as CSV.

use super::MetaAdditiveModel;
use crate::data::dataset::Dataset;
use crate::error::{Error, Result};
use candle_core::DType;

/// The shortest text that reads back to `v` at the precision `dtype` (what the CLI writes).
///
/// ```
/// use metaadd::candle_core::DType;
/// assert_eq!(metaadd::model::number_text(0.1f32 as f64, DType::F32), "0.1");
/// ```
pub fn number_text(v: f64, dtype: DType) -> String {
    match dtype {
        DType::F32 | DType::F16 | DType::BF16 => (v as f32).to_string(),
        _ => v.to_string(),
    }
}

/// The default of [`WeightsTable::threshold`]: a row is down-weighted when its weight is below
/// half of the mean weight over the rows of the table.
pub const DOWN_WEIGHT_THRESHOLD: f64 = 0.5;

/// One row of a [`WeightsTable`].
#[derive(Debug, Clone, PartialEq)]
pub struct WeightRow {
    /// The row's position in the data given (0-based).
    pub row: usize,
    /// The row's line in the CSV file it was read from (the header is line 1), when known.
    pub line: Option<usize>,
    /// The row's target: its value (regression) or label (classification), as in the data.
    pub target: String,
    /// The model's prediction for the row, in the same form.
    pub prediction: String,
    /// The row's training loss `ℓ_i` on the scale the model was fitted on (standardised
    /// targets for regression), the input of the weighting.
    pub loss: f64,
    /// The weight `V(ℓ_i)` the fitted weighting gives the row.
    pub weight: f64,
    /// The weight's rank among the rows, 1 for the smallest weight (ties by row order).
    pub rank: usize,
    /// Whether the weight is below [`WeightsTable::threshold`] times the mean weight.
    pub down_weighted: bool,
}

/// Per-row weights of labelled rows under a fitted model ([`MetaAdditiveModel::weights_table`]).
#[derive(Debug, Clone, PartialEq)]
pub struct WeightsTable {
    /// One entry per row of the data, in the data's order.
    pub rows: Vec<WeightRow>,
    /// A row is down-weighted when its weight is below `threshold · mean_weight`.
    pub threshold: f64,
    /// The mean weight over the rows.
    pub mean_weight: f64,
    /// The model's precision: [`WeightsTable::text_rows`] writes numbers to it.
    pub dtype: DType,
}

impl WeightsTable {
    /// The CSV header: `row,line,target,prediction,loss,weight,rank,down_weighted`.
    pub fn headers() -> Vec<String> {
        [
            "row",
            "line",
            "target",
            "prediction",
            "loss",
            "weight",
            "rank",
            "down_weighted",
        ]
        .map(String::from)
        .to_vec()
    }

    /// The rows as CSV text in the order of [`WeightsTable::headers`]: numbers in the
    /// shortest form that reads back to the model's precision, an unknown line empty, the
    /// flag as `true` / `false`.
    pub fn text_rows(&self) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .map(|r| {
                vec![
                    r.row.to_string(),
                    r.line.map_or(String::new(), |l| l.to_string()),
                    r.target.clone(),
                    r.prediction.clone(),
                    number_text(r.loss, self.dtype),
                    number_text(r.weight, self.dtype),
                    r.rank.to_string(),
                    r.down_weighted.to_string(),
                ]
            })
            .collect()
    }

    /// How many rows are flagged as down-weighted.
    pub fn down_weighted(&self) -> usize {
        self.rows.iter().filter(|r| r.down_weighted).count()
    }
}

impl MetaAdditiveModel {
    /// The weights table of labelled rows `data` (read with
    /// [`MetaAdditiveModel::read_labelled`]): each row's target, prediction, loss, weight and
    /// rank, flagged as down-weighted when its weight is below `threshold` times the mean
    /// weight of these rows ([`DOWN_WEIGHT_THRESHOLD`] is the CLI's default). The weights are
    /// those of the fitted weighting (learned, or the fixed rule) at the fitted model's
    /// losses, without the per-step normalisation a fit may apply, which the ratio to the mean
    /// makes irrelevant.
    ///
    /// ```
    /// # use metaadd::{FitParams, Task};
    /// # use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
    /// // 20% of the training targets are gross outliers (noise B).
    /// let splits = RegressionProtocol::new(RegressionNoise::B).n_train(200).n_meta(100)
    ///     .n_test(10).n_features(8).generate(3)?;
    /// let fit = FitParams::new(Task::Regression).iterations(100).fit(&splits.train, &splits.meta)?;
    /// let table = fit.model.weights_table(&splits.train, 0.5)?;
    /// assert_eq!(table.rows.len(), 200);
    /// // The flagged rows are mostly the outliers.
    /// let hits = table.rows.iter().filter(|r| r.down_weighted && splits.corrupted[r.row]).count();
    /// assert!(hits as f64 > 0.8 * table.down_weighted() as f64);
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    pub fn weights_table(&self, data: &Dataset, threshold: f64) -> Result<WeightsTable> {
        if !(threshold.is_finite() && threshold >= 0.0) {
            return Err(Error::param(
                "down_threshold",
                format!("must be a finite number ≥ 0, got {threshold}"),
            ));
        }
        let losses = self.sample_losses(data)?;
        let weights = self.sample_weights_at(data, &losses)?;
        let dtype = self.additive.dtype();
        let (targets, predictions) = match self.classes() {
            None => (
                data.y().iter().map(f64::to_string).collect(),
                self.predict_values(data)?
                    .iter()
                    .map(|&v| number_text(v, dtype))
                    .collect(),
            ),
            Some(labels) => {
                let truth = self.encoding.encode_targets(data)?;
                let targets = truth
                    .iter()
                    .map(|&c| labels.name(c as usize).unwrap_or_default())
                    .collect::<Vec<String>>();
                (targets, self.predict_labels(data)?)
            }
        };
        let n = weights.len();
        let mean_weight = weights.iter().sum::<f64>() / n.max(1) as f64;
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| weights[a].total_cmp(&weights[b]).then(a.cmp(&b)));
        let mut rank = vec![0; n];
        for (r, &i) in order.iter().enumerate() {
            rank[i] = r + 1;
        }
        let rows = (0..n)
            .map(|i| WeightRow {
                row: i,
                line: data.lines().map(|l| l[i]),
                target: targets[i].clone(),
                prediction: predictions[i].clone(),
                loss: losses[i],
                weight: weights[i],
                rank: rank[i],
                down_weighted: weights[i] < threshold * mean_weight,
            })
            .collect();
        Ok(WeightsTable {
            rows,
            threshold,
            mean_weight,
            dtype,
        })
    }
}
