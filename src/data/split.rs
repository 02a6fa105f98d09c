//! Holding out a meta set from a training file: at random (stratified for classification) or
//! the hard-but-clean samples of Jain, Suggala and Shenoy ("learned reweighting with hard
//! validation samples").

use crate::data::Dataset;
use crate::error::{Error, Result};
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};

/// The rows of an `n`-row table split into (kept, held out), with `round(frac·n)` rows held
/// out at random from `seed`, in proportion within each class when `labels` (one per row, e.g.
/// a label column's text) are given: the draw of [`holdout`], on row positions. Both lists are
/// in row order.
///
/// ```
/// use metaadd::data::split::split_rows;
/// let labels: Vec<String> = (0..10).map(|i| if i < 8 { "a".into() } else { "b".into() }).collect();
/// let (kept, held) = split_rows(10, Some(&labels), 0.5, 1)?;
/// assert_eq!((kept.len(), held.len()), (5, 5));
/// assert_eq!(held.iter().filter(|&&i| i >= 8).count(), 1); // half of class b
/// # Ok::<(), metaadd::Error>(())
/// ```
pub fn split_rows(
    n: usize,
    labels: Option<&[String]>,
    frac: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if let Some(labels) = labels.filter(|l| l.len() != n) {
        return Err(Error::invalid(format!(
            "{} labels given for {n} rows",
            labels.len()
        )));
    }
    // Row positions as the one feature, class indices as targets: `holdout`'s own draw.
    let y: Vec<f64> = match labels {
        Some(labels) => {
            let mut levels: Vec<&String> = labels.iter().collect();
            levels.sort();
            levels.dedup();
            labels
                .iter()
                .map(|l| levels.binary_search(&l).map_or(0.0, |k| k as f64))
                .collect()
        }
        None => vec![0.0; n],
    };
    let rows = Dataset::new((0..n).map(|i| i as f64).collect(), 1, y)?;
    let (kept, held) = holdout(&rows, frac, labels.is_some(), seed)?;
    let positions = |d: &Dataset| d.x().iter().map(|&v| v as usize).collect::<Vec<_>>();
    Ok((positions(&kept), positions(&held)))
}

/// Splits `data` into (training, meta) with `round(frac·n)` meta rows drawn at random from
/// `seed`. With `stratify`, each class (target value) contributes in proportion to its size.
///
/// ```
/// use metaadd::data::{split::holdout, Dataset};
/// let y: Vec<f64> = (0..100).map(|i| f64::from(i % 4 == 0)).collect();
/// let data = Dataset::new((0..100).map(f64::from).collect(), 1, y)?;
/// let (train, meta) = holdout(&data, 0.2, true, 7)?;
/// assert_eq!((train.n_samples(), meta.n_samples()), (80, 20));
/// assert_eq!(meta.y().iter().filter(|&&y| y == 1.0).count(), 5); // 25% of 20
/// # Ok::<(), metaadd::Error>(())
/// ```
pub fn holdout(data: &Dataset, frac: f64, stratify: bool, seed: u64) -> Result<(Dataset, Dataset)> {
    let n_meta = meta_rows(data, frac)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut meta = Vec::with_capacity(n_meta);
    if stratify {
        let groups = class_groups(data);
        // Largest-remainder allocation so the class counts add up to n_meta exactly.
        let n = data.n_samples() as f64;
        let exact: Vec<f64> = groups
            .iter()
            .map(|(_, rows)| rows.len() as f64 * n_meta as f64 / n)
            .collect();
        let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
        let mut order: Vec<usize> = (0..groups.len()).collect();
        order.sort_by(|&a, &b| {
            (exact[b] - exact[b].floor())
                .total_cmp(&(exact[a] - exact[a].floor()))
                .then(a.cmp(&b))
        });
        let short = n_meta - counts.iter().sum::<usize>();
        for &g in order.iter().take(short) {
            counts[g] += 1;
        }
        for ((_, rows), count) in groups.into_iter().zip(counts) {
            let mut rows = rows;
            rows.shuffle(&mut rng);
            meta.extend_from_slice(&rows[..count]);
        }
    } else {
        let mut rows: Vec<usize> = (0..data.n_samples()).collect();
        rows.shuffle(&mut rng);
        meta.extend_from_slice(&rows[..n_meta]);
    }
    split_at(data, meta)
}

/// Splits `data` into (training, meta) with a class-balanced meta set: `round(frac·n)` meta
/// rows shared equally among the classes, each class giving at most half of its rows (so that
/// a rare class keeps training rows too); the meta set is smaller than `round(frac·n)` when the
/// rare classes cannot give their share. Rows are drawn at random from `seed`.
///
/// ```
/// use metaadd::data::{split::balanced_holdout, Dataset};
/// let y: Vec<f64> = (0..100).map(|i| f64::from(i % 10 == 0)).collect(); // 10% positives
/// let data = Dataset::new((0..100).map(f64::from).collect(), 1, y)?;
/// let (train, meta) = balanced_holdout(&data, 0.2, 7)?;
/// // 10 of each class asked; the 10 positives can give 5.
/// assert_eq!(meta.y().iter().filter(|&&y| y == 1.0).count(), 5);
/// assert_eq!(meta.y().iter().filter(|&&y| y == 0.0).count(), 10);
/// assert_eq!(train.n_samples(), 85);
/// # Ok::<(), metaadd::Error>(())
/// ```
pub fn balanced_holdout(data: &Dataset, frac: f64, seed: u64) -> Result<(Dataset, Dataset)> {
    let n_meta = meta_rows(data, frac)?;
    let groups = class_groups(data);
    let k = groups.len();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut meta = Vec::with_capacity(n_meta);
    for (g, (_, rows)) in groups.into_iter().enumerate() {
        // An equal share, the first `n_meta mod k` classes one more.
        let share = n_meta / k + usize::from(g < n_meta % k);
        let count = share.min(rows.len() / 2);
        let mut rows = rows;
        rows.shuffle(&mut rng);
        meta.extend_from_slice(&rows[..count]);
    }
    if meta.is_empty() {
        return Err(Error::param(
            "meta_frac",
            format!(
                "a balanced meta set of {frac} of {} rows is empty: every class needs 2 rows",
                data.n_samples()
            ),
        ));
    }
    split_at(data, meta)
}

/// Splits `data` into (training, meta, test) with `meta_frac` and `test_frac` of the rows
/// (stratified by class with `stratify`): the test rows are held out first, from `seed`, then
/// the meta rows from `seed + 1`.
///
/// ```
/// use metaadd::data::{split::three_way, Dataset};
/// let data = Dataset::new((0..100).map(f64::from).collect(), 1, vec![0.0; 100])?;
/// let (train, meta, test) = three_way(&data, 0.1, 0.2, false, 3)?;
/// assert_eq!((train.n_samples(), meta.n_samples(), test.n_samples()), (70, 10, 20));
/// # Ok::<(), metaadd::Error>(())
/// ```
pub fn three_way(
    data: &Dataset,
    meta_frac: f64,
    test_frac: f64,
    stratify: bool,
    seed: u64,
) -> Result<(Dataset, Dataset, Dataset)> {
    if !(test_frac > 0.0 && meta_frac > 0.0 && meta_frac + test_frac < 1.0) {
        return Err(Error::param(
            "meta_frac, test_frac",
            format!(
                "need two positive fractions with a sum below 1, got {meta_frac} and {test_frac}"
            ),
        ));
    }
    let (rest, test) = holdout(data, test_frac, stratify, seed)?;
    let (train, meta) = holdout(
        &rest,
        meta_frac / (1.0 - test_frac),
        stratify,
        seed.wrapping_add(1),
    )?;
    Ok((train, meta, test))
}

/// Moves the labels (class indices `0..classes`) of `round(frac·n)` rows, drawn from `seed`,
/// to another class chosen uniformly; returns the corrupted data and which rows moved.
///
/// ```
/// use metaadd::data::{split::flip_labels, Dataset};
/// let data = Dataset::new(vec![0.0; 10], 1, vec![0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0])?;
/// let (noisy, flipped) = flip_labels(&data, 0.3, 3, 1)?;
/// assert_eq!(flipped.iter().filter(|&&f| f).count(), 3);
/// for i in 0..10 {
///     assert_eq!(noisy.y()[i] != data.y()[i], flipped[i]);
/// }
/// # Ok::<(), metaadd::Error>(())
/// ```
pub fn flip_labels(
    data: &Dataset,
    frac: f64,
    classes: usize,
    seed: u64,
) -> Result<(Dataset, Vec<bool>)> {
    if !(0.0..=1.0).contains(&frac) {
        return Err(Error::param(
            "flip fraction",
            format!("must lie in [0, 1], got {frac}"),
        ));
    }
    if classes < 2 {
        return Err(Error::param(
            "classes",
            format!("need at least 2, got {classes}"),
        ));
    }
    let mut y = data.y().to_vec();
    if let Some((i, bad)) = y
        .iter()
        .enumerate()
        .find(|(_, &v)| !(v >= 0.0 && v.fract() == 0.0 && (v as usize) < classes))
    {
        return Err(Error::invalid(format!(
            "row {i}: label {bad} is not a class index in 0..{classes}"
        )));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut rows: Vec<usize> = (0..y.len()).collect();
    rows.shuffle(&mut rng);
    rows.truncate((frac * y.len() as f64).round() as usize);
    rows.sort_unstable();
    let mut flipped = vec![false; y.len()];
    for i in rows {
        let shift = rng.random_range(1..classes);
        y[i] = ((y[i] as usize + shift) % classes) as f64;
        flipped[i] = true;
    }
    Ok((data.with_targets(y)?, flipped))
}

/// Splits `data` into (training, meta), taking as meta set the clean-looking samples that are
/// hardest: among rows with a positive `margin` (correctly classified by a uniform-weight fit,
/// so probably clean), those with the smallest margin, per class in proportion to its size.
///
/// `margins[i]` is the fitted model's margin on row `i` (see
/// [`crate::AdditiveModel::margins`]).
///
/// ```
/// use metaadd::data::{split::hard_holdout, Dataset};
/// let data = Dataset::new(vec![0.0; 6], 1, vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0])?;
/// let margins = [3.0, 0.2, -1.0, 0.1, 2.0, 0.5];
/// let (_, meta) = hard_holdout(&data, 2.0 / 6.0, &margins)?;
/// // Row 2 is misclassified (likely noisy); rows 1 and 3 are the hardest correct ones.
/// assert_eq!(meta.y(), &[0.0, 1.0]);
/// # Ok::<(), metaadd::Error>(())
/// ```
pub fn hard_holdout(data: &Dataset, frac: f64, margins: &[f64]) -> Result<(Dataset, Dataset)> {
    if margins.len() != data.n_samples() {
        return Err(Error::invalid(format!(
            "{} margins for {} rows",
            margins.len(),
            data.n_samples()
        )));
    }
    let n_meta = meta_rows(data, frac)?;
    let n = data.n_samples() as f64;
    let mut meta = Vec::with_capacity(n_meta);
    let groups = class_groups(data);
    let mut taken = 0;
    for (g, (label, rows)) in groups.iter().enumerate() {
        // The last class takes the remainder so the total is exact.
        // Rounded shares can overshoot the total: never more than what is left.
        let want = if g + 1 == groups.len() {
            n_meta.saturating_sub(taken)
        } else {
            ((rows.len() as f64 * n_meta as f64 / n).round() as usize)
                .min(n_meta.saturating_sub(taken))
        };
        let mut correct: Vec<usize> = rows.iter().copied().filter(|&i| margins[i] > 0.0).collect();
        if correct.len() < want {
            return Err(Error::invalid(format!(
                "class {label}: only {} correctly classified rows for {want} hard meta rows; \
                 use a smaller meta fraction or random selection",
                correct.len()
            )));
        }
        correct.sort_by(|&a, &b| margins[a].total_cmp(&margins[b]).then(a.cmp(&b)));
        meta.extend_from_slice(&correct[..want]);
        taken += want;
    }
    split_at(data, meta)
}

fn meta_rows(data: &Dataset, frac: f64) -> Result<usize> {
    if !(frac > 0.0 && frac < 1.0) {
        return Err(Error::param(
            "meta_frac",
            format!("must be strictly between 0 and 1, got {frac}"),
        ));
    }
    let n_meta = (frac * data.n_samples() as f64).round() as usize;
    if n_meta == 0 || n_meta >= data.n_samples() {
        return Err(Error::param(
            "meta_frac",
            format!(
                "{frac} of {} rows leaves an empty training or meta set",
                data.n_samples()
            ),
        ));
    }
    Ok(n_meta)
}

/// Row indices per distinct target value, in ascending value order.
fn class_groups(data: &Dataset) -> Vec<(f64, Vec<usize>)> {
    let mut groups: Vec<(f64, Vec<usize>)> = Vec::new();
    for (i, &y) in data.y().iter().enumerate() {
        match groups.iter_mut().find(|(v, _)| *v == y) {
            Some((_, rows)) => rows.push(i),
            None => groups.push((y, vec![i])),
        }
    }
    groups.sort_by(|a, b| a.0.total_cmp(&b.0));
    groups
}

fn split_at(data: &Dataset, mut meta: Vec<usize>) -> Result<(Dataset, Dataset)> {
    meta.sort_unstable();
    let mut is_meta = vec![false; data.n_samples()];
    for &i in &meta {
        is_meta[i] = true;
    }
    let train: Vec<usize> = (0..data.n_samples()).filter(|&i| !is_meta[i]).collect();
    Ok((data.select(&train)?, data.select(&meta)?))
}
