//! Line-chart figures for `metaadd plot` and `metaadd sweep-k`: drawn as SVG with plotters, rasterised to PNG with
//! resvg and an embedded font, so that a PNG never depends on the fonts of the machine.

use anyhow::{anyhow, bail, Context};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;
use std::path::Path;

/// Size of one panel in pixels.
const PANEL_SIZE: (u32, u32) = (440, 330);
/// Pixels per SVG unit in PNG output (2 gives sharp text on high-density screens).
const PNG_SCALE: f32 = 2.0;
/// The font of every label; embedded so that PNG output looks the same on every machine.
const FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
const FONT_FAMILY: &str = "DejaVu Sans";

/// Image file formats `metaadd plot` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Svg,
    Png,
}

impl ImageFormat {
    /// The format named by a path's extension (`.svg` or `.png`, any case).
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "svg" => Some(Self::Svg),
            "png" => Some(Self::Png),
            _ => None,
        }
    }
}

/// Line colours of successive labelled series (matplotlib's "tab10").
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(90, 90, 90),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Unlabelled series in a panel with a legend: context, not named.
const BACKGROUND: RGBColor = RGBColor(200, 200, 200);

/// One labelled curve `y(x)`.
pub struct Series {
    /// Legend text; unlabelled series stay out of the legend, and a panel with no labelled
    /// series has none.
    pub label: String,
    pub x: Vec<f64>,
    pub y: Vec<f64>,
}

/// One chart: curves with an optional rug of marks along the x axis.
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// x positions marked with short ticks above the x axis (e.g. training-data quantiles).
    pub rug: Vec<f64>,
    /// x positions marked with a dashed vertical line across the panel (e.g. a chosen λ).
    pub marks: Vec<f64>,
    /// Fixed y range; `None` fits the curves with a margin.
    pub y_range: Option<(f64, f64)>,
    /// Logarithmic axes (values ≤ 0 are left out).
    pub log_x: bool,
    pub log_y: bool,
    /// Where the legend goes (panels with labelled series only).
    pub legend: SeriesLabelPosition,
}

impl Panel {
    /// A panel with one unlabelled curve on linear axes.
    pub fn curve(
        title: String,
        x_label: String,
        y_label: String,
        x: Vec<f64>,
        y: Vec<f64>,
    ) -> Self {
        Self {
            title,
            x_label,
            y_label,
            series: vec![Series {
                label: String::new(),
                x,
                y,
            }],
            rug: Vec::new(),
            marks: Vec::new(),
            y_range: None,
            log_x: false,
            log_y: false,
            legend: SeriesLabelPosition::UpperRight,
        }
    }
}

/// Draws `panels` on a grid with `columns` panels per row and writes it to `path`.
pub fn write_figure(
    path: &Path,
    format: ImageFormat,
    panels: &[Panel],
    columns: usize,
) -> anyhow::Result<()> {
    if panels.is_empty() || columns == 0 {
        bail!("{}: nothing to draw", path.display());
    }
    let svg = draw_svg(panels, columns)?;
    let bytes = match format {
        ImageFormat::Svg => svg.into_bytes(),
        ImageFormat::Png => rasterise(&svg)?,
    };
    metaadd::output::write_bytes(path, &bytes)
        .with_context(|| format!("writing {}", path.display()))
}

fn draw_svg(panels: &[Panel], columns: usize) -> anyhow::Result<String> {
    let rows = panels.len().div_ceil(columns);
    let size = (PANEL_SIZE.0 * columns as u32, PANEL_SIZE.1 * rows as u32);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let areas = root.split_evenly((rows, columns));
        for (panel, area) in panels.iter().zip(&areas) {
            draw_panel(panel, area)?;
        }
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

fn draw_panel<DB: DrawingBackend>(
    panel: &Panel,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    // Log axes are drawn as linear axes of log10 values with 10^v tick labels.
    let axis = |v: f64, log: bool| if log { v.log10() } else { v };
    let mut curves = Vec::with_capacity(panel.series.len());
    for series in &panel.series {
        if series.x.len() != series.y.len() {
            bail!("panel `{}`: x and y differ in length", panel.title);
        }
        let points: Vec<(f64, f64)> = series
            .x
            .iter()
            .zip(&series.y)
            .map(|(&x, &y)| (axis(x, panel.log_x), axis(y, panel.log_y)))
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        curves.push(points);
    }
    let xs: Vec<f64> = curves.iter().flatten().map(|p| p.0).collect();
    let ys: Vec<f64> = curves.iter().flatten().map(|p| p.1).collect();
    if xs.len() < 2 {
        bail!("panel `{}`: needs at least two (x, y) points", panel.title);
    }
    let (x_lo, x_hi) = padded_range(&xs, if panel.log_x { 0.03 } else { 0.0 });
    let (y_lo, mut y_hi) = panel
        .y_range
        .map(|(lo, hi)| (axis(lo, panel.log_y), axis(hi, panel.log_y)))
        .unwrap_or_else(|| padded_range(&ys, 0.08));
    // Headroom above the curves for the legend, so that it never covers them.
    let entries = panel.series.iter().filter(|s| !s.label.is_empty()).count();
    if entries > 0 {
        y_hi += (0.06 + 0.11 * entries as f64) * (y_hi - y_lo);
    }
    let (x_range, y_range) = ((x_lo, x_hi), (y_lo, y_hi));
    let builder = || {
        let mut b = ChartBuilder::on(area);
        b.caption(&panel.title, (FONT_FAMILY, 15))
            .margin(10)
            .x_label_area_size(38)
            .y_label_area_size(52);
        b
    };
    let lin = |(lo, hi): (f64, f64)| lo..hi;
    // Ranges were padded in log10 units; plotters' log coordinates take data units.
    // A tick at every decade (and at 2 and 5 within one when the axis spans two or fewer).
    let log = |(lo, hi): (f64, f64)| {
        (10f64.powf(lo)..10f64.powf(hi))
            .log_scale()
            .with_key_points(decade_ticks(10f64.powf(lo), 10f64.powf(hi)))
    };
    match (panel.log_x, panel.log_y) {
        (false, false) => draw_chart(
            panel,
            builder()
                .build_cartesian_2d(lin(x_range), lin(y_range))
                .map_err(draw_error)?,
            curves,
        ),
        (true, false) => draw_chart(
            panel,
            builder()
                .build_cartesian_2d(log(x_range), lin(y_range))
                .map_err(draw_error)?,
            curves,
        ),
        (false, true) => draw_chart(
            panel,
            builder()
                .build_cartesian_2d(lin(x_range), log(y_range))
                .map_err(draw_error)?,
            curves,
        ),
        (true, true) => draw_chart(
            panel,
            builder()
                .build_cartesian_2d(log(x_range), log(y_range))
                .map_err(draw_error)?,
            curves,
        ),
    }
}

/// Draws the mesh, the curves (in data units), the legend and the rug on a built chart.
fn draw_chart<'a, DB, X, Y>(
    panel: &Panel,
    mut chart: ChartContext<'a, DB, Cartesian2d<X, Y>>,
    curves: Vec<Vec<(f64, f64)>>,
) -> anyhow::Result<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let unlog = |v: f64, log: bool| if log { 10f64.powf(v) } else { v };
    let x_span = chart.x_range().end - chart.x_range().start;
    let y_span = chart.y_range().end - chart.y_range().start;
    let (y_lo, y_hi) = (chart.y_range().start, chart.y_range().end);
    chart
        .configure_mesh()
        .x_desc(&panel.x_label)
        .y_desc(&panel.y_label)
        .label_style((FONT_FAMILY, 12))
        .axis_desc_style((FONT_FAMILY, 13))
        .x_labels(6)
        .y_labels(6)
        .x_label_formatter(&|v| tick_label(*v, if panel.log_x { v.abs() } else { x_span }))
        .y_label_formatter(&|v| tick_label(*v, if panel.log_y { v.abs() } else { y_span }))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(draw_error)?;
    let legend = panel.series.iter().any(|s| !s.label.is_empty());
    let mut named = 0;
    for (series, points) in panel.series.iter().zip(curves) {
        let (color, style) = if legend && series.label.is_empty() {
            (BACKGROUND, 0)
        } else {
            named += 1;
            (PALETTE[(named - 1) % PALETTE.len()], named - 1)
        };
        let points: Vec<(f64, f64)> = points
            .into_iter()
            .map(|(x, y)| (unlog(x, panel.log_x), unlog(y, panel.log_y)))
            .collect();
        // Named curves differ in dash and marker too, so that coinciding ones stay visible:
        // solid, dashed, dotted-dashed … and circle, triangle, square, cross.
        let dash = DASHES[style % DASHES.len()];
        let stroke = color.stroke_width(2);
        let drawn = if dash == 0 {
            chart
                .draw_series(LineSeries::new(points.iter().copied(), stroke))
                .map_err(draw_error)?
        } else {
            chart
                .draw_series(DashedLineSeries::new(
                    points.iter().copied(),
                    dash,
                    dash / 2 + 2,
                    stroke,
                ))
                .map_err(draw_error)?
        };
        if legend && !series.label.is_empty() {
            drawn.label(series.label.clone()).legend(move |(x, y)| {
                EmptyElement::at((x + 8, y))
                    + PathElement::new(vec![(-8, 0), (8, 0)], stroke)
                    + marker(style, (0, 0), color)
            });
        }
        // Markers tell named curves apart (on at most a dozen points each) and show the points
        // of a short curve; a single long curve needs none.
        if (series.label.is_empty() || !legend) && points.len() > 12 {
            continue;
        }
        let every = points.len().div_ceil(12).max(1);
        let offset = style % every;
        chart
            .draw_series(
                points
                    .iter()
                    .skip(offset)
                    .step_by(every)
                    .map(|&p| EmptyElement::at(p) + marker(style, (0, 0), color)),
            )
            .map_err(draw_error)?;
    }
    if legend {
        chart
            .configure_series_labels()
            .label_font((FONT_FAMILY, 11))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .position(panel.legend.clone())
            .draw()
            .map_err(draw_error)?;
    }
    let dark = BLACK.mix(0.7);
    for &x in panel.marks.iter().filter(|x| x.is_finite()) {
        chart
            .draw_series(DashedLineSeries::new(
                [(x, unlog(y_lo, panel.log_y)), (x, unlog(y_hi, panel.log_y))],
                6,
                4,
                dark.stroke_width(1),
            ))
            .map_err(draw_error)?;
    }
    let tick = 0.04 * (y_hi - y_lo);
    chart
        .draw_series(
            panel
                .rug
                .iter()
                .filter(|x| x.is_finite())
                .map(|&x| PathElement::new(vec![(x, y_lo), (x, y_lo + tick)], BLACK.mix(0.6))),
        )
        .map_err(draw_error)?;
    Ok(())
}

/// Dash lengths of successive named curves (0: solid).
const DASHES: [u32; 4] = [0, 10, 4, 16];

/// The marker of the `style`-th named curve at pixel offset `at`.
fn marker<DB: DrawingBackend>(
    style: usize,
    at: (i32, i32),
    color: RGBColor,
) -> DynElement<'static, DB, (i32, i32)> {
    let (x, y) = at;
    match style % 4 {
        0 => Circle::new(at, 3, color.filled()).into_dyn(),
        1 => TriangleMarker::new(at, 4, color.filled()).into_dyn(),
        2 => Rectangle::new([(x - 3, y - 3), (x + 3, y + 3)], color.filled()).into_dyn(),
        _ => Cross::new(at, 4, color.stroke_width(2)).into_dyn(),
    }
}

/// Tick positions on a log axis from `lo` to `hi`: every power of ten, and 2 and 5 times
/// each when the axis spans two and a half decades or fewer.
fn decade_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo > 0.0 && hi > lo) {
        return Vec::new();
    }
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let steps: &[f64] = if (hi / lo).log10() <= 2.5 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    (first..=last)
        .flat_map(|e| steps.iter().map(move |m| m * 10f64.powi(e)))
        .filter(|v| (lo..=hi).contains(v))
        .collect()
}

/// A tick value with at most four decimals and no trailing zeros; a value that is zero up to
/// rounding (relative to the axis `span`) reads `0`.
fn tick_label(v: f64, span: f64) -> String {
    if v.abs() <= 1e-9 * span {
        return "0".to_string();
    }
    if v.abs() >= 1e5 || v.abs() < 1e-3 {
        return format!("{v:.1e}");
    }
    let text = format!("{v:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    match text {
        "-0" => "0".to_string(),
        t => t.to_string(),
    }
}

/// The range of the finite values, widened by `pad` of its width (or by 1 if it is flat).
fn padded_range(values: &[f64], pad: f64) -> (f64, f64) {
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let width = hi - lo;
    if width <= f64::EPSILON * hi.abs().max(1.0) {
        return (lo - 1.0, hi + 1.0);
    }
    (lo - pad * width, hi + pad * width)
}

fn rasterise(svg: &str) -> anyhow::Result<Vec<u8>> {
    let mut options = resvg::usvg::Options {
        font_family: FONT_FAMILY.to_string(),
        ..Default::default()
    };
    let fonts = options.fontdb_mut();
    fonts.load_font_data(FONT.to_vec());
    for set in [
        resvg::usvg::fontdb::Database::set_sans_serif_family,
        resvg::usvg::fontdb::Database::set_serif_family,
    ] {
        set(fonts, FONT_FAMILY);
    }
    let tree = resvg::usvg::Tree::from_str(svg, &options)
        .map_err(|e| anyhow!("drawing the figure: {e}"))?;
    let size = tree.size().to_int_size().scale_by(PNG_SCALE);
    let size = size.ok_or_else(|| anyhow!("drawing the figure: empty image"))?;
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| anyhow!("drawing the figure: cannot allocate the image"))?;
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::from_scale(PNG_SCALE, PNG_SCALE),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| anyhow!("encoding the PNG image: {e}"))
}

fn draw_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> anyhow::Error {
    anyhow!("drawing the figure: {e}")
}

#[cfg(test)]
mod tests {
    use super::decade_ticks;

    #[test]
    fn log_axes_get_a_tick_at_every_decade() {
        assert_eq!(decade_ticks(0.9, 22.0), vec![1.0, 2.0, 5.0, 10.0, 20.0]);
        assert_eq!(
            decade_ticks(1e-5, 2.0),
            vec![1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
        );
        assert!(decade_ticks(0.0, 1.0).is_empty());
    }
}
