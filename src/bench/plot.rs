//! Plots of a run, as PNG and SVG: first-write latency against file size
//! per driver, create latency against image size and against layer depth.
//! All on log scales. Text is drawn with a TrueType font read at run time
//! (DejaVu Sans from fonts-dejavu-core, or `STRATA_BENCH_FONT`), so no
//! fontconfig or freetype is needed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::report::{Case, Results};
use super::stats::median;
use super::{human_bytes, Result, GIB, KIB};

/// Environment variable naming a .ttf file to draw text with.
pub const FONT_ENV: &str = "STRATA_BENCH_FONT";

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers a font for plotters once; the error says what to install.
fn ensure_font() -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let candidates: Vec<PathBuf> = std::env::var_os(FONT_ENV)
            .map(PathBuf::from)
            .into_iter()
            .chain(FONT_PATHS.iter().map(PathBuf::from))
            .collect();
        let path = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
            format!("no TrueType font found (install fonts-dejavu-core or set {FONT_ENV}); plots skipped")
        })?;
        let bytes: &'static [u8] = Box::leak(std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| format!("{} is not a usable font", path.display()))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// One line of a plot.
#[derive(Debug, Clone)]
pub struct Line {
    /// Legend text.
    pub label: String,
    /// (x, y) points, x ascending.
    pub points: Vec<(f64, f64)>,
}

/// A log-log plot.
#[derive(Debug, Clone)]
pub struct Plot {
    /// File name without extension.
    pub name: &'static str,
    /// Caption.
    pub title: String,
    /// X axis description.
    pub x_desc: &'static str,
    /// Whether x values are byte counts (labelled as such).
    pub x_bytes: bool,
    /// Y axis description.
    pub y_desc: &'static str,
    /// The lines.
    pub lines: Vec<Line>,
}

/// The three plots of a run.
pub fn plots(results: &Results) -> Vec<Plot> {
    let mut first = Plot {
        name: "first-write",
        title: "First 4 KiB write (open + write + fsync)".into(),
        x_desc: "file size in the image layer",
        x_bytes: true,
        y_desc: "latency, ms (median)",
        lines: Vec::new(),
    };
    let mut by_size = Plot {
        name: "create-size",
        title: "Create latency by image size".into(),
        x_desc: "one-layer image size",
        x_bytes: true,
        y_desc: "latency, ms (median)",
        lines: Vec::new(),
    };
    let mut by_depth = Plot {
        name: "create-depth",
        title: "Create latency by layer depth".into(),
        x_desc: "layers in the image",
        x_bytes: false,
        y_desc: "latency, ms (median)",
        lines: Vec::new(),
    };
    for t in results.targets.iter().filter(|t| t.skipped.is_none()) {
        let (workload, label) = if t.is_volume() {
            ("volume", t.label.clone())
        } else {
            ("copy_up", t.label.clone())
        };
        let points = |f: &dyn Fn(&Case) -> Option<f64>| -> Vec<(f64, f64)> {
            let mut pts: Vec<(f64, f64)> = t
                .series
                .iter()
                .filter_map(|s| Some((f(&s.case)?, median(&s.samples)? / 1e6)))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            pts
        };
        let pts = points(&|c| {
            (c.workload == workload && c.metric == "total" && c.write_size == Some(4 * KIB))
                .then_some(c.file_size? as f64)
        });
        push_line(&mut first, &label, pts);
        if !t.is_volume() {
            push_line(
                &mut by_size,
                &label,
                points(&|c| (c.workload == "create").then_some(c.image_size? as f64)),
            );
            push_line(
                &mut by_depth,
                &label,
                points(&|c| (c.workload == "create").then_some(c.layers? as f64)),
            );
        }
    }
    vec![first, by_size, by_depth]
}

fn push_line(plot: &mut Plot, label: &str, points: Vec<(f64, f64)>) {
    if !points.is_empty() {
        plot.lines.push(Line {
            label: label.into(),
            points,
        });
    }
}

/// Draws every plot of `results` into `dir` as NAME.png and NAME.svg;
/// returns the files written.
pub fn write_plots(results: &Results, dir: &Path) -> Result<Vec<PathBuf>> {
    ensure_font()?;
    let mut written = Vec::new();
    for plot in plots(results).iter().filter(|p| !p.lines.is_empty()) {
        let png = dir.join(format!("{}.png", plot.name));
        draw(
            BitMapBackend::new(&png, (900, 600)).into_drawing_area(),
            plot,
        )?;
        written.push(png);
        let svg = dir.join(format!("{}.svg", plot.name));
        draw(SVGBackend::new(&svg, (900, 600)).into_drawing_area(), plot)?;
        written.push(svg);
    }
    Ok(written)
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| *v > 0.0)
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (1.0, 10.0);
    }
    (lo / 2.0, hi * 2.0)
}

fn axis_bytes(v: f64) -> String {
    let n = v.round() as u64;
    if n >= KIB && (n.is_power_of_two() || n % (10 << 20) == 0) && n <= 64 * GIB {
        human_bytes(n)
    } else {
        String::new()
    }
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, plot: &Plot) -> Result<()> {
    let err =
        |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("drawing {}: {e:?}", plot.name);
    root.fill(&WHITE).map_err(err)?;
    let xs = bounds(plot.lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)));
    let ys = bounds(plot.lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)));
    let mut chart = ChartBuilder::on(&root)
        .caption(&plot.title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((xs.0..xs.1).log_scale(), (ys.0..ys.1).log_scale())
        .map_err(err)?;
    let x_bytes = plot.x_bytes;
    let x_fmt = move |v: &f64| {
        if x_bytes {
            axis_bytes(*v)
        } else {
            format!("{v:.0}")
        }
    };
    chart
        .configure_mesh()
        .x_desc(plot.x_desc)
        .y_desc(plot.y_desc)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&|v| format!("{v}"))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for (i, line) in plot.lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let dashed = line.label.starts_with("volume");
        let style = ShapeStyle {
            color,
            filled: false,
            stroke_width: if dashed { 1 } else { 2 },
        };
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), style))
            .map_err(err)?
            .label(&line.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .draw_series(
                line.points
                    .iter()
                    .map(|p| Circle::new(*p, 3, color.filled())),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
