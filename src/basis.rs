//! Spline bases for the additive components `f_j(x_j)`.
//!
//! Every feature is standardised with the training mean and standard deviation, so knots,
//! ranges and the orthonormalising transform are on a common scale no matter the feature's
//! units, and the stored state survives a round-trip through a model file unchanged.
//!
//! **Knots.** Cubic B-splines place their interior knots at training quantiles, so each
//! basis function covers about the same number of training rows and no coefficient is
//! estimated from an empty stretch of the axis. When quantiles tie (discrete features) the
//! knots fall back to even spacing, since repeated knots would make the basis discontinuous.
//! The Bernstein family (the paper's setting) has no interior knots at all: one global
//! polynomial of degree `m` per feature. Both families are clamped at the training minimum
//! and maximum; new values outside that range are clamped to it, i.e. each shape function
//! is extrapolated as a constant, which is the safe choice for a spline that was never fit
//! there.
//!
//! **Centring.** The model has its own intercept `b`, so each `f_j` is centred to have mean
//! zero on the training rows; otherwise the intercept and the `p` shape functions would
//! trade constants and the group penalty would charge a feature for a shift that belongs to
//! `b`. Centring is done by subtracting the training column means of the raw basis.
//!
//! **The dropped column.** The raw functions of a feature sum to one everywhere (partition
//! of unity), so after centring the `m + 1` columns sum to zero: one of them is a linear
//! combination of the others. Dropping it (the first) leaves `m` columns that span exactly
//! the centred spline space, with no direction the penalty cannot see. Optionally the block
//! is then rotated and scaled to be orthonormal on the training rows, so the Euclidean norm
//! of a coefficient group equals the empirical norm `‖f_j‖_n` of its function, as in SpAM;
//! directions without support in the data (e.g. a binary feature) get a zero column rather
//! than an infinite scale.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::ops::{SparseValues, SplineDesign};
use candle_core::{DType, Device, Tensor};

/// Largest number of basis columns per feature that a [`BasisSpec`] accepts.
///
/// Far above any sensible choice; it only keeps shape arithmetic and evaluation cost bounded
/// for specs read from files.
pub const MAX_N_BASIS: usize = 1000;

/// Relative size of the smallest knot gap accepted for quantile knots; closer knots count
/// as coinciding and trigger the evenly spaced fallback.
const KNOT_GAP_TOL: f64 = 1e-8;

/// Relative eigenvalue threshold below which a direction counts as unsupported by the
/// training data when orthonormalising.
const EIGEN_REL_TOL: f64 = 1e-10;

/// Which spline family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasisKind {
    /// Cubic B-splines with interior knots at training quantiles.
    BSpline,
    /// Bernstein polynomials of degree `m` on the training range (B-splines of degree `m`
    /// without interior knots).
    Bernstein,
}

impl BasisKind {
    /// The name used in the text form of a [`BasisSpec`]: `bspline` or `bernstein`.
    pub fn name(self) -> &'static str {
        match self {
            BasisKind::BSpline => "bspline",
            BasisKind::Bernstein => "bernstein",
        }
    }
}

impl fmt::Display for BasisKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What basis to fit (validated when fitted).
///
/// `n_basis` is `m`, the number of design columns per feature; the raw basis has `m + 1`
/// functions, one of which is removed by centring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BasisSpec {
    /// The spline family.
    pub kind: BasisKind,
    /// Design columns per feature (`m`). For [`BasisKind::Bernstein`] this is also the degree.
    pub n_basis: usize,
    /// Whether each feature's block is made orthonormal on the training rows.
    pub orthonormalize: bool,
}

impl BasisSpec {
    /// Cubic B-splines with `n_basis` design columns per feature (`n_basis - 3` interior
    /// knots; needs `n_basis >= 3`), not orthonormalised.
    pub fn bspline(n_basis: usize) -> Self {
        BasisSpec {
            kind: BasisKind::BSpline,
            n_basis,
            orthonormalize: false,
        }
    }

    /// Bernstein polynomials of the given degree (`n_basis = degree` design columns per
    /// feature; needs `degree >= 1`), not orthonormalised.
    pub fn bernstein(degree: usize) -> Self {
        BasisSpec {
            kind: BasisKind::Bernstein,
            n_basis: degree,
            orthonormalize: false,
        }
    }

    /// The same spec with orthonormalisation switched on or off.
    pub fn orthonormalized(self, yes: bool) -> Self {
        BasisSpec {
            orthonormalize: yes,
            ..self
        }
    }

    /// Polynomial degree of the splines: 3 for B-splines, `n_basis` for Bernstein.
    pub fn degree(&self) -> usize {
        match self.kind {
            BasisKind::BSpline => 3,
            BasisKind::Bernstein => self.n_basis,
        }
    }

    /// The fewest training rows a fit of this basis accepts: `n_basis + 1` (and at least 2),
    /// so that the quantile knots and the centred columns are determined.
    ///
    /// ```
    /// assert_eq!(metaadd::BasisSpec::bspline(6).min_training_rows(), 7);
    /// ```
    pub fn min_training_rows(&self) -> usize {
        (self.n_basis + 1).max(2)
    }

    /// Checks that `n_basis` is allowed for the kind (B-splines: 3 ..= [`MAX_N_BASIS`];
    /// Bernstein: 1 ..= [`MAX_N_BASIS`]).
    pub fn validate(&self) -> Result<()> {
        let min = match self.kind {
            BasisKind::BSpline => 3,
            BasisKind::Bernstein => 1,
        };
        if self.n_basis < min || self.n_basis > MAX_N_BASIS {
            return Err(Error::param(
                "n_basis",
                format!(
                    "{} basis needs {min} <= n_basis <= {MAX_N_BASIS}, got {}",
                    self.kind, self.n_basis
                ),
            ));
        }
        Ok(())
    }

    /// Number of raw (uncentred) functions per feature, `m + 1`.
    fn n_raw(&self) -> usize {
        self.n_basis.saturating_add(1)
    }
}

impl Default for BasisSpec {
    /// Cubic B-splines with 6 columns per feature, not orthonormalised.
    fn default() -> Self {
        BasisSpec::bspline(6)
    }
}

impl fmt::Display for BasisSpec {
    /// Compact text form, e.g. `bspline(m=6,orthonormal=false)`; [`FromStr`] reads it back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}(m={},orthonormal={})",
            self.kind, self.n_basis, self.orthonormalize
        )
    }
}

impl FromStr for BasisSpec {
    type Err = Error;

    /// Parses the text form written by [`Display`](fmt::Display), such as
    /// `bernstein(m=3,orthonormal=true)`. Whitespace around tokens is ignored; `orthonormal`
    /// may be left out (false). The spec is validated; errors quote the offending text.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "cannot parse basis spec `{s}`: {why} (expected e.g. `bspline(m=6,orthonormal=false)`)"
            ))
        };
        let text = s.trim();
        let open = text.find('(').ok_or_else(|| bad("missing `(`"))?;
        let body = text[open + 1..]
            .strip_suffix(')')
            .ok_or_else(|| bad("missing closing `)`"))?;
        let kind = match text[..open].trim().to_ascii_lowercase().as_str() {
            "bspline" => BasisKind::BSpline,
            "bernstein" => BasisKind::Bernstein,
            other => {
                return Err(bad(&format!(
                    "unknown kind `{other}` (use `bspline` or `bernstein`)"
                )))
            }
        };
        let mut m: Option<usize> = None;
        let mut ortho: Option<bool> = None;
        for item in body.split(',') {
            let item = item.trim();
            if item.is_empty() {
                return Err(bad("empty argument"));
            }
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| bad(&format!("argument `{item}` is not `key=value`")))?;
            let (key, value) = (key.trim(), value.trim());
            match key {
                "m" => {
                    if m.is_some() {
                        return Err(bad("`m` given twice"));
                    }
                    m = Some(
                        value
                            .parse()
                            .map_err(|_| bad(&format!("`m={value}` is not an integer")))?,
                    );
                }
                "orthonormal" => {
                    if ortho.is_some() {
                        return Err(bad("`orthonormal` given twice"));
                    }
                    ortho = Some(match value {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(bad(&format!(
                                "`orthonormal={value}` is not `true` or `false`"
                            )))
                        }
                    });
                }
                _ => return Err(bad(&format!("unknown argument `{key}`"))),
            }
        }
        let spec = BasisSpec {
            kind,
            n_basis: m.ok_or_else(|| bad("missing `m=`"))?,
            orthonormalize: ortho.unwrap_or(false),
        };
        spec.validate()
            .map_err(|e| bad(&format!("invalid spec: {e}")))?;
        Ok(spec)
    }
}

/// Flat arrays (row-major) describing a fitted basis.
///
/// `p` is the number of features and `m` the number of design columns per feature.
#[derive(Debug, Clone, PartialEq)]
pub struct BasisParts {
    /// Training mean of each feature, `[p]`.
    pub mean: Vec<f64>,
    /// Training standard deviation of each feature, `[p]`.
    pub scale: Vec<f64>,
    /// Clamped knot vector of each feature in standardised units, `[p, L]` with
    /// `L = `[`BasisParts::knots_per_feature`].
    pub knots: Vec<f64>,
    /// Training column means of the raw basis of each feature, `[p, m+1]`.
    pub centre: Vec<f64>,
    /// Map from the centred raw basis to the design block of each feature, `[p, m+1, m]`.
    pub transform: Vec<f64>,
}

impl BasisParts {
    /// Knot-vector length `L` per feature: `m + 5` for B-splines, `2m + 2` for Bernstein.
    pub fn knots_per_feature(spec: BasisSpec) -> usize {
        spec.n_raw().saturating_add(spec.degree()).saturating_add(1)
    }
}

/// A basis fitted on training columns: standardisation, knots, centring and transform per
/// feature.
///
/// Build one with [`SplineBasis::fit`] (or [`SplineBasis::from_parts`] from a model file);
/// it never changes afterwards, so [`SplineBasis::transform`] of new data always uses the
/// training knots and centring.
#[derive(Debug, Clone, PartialEq)]
pub struct SplineBasis {
    spec: BasisSpec,
    n_features: usize,
    mean: Vec<f64>,
    scale: Vec<f64>,
    /// `[p, L]`, standardised units.
    knots: Vec<f64>,
    /// `[p, m+1]`.
    centre: Vec<f64>,
    /// `[p, m+1, m]`.
    transform: Vec<f64>,
    /// `[p, m]`: `centreᵀ · transform` per feature, derived from the parts above.
    offset: Vec<f64>,
}

/// Scratch space for the triangular Cox–de Boor evaluation.
struct Evaluator {
    degree: usize,
    values: Vec<f64>,
    left: Vec<f64>,
    right: Vec<f64>,
}

impl Evaluator {
    fn new(degree: usize) -> Self {
        Evaluator {
            degree,
            values: vec![0.0; degree + 1],
            left: vec![0.0; degree + 1],
            right: vec![0.0; degree + 1],
        }
    }

    /// Evaluates the `degree + 1` non-zero B-splines at `z` (already clamped into the knot
    /// range). Returns the index of the first of them; their values are in `self.values`.
    ///
    /// The last interval is treated as closed on the right, so `z == max` gives the last
    /// function the value 1.
    fn eval(&mut self, knots: &[f64], z: f64) -> usize {
        let d = self.degree;
        let n_funcs = knots.len() - d - 1;
        // Largest span index i in [d, n_funcs - 1] with knots[i] <= z.
        let span = if z >= knots[n_funcs] {
            n_funcs - 1
        } else {
            // knots[d..n_funcs] is sorted with knots[d] <= z.
            let pos = knots[d + 1..n_funcs].partition_point(|&t| t <= z);
            d + pos
        };
        let (n, left, right) = (&mut self.values, &mut self.left, &mut self.right);
        n[0] = 1.0;
        for j in 1..=d {
            left[j] = z - knots[span + 1 - j];
            right[j] = knots[span + j] - z;
            let mut saved = 0.0;
            for r in 0..j {
                let temp = n[r] / (right[r + 1] + left[j - r]);
                n[r] = saved + right[r + 1] * temp;
                saved = left[j - r] * temp;
            }
            n[j] = saved;
        }
        span - d
    }
}

/// Type-7 (linear interpolation) quantile of sorted data.
fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let i = h.floor() as usize;
    if i + 1 >= sorted.len() {
        return sorted[sorted.len() - 1];
    }
    let frac = h - i as f64;
    sorted[i] + frac * (sorted[i + 1] - sorted[i])
}

/// Clamped knot vector for one feature from its sorted standardised training values.
///
/// B-splines: interior knots at quantiles `k/(m-2)`, `k = 1..m-3`; if any two knots
/// (boundaries included) are closer than `KNOT_GAP_TOL · (max - min)`, evenly spaced interior
/// knots are used instead. Bernstein: boundaries only.
fn make_knots(spec: BasisSpec, sorted: &[f64]) -> Vec<f64> {
    let d = spec.degree();
    let lo = sorted[0];
    let hi = sorted[sorted.len() - 1];
    let n_interior = match spec.kind {
        BasisKind::BSpline => spec.n_basis - 3,
        BasisKind::Bernstein => 0,
    };
    let mut interior: Vec<f64> = (1..=n_interior)
        .map(|k| quantile_sorted(sorted, k as f64 / (n_interior + 1) as f64))
        .collect();
    let tol = KNOT_GAP_TOL * (hi - lo);
    let distinct = std::iter::once(lo)
        .chain(interior.iter().copied())
        .chain(std::iter::once(hi))
        .collect::<Vec<_>>()
        .windows(2)
        .all(|w| w[1] - w[0] > tol);
    if !distinct {
        interior = (1..=n_interior)
            .map(|k| lo + (hi - lo) * (k as f64 / (n_interior + 1) as f64))
            .collect();
    }
    let mut knots = Vec::with_capacity(BasisParts::knots_per_feature(spec));
    knots.extend(std::iter::repeat_n(lo, d + 1));
    knots.extend(interior);
    knots.extend(std::iter::repeat_n(hi, d + 1));
    knots
}

/// Orthonormalising transform `T` (m × m, row-major) from the centred, column-dropped
/// training block `z` (n × m, row-major): `T = V diag(1/√s)` over the eigenpairs of
/// `S = zᵀz / n`, eigenvalues in decreasing order, with zero columns for directions whose
/// eigenvalue is at most `EIGEN_REL_TOL · s_max`.
fn orthonormalizer(feature: usize, z: &[f64], n: usize, m: usize) -> Result<Vec<f64>> {
    let mut s = nalgebra::DMatrix::<f64>::zeros(m, m);
    for row in z.chunks_exact(m) {
        for a in 0..m {
            for b in a..m {
                s[(a, b)] += row[a] * row[b];
            }
        }
    }
    for a in 0..m {
        for b in a..m {
            let v = s[(a, b)] / n as f64;
            s[(a, b)] = v;
            s[(b, a)] = v;
        }
    }
    let eig = nalgebra::SymmetricEigen::try_new(s, f64::EPSILON, 100_000).ok_or_else(|| {
        Error::invalid(format!(
            "feature {feature}: eigen-decomposition for orthonormalisation did not converge"
        ))
    })?;
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let s_max = eig.eigenvalues.iter().copied().fold(0.0_f64, f64::max);
    let mut t = vec![0.0; m * m];
    for (col, &k) in order.iter().enumerate() {
        let s_k = eig.eigenvalues[k];
        if !(s_max > 0.0 && s_k > EIGEN_REL_TOL * s_max) {
            continue; // zero column: direction not supported by the training data
        }
        let v = eig.eigenvectors.column(k);
        // Deterministic sign: the largest-magnitude entry is positive.
        let mut arg = 0;
        for i in 1..m {
            if v[i].abs() > v[arg].abs() {
                arg = i;
            }
        }
        let sign = if v[arg] < 0.0 { -1.0 } else { 1.0 };
        let scale = sign / s_k.sqrt();
        for i in 0..m {
            t[i * m + col] = v[i] * scale;
        }
    }
    Ok(t)
}

impl SplineBasis {
    /// Fits on row-major training features `x` (`n` rows × `n_features` columns).
    ///
    /// Errors if the spec is invalid, `x` is not a whole number of rows, there are fewer
    /// than `max(m + 1, 2)` rows, a value is not finite, or a feature is constant.
    ///
    /// ```
    /// use metaadd::basis::{BasisSpec, SplineBasis};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // 8 rows, 2 features, row-major.
    /// let x: Vec<f64> = (0..8).flat_map(|i| [i as f64, (i * i) as f64]).collect();
    /// let basis = SplineBasis::fit(BasisSpec::bernstein(3), &x, 2)?;
    /// assert_eq!(basis.n_columns(), 2 * 3);
    /// assert_eq!(basis.range(1)?, (0.0, 49.0));
    /// # Ok(())
    /// # }
    /// ```
    pub fn fit(spec: BasisSpec, x: &[f64], n_features: usize) -> Result<Self> {
        spec.validate()?;
        let p = n_features;
        if p == 0 {
            return Err(Error::param("n_features", "must be at least 1"));
        }
        if !x.len().is_multiple_of(p) {
            return Err(Error::invalid(format!(
                "basis fit: {} training values is not a whole number of rows of {p} features",
                x.len()
            )));
        }
        let n = x.len() / p;
        let m = spec.n_basis;
        let need = spec.min_training_rows();
        if n < need {
            return Err(Error::invalid(format!(
                "basis fit: a {spec} basis needs at least {need} training rows, got {n}"
            )));
        }
        if let Some(pos) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "basis fit: feature {} is not finite in training row {} (value {})",
                pos % p,
                pos / p,
                x[pos]
            )));
        }

        let n_raw = m + 1;
        let l = BasisParts::knots_per_feature(spec);
        let mut parts = BasisParts {
            mean: Vec::with_capacity(p),
            scale: Vec::with_capacity(p),
            knots: Vec::with_capacity(p * l),
            centre: Vec::with_capacity(p * n_raw),
            transform: Vec::with_capacity(p * n_raw * m),
        };
        let mut column = vec![0.0; n];
        let mut eval = Evaluator::new(spec.degree());
        let mut raw = vec![0.0; n * n_raw];
        for j in 0..p {
            for (i, c) in column.iter_mut().enumerate() {
                *c = x[i * p + j];
            }
            let mean = column.iter().sum::<f64>() / n as f64;
            let var = column.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
            let sd = var.sqrt();
            let constant = || {
                Error::invalid(format!(
                    "feature {j} is constant on the training data (value {}); remove it",
                    column[0]
                ))
            };
            if sd == 0.0 {
                return Err(constant());
            }
            if !sd.is_finite() || !mean.is_finite() {
                return Err(Error::invalid(format!(
                    "feature {j}: training values too large to standardise (mean {mean}, sd {sd})"
                )));
            }
            let mut sorted: Vec<f64> = column.iter().map(|v| (v - mean) / sd).collect();
            sorted.sort_by(f64::total_cmp);
            if sorted[n - 1] <= sorted[0] {
                return Err(constant());
            }
            let knots = make_knots(spec, &sorted);

            // Raw training block with the same code path as `transform`.
            raw.fill(0.0);
            for (i, &v) in column.iter().enumerate() {
                let z = ((v - mean) / sd).clamp(knots[0], knots[l - 1]);
                let first = eval.eval(&knots, z);
                raw[i * n_raw + first..i * n_raw + first + eval.values.len()]
                    .copy_from_slice(&eval.values);
            }
            let mut centre = vec![0.0; n_raw];
            for row in raw.chunks_exact(n_raw) {
                for (c, r) in centre.iter_mut().zip(row) {
                    *c += r;
                }
            }
            for c in centre.iter_mut() {
                *c /= n as f64;
            }

            // A = [0; T], T = I or the orthonormaliser.
            let t = if spec.orthonormalize {
                let mut z = Vec::with_capacity(n * m);
                for row in raw.chunks_exact(n_raw) {
                    z.extend(row[1..].iter().zip(&centre[1..]).map(|(r, c)| r - c));
                }
                orthonormalizer(j, &z, n, m)?
            } else {
                let mut t = vec![0.0; m * m];
                for k in 0..m {
                    t[k * m + k] = 1.0;
                }
                t
            };
            parts.mean.push(mean);
            parts.scale.push(sd);
            parts.knots.extend_from_slice(&knots);
            parts.centre.extend_from_slice(&centre);
            parts.transform.extend(std::iter::repeat_n(0.0, m));
            parts.transform.extend_from_slice(&t);
        }
        Self::from_parts(spec, parts)
    }

    /// The spec this basis was fitted with.
    pub fn spec(&self) -> BasisSpec {
        self.spec
    }

    /// Number of features `p`.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Design columns per feature, `m`.
    pub fn n_basis(&self) -> usize {
        self.spec.n_basis
    }

    /// Total design columns, `p · m`; feature `j` owns columns `j·m .. j·m + m`.
    pub fn n_columns(&self) -> usize {
        self.n_features * self.spec.n_basis
    }

    fn knots_of(&self, j: usize) -> &[f64] {
        let l = BasisParts::knots_per_feature(self.spec);
        &self.knots[j * l..(j + 1) * l]
    }

    fn check_feature(&self, feature: usize, what: &str) -> Result<()> {
        if feature >= self.n_features {
            return Err(Error::invalid(format!(
                "{what}: feature index {feature} out of range (basis has {} features)",
                self.n_features
            )));
        }
        Ok(())
    }

    /// Standardises and clamps a raw value of feature `j`.
    fn standardise(&self, j: usize, v: f64) -> f64 {
        let knots = self.knots_of(j);
        ((v - self.mean[j]) / self.scale[j]).clamp(knots[0], knots[knots.len() - 1])
    }

    /// Writes the design block row of feature `j` at raw value `v` into `out` (length m).
    fn design_row(&self, eval: &mut Evaluator, j: usize, v: f64, out: &mut [f64]) {
        let m = self.spec.n_basis;
        let n_raw = m + 1;
        let z = self.standardise(j, v);
        let first = eval.eval(self.knots_of(j), z);
        let a = &self.transform[j * n_raw * m..(j + 1) * n_raw * m];
        out.copy_from_slice(&self.offset[j * m..(j + 1) * m]);
        for o in out.iter_mut() {
            *o = -*o;
        }
        for (r, &b) in eval.values.iter().enumerate() {
            let row = &a[(first + r) * m..(first + r + 1) * m];
            for (o, &w) in out.iter_mut().zip(row) {
                *o += b * w;
            }
        }
    }

    fn check_finite(
        values: &[f64],
        what: &str,
        row_len: usize,
        feature: Option<usize>,
    ) -> Result<()> {
        if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
            let (row, feat) = match feature {
                Some(f) => (pos, f),
                None => (pos / row_len, pos % row_len),
            };
            return Err(Error::invalid(format!(
                "{what}: feature {feat} in row {row} is not finite (value {}); inputs must be finite",
                values[pos]
            )));
        }
        Ok(())
    }

    /// Design matrix for new rows (row-major `x`, `n` rows × `p` features) as a row-major
    /// `n × p·m` matrix. Never refits: uses the training standardisation, knots, centring
    /// and transform; values outside the training range are clamped to it.
    ///
    /// Errors if `x` is not a whole number of rows or holds a non-finite value.
    ///
    /// ```
    /// use metaadd::basis::{BasisSpec, SplineBasis};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let train: Vec<f64> = (0..50).map(|i| (i as f64 * 0.37).sin()).collect();
    /// let basis = SplineBasis::fit(BasisSpec::bspline(6), &train, 1)?;
    /// let design = basis.transform(&[0.1, -0.5, 7.0])?; // 3 new rows, 7.0 is clamped
    /// assert_eq!(design.len(), 3 * 6);
    /// assert!(basis.transform(&[f64::NAN]).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn transform(&self, x: &[f64]) -> Result<Vec<f64>> {
        self.transform_as(x, |v| v)
    }

    /// [`SplineBasis::transform`] as a tensor `[n, p·m]` in `dtype` on `device`. An f32
    /// design is rounded row by row as it is built, so it never exists in f64 beside (its
    /// values are those of the f64 design rounded).
    pub fn design(&self, x: &[f64], dtype: DType, device: &Device) -> Result<Tensor> {
        let n = x.len() / self.n_features.max(1);
        let shape = (n, self.n_columns());
        Ok(match dtype {
            DType::F32 => Tensor::from_vec(self.transform_as(x, |v| v as f32)?, shape, device)?,
            _ => Tensor::from_vec(self.transform(x)?, shape, device)?.to_dtype(dtype)?,
        })
    }

    /// The transform's values, each converted by `cast` as its row is done.
    fn transform_as<T>(&self, x: &[f64], cast: impl Fn(f64) -> T) -> Result<Vec<T>> {
        let p = self.n_features;
        let m = self.spec.n_basis;
        if !x.len().is_multiple_of(p) {
            return Err(Error::invalid(format!(
                "basis transform: {} values is not a whole number of rows of {p} features",
                x.len()
            )));
        }
        Self::check_finite(x, "basis transform", p, None)?;
        let n = x.len() / p;
        let width = p * m;
        let mut out = Vec::with_capacity(n * width);
        let mut row_values = vec![0.0; width];
        let mut eval = Evaluator::new(self.spec.degree());
        for row in x.chunks_exact(p) {
            for (j, (&v, block)) in row.iter().zip(row_values.chunks_exact_mut(m)).enumerate() {
                self.design_row(&mut eval, j, v, block);
            }
            out.extend(row_values.iter().map(|&v| cast(v)));
        }
        Ok(out)
    }

    /// The design of new rows (as [`SplineBasis::transform`]) in its sparse form: each row's
    /// `degree + 1` non-zero raw B-spline values per feature, with the transforms and
    /// centring rows, stored in `dtype`. Its products equal those with the dense design to
    /// rounding and read `(degree + 1)` values and an index per row and feature instead of
    /// `m` values.
    ///
    /// ```
    /// use metaadd::basis::{BasisSpec, SplineBasis};
    /// use metaadd::candle_core::{DType, Device, Tensor};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let train: Vec<f64> = (0..50).map(|i| (i as f64 * 0.37).sin()).collect();
    /// let basis = SplineBasis::fit(BasisSpec::bspline(10), &train, 1)?;
    /// let sparse = basis.sparse_design(&train, DType::F64)?;
    /// let dense = Tensor::from_vec(basis.transform(&train)?, (50, 10), &Device::Cpu)?;
    /// let beta = Tensor::ones((10, 1), DType::F64, &Device::Cpu)?;
    /// let gap = (sparse.mul(&beta)? - dense.matmul(&beta)?)?.abs()?.max_all()?;
    /// assert!(gap.to_scalar::<f64>()? < 1e-12);
    /// # Ok(())
    /// # }
    /// ```
    pub fn sparse_design(&self, x: &[f64], dtype: DType) -> Result<SplineDesign> {
        let p = self.n_features;
        let m = self.spec.n_basis;
        let width = self.spec.degree() + 1;
        if !x.len().is_multiple_of(p) {
            return Err(Error::invalid(format!(
                "basis sparse design: {} values is not a whole number of rows of {p} features",
                x.len()
            )));
        }
        Self::check_finite(x, "basis sparse design", p, None)?;
        let n = x.len() / p;
        let mut first = Vec::with_capacity(n * p);
        let mut values = SparseValues::with_capacity(dtype, n * p * width)?;
        let mut eval = Evaluator::new(self.spec.degree());
        for row in x.chunks_exact(p) {
            for (j, &v) in row.iter().enumerate() {
                let start = eval.eval(self.knots_of(j), self.standardise(j, v));
                // At most `MAX_N_BASIS` raw functions, so the index fits.
                first.push(u16::try_from(start).map_err(|_| {
                    Error::invalid(format!("basis sparse design: raw function {start}"))
                })?);
                values.extend(&eval.values);
            }
        }
        SplineDesign::from_values(
            (n, p, m, width),
            first,
            values,
            &self.transform,
            &self.offset,
        )
    }

    /// Design block of one feature at raw (unstandardised) values: `values.len() × m`,
    /// row-major. Used for plotting shape functions on a grid; `f_j` on the grid is this
    /// block times the feature's coefficient group.
    pub fn transform_feature(&self, feature: usize, values: &[f64]) -> Result<Vec<f64>> {
        self.check_feature(feature, "basis transform_feature")?;
        Self::check_finite(values, "basis transform_feature", 1, Some(feature))?;
        let m = self.spec.n_basis;
        let mut out = vec![0.0; values.len() * m];
        let mut eval = Evaluator::new(self.spec.degree());
        for (&v, dst) in values.iter().zip(out.chunks_exact_mut(m)) {
            self.design_row(&mut eval, feature, v, dst);
        }
        Ok(out)
    }

    /// The uncentred raw basis (`m + 1` functions) of one feature at raw values:
    /// `values.len() × (m+1)`, row-major. Rows sum to one (values outside the training range
    /// are clamped).
    pub fn raw_feature(&self, feature: usize, values: &[f64]) -> Result<Vec<f64>> {
        self.check_feature(feature, "basis raw_feature")?;
        Self::check_finite(values, "basis raw_feature", 1, Some(feature))?;
        let n_raw = self.spec.n_basis + 1;
        let knots = self.knots_of(feature);
        let mut out = vec![0.0; values.len() * n_raw];
        let mut eval = Evaluator::new(self.spec.degree());
        for (&v, dst) in values.iter().zip(out.chunks_exact_mut(n_raw)) {
            let first = eval.eval(knots, self.standardise(feature, v));
            dst[first..first + eval.values.len()].copy_from_slice(&eval.values);
        }
        Ok(out)
    }

    /// Training range (raw units) of a feature: `(min, max)`, recovered from the boundary
    /// knots (so equal to the training extremes up to rounding). A bad index is an error.
    pub fn range(&self, feature: usize) -> Result<(f64, f64)> {
        self.check_feature(feature, "basis range")?;
        let knots = self.knots_of(feature);
        let (mean, scale) = (self.mean[feature], self.scale[feature]);
        Ok((
            mean + scale * knots[0],
            mean + scale * knots[knots.len() - 1],
        ))
    }

    /// The distinct knots of a feature in raw units: training quantiles (or the even
    /// fallback) between the training minimum and maximum; for plotting a rug.
    pub fn knots_raw(&self, feature: usize) -> Result<Vec<f64>> {
        self.check_feature(feature, "basis knots")?;
        let (mean, scale) = (self.mean[feature], self.scale[feature]);
        let mut out: Vec<f64> = Vec::new();
        for &k in self.knots_of(feature) {
            let v = mean + scale * k;
            if out.last() != Some(&v) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// All state needed to rebuild the basis, as flat `f64` arrays for a model file.
    pub fn to_parts(&self) -> BasisParts {
        BasisParts {
            mean: self.mean.clone(),
            scale: self.scale.clone(),
            knots: self.knots.clone(),
            centre: self.centre.clone(),
            transform: self.transform.clone(),
        }
    }

    /// Rebuilds from parts, validating every length and value (finite numbers, positive
    /// scales, clamped increasing knot vectors). The number of features is taken from
    /// `parts.mean`; errors name the part and its expected shape.
    pub fn from_parts(spec: BasisSpec, parts: BasisParts) -> Result<Self> {
        spec.validate()?;
        let p = parts.mean.len();
        if p == 0 {
            return Err(Error::invalid(
                "basis part `mean` is empty; expected shape [p] with p >= 1".to_string(),
            ));
        }
        let m = spec.n_basis;
        let n_raw = m + 1;
        let d = spec.degree();
        let l = BasisParts::knots_per_feature(spec);
        let shapes: [(&str, &[f64], usize, String); 5] = [
            ("mean", &parts.mean, p, format!("[{p}]")),
            ("scale", &parts.scale, p, format!("[{p}]")),
            (
                "knots",
                &parts.knots,
                p.saturating_mul(l),
                format!("[{p}, {l}]"),
            ),
            (
                "centre",
                &parts.centre,
                p.saturating_mul(n_raw),
                format!("[{p}, {n_raw}]"),
            ),
            (
                "transform",
                &parts.transform,
                p.saturating_mul(n_raw).saturating_mul(m),
                format!("[{p}, {n_raw}, {m}]"),
            ),
        ];
        for (name, data, len, shape) in &shapes {
            if data.len() != *len {
                return Err(Error::invalid(format!(
                    "basis part `{name}` has {} values; expected shape {shape} ({len} values) for spec {spec} and p = {p} features (p is the length of `mean`)",
                    data.len()
                )));
            }
            if let Some(pos) = data.iter().position(|v| !v.is_finite()) {
                return Err(Error::invalid(format!(
                    "basis part `{name}` (shape {shape}) has a non-finite value at flat index {pos}"
                )));
            }
        }
        if let Some(j) = parts.scale.iter().position(|&s| s <= 0.0) {
            return Err(Error::invalid(format!(
                "basis part `scale`: feature {j} has scale {}, expected > 0",
                parts.scale[j]
            )));
        }
        for (j, k) in parts.knots.chunks_exact(l).enumerate() {
            let (lo, hi) = (k[0], k[l - 1]);
            let clamped =
                k[..=d].iter().all(|&t| t == lo) && k[l - d - 1..].iter().all(|&t| t == hi);
            let increasing = k[d..l - d].windows(2).all(|w| w[0] < w[1]);
            if !(clamped && increasing) {
                return Err(Error::invalid(format!(
                    "basis part `knots` (shape [{p}, {l}]): feature {j} is not a clamped knot vector \
                     (first and last {} knots equal, the rest strictly increasing between them)",
                    d + 1
                )));
            }
        }
        let mut offset = vec![0.0; p * m];
        for j in 0..p {
            let c = &parts.centre[j * n_raw..(j + 1) * n_raw];
            let a = &parts.transform[j * n_raw * m..(j + 1) * n_raw * m];
            let o = &mut offset[j * m..(j + 1) * m];
            for (r, &cr) in c.iter().enumerate() {
                for (ok, &w) in o.iter_mut().zip(&a[r * m..(r + 1) * m]) {
                    *ok += cr * w;
                }
            }
        }
        Ok(SplineBasis {
            spec,
            n_features: p,
            mean: parts.mean,
            scale: parts.scale,
            knots: parts.knots,
            centre: parts.centre,
            transform: parts.transform,
            offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Row-major n × p data: feature 0 uniform on [-2, 5], feature 1 skewed (exponential-like),
    /// further features uniform on [0, 1].
    fn sample(n: usize, p: usize, seed: u64) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut x = Vec::with_capacity(n * p);
        for _ in 0..n {
            for j in 0..p {
                let u: f64 = rng.random();
                x.push(match j {
                    0 => -2.0 + 7.0 * u,
                    1 => -(1.0 - u).ln() * 3.0 + 10.0,
                    _ => u,
                });
            }
        }
        x
    }

    fn column(x: &[f64], p: usize, j: usize) -> Vec<f64> {
        x.chunks_exact(p).map(|r| r[j]).collect()
    }

    fn all_specs() -> Vec<BasisSpec> {
        let mut v = Vec::new();
        for base in [
            BasisSpec::bspline(3),
            BasisSpec::bspline(6),
            BasisSpec::bspline(10),
            BasisSpec::bernstein(3),
            BasisSpec::bernstein(5),
        ] {
            v.push(base);
            v.push(base.orthonormalized(true));
        }
        v
    }

    /// Block of columns of feature j from a full design (n × p·m).
    fn block(design: &[f64], p: usize, m: usize, j: usize) -> Vec<f64> {
        design
            .chunks_exact(p * m)
            .flat_map(|r| r[j * m..(j + 1) * m].to_vec())
            .collect()
    }

    fn gram(block: &[f64], m: usize) -> Vec<f64> {
        let n = block.len() / m;
        let mut g = vec![0.0; m * m];
        for row in block.chunks_exact(m) {
            for a in 0..m {
                for b in 0..m {
                    g[a * m + b] += row[a] * row[b];
                }
            }
        }
        g.iter().map(|v| v / n as f64).collect()
    }

    #[test]
    fn partition_of_unity_before_centring() {
        let (n, p) = (120, 2);
        let x = sample(n, p, 1);
        let mut rng = StdRng::seed_from_u64(2);
        for spec in all_specs() {
            let basis = SplineBasis::fit(spec, &x, p).unwrap();
            let m1 = spec.n_basis + 1;
            for j in 0..p {
                let col = column(&x, p, j);
                let min = col.iter().copied().fold(f64::INFINITY, f64::min);
                let max = col.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut pts: Vec<f64> = (0..50)
                    .map(|_| min + (max - min) * rng.random::<f64>())
                    .collect();
                pts.extend([min, max, min - 10.0, max + 5.0, -1e6, 1e6]);
                let raw = basis.raw_feature(j, &pts).unwrap();
                for (i, row) in raw.chunks_exact(m1).enumerate() {
                    let s: f64 = row.iter().sum();
                    assert!(
                        (s - 1.0).abs() < 1e-12,
                        "{spec} feature {j} point {i}: sum {s}"
                    );
                    assert!(row.iter().all(|&v| v >= -1e-15), "{spec}: negative value");
                }
                // At min the first function is 1, at max (right-closed) the last one is.
                let at_min = &raw[50 * m1..51 * m1];
                let at_max = &raw[51 * m1..52 * m1];
                assert!((at_min[0] - 1.0).abs() < 1e-12, "{spec}: {at_min:?}");
                assert!((at_max[m1 - 1] - 1.0).abs() < 1e-12, "{spec}: {at_max:?}");
                // Outside values are clamped: identical to the boundary rows.
                assert_eq!(&raw[52 * m1..53 * m1], at_min);
                assert_eq!(&raw[53 * m1..54 * m1], at_max);
                assert_eq!(&raw[54 * m1..55 * m1], at_min);
                assert_eq!(&raw[55 * m1..56 * m1], at_max);
            }
        }
    }

    #[test]
    fn centred_design_has_zero_column_means() {
        let (n, p) = (200, 3);
        let x = sample(n, p, 3);
        for spec in all_specs() {
            let basis = SplineBasis::fit(spec, &x, p).unwrap();
            let design = basis.transform(&x).unwrap();
            assert_eq!(design.len(), n * p * spec.n_basis);
            assert_eq!(basis.n_columns(), p * spec.n_basis);
            for k in 0..basis.n_columns() {
                let mean: f64 = design
                    .chunks_exact(basis.n_columns())
                    .map(|r| r[k])
                    .sum::<f64>()
                    / n as f64;
                assert!(mean.abs() < 1e-10, "{spec} column {k}: mean {mean}");
            }
        }
    }

    #[test]
    fn cubic_polynomial_is_reproduced_by_raw_basis() {
        let (n, p) = (300, 2);
        let x = sample(n, p, 4);
        let xs = column(&x, p, 0);
        let y: Vec<f64> = xs
            .iter()
            .map(|&t| 1.0 - 2.0 * t + 0.5 * t * t + 0.1 * t * t * t)
            .collect();
        for spec in [
            BasisSpec::bspline(3),
            BasisSpec::bspline(6),
            BasisSpec::bspline(9),
            BasisSpec::bernstein(3),
            BasisSpec::bernstein(5),
        ] {
            let basis = SplineBasis::fit(spec, &x, p).unwrap();
            let m1 = spec.n_basis + 1;
            let raw = basis.raw_feature(0, &xs).unwrap();
            let r = nalgebra::DMatrix::from_row_slice(n, m1, &raw);
            let b = nalgebra::DVector::from_column_slice(&y);
            let coef = r.clone().svd(true, true).solve(&b, 1e-14).unwrap();
            let resid = (&r * coef - &b).amax();
            assert!(resid < 1e-9, "{spec}: residual {resid}");
        }
        // Bernstein of degree 3 is the cubic B-spline basis without interior knots.
        let b3 = SplineBasis::fit(BasisSpec::bernstein(3), &x, p).unwrap();
        let s3 = SplineBasis::fit(BasisSpec::bspline(3), &x, p).unwrap();
        let (a, b) = (
            b3.raw_feature(1, &xs).unwrap(),
            s3.raw_feature(1, &xs).unwrap(),
        );
        assert!(a.iter().zip(&b).all(|(u, v)| (u - v).abs() < 1e-14));
        assert_eq!(b3.to_parts(), s3.to_parts());
    }

    #[test]
    fn orthonormalized_blocks_are_orthonormal_and_binary_is_safe() {
        let (n, p) = (250, 3);
        let mut x = sample(n, p, 5);
        // Feature 2 becomes binary.
        for (i, row) in x.chunks_exact_mut(p).enumerate() {
            row[2] = if i % 3 == 0 { 1.0 } else { 0.0 };
        }
        for spec in [
            BasisSpec::bspline(6),
            BasisSpec::bspline(3),
            BasisSpec::bernstein(5),
        ] {
            let spec = spec.orthonormalized(true);
            let m = spec.n_basis;
            let basis = SplineBasis::fit(spec, &x, p).unwrap();
            let design = basis.transform(&x).unwrap();
            assert!(
                design.iter().all(|v| v.is_finite()),
                "{spec}: non-finite design"
            );
            for j in 0..2 {
                let g = gram(&block(&design, p, m, j), m);
                for a in 0..m {
                    for b in 0..m {
                        let want = if a == b { 1.0 } else { 0.0 };
                        let got = g[a * m + b];
                        assert!((got - want).abs() < 1e-9, "{spec} f{j} G[{a},{b}] = {got}");
                    }
                }
            }
            // Binary feature: rank one, so G = diag(1, 0, ..., 0), no NaN.
            let g = gram(&block(&design, p, m, 2), m);
            for a in 0..m {
                for b in 0..m {
                    let want = if a == 0 && b == 0 { 1.0 } else { 0.0 };
                    assert!(
                        (g[a * m + b] - want).abs() < 1e-9,
                        "{spec} binary G[{a},{b}]"
                    );
                }
            }
            assert!(basis.to_parts().transform.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn orthonormalized_and_plain_designs_span_the_same_space() {
        let (n, p) = (150, 1);
        let x = sample(n, p, 6);
        let plain = SplineBasis::fit(BasisSpec::bspline(6), &x, p).unwrap();
        let ortho = SplineBasis::fit(BasisSpec::bspline(6).orthonormalized(true), &x, p).unwrap();
        let (d0, d1) = (plain.transform(&x).unwrap(), ortho.transform(&x).unwrap());
        let a = nalgebra::DMatrix::from_row_slice(n, 6, &d0);
        let b = nalgebra::DMatrix::from_row_slice(n, 6, &d1);
        // Regress each orthonormal column on the plain columns: residual zero.
        let svd = a.clone().svd(true, true);
        let coef = svd.solve(&b, 1e-12).unwrap();
        assert!((&a * coef - &b).amax() < 1e-9);
    }

    #[test]
    fn transform_never_refits() {
        let p = 2;
        let a = sample(100, p, 7);
        let mut b = sample(40, p, 8);
        b[0] = -100.0; // outside A's range
        b[3] = 1e3;
        b[10 * p..11 * p].copy_from_slice(&a[7 * p..8 * p]);
        for spec in [
            BasisSpec::bspline(6),
            BasisSpec::bernstein(5).orthonormalized(true),
        ] {
            let basis = SplineBasis::fit(spec, &a, p).unwrap();
            let parts = basis.to_parts();
            let d1 = basis.transform(&b).unwrap();
            let d2 = basis.transform(&b).unwrap();
            let _other = SplineBasis::fit(spec, &sample(300, p, 9), p).unwrap();
            let d3 = basis.transform(&b).unwrap();
            assert_eq!(d1, d2);
            assert_eq!(d1, d3);
            assert_eq!(basis.to_parts(), parts);
            let m = spec.n_basis;
            let w = p * m;
            let da = basis.transform(&a).unwrap();
            assert_eq!(&d1[10 * w..11 * w], &da[7 * w..8 * w]);
            // Equals (raw − centre)·A with A's knots, centre and transform.
            let m1 = m + 1;
            for j in 0..p {
                let raw = basis.raw_feature(j, &column(&b, p, j)).unwrap();
                let c = &parts.centre[j * m1..(j + 1) * m1];
                let t = &parts.transform[j * m1 * m..(j + 1) * m1 * m];
                for (i, r) in raw.chunks_exact(m1).enumerate() {
                    for k in 0..m {
                        let want: f64 = (0..m1).map(|l| (r[l] - c[l]) * t[l * m + k]).sum();
                        let got = d1[i * w + j * m + k];
                        assert!((got - want).abs() < 1e-12, "{spec} row {i} f{j} col {k}");
                    }
                }
            }
        }
    }

    #[test]
    fn knots_sit_at_quantiles_or_fall_back_to_even_spacing() {
        let n = 2001;
        let mut rng = StdRng::seed_from_u64(10);
        let u: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
        let spec = BasisSpec::bspline(6);
        let basis = SplineBasis::fit(spec, &u, 1).unwrap();
        let parts = basis.to_parts();
        let l = BasisParts::knots_per_feature(spec);
        assert_eq!(l, 11);
        assert_eq!(parts.knots.len(), l);
        let (mean, sd) = (parts.mean[0], parts.scale[0]);
        let raw: Vec<f64> = parts.knots.iter().map(|k| mean + sd * k).collect();
        let (min, max) = basis.range(0).unwrap();
        assert!(raw[..4].iter().all(|&k| k == raw[0]) && raw[7..].iter().all(|&k| k == raw[10]));
        assert!((raw[0] - min).abs() < 1e-12 && (raw[10] - max).abs() < 1e-12);
        let mut sorted = u.clone();
        sorted.sort_by(f64::total_cmp);
        assert!((min - sorted[0]).abs() < 1e-12 && (max - sorted[n - 1]).abs() < 1e-12);
        for (k, q) in [0.25, 0.5, 0.75].into_iter().enumerate() {
            // Type-7 quantile of the sample (n − 1 = 2000 so the positions are integers).
            let exact = sorted[(q * (n - 1) as f64) as usize];
            assert!(
                (raw[4 + k] - exact).abs() < 1e-12,
                "knot {k}: {} vs {exact}",
                raw[4 + k]
            );
            assert!((raw[4 + k] - q).abs() < 0.05, "knot {k} far from {q}");
        }

        // Many ties: 90% zeros, so all quantile knots coincide with the minimum.
        let ties: Vec<f64> = (0..200)
            .map(|i| {
                if i % 10 == 0 {
                    (i % 4) as f64 + 1.0
                } else {
                    0.0
                }
            })
            .collect();
        let basis = SplineBasis::fit(spec.orthonormalized(true), &ties, 1).unwrap();
        let parts = basis.to_parts();
        let (lo, hi) = (parts.knots[0], parts.knots[10]);
        for k in 1..=3 {
            let want = lo + (hi - lo) * k as f64 / 4.0;
            assert!((parts.knots[3 + k] - want).abs() < 1e-12);
        }
        let d = basis.transform(&ties).unwrap();
        assert!(d.iter().all(|v| v.is_finite()));

        // Bernstein: boundary knots only.
        let basis = SplineBasis::fit(BasisSpec::bernstein(5), &u, 1).unwrap();
        let k = basis.to_parts().knots;
        assert_eq!(k.len(), 12);
        assert!(k[..6].iter().all(|&t| t == k[0]) && k[6..].iter().all(|&t| t == k[11]));
    }

    #[test]
    fn constant_feature_and_too_few_rows_are_errors() {
        let (n, p) = (30, 5);
        let mut x = sample(n, p, 11);
        for row in x.chunks_exact_mut(p) {
            row[3] = 2.5;
        }
        let err = SplineBasis::fit(BasisSpec::default(), &x, p)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("feature 3 is constant on the training data (value 2.5); remove it"),
            "{err}"
        );
        let err = SplineBasis::fit(BasisSpec::bspline(6), &x[..6 * p], p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 7 training rows, got 6"), "{err}");
        let err = SplineBasis::fit(BasisSpec::bernstein(1), &[1.0], 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 2 training rows, got 1"), "{err}");
        let mut bad = sample(n, 2, 12);
        bad[2 * 7 + 1] = f64::NAN;
        let err = SplineBasis::fit(BasisSpec::default(), &bad, 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("feature 1") && err.contains("row 7"), "{err}");
        assert!(SplineBasis::fit(BasisSpec::default(), &bad[..59], 2).is_err());
        assert!(SplineBasis::fit(BasisSpec::default(), &bad, 0).is_err());
        let err = SplineBasis::fit(BasisSpec::bspline(2), &x, p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("n_basis"), "{err}");
        assert!(SplineBasis::fit(BasisSpec::bernstein(0), &x, p).is_err());
    }

    #[test]
    fn bad_prediction_inputs_are_errors() {
        let p = 3;
        let basis = SplineBasis::fit(BasisSpec::default(), &sample(50, p, 13), p).unwrap();
        let err = basis.transform(&[0.0; 7]).unwrap_err().to_string();
        assert!(
            err.contains("7 values") && err.contains("3 features"),
            "{err}"
        );
        let err = basis
            .transform(&[0.0, 0.0, 0.0, 1.0, f64::NAN, 0.0])
            .unwrap_err()
            .to_string();
        assert!(err.contains("feature 1 in row 1"), "{err}");
        assert!(basis.transform(&[]).unwrap().is_empty());
        let err = basis.transform_feature(3, &[0.0]).unwrap_err().to_string();
        assert!(err.contains("feature index 3"), "{err}");
        assert!(basis.raw_feature(9, &[0.0]).is_err());
        assert!(basis.range(3).is_err());
        assert!(basis.knots_raw(3).is_err());
        let err = basis
            .transform_feature(2, &[0.0, f64::INFINITY])
            .unwrap_err()
            .to_string();
        assert!(err.contains("feature 2 in row 1"), "{err}");
        // transform_feature agrees with the matching block of transform.
        let x = sample(5, p, 14);
        let d = basis.transform(&x).unwrap();
        let f1 = basis.transform_feature(1, &column(&x, p, 1)).unwrap();
        assert_eq!(block(&d, p, 6, 1), f1);
    }

    #[test]
    fn spec_text_round_trips() {
        for spec in all_specs() {
            let text = spec.to_string();
            assert_eq!(text.parse::<BasisSpec>().unwrap(), spec, "{text}");
        }
        assert_eq!(
            BasisSpec::default().to_string(),
            "bspline(m=6,orthonormal=false)"
        );
        assert_eq!(
            BasisSpec::bernstein(3).orthonormalized(true).to_string(),
            "bernstein(m=3,orthonormal=true)"
        );
        assert_eq!(
            " bernstein( orthonormal = true , m = 5 ) "
                .parse::<BasisSpec>()
                .unwrap(),
            BasisSpec::bernstein(5).orthonormalized(true)
        );
        assert_eq!(
            "bspline(m=8)".parse::<BasisSpec>().unwrap(),
            BasisSpec::bspline(8)
        );
        assert_eq!(BasisSpec::bspline(8).degree(), 3);
        assert_eq!(BasisSpec::bernstein(5).degree(), 5);
        for bad in [
            "spline(m=6,orthonormal=false)",
            "bspline(m=six,orthonormal=false)",
            "bspline(m=6,orthonormal=maybe)",
            "bspline(m=2,orthonormal=false)",
            "bspline(m=6,m=7)",
            "bspline(m=6,knots=3)",
            "bspline(orthonormal=true)",
            "bspline(m=6",
            "bspline",
            "",
        ] {
            let err = bad.parse::<BasisSpec>().unwrap_err().to_string();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn parts_round_trip_bit_exact_and_validate_shapes() {
        let p = 3;
        let x = sample(80, p, 15);
        let new = sample(33, p, 16);
        for spec in all_specs() {
            let basis = SplineBasis::fit(spec, &x, p).unwrap();
            let parts = basis.to_parts();
            let m = spec.n_basis;
            let l = BasisParts::knots_per_feature(spec);
            assert_eq!(parts.mean.len(), p);
            assert_eq!(parts.scale.len(), p);
            assert_eq!(parts.knots.len(), p * l);
            assert_eq!(parts.centre.len(), p * (m + 1));
            assert_eq!(parts.transform.len(), p * (m + 1) * m);
            let rebuilt = SplineBasis::from_parts(spec, parts.clone()).unwrap();
            assert_eq!(rebuilt, basis);
            let (a, b) = (
                basis.transform(&new).unwrap(),
                rebuilt.transform(&new).unwrap(),
            );
            assert!(a.iter().zip(&b).all(|(u, v)| u.to_bits() == v.to_bits()));
            assert_eq!(rebuilt.range(2).unwrap(), basis.range(2).unwrap());
        }
        let spec = BasisSpec::bspline(6);
        let parts = SplineBasis::fit(spec, &x, p).unwrap().to_parts();
        type Part = fn(&mut BasisParts) -> &mut Vec<f64>;
        let fields: [(&str, Part, &str); 5] = [
            ("mean", |q| &mut q.mean, "[3]"),
            ("scale", |q| &mut q.scale, "[3]"),
            ("knots", |q| &mut q.knots, "[3, 11]"),
            ("centre", |q| &mut q.centre, "[3, 7]"),
            ("transform", |q| &mut q.transform, "[3, 7, 6]"),
        ];
        for (name, field, shape) in fields {
            let mut q = parts.clone();
            field(&mut q).push(0.0);
            let err = SplineBasis::from_parts(spec, q).unwrap_err().to_string();
            let want_shape = if name == "mean" { "[4]" } else { shape };
            assert!(err.contains(&format!("`{name}`")), "{err}");
            assert!(err.contains(want_shape), "{err}");
            let mut q = parts.clone();
            field(&mut q)[1] = f64::NAN;
            let err = SplineBasis::from_parts(spec, q).unwrap_err().to_string();
            assert!(err.contains(&format!("`{name}`")), "{err}");
        }
        let mut q = parts.clone();
        q.scale[1] = 0.0;
        let err = SplineBasis::from_parts(spec, q).unwrap_err().to_string();
        assert!(
            err.contains("`scale`") && err.contains("feature 1"),
            "{err}"
        );
        let mut q = parts.clone();
        q.knots.swap(11 + 4, 11 + 5);
        let err = SplineBasis::from_parts(spec, q).unwrap_err().to_string();
        assert!(
            err.contains("`knots`") && err.contains("feature 1"),
            "{err}"
        );
        // Parts of a 6-column basis do not fit an 8-column spec.
        let err = SplineBasis::from_parts(BasisSpec::bspline(8), parts.clone())
            .unwrap_err()
            .to_string();
        assert!(err.contains("`knots`"), "{err}");
        let empty = BasisParts {
            mean: vec![],
            scale: vec![],
            knots: vec![],
            centre: vec![],
            transform: vec![],
        };
        assert!(SplineBasis::from_parts(spec, empty).is_err());
    }
}
