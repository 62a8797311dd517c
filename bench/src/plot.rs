//! `xsw-bench plot`: SVG pictures of benchmark results, drawn with plotters'
//! SVG backend (text is left to the viewer's fonts, so building needs no font
//! or image library).
//!
//! Every input is read and checked before anything is drawn, and the picture
//! is rendered in memory first: bad input names the file and line and leaves
//! no file behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::{Map, Value};

#[derive(clap::Subcommand)]
pub enum PlotCmd {
    /// Throughput (Mpps) by frame size, one series per system (and per
    /// criterion). Input: JSON lines with "system", "size" (bytes on the
    /// wire, FCS included) and "frames_per_sec"; optional "criterion" (e.g.
    /// "zero loss") and "gbit_per_sec". Repeated rows for one series and size
    /// are drawn at their mean, with a whisker from the lowest to the highest.
    Throughput {
        /// The SVG file to write.
        #[arg(long)]
        out: PathBuf,
        /// Title above the chart.
        #[arg(long)]
        title: Option<String>,
        /// Result files, one JSON object per line.
        #[arg(required = true, value_name = "RESULTS.jsonl")]
        results: Vec<PathBuf>,
    },
    /// One-way latency (µs, log scale) by percentile on a "nines" axis
    /// (50%, 90%, 99%, 99.9%, ...), one line per run. Input: the JSON of
    /// `sink --measure --json` or `tap-sink --measure --json`.
    Latency {
        /// The SVG file to write.
        #[arg(long)]
        out: PathBuf,
        /// Title above the chart.
        #[arg(long)]
        title: Option<String>,
        /// A legend label and the measuring sink's JSON output.
        #[arg(required = true, value_name = "LABEL=SINK.json")]
        runs: Vec<String>,
    },
}

pub fn run(cmd: PlotCmd) -> Result<()> {
    let (out, svg) = match cmd {
        PlotCmd::Throughput {
            out,
            title,
            results,
        } => {
            let mut rows = Vec::new();
            for path in &results {
                rows.extend(parse_throughput(&path.display().to_string(), &read(path)?)?);
            }
            let title = title.unwrap_or_else(|| "Throughput by frame size".to_string());
            (out, throughput_svg(&title, &rows)?)
        }
        PlotCmd::Latency { out, title, runs } => {
            let mut curves = Vec::new();
            for run in &runs {
                let (label, path) = run
                    .split_once('=')
                    .filter(|(l, p)| !l.is_empty() && !p.is_empty())
                    .ok_or_else(|| {
                        anyhow!(
                            "{run:?}: expected LABEL=SINK.json (a legend label, '=', the JSON file of \
                             `sink --measure --json`)"
                        )
                    })?;
                curves.push(parse_latency(label, path, &read(Path::new(path))?)?);
            }
            let title = title.unwrap_or_else(|| "One-way latency by percentile".to_string());
            (out, latency_svg(&title, &curves)?)
        }
    };
    std::fs::write(&out, svg)
        .with_context(|| format!("writing {} (does its directory exist?)", out.display()))?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

// --- input -------------------------------------------------------------------

/// One measured throughput: a line of a results file.
#[derive(Debug, Clone, PartialEq)]
pub struct ThroughputRow {
    pub system: String,
    pub criterion: Option<String>,
    /// Bytes on the wire, FCS included.
    pub size: u32,
    pub frames_per_sec: f64,
    pub gbit_per_sec: Option<f64>,
}

impl ThroughputRow {
    fn series(&self) -> String {
        match &self.criterion {
            Some(c) => format!("{} ({c})", self.system),
            None => self.system.clone(),
        }
    }
}

fn field<'a>(obj: &'a Map<String, Value>, key: &str, at: &str) -> Result<&'a Value> {
    obj.get(key)
        .filter(|v| !v.is_null())
        .ok_or_else(|| anyhow!("{at}: missing \"{key}\""))
}

fn number(obj: &Map<String, Value>, key: &str, at: &str) -> Result<f64> {
    field(obj, key, at)?
        .as_f64()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| anyhow!("{at}: \"{key}\" must be a number of at least 0"))
}

fn opt_number(obj: &Map<String, Value>, key: &str, at: &str) -> Result<Option<f64>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => number(obj, key, at).map(Some),
    }
}

/// Parses a results file (`name` is how errors call it): one JSON object per
/// non-blank line.
pub fn parse_throughput(name: &str, text: &str) -> Result<Vec<ThroughputRow>> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{name}:{}", i + 1);
        let value: Value = serde_json::from_str(line)
            .with_context(|| format!("{at}: not a JSON object (one result per line)"))?;
        let obj = value
            .as_object()
            .ok_or_else(|| anyhow!("{at}: not a JSON object (one result per line)"))?;
        let system = field(obj, "system", &at)?
            .as_str()
            .ok_or_else(|| anyhow!("{at}: \"system\" must be a string"))?
            .to_string();
        let criterion = match obj.get("criterion") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => bail!("{at}: \"criterion\" must be a string"),
        };
        let size = number(obj, "size", &at)?;
        if size.fract() != 0.0 || !(1.0..=1_000_000.0).contains(&size) {
            bail!("{at}: \"size\" must be a whole number of bytes (e.g. 64), not {size}");
        }
        rows.push(ThroughputRow {
            system,
            criterion,
            size: size as u32,
            frames_per_sec: number(obj, "frames_per_sec", &at)?,
            gbit_per_sec: opt_number(obj, "gbit_per_sec", &at)?,
        });
    }
    if rows.is_empty() {
        bail!("{name}: no results in it (expected one JSON object per line)");
    }
    Ok(rows)
}

/// One run's latency distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyCurve {
    pub label: String,
    /// (quantile below 1, latency in ns), quantiles rising.
    pub points: Vec<(f64, f64)>,
    /// p50 and p99 in ns from the summary, for the legend.
    pub p50_p99: Option<(f64, f64)>,
}

/// Parses a measuring sink's JSON output (`name` is how errors call it).
pub fn parse_latency(label: &str, name: &str, text: &str) -> Result<LatencyCurve> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        anyhow!(
            "{name}:{}: not the JSON of `sink --measure --json`: {e}",
            e.line()
        )
    })?;
    let line = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .map_or(1, |i| i + 1)
    };
    let obj = value
        .as_object()
        .ok_or_else(|| anyhow!("{name}:1: not a JSON object"))?;
    let list = match obj.get("percentiles") {
        Some(Value::Array(a)) => a,
        Some(_) => bail!(
            "{name}:{}: \"percentiles\" must be a list of [quantile, ns] pairs",
            line("\"percentiles\"")
        ),
        None => bail!(
            "{name}:{}: missing \"percentiles\": it must be the JSON of `sink --measure --json` or \
             `tap-sink --measure --json` from an xsw-bench that writes them; rerun the measurement",
            line("{")
        ),
    };
    let at = format!("{name}:{}", line("\"percentiles\""));
    let mut points = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        let pair = p
            .as_array()
            .filter(|a| a.len() == 2)
            .and_then(|a| Some((a[0].as_f64()?, a[1].as_f64()?)))
            .filter(|(q, v)| (0.0..=1.0).contains(q) && v.is_finite() && *v >= 0.0)
            .ok_or_else(|| {
                anyhow!("{at}: \"percentiles\" entry {i} is not a [quantile 0..1, ns] pair: {p}")
            })?;
        if let Some(&(prev, _)) = points.last() {
            if pair.0 < prev {
                bail!("{at}: \"percentiles\" entry {i}: quantiles must rise");
            }
        }
        // 100% has no place on a "nines" axis.
        if pair.0 < 1.0 {
            points.push(pair);
        }
    }
    if points.is_empty() {
        bail!(
            "{at}: \"percentiles\" is empty: no stamped frames were measured in that run \
             (its \"frames\" is 0?)"
        );
    }
    let p50_p99 = obj
        .get("latency_ns")
        .and_then(|l| Some((l.get("p50")?.as_f64()?, l.get("p99")?.as_f64()?)));
    Ok(LatencyCurve {
        label: label.to_string(),
        points,
        p50_p99,
    })
}

// --- drawing -----------------------------------------------------------------

/// Okabe–Ito colours: told apart with the common colour-vision deficiencies.
const COLORS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(230, 159, 0),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

const FONT: &str = "sans-serif";
/// Rough width of a character at 12 px, for sizing the picture: the SVG
/// leaves the font to the viewer, so the exact width is not known here.
const CHAR_PX: u32 = 7;

/// A linear axis with ticks and grid lines exactly at `ticks` (frame sizes,
/// the nines), which plotters' own `with_key_points` cannot label.
struct TickedAxis {
    range: std::ops::Range<f64>,
    ticks: Vec<f64>,
}

impl Ranged for TickedAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        let frac = if span > 0.0 {
            (v - self.range.start) / span
        } else {
            0.5
        };
        limit.0 + ((limit.1 - limit.0) as f64 * frac).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        // Grid lines only at the ticks: no light lines between them.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.range.clone()
    }
}

fn draw_err<E: std::error::Error>(e: E) -> anyhow::Error {
    anyhow!("internal error drawing the plot: {e}")
}

/// Three significant digits, the precision these measurements have.
fn sig3(v: f64) -> String {
    if v == 0.0 {
        "0".to_string()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        let digits = (2 - v.log10().floor() as i32).clamp(2, 9) as usize;
        format!("{v:.digits$}")
    }
}

/// An axis label: [`sig3`] without trailing zeros (0.5, not 0.500).
fn axis_num(v: f64) -> String {
    let s = sig3(v);
    if s.contains('.') {
        let s = s.trim_end_matches('0');
        s.strip_suffix('.').unwrap_or(s).to_string()
    } else {
        s
    }
}

/// Height of the legend below a chart with `n` entries.
fn legend_height(n: usize) -> u32 {
    12 + 24 * n as u32
}

/// Draws the legend as a column of coloured keys in `area` (below the chart,
/// so it never covers data and long labels do not narrow the chart).
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    labels: &[String],
    line: bool,
) -> Result<()> {
    for (i, label) in labels.iter().enumerate() {
        let (x, y) = (90, 10 + i as i32 * 24);
        let c = color(i);
        if line {
            area.draw(&PathElement::new(
                vec![(x, y), (x + 24, y)],
                c.stroke_width(3),
            ))
            .map_err(draw_err)?;
        } else {
            area.draw(&Rectangle::new([(x, y - 7), (x + 22, y + 7)], c.filled()))
                .map_err(draw_err)?;
        }
        area.draw(&Text::new(
            label.clone(),
            (x + 32, y),
            (FONT, 15)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(draw_err)?;
    }
    Ok(())
}

/// Bars of one series at one frame size.
struct Bar {
    mean: f64,
    min: f64,
    max: f64,
    gbit: Option<f64>,
}

pub fn throughput_svg(title: &str, rows: &[ThroughputRow]) -> Result<String> {
    let sizes: Vec<u32> = rows
        .iter()
        .map(|r| r.size)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut series: Vec<String> = Vec::new();
    for r in rows {
        let s = r.series();
        if !series.contains(&s) {
            series.push(s);
        }
    }
    // bars[series][size]
    let mut bars: Vec<Vec<Option<Bar>>> = Vec::new();
    for s in &series {
        let mut per_size = Vec::new();
        for &size in &sizes {
            let mpps: Vec<f64> = rows
                .iter()
                .filter(|r| r.size == size && &r.series() == s)
                .map(|r| r.frames_per_sec / 1e6)
                .collect();
            let gbit: Vec<f64> = rows
                .iter()
                .filter(|r| r.size == size && &r.series() == s)
                .filter_map(|r| r.gbit_per_sec)
                .collect();
            per_size.push((!mpps.is_empty()).then(|| Bar {
                mean: mpps.iter().sum::<f64>() / mpps.len() as f64,
                min: mpps.iter().cloned().fold(f64::INFINITY, f64::min),
                max: mpps.iter().cloned().fold(0.0, f64::max),
                gbit: (!gbit.is_empty()).then(|| gbit.iter().sum::<f64>() / gbit.len() as f64),
            }));
        }
        bars.push(per_size);
    }
    let y_max = bars
        .iter()
        .flatten()
        .flatten()
        .map(|b| b.max)
        .fold(0.0, f64::max);
    let y_top = if y_max > 0.0 { y_max * 1.18 } else { 1.0 };

    // Wide enough that every bar's number fits above it.
    let label_chars = bars
        .iter()
        .flatten()
        .flatten()
        .map(|b| {
            sig3(b.mean)
                .len()
                .max(b.gbit.map_or(0, |g| sig3(g).len() + 5))
        })
        .max()
        .unwrap_or(4) as u32;
    let bar_px = (label_chars * CHAR_PX + 6).max(40);
    let group_px = bar_px * series.len() as u32 + 50;
    let width = (110 + group_px * sizes.len() as u32).max(800);
    let (chart_height, height) = (520, 520 + legend_height(series.len()));

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let (chart_area, legend_area) = root.split_vertically(chart_height);
        let n = sizes.len();
        let x_range = TickedAxis {
            range: -0.5..n as f64 - 0.5,
            ticks: (0..n).map(|i| i as f64).collect(),
        };
        let mut chart = ChartBuilder::on(&chart_area)
            .caption(title, (FONT, 22))
            .margin(14)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(x_range, 0.0..y_top)
            .map_err(draw_err)?;
        let size_label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < sizes.len() {
                format!("{} B", sizes[i as usize])
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&size_label)
            .y_label_formatter(&|v| axis_num(*v))
            .max_light_lines(4)
            .x_desc("frame size on the wire (FCS included)")
            .y_desc("throughput (Mpps)")
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 14))
            .draw()
            .map_err(draw_err)?;

        let ns = series.len() as f64;
        let slot = 0.8 / ns;
        for (si, per_size) in bars.iter().enumerate() {
            let c = color(si);
            for (xi, bar) in per_size.iter().enumerate() {
                let Some(b) = bar else { continue };
                let x0 = xi as f64 - 0.4 + si as f64 * slot;
                let (l, r) = (x0 + slot * 0.06, x0 + slot * 0.94);
                let mid = x0 + slot / 2.0;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(l, 0.0), (r, b.mean)],
                        c.filled(),
                    )))
                    .map_err(draw_err)?;
                if b.max > b.min {
                    let w = slot * 0.15;
                    let style = BLACK.stroke_width(1);
                    for path in [
                        vec![(mid, b.min), (mid, b.max)],
                        vec![(mid - w, b.min), (mid + w, b.min)],
                        vec![(mid - w, b.max), (mid + w, b.max)],
                    ] {
                        chart
                            .draw_series(std::iter::once(PathElement::new(path, style)))
                            .map_err(draw_err)?;
                    }
                }
                let top = chart.backend_coord(&(mid, b.max.max(b.mean)));
                let number = (FONT, 14)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Bottom));
                chart_area
                    .draw(&Text::new(sig3(b.mean), (top.0, top.1 - 3), number))
                    .map_err(draw_err)?;
                if let Some(g) = b.gbit {
                    let small = (FONT, 12)
                        .into_font()
                        .color(&RGBColor(90, 90, 90))
                        .pos(Pos::new(HPos::Center, VPos::Bottom));
                    chart_area
                        .draw(&Text::new(
                            format!("{} Gb/s", sig3(g)),
                            (top.0, top.1 - 19),
                            small,
                        ))
                        .map_err(draw_err)?;
                }
            }
        }
        legend(&legend_area, &series, false)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// The "nines" position of quantile q: 1/(1-q) on a log axis, in decades
/// (0 at 0%, 1 at 90%, 2 at 99%, ...).
fn nines(q: f64) -> f64 {
    -(1.0 - q).log10()
}

/// Tick labels of the nines axis (the axis starts at 0%, too close to 50%
/// for a label of its own).
const NINES_TICKS: [(f64, &str); 6] = [
    (0.5, "50%"),
    (0.9, "90%"),
    (0.99, "99%"),
    (0.999, "99.9%"),
    (0.9999, "99.99%"),
    (0.99999, "99.999%"),
];

pub fn latency_svg(title: &str, curves: &[LatencyCurve]) -> Result<String> {
    let all = || curves.iter().flat_map(|c| c.points.iter());
    let x_max = all().map(|&(q, _)| nines(q)).fold(1.0, f64::max);
    // Log scale: latencies below 1 ns (none in practice) sit on its floor.
    let us = |ns: f64| (ns / 1e3).max(0.001);
    let y_min = all().map(|&(_, v)| us(v)).fold(f64::INFINITY, f64::min);
    let y_max = all().map(|&(_, v)| us(v)).fold(0.0, f64::max);
    let (y_lo, y_hi) = (y_min / 1.3, (y_max * 1.3).max(y_min * 2.0));

    let labels: Vec<String> = curves
        .iter()
        .map(|c| match c.p50_p99 {
            Some((p50, p99)) => format!(
                "{}: p50 {} µs, p99 {} µs",
                c.label,
                sig3(p50 / 1e3),
                sig3(p99 / 1e3)
            ),
            None => c.label.clone(),
        })
        .collect();
    let width = 900;
    let (chart_height, height) = (520, 520 + legend_height(labels.len()));

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let (chart_area, legend_area) = root.split_vertically(chart_height);
        let ticks: Vec<f64> = NINES_TICKS
            .iter()
            .map(|&(q, _)| nines(q))
            .filter(|&x| x <= x_max + 1e-9)
            .collect();
        let mut chart = ChartBuilder::on(&chart_area)
            .caption(title, (FONT, 22))
            .margin(14)
            // Room for the last tick's label, centred on the right edge.
            .margin_right(40)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(
                TickedAxis {
                    range: 0.0..x_max,
                    ticks,
                },
                (y_lo..y_hi).log_scale(),
            )
            .map_err(draw_err)?;
        let tick_label = |x: &f64| {
            NINES_TICKS
                .iter()
                .find(|&&(q, _)| (nines(q) - x).abs() < 1e-6)
                .map_or(String::new(), |&(_, l)| l.to_string())
        };
        chart
            .configure_mesh()
            .x_label_formatter(&tick_label)
            .y_label_formatter(&|v| axis_num(*v))
            .x_desc("percentile")
            .y_desc("one-way latency (µs)")
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 14))
            .draw()
            .map_err(draw_err)?;
        for (i, c) in curves.iter().enumerate() {
            chart
                .draw_series(LineSeries::new(
                    c.points.iter().map(|&(q, v)| (nines(q), us(v))),
                    color(i).stroke_width(2),
                ))
                .map_err(draw_err)?;
        }
        legend(&legend_area, &labels, true)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contents of the SVG's <text> elements.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                Some(
                    t.split_once('>')?
                        .1
                        .split_once("</text>")?
                        .0
                        .trim()
                        .to_string(),
                )
            })
            .collect()
    }

    fn summary(rows: &[ThroughputRow]) -> String {
        rows.iter()
            .map(|r| format!("{}@{}={} ", r.series(), r.size, r.frames_per_sec))
            .collect()
    }

    #[test]
    fn throughput_lines_with_and_without_optional_fields() {
        let text = r#"{"system":"bridge","size":64,"frames_per_sec":1000000}

{"system":"xsw","size":1518,"frames_per_sec":812743.5,"criterion":"zero loss","gbit_per_sec":9.87}
{"system":"xsw","size":64,"frames_per_sec":2e6,"criterion":null,"extra":[1,2]}
"#;
        let rows = parse_throughput("r.jsonl", text).unwrap();
        assert_eq!(
            summary(&rows),
            "bridge@64=1000000 xsw (zero loss)@1518=812743.5 xsw@64=2000000 "
        );
        assert_eq!(rows[1].gbit_per_sec, Some(9.87));
        assert_eq!(rows[0].gbit_per_sec, None);
    }

    #[test]
    fn throughput_errors_name_file_and_line() {
        let cases = [
            (
                "{\"system\":\"a\",\"size\":64,\"frames_per_sec\":1}\n{oops",
                "r.jsonl:2: not a JSON object",
            ),
            ("[1,2]", "r.jsonl:1: not a JSON object"),
            (
                "{\"size\":64,\"frames_per_sec\":1}",
                "r.jsonl:1: missing \"system\"",
            ),
            (
                "{\"system\":3,\"size\":64,\"frames_per_sec\":1}",
                "r.jsonl:1: \"system\" must be a string",
            ),
            (
                "\n\n{\"system\":\"a\",\"frames_per_sec\":1}",
                "r.jsonl:3: missing \"size\"",
            ),
            (
                "{\"system\":\"a\",\"size\":64.5,\"frames_per_sec\":1}",
                "r.jsonl:1: \"size\" must be a whole number",
            ),
            (
                "{\"system\":\"a\",\"size\":64}",
                "r.jsonl:1: missing \"frames_per_sec\"",
            ),
            (
                "{\"system\":\"a\",\"size\":64,\"frames_per_sec\":\"fast\"}",
                "r.jsonl:1: \"frames_per_sec\" must be a number",
            ),
            (
                "{\"system\":\"a\",\"size\":64,\"frames_per_sec\":-1}",
                "r.jsonl:1: \"frames_per_sec\" must be a number",
            ),
            (
                "{\"system\":\"a\",\"size\":64,\"frames_per_sec\":1,\"criterion\":5}",
                "r.jsonl:1: \"criterion\" must be a string",
            ),
            (
                "{\"system\":\"a\",\"size\":64,\"frames_per_sec\":1,\"gbit_per_sec\":\"x\"}",
                "r.jsonl:1: \"gbit_per_sec\" must be a number",
            ),
            ("\n  \n", "r.jsonl: no results"),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", parse_throughput("r.jsonl", text).unwrap_err());
            assert!(
                err.starts_with(want),
                "{text:?}: got {err:?}, want {want:?}"
            );
        }
    }

    const SINK: &str = r#"{"iface":"s0","mode":"measure","frames":3,"latency_ns":{"min":900,"p50":1000,"p90":2000,"p99":5000,"p99_9":9000,"max":9100,"mean":1200},"percentiles":[[0,900],[0.5,1000],[0.9,2000],[0.99,5000],[1,9100]]}"#;

    #[test]
    fn latency_from_sink_json() {
        let c = parse_latency("xsw", "x.json", SINK).unwrap();
        assert_eq!(c.label, "xsw");
        // 100% is dropped: a nines axis cannot show it.
        assert_eq!(
            c.points,
            vec![(0.0, 900.0), (0.5, 1000.0), (0.9, 2000.0), (0.99, 5000.0)]
        );
        assert_eq!(c.p50_p99, Some((1000.0, 5000.0)));
        let bare = parse_latency("b", "b.json", r#"{"percentiles":[[0,5]]}"#).unwrap();
        assert_eq!(bare.p50_p99, None);
    }

    #[test]
    fn latency_errors_name_file_and_line() {
        let cases = [
            (
                "{\"frames\":1,\n\"latency_ns\":{}\n",
                "x.json:3: not the JSON",
            ),
            ("{\"frames\":1}", "x.json:1: missing \"percentiles\""),
            (
                "{\"frames\":0,\n\"percentiles\":[]}",
                "x.json:2: \"percentiles\" is empty",
            ),
            (
                "{\"percentiles\":{\"0.5\":3}}",
                "x.json:1: \"percentiles\" must be a list",
            ),
            (
                "{\"percentiles\":[[0.5]]}",
                "x.json:1: \"percentiles\" entry 0 is not",
            ),
            (
                "{\"percentiles\":[[0.5,1],[1.5,2]]}",
                "x.json:1: \"percentiles\" entry 1 is not",
            ),
            (
                "{\"percentiles\":[[0.5,1],[0.4,2]]}",
                "x.json:1: \"percentiles\" entry 1: quantiles must rise",
            ),
            ("[]", "x.json:1: not a JSON object"),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", parse_latency("l", "x.json", text).unwrap_err());
            assert!(
                err.starts_with(want),
                "{text:?}: got {err:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn bad_arguments_write_nothing() {
        let dir = std::env::temp_dir().join(format!("xsw-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        std::fs::write(&good, SINK).unwrap();
        let out = dir.join("out.svg");
        for runs in [
            vec![
                format!("a={}", good.display()),
                format!("b={}", dir.join("missing.json").display()),
            ],
            vec![good.display().to_string()],
        ] {
            let err = run(PlotCmd::Latency {
                out: out.clone(),
                title: None,
                runs,
            })
            .unwrap_err();
            assert!(!out.exists(), "{err:#}");
        }
        run(PlotCmd::Latency {
            out: out.clone(),
            title: Some("t <&>".into()),
            runs: vec![format!("a={}", good.display())],
        })
        .unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.starts_with("<svg"));
        let texts = texts(&svg);
        for text in ["t &lt;&amp;&gt;", "99%", "a: p50 1.00 µs, p99 5.00 µs"] {
            assert!(
                texts.iter().any(|t| t == text),
                "{text} missing from {texts:?}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn throughput_svg_shows_every_number() {
        let rows = parse_throughput(
            "r",
            r#"{"system":"bridge","size":64,"frames_per_sec":1230000}
{"system":"xsw","size":64,"frames_per_sec":2000000}
{"system":"xsw","size":64,"frames_per_sec":2200000}
{"system":"xsw","size":1518,"frames_per_sec":800000,"gbit_per_sec":9.7}"#,
        )
        .unwrap();
        let svg = throughput_svg("T", &rows).unwrap();
        let texts = texts(&svg);
        for text in [
            "1.23",
            "2.10",
            "0.800",
            "9.70 Gb/s",
            "64 B",
            "1518 B",
            "bridge",
            "xsw",
        ] {
            assert!(
                texts.iter().any(|t| t == text),
                "{text} missing from {texts:?}"
            );
        }
    }

    #[test]
    fn significant_digits() {
        assert_eq!(
            [0.0, 0.0123, 0.5, 1.234, 12.34, 123.4].map(sig3),
            ["0", "0.0123", "0.500", "1.23", "12.3", "123"]
        );
        assert_eq!(
            [0.5, 2.0, 1.25, 300.0].map(axis_num),
            ["0.5", "2", "1.25", "300"]
        );
    }
}
