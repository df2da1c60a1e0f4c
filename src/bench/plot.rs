//! Plots of a run, as PNG and SVG: first-write latency against file size
//! per driver, create latency against image size and against layer depth.
//! All on log scales, with tick labels on both axes (ticks are chosen here:
//! powers of two for byte counts, 1-2-5 steps otherwise, so a narrow range
//! still gets labels) and axis titles that name their units. Text is drawn
//! with a TrueType font read at run time (DejaVu Sans from
//! fonts-dejavu-core, or `STRATA_BENCH_FONT`), so no fontconfig or freetype
//! is needed.
//!
//! Each target keeps its colour in every plot ([`colour_for`]): btrfs blue,
//! blockfile orange, devmapper green, overlay2 red, overlay2-xfs purple,
//! vfs brown; the volume baselines are thin lines in grey (host), teal
//! (btrfs) and olive (xfs). Any other label (a section added
//! later, a containerd snapshotter) gets a colour from a hash of its label,
//! the same in every plot.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::results::{Case, Results};
use super::stats::median;
use super::{Result, GIB, KIB};

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
    /// X axis description, with its unit.
    pub x_desc: &'static str,
    /// Whether x values are byte counts (labelled as such).
    pub x_bytes: bool,
    /// Y axis description, with its unit.
    pub y_desc: &'static str,
    /// The lines.
    pub lines: Vec<Line>,
}

/// The three plots of a run.
pub fn plots(results: &Results) -> Vec<Plot> {
    let mut first = Plot {
        name: "first-write",
        title: "First 4 KiB write (open + write + fsync)".into(),
        x_desc: "file size in the image layer (bytes, binary units)",
        x_bytes: true,
        y_desc: "latency, ms (median)",
        lines: Vec::new(),
    };
    let mut by_size = Plot {
        name: "create-size",
        title: "Create latency by image size".into(),
        x_desc: "one-layer image size (bytes, binary units)",
        x_bytes: true,
        y_desc: "latency, ms (median)",
        lines: Vec::new(),
    };
    let mut by_depth = Plot {
        name: "create-depth",
        title: "Create latency by layer depth".into(),
        x_desc: "layers in the image (count)",
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

/// Fixed colours of the known targets; see the module text.
pub const TARGET_COLOURS: &[(&str, RGBColor)] = &[
    ("btrfs", RGBColor(0x1f, 0x77, 0xb4)),
    ("blockfile", RGBColor(0xff, 0x7f, 0x0e)),
    ("devmapper", RGBColor(0x2c, 0xa0, 0x2c)),
    ("overlay2", RGBColor(0xd6, 0x27, 0x28)),
    ("overlay2-xfs", RGBColor(0x94, 0x67, 0xbd)),
    ("vfs", RGBColor(0x8c, 0x56, 0x4b)),
    ("volume-host", RGBColor(0x7f, 0x7f, 0x7f)),
    ("volume-btrfs", RGBColor(0x17, 0xbe, 0xcf)),
    ("volume-xfs", RGBColor(0xbc, 0xbd, 0x22)),
];

/// The colour of target `label`: fixed for the known targets, else picked
/// from plotters' 99-colour palette by a hash (FNV-1a) of the label, so
/// it is the same in every plot and every run.
pub fn colour_for(label: &str) -> RGBColor {
    if let Some((_, c)) = TARGET_COLOURS.iter().find(|(l, _)| *l == label) {
        return *c;
    }
    let hash = label.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let (r, g, b) = Palette99::pick(hash as usize % 99).rgb();
    RGBColor(r, g, b)
}

/// Tick positions for a log axis over `lo..hi`: powers of two for byte
/// counts, 1-2-5 steps per decade otherwise (only the powers of ten when
/// that makes more than 8), thinned to at most 8; the two ends when no
/// such value falls inside.
pub fn ticks(lo: f64, hi: f64, bytes: bool) -> Vec<f64> {
    let mut points: Vec<f64> = if bytes {
        let (a, b) = (lo.log2().ceil() as i32, hi.log2().floor() as i32);
        (a..=b).map(|e| 2f64.powi(e)).collect()
    } else {
        let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        (a..=b)
            .flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e)))
            .filter(|v| (lo..=hi).contains(v))
            .collect()
    };
    if points.len() > 8 && !bytes {
        let decades: Vec<f64> = points
            .iter()
            .copied()
            .filter(|v| (v.log10() - v.log10().round()).abs() < 1e-9)
            .collect();
        if decades.len() >= 2 {
            points = decades;
        }
    }
    if points.len() > 8 {
        let step = points.len().div_ceil(8);
        points = points.into_iter().step_by(step).collect();
    }
    if points.is_empty() {
        points = vec![lo, hi];
    }
    points
}

/// A tick label for a byte count: `512 KiB`, `1 GiB`, `1.5 GiB`.
pub fn bytes_label(v: f64) -> String {
    for (unit, size) in [("GiB", GIB), ("MiB", super::MIB), ("KiB", KIB)] {
        let x = v / size as f64;
        if x >= 1.0 {
            return number_label(x) + " " + unit;
        }
    }
    number_label(v) + " B"
}

/// A tick label for a plain number: three significant digits at most,
/// no trailing zeros.
pub fn number_label(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 9) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
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

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, plot: &Plot) -> Result<()> {
    let err =
        |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("drawing {}: {e:?}", plot.name);
    root.fill(&WHITE).map_err(err)?;
    let xs = bounds(plot.lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)));
    let ys = bounds(plot.lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)));
    let mut chart = ChartBuilder::on(&root)
        .caption(&plot.title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (xs.0..xs.1)
                .log_scale()
                .with_key_points(ticks(xs.0, xs.1, plot.x_bytes)),
            (ys.0..ys.1)
                .log_scale()
                .with_key_points(ticks(ys.0, ys.1, false)),
        )
        .map_err(err)?;
    let x_bytes = plot.x_bytes;
    let x_fmt = move |v: &f64| {
        if x_bytes {
            bytes_label(*v)
        } else {
            number_label(*v)
        }
    };
    chart
        .configure_mesh()
        .x_desc(plot.x_desc)
        .y_desc(plot.y_desc)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&|v| number_label(*v))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    for line in &plot.lines {
        let color = colour_for(&line.label).to_rgba();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::plan::Plan;
    use crate::bench::results::{HostInfo, TargetResult};

    #[test]
    fn known_targets_have_distinct_fixed_colours() {
        for (i, (a, ca)) in TARGET_COLOURS.iter().enumerate() {
            assert_eq!(colour_for(a), *ca);
            for (b, cb) in &TARGET_COLOURS[i + 1..] {
                assert_ne!(ca, cb, "{a} and {b} share a colour");
            }
        }
        assert_eq!(
            colour_for("containerd-btrfs"),
            colour_for("containerd-btrfs")
        );
    }

    #[test]
    fn every_axis_range_gets_labelled_ticks() {
        for (lo, hi, bytes) in [
            (512.0 * KIB as f64, 2.0 * GIB as f64, true),
            (0.5 * 1.5e6, 2.0 * 1.7e6, true),
            (0.5, 1000.0, false),
            (0.09, 0.4, false),
            (0.5, 1000.0 * 1000.0, false),
        ] {
            let t = ticks(lo, hi, bytes);
            assert!(!t.is_empty() && t.len() <= 8, "{lo}..{hi}: {t:?}");
            assert!(t.iter().all(|v| (lo..=hi).contains(v)), "{lo}..{hi}: {t:?}");
            let label = if bytes {
                bytes_label(t[0])
            } else {
                number_label(t[0])
            };
            assert!(!label.is_empty());
        }
        assert_eq!(
            ticks(1.0, 4.0 * KIB as f64, true).len(),
            7,
            "thinned powers of two"
        );
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(bytes_label(GIB as f64), "1 GiB");
        assert_eq!(bytes_label(1.5 * GIB as f64), "1.5 GiB");
        assert_eq!(bytes_label(512.0 * KIB as f64), "512 KiB");
        assert_eq!(number_label(0.1 + 0.2), "0.3");
        assert_eq!(number_label(128.0), "128");
        assert_eq!(number_label(0.00123), "0.00123");
    }

    #[test]
    fn plots_label_their_lines_by_target() {
        let mut t = TargetResult {
            label: "btrfs".into(),
            driver: "btrfs".into(),
            ..TargetResult::default()
        };
        let write = Case {
            file_size: Some(GIB),
            write_size: Some(4 * KIB),
            ..Case::new("copy_up", "total")
        };
        t.push(&write, "ns", 1e6);
        let create = Case {
            image_size: Some(GIB),
            ..Case::new("create", "latency")
        };
        t.push(&create, "ns", 2e6);
        let results = Results {
            host: HostInfo::current(),
            plan: Plan::quick(),
            targets: vec![t],
        };
        let plots = plots(&results);
        let labels: Vec<&str> = plots
            .iter()
            .flat_map(|p| p.lines.iter().map(|l| l.label.as_str()))
            .collect();
        assert_eq!(labels, ["btrfs", "btrfs"]);
    }
}
