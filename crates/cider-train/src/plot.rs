//! SVG line charts of evaluation results: one chart per metric against the missing rate, one
//! line per results file (model or setting), written by hand as plain SVG 1.1.
//!
//! Each chart has a title naming the metric, the missing mode and the τ rule, an x axis
//! "missing rate p" with ticks 0.0 … 1.0, a y axis with the metric (a fraction) on a "nice"
//! automatic range, light grid lines, and a legend naming each line with its AUILC. Lines have
//! distinct colours (a colour-blind-safe palette) and distinct markers.
//!
//! Why not `plotters`: drawn with its SVG backend (0.3.7, `svg_backend` + `line_series`) the
//! same chart needs the legend outside the plot and the "nice" axis range done by hand anyway
//! (its outside legend loses its box and overlaps the text), it scales font sizes down, and its
//! text measurement wants either system fontconfig/freetype (`ttf`, failing at run time on a
//! machine without fonts) or a font file shipped in the repository (`ab_glyph`). It would save
//! perhaps 150 lines for 3 to 14 more crates; this file needs no fonts, no system library, and
//! writes the same bytes on every machine.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use cider_maci::counterfactual::TauSelection;

use crate::evaluate::EvalError;
use crate::results::{ResultsFile, write_atomic};

/// Width of the plotting area in pixels.
const PLOT_W: f64 = 520.0;
/// Height of the plotting area in pixels.
const PLOT_H: f64 = 340.0;
/// Space left of the plotting area (y tick labels and the y axis title).
const LEFT: f64 = 78.0;
/// Space above the plotting area (title and subtitle).
const TOP: f64 = 62.0;
/// Space below the plotting area (x tick labels and the x axis title).
const BOTTOM: f64 = 62.0;
/// Gap between the plotting area and the legend.
const GAP: f64 = 20.0;
/// Approximate width of one character of the 12 px legend font.
const CHAR_W: f64 = 6.6;
/// Longest legend label before it is shortened with `…`.
const MAX_LABEL_CHARS: usize = 40;
/// Font stack for all text.
const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";

/// Okabe–Ito colours (colour-blind safe), black last; yellow is left out (unreadable on white).
const COLOURS: [&str; 7] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
];

/// Marker shapes, cycled independently of the colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
    TriangleDown,
    Cross,
}

const MARKERS: [Marker; 6] = [
    Marker::Circle,
    Marker::Square,
    Marker::Triangle,
    Marker::Diamond,
    Marker::TriangleDown,
    Marker::Cross,
];

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// x values (missing rates).
    pub x: Vec<f64>,
    /// y values (the metric), same length as `x`.
    pub y: Vec<f64>,
    /// The fixed τ shown next to the label (validation rule), if any.
    pub tau: Option<f64>,
    /// AUILC shown next to the label, if known.
    pub auilc: Option<f64>,
}

/// A line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Title (first line, bold).
    pub title: String,
    /// Subtitle (second line).
    pub subtitle: String,
    /// x axis title.
    pub x_label: String,
    /// y axis title.
    pub y_label: String,
    /// The lines, in legend order.
    pub series: Vec<Series>,
}

/// An axis: its data range and tick values.
#[derive(Debug, Clone, PartialEq)]
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    decimals: usize,
}

impl Axis {
    /// Ticks 0.0, 0.1, …, 1.0 when every value lies in [0, 1]; nice ticks otherwise.
    fn rates(values: &[f64]) -> Self {
        if values.iter().all(|v| (0.0..=1.0).contains(v)) {
            Axis {
                lo: 0.0,
                hi: 1.0,
                ticks: (0..=10).map(|k| f64::from(k) / 10.0).collect(),
                decimals: 1,
            }
        } else {
            Self::nice(values, false)
        }
    }

    /// A range covering `values` with about 5 ticks at steps of 1, 2, 2.5 or 5 × 10^k, at
    /// least 0.02 wide, kept inside [0, 1] when `fraction` and the values are. (Markers on the
    /// frame stay visible: the clip region extends a few pixels beyond it.)
    fn nice(values: &[f64], fraction: bool) -> Self {
        let finite = values.iter().copied().filter(|v| v.is_finite());
        let (mut lo, mut hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        if lo > hi {
            (lo, hi) = (0.0, 1.0);
        }
        let span = (hi - lo).max(0.02);
        let mid = (lo + hi) / 2.0;
        lo = lo.min(mid - span / 2.0);
        hi = hi.max(mid + span / 2.0);
        if fraction && lo < 0.0 && values.iter().all(|&v| v >= 0.0) {
            lo = 0.0;
        }
        if fraction && hi > 1.0 && values.iter().all(|&v| v <= 1.0) {
            hi = 1.0;
        }
        let raw = (hi - lo) / 5.0;
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * magnitude)
            .find(|&s| s >= raw)
            .unwrap_or(10.0 * magnitude);
        let first = (lo / step + 1e-9).floor();
        let last = (hi / step - 1e-9).ceil();
        let count = (last - first) as usize;
        let ticks: Vec<f64> = (0..=count)
            .map(|k| ((first + k as f64) * step * 1e9).round() / 1e9)
            .collect();
        let decimals = (-step.log10().floor()).max(0.0) as usize
            + usize::from((step / magnitude - 2.5).abs() < 1e-9);
        Axis {
            lo: ticks[0],
            hi: ticks[count],
            ticks,
            decimals,
        }
    }

    /// Position of `v` on a pixel interval `[a, b]` (b may be below a, for y).
    fn map(&self, v: f64, a: f64, b: f64) -> f64 {
        a + (v - self.lo) / (self.hi - self.lo) * (b - a)
    }
}

/// Escapes text for SVG content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A label cut to [`MAX_LABEL_CHARS`] characters.
fn shorten(label: &str) -> String {
    if label.chars().count() <= MAX_LABEL_CHARS {
        label.to_string()
    } else {
        let head: String = label.chars().take(MAX_LABEL_CHARS - 1).collect();
        format!("{head}…")
    }
}

/// The SVG of one marker centred at `(x, y)`.
fn marker(shape: Marker, x: f64, y: f64, colour: &str) -> String {
    let r = 4.5;
    let style = format!(r#"fill="{colour}" stroke="white" stroke-width="1""#);
    match shape {
        Marker::Circle => format!(r#"<circle cx="{x:.2}" cy="{y:.2}" r="{r}" {style}/>"#),
        Marker::Square => format!(
            r#"<rect x="{:.2}" y="{:.2}" width="{:.1}" height="{:.1}" {style}/>"#,
            x - r * 0.85,
            y - r * 0.85,
            1.7 * r,
            1.7 * r
        ),
        Marker::Triangle => format!(
            r#"<polygon points="{:.2},{:.2} {:.2},{:.2} {:.2},{:.2}" {style}/>"#,
            x,
            y - r * 1.15,
            x + r,
            y + r * 0.75,
            x - r,
            y + r * 0.75
        ),
        Marker::TriangleDown => format!(
            r#"<polygon points="{:.2},{:.2} {:.2},{:.2} {:.2},{:.2}" {style}/>"#,
            x,
            y + r * 1.15,
            x + r,
            y - r * 0.75,
            x - r,
            y - r * 0.75
        ),
        Marker::Diamond => format!(
            r#"<polygon points="{:.2},{:.2} {:.2},{:.2} {:.2},{:.2} {:.2},{:.2}" {style}/>"#,
            x,
            y - r * 1.2,
            x + r * 1.2,
            y,
            x,
            y + r * 1.2,
            x - r * 1.2,
            y
        ),
        Marker::Cross => format!(
            r#"<path d="M{:.2},{:.2}L{:.2},{:.2}M{:.2},{:.2}L{:.2},{:.2}" stroke="{colour}" stroke-width="2.2" fill="none"/>"#,
            x - r,
            y - r,
            x + r,
            y + r,
            x - r,
            y + r,
            x + r,
            y - r
        ),
    }
}

/// Colour and marker of line `i`: both cycle, the marker shifted once per colour cycle so
/// that the first 42 lines (7 colours × 6 markers) all differ.
fn style_of(i: usize) -> (&'static str, Marker) {
    let colour = COLOURS[i % COLOURS.len()];
    let shape = MARKERS[(i % COLOURS.len() + i / COLOURS.len()) % MARKERS.len()];
    (colour, shape)
}

impl Chart {
    /// The chart as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let xs: Vec<f64> = self.series.iter().flat_map(|s| s.x.clone()).collect();
        let ys: Vec<f64> = self.series.iter().flat_map(|s| s.y.clone()).collect();
        let x_axis = Axis::rates(&xs);
        let y_axis = Axis::nice(&ys, true);
        let legend: Vec<String> = self
            .series
            .iter()
            .map(|s| {
                let notes: Vec<String> = [
                    s.tau.map(|t| format!("τ = {t:?}")),
                    s.auilc.map(|a| format!("AUILC {a:.3}")),
                ]
                .into_iter()
                .flatten()
                .collect();
                if notes.is_empty() {
                    shorten(&s.label)
                } else {
                    format!("{} ({})", shorten(&s.label), notes.join(", "))
                }
            })
            .collect();
        let longest = legend.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        let legend_w = 44.0 + CHAR_W * longest as f64;
        let width = (LEFT + PLOT_W + GAP + legend_w + 12.0).ceil();
        let height = TOP + PLOT_H + BOTTOM;
        let (x0, x1, y0, y1) = (LEFT, LEFT + PLOT_W, TOP + PLOT_H, TOP);

        let mut svg = String::new();
        let _ = writeln!(svg, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="{FONT}">"#
        );
        let _ = writeln!(
            svg,
            r#"<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>"#
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="24" font-size="16" font-weight="bold" text-anchor="middle">{}</text>"#,
            x0 + PLOT_W / 2.0,
            escape(&self.title)
        );
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="44" font-size="12" fill="#444444" text-anchor="middle">{}</text>"##,
            x0 + PLOT_W / 2.0,
            escape(&self.subtitle)
        );

        // Grid, ticks and tick labels.
        let _ = writeln!(svg, r#"<g font-size="12" fill="black">"#);
        for &t in &x_axis.ticks {
            let x = x_axis.map(t, x0, x1);
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.2}" y1="{y1:.2}" x2="{x:.2}" y2="{y0:.2}" stroke="#E5E5E5" stroke-width="1"/>"##
            );
            let _ = writeln!(
                svg,
                r#"<line x1="{x:.2}" y1="{y0:.2}" x2="{x:.2}" y2="{:.2}" stroke="black" stroke-width="1"/>"#,
                y0 + 5.0
            );
            let _ = writeln!(
                svg,
                r#"<text x="{x:.2}" y="{:.2}" text-anchor="middle">{t:.*}</text>"#,
                y0 + 20.0,
                x_axis.decimals
            );
        }
        for &t in &y_axis.ticks {
            let y = y_axis.map(t, y0, y1);
            let _ = writeln!(
                svg,
                r##"<line x1="{x0:.2}" y1="{y:.2}" x2="{x1:.2}" y2="{y:.2}" stroke="#E5E5E5" stroke-width="1"/>"##
            );
            let _ = writeln!(
                svg,
                r#"<line x1="{:.2}" y1="{y:.2}" x2="{x0:.2}" y2="{y:.2}" stroke="black" stroke-width="1"/>"#,
                x0 - 5.0
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.2}" y="{:.2}" text-anchor="end">{t:.*}</text>"#,
                x0 - 9.0,
                y + 4.0,
                y_axis.decimals
            );
        }
        let _ = writeln!(svg, "</g>");
        let _ = writeln!(
            svg,
            r#"<rect x="{x0:.2}" y="{y1:.2}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="black" stroke-width="1"/>"#
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle">{}</text>"#,
            x0 + PLOT_W / 2.0,
            y0 + 44.0,
            escape(&self.x_label)
        );
        let (yx, yy) = (20.0, y1 + PLOT_H / 2.0);
        let _ = writeln!(
            svg,
            r#"<text x="{yx}" y="{yy:.1}" font-size="13" text-anchor="middle" transform="rotate(-90 {yx} {yy:.1})">{}</text>"#,
            escape(&self.y_label)
        );

        // Lines and markers, clipped to the plotting area.
        let _ = writeln!(
            svg,
            r#"<defs><clipPath id="plot-area"><rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}"/></clipPath></defs>"#,
            x0 - 6.0,
            y1 - 6.0,
            PLOT_W + 12.0,
            PLOT_H + 12.0
        );
        let _ = writeln!(svg, r#"<g clip-path="url(#plot-area)">"#);
        for (i, s) in self.series.iter().enumerate() {
            let (colour, shape) = style_of(i);
            let points: Vec<(f64, f64)> =
                s.x.iter()
                    .zip(&s.y)
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .map(|(&x, &y)| (x_axis.map(x, x0, x1), y_axis.map(y, y0, y1)))
                    .collect();
            let path: Vec<String> = points
                .iter()
                .map(|(x, y)| format!("{x:.2},{y:.2}"))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round"/>"#,
                path.join(" ")
            );
            for &(x, y) in &points {
                let _ = writeln!(svg, "{}", marker(shape, x, y, colour));
            }
        }
        let _ = writeln!(svg, "</g>");

        // Legend.
        let lx = x1 + GAP;
        let lh = 22.0 * legend.len() as f64 + 10.0;
        let _ = writeln!(
            svg,
            r##"<rect x="{lx:.2}" y="{y1:.2}" width="{legend_w:.2}" height="{lh:.2}" fill="white" stroke="#999999" stroke-width="1"/>"##
        );
        for (i, label) in legend.iter().enumerate() {
            let (colour, shape) = style_of(i);
            let y = y1 + 16.0 + 22.0 * i as f64;
            let _ = writeln!(
                svg,
                r#"<line x1="{:.2}" y1="{y:.2}" x2="{:.2}" y2="{y:.2}" stroke="{colour}" stroke-width="2"/>"#,
                lx + 8.0,
                lx + 34.0
            );
            let _ = writeln!(svg, "{}", marker(shape, lx + 21.0, y, colour));
            let _ = writeln!(
                svg,
                r#"<text x="{:.2}" y="{:.2}" font-size="12">{}</text>"#,
                lx + 40.0,
                y + 4.0,
                escape(label)
            );
        }
        let _ = writeln!(svg, "</svg>");
        svg
    }
}

/// The default legend label of a results file: its folder's name (`runs/cider-ood/results.json`
/// → `cider-ood`), or the file stem when it has no named folder.
pub fn default_label(path: &Path) -> String {
    path.parent()
        .and_then(Path::file_name)
        .or_else(|| path.file_stem())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Default labels for several files: folder names, or the last two folders when folder names
/// repeat (`a/eval`, `b/eval`).
pub fn default_labels(paths: &[PathBuf]) -> Vec<String> {
    let labels: Vec<String> = paths.iter().map(|p| default_label(p)).collect();
    let unique = labels
        .iter()
        .enumerate()
        .all(|(i, l)| !labels[..i].contains(l));
    if unique {
        return labels;
    }
    paths
        .iter()
        .zip(labels)
        .map(
            |(p, label)| match p.parent().and_then(Path::parent).and_then(Path::file_name) {
                Some(grand) => format!("{}/{label}", grand.to_string_lossy()),
                None => label,
            },
        )
        .collect()
}

/// One chart per metric of the results (the union over files, in report order), one line per
/// file, under a τ rule ([`TauSelection::Validation`] plots `metrics`, `Oracle` plots
/// `oracle.metrics`). `files` pairs each legend label with its results.
///
/// # Errors
/// SMM results (no rate curve), or no file at all.
pub fn charts(
    files: &[(String, ResultsFile)],
    rule: TauSelection,
) -> Result<Vec<(String, Chart)>, EvalError> {
    if files.is_empty() {
        return Err(EvalError::invalid("plot", "no results file given"));
    }
    if let Some((label, _)) = files.iter().find(|(_, r)| r.rates.is_empty()) {
        return Err(EvalError::invalid(
            &format!("results `{label}`"),
            "it has no missing-rate curve (SMM results are a table, not a curve)",
        ));
    }
    let mut names: Vec<&str> = Vec::new();
    for (_, results) in files {
        for (name, _) in results.series(rule) {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    let modes: Vec<&str> = files.iter().map(|(_, r)| r.mode.as_str()).collect();
    let mode = if modes.iter().all(|m| *m == modes[0]) {
        modes[0].to_string()
    } else {
        "mixed modes".to_string()
    };
    let tau = match rule {
        TauSelection::Validation => "τ chosen without the test labels",
        TauSelection::Oracle => "oracle τ (max over τ per rate, reference numbers)",
    };
    Ok(names
        .into_iter()
        .map(|name| {
            let series = files
                .iter()
                .filter_map(|(label, results)| {
                    let (_, y) = results.series(rule).iter().find(|(n, _)| n == name)?;
                    Some(Series {
                        label: label.clone(),
                        x: results.rates.clone(),
                        y: y.clone(),
                        tau: (rule == TauSelection::Validation).then_some(results.tau),
                        auilc: results.auilc_of(rule, name),
                    })
                })
                .collect();
            let chart = Chart {
                title: format!("{name} vs missing rate"),
                subtitle: format!("{mode} · {tau}"),
                x_label: format!("missing rate p ({mode})"),
                y_label: format!("{name} (fraction)"),
                series,
            };
            (name.to_string(), chart)
        })
        .collect())
}

/// Writes `<metric>.svg` for every chart of [`charts`] into `out` (created if needed);
/// returns the paths.
pub fn write_charts(
    files: &[(String, ResultsFile)],
    rule: TauSelection,
    out: &Path,
) -> Result<Vec<PathBuf>, EvalError> {
    let charts = charts(files, rule)?;
    std::fs::create_dir_all(out).map_err(|source| EvalError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    charts
        .into_iter()
        .map(|(name, chart)| {
            let safe: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let path = out.join(format!("{safe}.svg"));
            write_atomic(&path, chart.to_svg().as_bytes())?;
            Ok(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// A minimal XML well-formedness check: balanced, properly nested elements, quoted
    /// attributes, no stray `<` or `&` in text. Returns the element names in document order.
    fn parse_xml(text: &str) -> Result<Vec<String>, String> {
        let mut stack: Vec<String> = Vec::new();
        let mut names = Vec::new();
        let mut rest = text;
        let check_text = |t: &str| -> Result<(), String> {
            let mut parts = t.split('&');
            parts.next();
            for part in parts {
                let entity = part.split(';').next().unwrap_or("");
                if !["amp", "lt", "gt", "quot", "apos"].contains(&entity) || !part.contains(';') {
                    return Err(format!("bad entity in {t:?}"));
                }
            }
            if t.contains('>') {
                return Err(format!("stray `>` in {t:?}"));
            }
            Ok(())
        };
        while let Some(start) = rest.find('<') {
            check_text(&rest[..start])?;
            let end = rest[start..].find('>').ok_or("unclosed tag")? + start;
            let tag = &rest[start + 1..end];
            rest = &rest[end + 1..];
            if tag.starts_with('?') {
                if !tag.ends_with('?') {
                    return Err(format!("bad declaration {tag:?}"));
                }
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(open) if open == name.trim() => continue,
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
            }
            let self_closing = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name: String = body.chars().take_while(|c| !c.is_whitespace()).collect();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!("bad element name in <{tag}>"));
            }
            // Attributes: name="value" pairs.
            let mut attrs = body[name.len()..].trim();
            while !attrs.is_empty() {
                let eq = attrs
                    .find('=')
                    .ok_or(format!("attribute without value in <{tag}>"))?;
                let value = attrs[eq + 1..]
                    .strip_prefix('"')
                    .ok_or(format!("unquoted attribute in <{tag}>"))?;
                let close = value
                    .find('"')
                    .ok_or(format!("unterminated attribute in <{tag}>"))?;
                check_text(&value[..close])?;
                if value[..close].contains('<') {
                    return Err(format!("`<` in attribute of <{tag}>"));
                }
                attrs = value[close + 1..].trim_start();
            }
            names.push(name.clone());
            if !self_closing {
                stack.push(name);
            }
        }
        check_text(rest)?;
        if !stack.is_empty() {
            return Err(format!("unclosed elements {stack:?}"));
        }
        Ok(names)
    }

    fn results(mode: &str, values: &[f64], oracle_shift: f64) -> ResultsFile {
        let rates: Vec<f64> = (0..values.len()).map(|k| k as f64 / 10.0).collect();
        let oracle: Vec<f64> = values.iter().map(|v| v + oracle_shift).collect();
        ResultsFile {
            config: Value::Null,
            seed: 1111,
            mode: mode.into(),
            tau: 0.3,
            tau_rule: "validation".into(),
            tau_detail: String::new(),
            rule_taus: Vec::new(),
            sweep_metric: "Acc_7".into(),
            sweep: Vec::new(),
            metrics: vec![("Acc_7".into(), values.to_vec())],
            auilc: vec![("Acc_7".into(), 0.5)],
            oracle_metrics: vec![("Acc_7".into(), oracle)],
            oracle_auilc: vec![("Acc_7".into(), 0.6)],
            smm: Vec::new(),
            oracle_smm: Vec::new(),
            rates,
        }
    }

    #[test]
    fn nice_axes_cover_the_values_with_round_ticks() {
        let axis = Axis::nice(&[0.41, 0.83], true);
        assert_eq!(axis.ticks, [0.4, 0.5, 0.6, 0.7, 0.8, 0.9]);
        assert_eq!(axis.decimals, 1);
        // A flat line gets a small range around it.
        let flat = Axis::nice(&[0.5, 0.5], true);
        assert!(
            flat.lo < 0.5 && flat.hi > 0.5 && flat.hi - flat.lo <= 0.05,
            "{flat:?}"
        );
        assert_eq!(flat.decimals, 3, "{flat:?}");
        // Fractions stay inside [0, 1].
        let full = Axis::nice(&[0.0, 1.0], true);
        assert_eq!((full.lo, full.hi), (0.0, 1.0));
        let axis = Axis::nice(&[0.612, 0.648], true);
        assert_eq!(axis.ticks, [0.61, 0.62, 0.63, 0.64, 0.65]);
        assert_eq!(axis.decimals, 2);
        let rates = Axis::rates(&[0.0, 0.5, 1.0]);
        assert_eq!(rates.ticks.len(), 11);
        assert_eq!((rates.lo, rates.hi), (0.0, 1.0));
    }

    #[test]
    fn chart_svg_is_well_formed_with_labels_axes_and_legend() {
        let files = vec![
            (
                "CIDer <full> & MACI".to_string(),
                results(
                    "RMFM",
                    &[0.8, 0.75, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35, 0.3, 0.3, 0.29],
                    0.01,
                ),
            ),
            (
                "no-MACI".to_string(),
                results(
                    "RMFM",
                    &[0.78, 0.7, 0.65, 0.6, 0.5, 0.4, 0.35, 0.3, 0.28, 0.27, 0.25],
                    0.0,
                ),
            ),
        ];
        let charts = charts(&files, TauSelection::Validation).unwrap();
        assert_eq!(charts.len(), 1);
        let (name, chart) = &charts[0];
        assert_eq!(name, "Acc_7");
        let svg = chart.to_svg();
        let elements = parse_xml(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert_eq!(elements[0], "svg");
        assert_eq!(elements.iter().filter(|e| *e == "polyline").count(), 2);
        for needle in [
            "Acc_7 vs missing rate",
            "missing rate p (RMFM)",
            "Acc_7 (fraction)",
            "CIDer &lt;full&gt; &amp; MACI (τ = 0.3, AUILC 0.500)",
            "no-MACI (τ = 0.3, AUILC 0.500)",
            ">0.0</text>",
            ">0.5</text>",
            ">1.0</text>",
            "τ chosen without the test labels",
        ] {
            assert!(svg.contains(needle), "`{needle}` missing from\n{svg}");
        }
        // Two distinct colours and markers.
        assert_ne!(style_of(0), style_of(1));
        assert!(svg.contains(COLOURS[0]) && svg.contains(COLOURS[1]));
        assert!(svg.contains("<circle") && svg.contains("<rect x="));
        // y ticks cover the values: 0.2 … 0.8 at least.
        for tick in [">0.2</text>", ">0.8</text>"] {
            assert!(svg.contains(tick), "{tick}");
        }

        let oracle = charts_of_rule(&files, TauSelection::Oracle);
        assert!(oracle.contains("oracle τ") && oracle.contains("no-MACI (AUILC 0.600)"));
    }

    fn charts_of_rule(files: &[(String, ResultsFile)], rule: TauSelection) -> String {
        charts(files, rule).unwrap()[0].1.to_svg()
    }

    #[test]
    fn many_lines_get_distinct_styles() {
        let styles: Vec<_> = (0..42).map(style_of).collect();
        for (i, a) in styles.iter().enumerate() {
            assert!(!styles[..i].contains(a), "line {i} repeats a style");
        }
    }

    #[test]
    fn labels_default_to_folder_names() {
        let paths = [
            PathBuf::from("runs/cider/results.json"),
            PathBuf::from("runs/no-maci/results.json"),
        ];
        assert_eq!(default_labels(&paths), ["cider", "no-maci"]);
        let paths = [
            PathBuf::from("a/eval/results.json"),
            PathBuf::from("b/eval/results.json"),
        ];
        assert_eq!(default_labels(&paths), ["a/eval", "b/eval"]);
        assert_eq!(default_label(Path::new("results.json")), "results");
    }

    #[test]
    fn smm_results_and_empty_input_are_refused() {
        let mut smm = results("SMM", &[], 0.0);
        smm.rates.clear();
        let message = charts(&[("smm".into(), smm)], TauSelection::Validation)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("`smm`") && message.contains("SMM"),
            "{message}"
        );
        assert!(charts(&[], TauSelection::Validation).is_err());
    }

    #[test]
    fn write_charts_writes_one_svg_per_metric() {
        let dir = std::env::temp_dir().join(format!("cider-plot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut a = results("RMFM", &[0.8, 0.6, 0.4], 0.0);
        a.metrics.push(("F1_score_7".into(), vec![0.7, 0.5, 0.3]));
        let files = vec![("a".to_string(), a)];
        let paths = write_charts(&files, TauSelection::Validation, &dir).unwrap();
        assert_eq!(paths, [dir.join("Acc_7.svg"), dir.join("F1_score_7.svg")]);
        for path in &paths {
            let svg = std::fs::read_to_string(path).unwrap();
            parse_xml(&svg).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
