//! Fitted models: the sparse additive model `f(x) = b + Σ_j ψ_j(x_j)ᵀ β_j` and the meta-weighted
//! model that also carries its learned weighting function and its [`Encoding`], so that it
//! reads raw rows and answers in the target's units or with the original labels.

pub mod file;
pub mod weights_table;

pub use weights_table::{number_text, WeightRow, WeightsTable, DOWN_WEIGHT_THRESHOLD};

use crate::basis::SplineBasis;
use crate::data::dataset::Dataset;
use crate::data::encoding::{Encoding, TargetScale};
use crate::data::labels::ClassLabels;
use crate::data::table::Table;
use crate::error::{Error, Result};
use crate::evaluate::Scores;
use crate::inner::Coefficients;
use crate::loss::Task;
use crate::params::FitParams;
use crate::solver::SolveReport;
use crate::weightnet::WeightNet;
use candle_core::{DType, Device, Tensor, D};

/// A sparse additive model: a fitted spline basis, coefficients `β` `[p·m, C]` and intercept
/// `b` `[C]`.
///
/// Outputs are the target for regression and logits for classification.
#[derive(Debug, Clone)]
pub struct AdditiveModel {
    basis: SplineBasis,
    coefficients: Coefficients,
    task: Task,
    feature_names: Vec<String>,
    target_name: String,
}

impl AdditiveModel {
    /// Assembles a model, checking that the pieces fit together.
    pub fn new(
        basis: SplineBasis,
        coefficients: Coefficients,
        task: Task,
        feature_names: Vec<String>,
        target_name: String,
    ) -> Result<Self> {
        let expected = [basis.n_columns(), task.outputs()];
        if coefficients.beta.dims() != expected {
            return Err(Error::invalid(format!(
                "coefficients have shape {:?}, expected {expected:?} ({} features × {} basis \
                 functions, {} outputs)",
                coefficients.beta.dims(),
                basis.n_features(),
                basis.n_basis(),
                task.outputs()
            )));
        }
        if coefficients.bias.dims() != [task.outputs()] {
            return Err(Error::invalid(format!(
                "intercept has shape {:?}, expected [{}]",
                coefficients.bias.dims(),
                task.outputs()
            )));
        }
        if feature_names.len() != basis.n_features() {
            return Err(Error::invalid(format!(
                "{} feature names for {} features",
                feature_names.len(),
                basis.n_features()
            )));
        }
        Ok(Self {
            basis,
            coefficients,
            task,
            feature_names,
            target_name,
        })
    }

    /// The fitted basis.
    pub fn basis(&self) -> &SplineBasis {
        &self.basis
    }

    /// Coefficients and intercept.
    pub fn coefficients(&self) -> &Coefficients {
        &self.coefficients
    }

    /// The task.
    pub fn task(&self) -> Task {
        self.task
    }

    /// Feature names, in column order.
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// The target's name.
    pub fn target_name(&self) -> &str {
        &self.target_name
    }

    /// The coefficients' dtype.
    pub fn dtype(&self) -> DType {
        self.coefficients.beta.dtype()
    }

    /// The coefficients' device.
    pub fn device(&self) -> &Device {
        self.coefficients.beta.device()
    }

    /// The design matrix `[n, p·m]` of row-major features, in the model's dtype and device.
    pub fn design(&self, x: &[f64]) -> Result<Tensor> {
        let p = self.basis.n_features();
        if !x.len().is_multiple_of(p) {
            return Err(Error::invalid(format!(
                "{} feature values do not form rows of {p} features",
                x.len()
            )));
        }
        self.basis.design(x, self.dtype(), self.device())
    }

    /// Outputs `[n, C]` for features `x` `[n, p]` (any float dtype, any device), in the units
    /// the model was fitted in: the standardised target for regression, logits for
    /// classification. [`MetaAdditiveModel`] answers in target units and labels.
    pub fn outputs(&self, x: &Tensor) -> Result<Tensor> {
        let (_, p) = x.dims2().map_err(|_| {
            Error::invalid(format!(
                "features must have shape [n, p], got {:?}",
                x.dims()
            ))
        })?;
        if p != self.basis.n_features() {
            return Err(Error::invalid(format!(
                "features have {p} columns, the model has {}",
                self.basis.n_features()
            )));
        }
        let rows = x.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        self.predict_rows(&rows)
    }

    /// Outputs `[n, C]` for the rows of a data set (see [`AdditiveModel::outputs`]).
    pub fn dataset_outputs(&self, data: &Dataset) -> Result<Tensor> {
        if data.n_features() != self.basis.n_features() {
            return Err(Error::invalid(format!(
                "data set has {} features, the model has {}",
                data.n_features(),
                self.basis.n_features()
            )));
        }
        self.predict_rows(data.x())
    }

    fn predict_rows(&self, rows: &[f64]) -> Result<Tensor> {
        let design = self.design(rows)?;
        Ok(design
            .matmul(&self.coefficients.beta)?
            .broadcast_add(&self.coefficients.bias)?)
    }

    /// Class probabilities `[n, classes]` (two columns for a binary task).
    pub fn probabilities(&self, x: &Tensor) -> Result<Tensor> {
        self.probabilities_from_outputs(&self.outputs(x)?)
    }

    /// Class probabilities `[n, classes]` of outputs `[n, C]`: `(1 − σ(f), σ(f))` for a binary
    /// task, the softmax for a multi-class one.
    pub fn probabilities_from_outputs(&self, f: &Tensor) -> Result<Tensor> {
        match self.task {
            Task::Regression => Err(Error::invalid(
                "class probabilities need a classification model",
            )),
            Task::Binary => {
                let p1 = candle_nn::ops::sigmoid(f)?;
                Ok(Tensor::cat(&[&p1.affine(-1.0, 1.0)?, &p1], 1)?)
            }
            Task::Multiclass { .. } => Ok(candle_nn::ops::softmax(f, D::Minus1)?),
        }
    }

    /// Predicted class indices (the most probable class).
    pub fn class_indices(&self, x: &Tensor) -> Result<Vec<usize>> {
        let labels = self.probabilities(x)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
        Ok(labels.into_iter().map(|l| l as usize).collect())
    }

    /// Predicted class indices for the rows of a data set (as [`AdditiveModel::class_indices`]).
    pub fn dataset_class_indices(&self, data: &Dataset) -> Result<Vec<usize>> {
        self.labels_from_outputs(&self.dataset_outputs(data)?)
    }

    /// The most probable class for outputs `[n, C]`: `f > 0` for a binary task, the largest
    /// output for a multi-class one.
    pub fn labels_from_outputs(&self, outputs: &Tensor) -> Result<Vec<usize>> {
        match self.task {
            Task::Regression => Err(Error::invalid("class labels need a classification model")),
            Task::Binary => Ok(outputs
                .to_dtype(DType::F64)?
                .flatten_all()?
                .to_vec1::<f64>()?
                .into_iter()
                .map(|f| usize::from(f > 0.0))
                .collect()),
            Task::Multiclass { .. } => {
                let labels = outputs.argmax(D::Minus1)?.to_vec1::<u32>()?;
                Ok(labels.into_iter().map(|l| l as usize).collect())
            }
        }
    }

    /// Classification margins on rows labelled with class indices: `(2y − 1)·f` for a binary
    /// task and `f_y − max_{c≠y} f_c` for a multi-class one (positive when classified
    /// correctly).
    pub fn margins(&self, data: &Dataset) -> Result<Vec<f64>> {
        let f = self
            .dataset_outputs(data)?
            .to_dtype(DType::F64)?
            .to_vec2::<f64>()?;
        f.iter()
            .zip(data.y())
            .enumerate()
            .map(|(i, (row, &y))| match self.task {
                Task::Regression => Err(Error::invalid("margins need a classification model")),
                Task::Binary => Ok((2.0 * y - 1.0) * row[0]),
                Task::Multiclass { classes } => {
                    let c = y as usize;
                    if y.fract() != 0.0 || c >= classes {
                        return Err(Error::Label {
                            row: Some(i),
                            reason: format!("label {y} is not a class index below {classes}"),
                        });
                    }
                    let other = (0..classes)
                        .filter(|&k| k != c)
                        .map(|k| row[k])
                        .fold(f64::NEG_INFINITY, f64::max);
                    Ok(row[c] - other)
                }
            })
            .collect()
    }

    /// `‖β_j‖₂` per feature.
    pub fn group_norms(&self) -> Result<Vec<f64>> {
        self.coefficients.group_norms(self.basis.n_features())
    }

    /// Features whose coefficient group is non-zero, in column order.
    pub fn selected_features(&self) -> Result<Vec<usize>> {
        self.coefficients.active_groups(self.basis.n_features())
    }

    /// [`AdditiveModel::selected_features`] ranked by group norm, largest first.
    pub fn selected_by_norm(&self) -> Result<Vec<usize>> {
        let norms = self.group_norms()?;
        let mut ranked = self.selected_features()?;
        ranked.sort_by(|&a, &b| norms[b].total_cmp(&norms[a]));
        Ok(ranked)
    }

    /// The shape function `f_j` at raw feature values: `grid.len() × C` values (row-major),
    /// centred so that it has mean zero on the training data.
    pub fn shape_function(&self, feature: usize, grid: &[f64]) -> Result<Vec<f64>> {
        let p = self.basis.n_features();
        if feature >= p {
            return Err(Error::invalid(format!(
                "feature {feature} out of range for {p} features"
            )));
        }
        let m = self.basis.n_basis();
        let block = self.basis.transform_feature(feature, grid)?;
        let block = Tensor::from_vec(block, (grid.len(), m), &Device::Cpu)?;
        let beta = self
            .coefficients
            .beta
            .narrow(0, feature * m, m)?
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F64)?;
        Ok(block.matmul(&beta)?.flatten_all()?.to_vec1()?)
    }
}

/// A Meta Additive Model: the additive model, the learned weight net `V_φ`, the settings it
/// was trained with and the encoding of its raw inputs and target.
///
/// Its prediction methods answer in the target's units (regression) and with the original
/// labels (classification); [`AdditiveModel`] underneath works in the fitted units.
#[derive(Debug, Clone)]
pub struct MetaAdditiveModel {
    pub(crate) additive: AdditiveModel,
    pub(crate) weightnet: WeightNet,
    pub(crate) params: FitParams,
    pub(crate) eta: f64,
    pub(crate) n_train: usize,
    pub(crate) n_meta: usize,
    pub(crate) encoding: Encoding,
    /// Version of metaadd that wrote the model (this build's for a fresh fit).
    pub(crate) crate_version: String,
    /// The weight net's optimiser state when the model was taken from a trainer (kept in the
    /// file so that training can resume exactly); `None` in files written before it was kept.
    pub(crate) optimizer: Option<crate::optim::AdamWState>,
    /// What the final solve achieved, when the model is a solution of the weighted inner
    /// problem (see [`crate::solver`]).
    pub(crate) solution: Option<SolveReport>,
    /// The outer loop's iterate, kept beside a solution so that training can resume from it.
    pub(crate) iterate: Option<Coefficients>,
    /// The 99th percentile of the training rows' losses under this model (the range a plot
    /// of the weight curve spans); `None` in files written before it was kept.
    pub(crate) training_loss_q99: Option<f64>,
}

impl MetaAdditiveModel {
    /// The additive model used for prediction (fitted units).
    pub fn additive(&self) -> &AdditiveModel {
        &self.additive
    }

    /// The learned weighting function.
    pub fn weightnet(&self) -> &WeightNet {
        &self.weightnet
    }

    /// The weight net's AdamW state at the end of training, if the model carries it.
    pub fn optimizer_state(&self) -> Option<&crate::optim::AdamWState> {
        self.optimizer.as_ref()
    }

    /// What the final solve achieved (KKT violation relative to λ, objective, epochs,
    /// convergence), when the model is the solution of its weighted inner problem.
    pub fn solution(&self) -> Option<&SolveReport> {
        self.solution.as_ref()
    }

    /// The outer loop's last iterate, kept beside a solution (training resumes from it).
    pub fn iterate(&self) -> Option<&Coefficients> {
        self.iterate.as_ref()
    }

    /// The settings the model was trained with.
    pub fn params(&self) -> &FitParams {
        &self.params
    }

    /// The inner step size η actually used (chosen automatically unless set).
    pub fn eta(&self) -> f64 {
        self.eta
    }

    /// Rows of the training and meta sets the model was fitted on.
    pub fn data_sizes(&self) -> (usize, usize) {
        (self.n_train, self.n_meta)
    }

    /// Version of metaadd that trained or wrote this model.
    pub fn crate_version(&self) -> &str {
        &self.crate_version
    }

    /// How the model reads raw inputs and encodes its target.
    pub fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    /// The class labels, class 0 first (classification only).
    pub fn classes(&self) -> Option<&ClassLabels> {
        self.encoding.classes()
    }

    /// The standardisation of a regression target, if it was fitted on a standardised target.
    pub fn target_scale(&self) -> Option<TargetScale> {
        self.encoding.target_scale()
    }

    /// The model's feature names (a categorical input gives one `name=level` per level).
    pub fn feature_names(&self) -> &[String] {
        self.additive.feature_names()
    }

    /// The weight-vs-loss curve at the given losses: the learned `V_φ(ℓ)` for MAM, the fixed
    /// function of a baseline otherwise (tilted weights are scaled to mean 1 over `losses`).
    /// A class-aware net ([`crate::FitParams::class_aware`]) has one curve per class: see
    /// [`MetaAdditiveModel::class_weights`].
    pub fn weights(&self, losses: &[f64]) -> Result<Vec<f64>> {
        self.weights_with(losses, None)
    }

    /// The weight-vs-loss curve of class `class` (an index into
    /// [`MetaAdditiveModel::classes`]): for a class-aware net each class has its own; for any
    /// other weighting it is [`MetaAdditiveModel::weights`].
    pub fn class_weights(&self, losses: &[f64], class: usize) -> Result<Vec<f64>> {
        let k = self.params.weight_net_classes();
        if k > 0 && class >= k {
            return Err(Error::invalid(format!(
                "class {class} of a weight net with {k} classes"
            )));
        }
        self.weights_with(losses, Some(vec![class as u32; losses.len()]))
    }

    fn weights_with(&self, losses: &[f64], classes: Option<Vec<u32>>) -> Result<Vec<f64>> {
        let device = self.additive.device();
        let l = Tensor::from_vec(losses.to_vec(), losses.len(), device)?
            .to_dtype(self.additive.dtype())?;
        let classes = classes
            .map(|c| Tensor::from_vec(c, losses.len(), device))
            .transpose()?;
        Ok(self
            .params
            .weighting
            .weights_of_classes(&l, classes.as_ref(), &self.weightnet)?
            .to_dtype(DType::F64)?
            .to_vec1()?)
    }

    /// The per-row training losses `ℓ_i` of labelled rows in original units (regression
    /// targets in the target's units; class labels as values, or as the labels the data set
    /// carries), on the scale the model was fitted on.
    pub fn sample_losses(&self, data: &Dataset) -> Result<Vec<f64>> {
        let additive = &self.additive;
        let f = additive.dataset_outputs(data)?;
        let y = self.encoding.encode_targets(data)?;
        let y = additive
            .task
            .encode_targets(&y, additive.dtype(), additive.device())?;
        Ok(self
            .params
            .resolved_loss()
            .value(&f, &y)?
            .to_dtype(DType::F64)?
            .to_vec1()?)
    }

    /// The 99th percentile of the training rows' losses `ℓ_i` under the model, on the scale
    /// it was fitted on: the range of losses its weighting was used on (`None` for a model
    /// file written before it was kept).
    pub fn training_loss_q99(&self) -> Option<f64> {
        self.training_loss_q99
    }

    /// The learned weights `V_φ(ℓ_i)` of labelled rows in original units under the fitted
    /// model: low weights flag rows the model treats as corrupted.
    ///
    /// ```
    /// # use metaadd::{FitParams, Task};
    /// # use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
    /// # let splits = RegressionProtocol::new(RegressionNoise::B).n_train(200).n_meta(100)
    /// #     .n_test(10).n_features(8).generate(3)?;
    /// let fit = FitParams::new(Task::Regression).iterations(50).fit(&splits.train, &splits.meta)?;
    /// let weights = fit.model.sample_weights(&splits.train)?;
    /// assert_eq!(weights.len(), 200);
    /// assert!(weights.iter().all(|w| (0.0..=1.0).contains(w)));
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    pub fn sample_weights(&self, data: &Dataset) -> Result<Vec<f64>> {
        self.sample_weights_at(data, &self.sample_losses(data)?)
    }

    /// [`MetaAdditiveModel::sample_weights`] of rows whose losses are known.
    pub(crate) fn sample_weights_at(&self, data: &Dataset, losses: &[f64]) -> Result<Vec<f64>> {
        let classes = match self.params.weight_net_classes() {
            0 => None,
            _ => Some(
                self.encoding
                    .encode_targets(data)?
                    .into_iter()
                    .map(|c| c as u32)
                    .collect(),
            ),
        };
        self.weights_with(losses, classes)
    }

    /// The raw outputs `[n, C]` for features `x` `[n, p]`: standardised target values or
    /// logits (see [`AdditiveModel::outputs`]).
    pub fn decision_function(&self, x: &Tensor) -> Result<Tensor> {
        self.additive.outputs(x)
    }

    /// Predictions `[n]` for features `x` `[n, p]` (the model's features, see
    /// [`MetaAdditiveModel::feature_names`]), in the model's dtype and device: regression
    /// values in the target's units; for classification the predicted labels when they are
    /// numbers (text labels: [`MetaAdditiveModel::predict_labels`]).
    pub fn predict(&self, x: &Tensor) -> Result<Tensor> {
        let outputs = self.additive.outputs(x)?;
        Ok(self
            .outputs_to_values(&outputs)?
            .to_dtype(self.additive.dtype())?)
    }

    /// Class probabilities `[n, C]` for features `x`, columns in the order of
    /// [`MetaAdditiveModel::classes`].
    pub fn predict_proba(&self, x: &Tensor) -> Result<Tensor> {
        self.additive.probabilities(x)
    }

    /// Predictions for the rows of `data` as numbers: regression values in the target's units,
    /// or numeric class labels.
    pub fn predict_values(&self, data: &Dataset) -> Result<Vec<f64>> {
        let outputs = self.additive.dataset_outputs(data)?;
        Ok(self
            .outputs_to_values(&outputs)?
            .to_dtype(DType::F64)?
            .to_vec1()?)
    }

    /// Predicted labels of the rows of `data` as text (classification), e.g. `M` / `B` or
    /// `1` / `2` / `3`.
    pub fn predict_labels(&self, data: &Dataset) -> Result<Vec<String>> {
        let labels = self.classes_or_err()?;
        let classes = self.additive.dataset_class_indices(data)?;
        Ok(classes
            .into_iter()
            .map(|c| labels.name(c).unwrap_or_default())
            .collect())
    }

    /// Class probabilities of the rows of `data`, one row of C values each (classification).
    pub fn predict_proba_rows(&self, data: &Dataset) -> Result<Vec<Vec<f64>>> {
        self.classes_or_err()?;
        // In f64: class order by probability is then the order of the outputs.
        let f = self.additive.dataset_outputs(data)?.to_dtype(DType::F64)?;
        Ok(self.additive.probabilities_from_outputs(&f)?.to_vec2()?)
    }

    /// The model's features of a table's rows: numeric inputs by name, categorical ones
    /// one-hot encoded with the training levels (an unknown level is an error naming it).
    pub fn read_features(&self, table: &Table) -> Result<Dataset> {
        self.encoding.features(table)
    }

    /// [`MetaAdditiveModel::read_features`] with the table's target column, for scoring and
    /// per-row weights.
    pub fn read_labelled(&self, table: &Table) -> Result<Dataset> {
        self.encoding.dataset(table)
    }

    /// Scores on labelled rows in original units: MSE, MAE and R² in the target's units for
    /// regression; accuracy, macro-F1, balanced accuracy, ROC-AUC and log-loss for
    /// classification.
    pub fn evaluate(&self, data: &Dataset) -> Result<Scores> {
        match self.additive.task {
            Task::Regression => Ok(Scores::regression(&self.predict_values(data)?, data.y())),
            _ => {
                let truth: Vec<usize> = self
                    .encoding
                    .encode_targets(data)?
                    .into_iter()
                    .map(|c| c as usize)
                    .collect();
                Ok(Scores::classification(
                    &self.predict_proba_rows(data)?,
                    &truth,
                ))
            }
        }
    }

    fn classes_or_err(&self) -> Result<&ClassLabels> {
        self.classes()
            .ok_or_else(|| Error::invalid("class labels need a classification model"))
    }

    /// Outputs `[n, C]` to predictions `[n]` in f64: decoded regression values or numeric
    /// labels.
    fn outputs_to_values(&self, outputs: &Tensor) -> Result<Tensor> {
        match self.additive.task {
            Task::Regression => {
                let f = outputs.flatten_all()?.to_dtype(DType::F64)?;
                Ok(match self.target_scale() {
                    Some(scale) => f.affine(scale.sd(), scale.mean())?,
                    None => f,
                })
            }
            _ => {
                let labels = self.classes_or_err()?;
                let Some(values) = labels.as_numbers() else {
                    return Err(Error::invalid(format!(
                        "the class labels are text ({}): use predict_labels",
                        labels.names().join(", ")
                    )));
                };
                let classes = self.additive.labels_from_outputs(outputs)?;
                let v: Vec<f64> = classes.into_iter().map(|c| values[c]).collect();
                Ok(Tensor::from_vec(v, outputs.dims()[0], outputs.device())?)
            }
        }
    }

    /// Writes the model to one safetensors file (layout: [`file`]): atomically, a link's
    /// target for a link, in place for a special file ([`crate::output`]).
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        crate::output::write_bytes(path.as_ref(), &self.to_bytes()?)
    }

    /// Reads a model written by [`MetaAdditiveModel::save`] onto `device`, checking every
    /// tensor's presence, shape and dtype.
    pub fn load(path: impl AsRef<std::path::Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, device).map_err(|e| match e {
            Error::ModelFile { reason, .. } => Error::ModelFile {
                path: path.to_path_buf(),
                reason,
            },
            other => other,
        })
    }
}
