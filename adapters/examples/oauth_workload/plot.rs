//! `--plot DIR`: one SVG per operation with every stack's latency percentiles
//! side by side, one curve per stack.
//!
//! The x axis stretches the tail: position `x` is percentile `1 - 10^-x`, so
//! min, p90, p99 and p99.9 are equally spaced (the layout of HdrHistogram's
//! plots); the y axis is the latency on a log scale. A curve's point at p99 is
//! the table's p99 (same rank rule).

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::fmt;
use std::path::{Path, PathBuf};

/// The rightmost percentile drawn: p99.9.
const X_MAX: f64 = 3.0;

/// Points per curve.
const POINTS: usize = 300;

/// The picture's size, and the width of the chart left of the legend.
const SIZE: (u32, u32) = (1120, 560);
const CHART_WIDTH: u32 = 830;

/// Okabe–Ito colours: told apart with most kinds of colour blindness.
const COLORS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

/// One stack's latency samples of one operation, in nanoseconds.
pub(crate) struct Series<'a> {
    pub(crate) stack: &'a str,
    pub(crate) nanos: &'a [u64],
}

/// Why the plots could not be written.
#[derive(Debug)]
pub(crate) enum PlotError {
    /// The directory could not be created.
    Dir(PathBuf, std::io::Error),
    /// A file could not be drawn or written.
    Draw(PathBuf, String),
}

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dir(dir, e) => {
                write!(f, "cannot create the plot directory {}: {e}", dir.display())
            }
            Self::Draw(path, e) => write!(f, "cannot write the plot {}: {e}", path.display()),
        }
    }
}

/// Creates `dir` (and its parents) if missing.
pub(crate) fn create_dir(dir: &Path) -> Result<(), PlotError> {
    std::fs::create_dir_all(dir).map_err(|e| PlotError::Dir(dir.to_path_buf(), e))
}

/// Writes `dir/<op>.svg` for each `(op, series)` of `ops`, with `about` (the
/// run's settings, one line each) under the legend; returns the paths written.
pub(crate) fn write_all(
    dir: &Path,
    about: &[String],
    ops: &[(&str, Vec<Series<'_>>)],
) -> Result<Vec<PathBuf>, PlotError> {
    create_dir(dir)?;
    let mut written = Vec::new();
    for (op, series) in ops {
        let path = dir.join(format!("{op}.svg"));
        draw(&path, op, about, series).map_err(|e| PlotError::Draw(path.clone(), e))?;
        written.push(path);
    }
    Ok(written)
}

/// Draws one operation's curves to `path`: the chart, and right of it the
/// legend and the run's settings.
fn draw(path: &Path, op: &str, about: &[String], series: &[Series<'_>]) -> Result<(), String> {
    let curves: Vec<Vec<(f64, f64)>> = series.iter().map(|s| curve(s.nanos)).collect();
    let (low, high) = decades(curves.iter().flatten().map(|&(_, y)| y));
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, side) = root.split_horizontally(CHART_WIDTH);
    let title = format!("{op}: latency by percentile, per stack");
    let mut chart = ChartBuilder::on(&left)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..X_MAX, (low..high).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_labels(4)
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| latency_label(*y))
        .x_desc("percentile (tail stretched: each step is ten times rarer)")
        .y_desc("latency (log scale)")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(|e| e.to_string())?;
    mark_median(&mut chart, low, high)?;
    for (i, points) in curves.into_iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| e.to_string())?;
    }
    legend(&side, series, about).map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// The legend: a line of each stack's colour and its name, then `about`.
fn legend(
    side: &Area<'_>,
    series: &[Series<'_>],
    about: &[String],
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    let left =
        TextStyle::from(("sans-serif", 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    side.draw(&Text::new("stacks", (10, 60), left.clone()))?;
    let mut y = 90;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        side.draw(&PathElement::new([(10, y), (40, y)], color.stroke_width(3)))?;
        side.draw(&Text::new(legend_label(s), (48, y), left.clone()))?;
        y += 26;
    }
    let grey = RGBColor(90, 90, 90);
    let small = TextStyle::from(("sans-serif", 13).into_font())
        .color(&grey)
        .pos(Pos::new(HPos::Left, VPos::Center));
    y += 20;
    for line in about {
        side.draw(&Text::new(line.as_str(), (10, y), small.clone()))?;
        y += 20;
    }
    Ok(())
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<
        plotters::coord::types::RangedCoordf64,
        plotters::coord::combinators::LogCoord<f64>,
    >,
>;

/// A grey line and a label at p50, which falls between the x axis' ticks.
fn mark_median(chart: &mut Chart<'_, '_>, low: f64, high: f64) -> Result<(), String> {
    let x = 2f64.log10();
    let grey = RGBColor(150, 150, 150);
    chart
        .draw_series(LineSeries::new([(x, low), (x, high)], grey.stroke_width(1)))
        .map_err(|e| e.to_string())?;
    let style = TextStyle::from(("sans-serif", 14).into_font())
        .color(&grey)
        .pos(Pos::new(HPos::Left, VPos::Top));
    let label = Text::new(" p50", (x, high), style);
    chart
        .draw_series(std::iter::once(label))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// `bare (48,102 calls)`, or `bare (no calls)`.
fn legend_label(s: &Series<'_>) -> String {
    match s.nanos.len() {
        0 => format!("{} (no calls)", s.stack),
        n => format!("{} ({} calls)", s.stack, thousands(n as u64)),
    }
}

/// `48102` as `48,102`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The curve of `nanos` as (x, latency in µs): at `x` the sample of rank
/// `round((n - 1) * (1 - 10^-x))` of the sorted samples; empty without samples.
fn curve(nanos: &[u64]) -> Vec<(f64, f64)> {
    let mut sorted = nanos.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return Vec::new();
    }
    (0..=POINTS)
        .map(|i| {
            let x = X_MAX * i as f64 / POINTS as f64;
            let q = 1.0 - 10f64.powf(-x);
            let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
            (x, micros(sorted[rank.min(sorted.len() - 1)]))
        })
        .collect()
}

/// Nanoseconds as µs, at least 1 ns (the log axis has no zero).
fn micros(nanos: u64) -> f64 {
    nanos.max(1) as f64 / 1_000.0
}

/// The whole decades (in µs) around `values`: 1 µs to 1 ms without values.
fn decades(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (min, max) = values.fold((f64::INFINITY, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !min.is_finite() {
        return (1.0, 1_000.0);
    }
    let low = 10f64.powf(min.log10().floor());
    let high = 10f64.powf(max.log10().ceil()).max(low * 10.0);
    (low, high)
}

/// `min`, `p90`, `p99`, `p99.9` at x = 0, 1, 2, 3.
fn percentile_label(x: f64) -> String {
    if x.abs() < 1e-9 {
        return "min".to_owned();
    }
    let q = 100.0 * (1.0 - 10f64.powf(-x));
    let text = format!("{q:.3}");
    format!("p{}", text.trim_end_matches('0').trim_end_matches('.'))
}

/// A latency in µs in the unit that suits it: `100 ns`, `1 µs`, `10 ms`, `1 s`.
fn latency_label(us: f64) -> String {
    let (value, unit) = match us {
        v if v >= 1e6 => (v / 1e6, "s"),
        v if v >= 1e3 => (v / 1e3, "ms"),
        v if v >= 1.0 => (v, "µs"),
        v => (v * 1e3, "ns"),
    };
    format!("{} {unit}", (value * 1_000.0).round() / 1_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACKS: [&str; 3] = ["bare", "cached", "cached-buffered"];

    fn about() -> Vec<String> {
        vec!["a test run".to_owned(), "seed 42".to_owned()]
    }

    /// Samples spread over three decades around `base` ns.
    fn samples(base: u64, n: u64) -> Vec<u64> {
        (0..n)
            .map(|i| base + (i * i * 7) % (base * 1_000))
            .collect()
    }

    #[test]
    fn one_svg_per_operation_naming_every_stack() {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let dir = tmp.path().join("made/by/the/run");
        let data: Vec<Vec<u64>> = vec![samples(800, 5_000), samples(90, 3_000), Vec::new()];
        let ops: Vec<(&str, Vec<Series<'_>>)> = ["validate", "login"]
            .into_iter()
            .map(|op| {
                let series = STACKS
                    .iter()
                    .zip(&data)
                    .map(|(stack, nanos)| Series { stack, nanos })
                    .collect();
                (op, series)
            })
            .collect();
        let written = write_all(&dir, &about(), &ops).expect("plots written");
        assert_eq!(
            written,
            vec![dir.join("validate.svg"), dir.join("login.svg")]
        );
        let files = std::fs::read_dir(&dir).expect("plot directory").count();
        assert_eq!(files, 2, "one file per operation, nothing else");
        for path in &written {
            let svg = std::fs::read_to_string(path).expect("plot readable");
            assert!(svg.trim_start().starts_with("<svg"), "{svg:.80}");
            assert!(svg.trim_end().ends_with("</svg>"));
            let texts = texts(&svg);
            assert_eq!(texts.len(), svg.matches("</text>").count());
            let has = |t: &str| texts.iter().any(|x| x == t);
            assert!(has("bare (5,000 calls)"), "{texts:?}");
            assert!(has("cached (3,000 calls)"), "{texts:?}");
            assert!(has("cached-buffered (no calls)"), "{texts:?}");
            assert!(has("a test run") && has("seed 42"), "{texts:?}");
            assert!(has("latency (log scale)"), "{texts:?}");
            assert!(
                has("min") && has("p90") && has("p99") && has("p99.9"),
                "{texts:?}"
            );
            // A curve (width 2) in each colour of a stack with calls, none in
            // the colour of the stack without; legend lines are width 3.
            let curve_in = |c: RGBColor| {
                let stroke = format!(
                    "stroke=\"#{:02X}{:02X}{:02X}\" stroke-width=\"2\"",
                    c.0, c.1, c.2
                );
                svg.contains(&stroke)
            };
            assert!(curve_in(COLORS[0]) && curve_in(COLORS[1]) && !curve_in(COLORS[2]));
        }
    }

    /// The contents of every `<text ...>...</text>` element, trimmed.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .map(|rest| {
                let body = rest.split_once('>').map_or("", |(_, b)| b);
                let inner = body.split_once("</text>").map_or("", |(t, _)| t);
                inner.trim().to_owned()
            })
            .collect()
    }

    #[test]
    fn a_directory_that_cannot_be_made_is_an_error() {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let file = tmp.path().join("a-file");
        std::fs::write(&file, "not a directory").expect("file written");
        let nanos = [1_000];
        let ops = [(
            "validate",
            vec![Series {
                stack: "bare",
                nanos: &nanos,
            }],
        )];
        let error = write_all(&file.join("plots"), &about(), &ops).expect_err("not a dir");
        assert!(matches!(error, PlotError::Dir(..)), "{error:?}");
        assert!(error.to_string().contains("a-file"), "{error}");
    }

    #[test]
    fn the_curve_is_the_tables_percentiles() {
        let nanos: Vec<u64> = (1..=1_000).rev().map(|i| i * 1_000).collect();
        let points = curve(&nanos);
        assert_eq!(points.len(), POINTS + 1);
        assert!(
            points.windows(2).all(|w| w[0].1 <= w[1].1),
            "non-decreasing"
        );
        let at = |x: f64| {
            points
                .iter()
                .find(|p| (p.0 - x).abs() < 1e-9)
                .expect("point")
                .1
        };
        // Ranks round((n - 1) * q), as the table's percentile(): 1 µs steps.
        assert_eq!(at(0.0), 1.0);
        assert_eq!(at(1.0), 900.0);
        assert_eq!(at(2.0), 990.0);
        assert_eq!(at(3.0), 999.0);
        assert!(curve(&[]).is_empty());
    }

    #[test]
    fn labels_read_as_units_and_percentiles() {
        assert_eq!(latency_label(0.1), "100 ns");
        assert_eq!(latency_label(1.0), "1 µs");
        assert_eq!(latency_label(10_000.0), "10 ms");
        assert_eq!(latency_label(1e6), "1 s");
        assert_eq!(percentile_label(0.0), "min");
        assert_eq!(percentile_label(1.0), "p90");
        assert_eq!(percentile_label(3.0), "p99.9");
        assert_eq!(decades([0.35, 2_400.0].into_iter()), (0.1, 10_000.0));
        assert_eq!(thousands(48_102), "48,102");
    }
}
