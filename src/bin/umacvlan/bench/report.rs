//! Summaries of a benchmark run: medians, ranges and paired ratios, as a terminal
//! table, Markdown, JSON and an SVG plot.

use std::fmt::Write as _;

use serde::Serialize;

use super::{BenchConfig, Measurement, Scenario};

/// The median of `v` (the mean of the middle two for an even count); `None` if empty.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// One system's figures for one scenario and frame size, over the rounds.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Scenario.
    pub scenario: Scenario,
    /// Frame size.
    pub size: usize,
    /// System label.
    pub system: String,
    /// Rounds measured.
    pub rounds: usize,
    /// Median delivered frames/s at full offered load.
    pub median: f64,
    /// Lowest of the rounds.
    pub min: f64,
    /// Highest of the rounds.
    pub max: f64,
    /// Median over rounds of (this system / the reference system, same round).
    pub paired: Option<f64>,
    /// Median zero-loss rate.
    pub zero_loss: Option<f64>,
    /// Median machine CPU nanoseconds per delivered frame at full load.
    pub cpu_ns_per_frame: Option<f64>,
    /// Why it was skipped, if it was.
    pub skipped: Option<String>,
}

/// Per-round ratios of system `a` against `b` for one scenario and size.
pub fn paired_ratios(
    ms: &[Measurement],
    scenario: Scenario,
    size: usize,
    a: &str,
    b: &str,
) -> Vec<f64> {
    let rate = |sys: &str, round: usize| {
        ms.iter()
            .find(|m| {
                m.scenario == scenario
                    && m.size == size
                    && m.system == sys
                    && m.round == round
                    && m.skipped.is_none()
            })
            .map(|m| m.max.rate())
    };
    let rounds: std::collections::BTreeSet<usize> = ms.iter().map(|m| m.round).collect();
    rounds
        .into_iter()
        .filter_map(|r| match (rate(a, r), rate(b, r)) {
            (Some(x), Some(y)) if y > 0.0 => Some(x / y),
            _ => None,
        })
        .collect()
}

/// The reference system's label: the first `macvlan` in the configuration.
pub fn reference(cfg: &BenchConfig) -> Option<String> {
    cfg.systems
        .iter()
        .find(|s| s.kind == super::SystemKind::Macvlan)
        .map(|s| s.label.clone())
}

/// Rows for every (scenario, size, system), in configuration order.
pub fn summarize(cfg: &BenchConfig, ms: &[Measurement]) -> Vec<Row> {
    let refsys = reference(cfg);
    let mut rows = Vec::new();
    for &scenario in &cfg.scenarios {
        for &size in &cfg.sizes {
            for s in &cfg.systems {
                let mine: Vec<&Measurement> = ms
                    .iter()
                    .filter(|m| m.scenario == scenario && m.size == size && m.system == s.label)
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                let ok: Vec<&&Measurement> = mine.iter().filter(|m| m.skipped.is_none()).collect();
                let rates: Vec<f64> = ok.iter().map(|m| m.max.rate()).collect();
                let zl: Vec<f64> = ok.iter().filter_map(|m| m.zero_loss).collect();
                let cpu: Vec<f64> = ok.iter().filter_map(|m| m.max.cpu_per_frame()).collect();
                rows.push(Row {
                    scenario,
                    size,
                    system: s.label.clone(),
                    rounds: ok.len(),
                    median: median(&rates).unwrap_or(0.0),
                    min: rates
                        .iter()
                        .copied()
                        .fold(f64::INFINITY, f64::min)
                        .min(f64::MAX),
                    max: rates.iter().copied().fold(0.0, f64::max),
                    paired: refsys
                        .as_ref()
                        .and_then(|r| median(&paired_ratios(ms, scenario, size, &s.label, r))),
                    zero_loss: median(&zl),
                    cpu_ns_per_frame: median(&cpu),
                    skipped: mine.iter().find_map(|m| m.skipped.clone()),
                });
            }
        }
    }
    rows
}

fn mpps(x: f64) -> String {
    format!("{:.3}", x / 1e6)
}

/// A Markdown table of `rows` (also readable on a terminal).
pub fn table(rows: &[Row], reference: Option<&str>) -> String {
    let mut s = String::new();
    let refname = reference.unwrap_or("-");
    let mut last = None;
    for r in rows {
        if last != Some((r.scenario, r.size)) {
            let _ = writeln!(
                s,
                "\n**{}, {} B frames**\n\n| system | delivered Mpps (median) | min–max | paired vs {refname} | zero-loss Mpps | CPU ns/frame |\n|---|---|---|---|---|---|",
                r.scenario.title(),
                r.size
            );
            last = Some((r.scenario, r.size));
        }
        if let Some(why) = &r.skipped {
            let _ = writeln!(s, "| {} | skipped: {why} | | | | |", r.system);
            continue;
        }
        let _ = writeln!(
            s,
            "| {} | {} | {}–{} | {} | {} | {} |",
            r.system,
            mpps(r.median),
            mpps(r.min),
            mpps(r.max),
            r.paired.map_or("-".into(), |p| format!("{p:.2}")),
            r.zero_loss.map_or("-".into(), mpps),
            r.cpu_ns_per_frame.map_or("-".into(), |c| format!("{c:.0}")),
        );
    }
    s
}

/// Paired ratios of `subject` against every other system, per scenario and size:
/// (scenario, size, other, median ratio, rounds).
pub fn versus(
    cfg: &BenchConfig,
    ms: &[Measurement],
    subject: &str,
) -> Vec<(Scenario, usize, String, f64, usize)> {
    let mut out = Vec::new();
    for &sc in &cfg.scenarios {
        for &size in &cfg.sizes {
            for s in cfg.systems.iter().filter(|s| s.label != subject) {
                let r = paired_ratios(ms, sc, size, subject, &s.label);
                if let Some(m) = median(&r) {
                    out.push((sc, size, s.label.clone(), m, r.len()));
                }
            }
        }
    }
    out
}

/// Everything in one JSON document: configuration, every measurement, the rows.
pub fn json(cfg: &BenchConfig, ms: &[Measurement], machine: &Machine) -> serde_json::Value {
    serde_json::json!({
        "config": cfg,
        "machine": machine,
        "measurements": ms,
        "summary": summarize(cfg, ms),
    })
}

/// What the run ran on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// `uname -r`.
    pub kernel: String,
    /// CPU model.
    pub cpu: String,
    /// Online cores.
    pub cores: usize,
    /// When (UTC, RFC 3339-ish).
    pub date: String,
}

impl Machine {
    /// Reads it off this machine.
    pub fn here() -> Machine {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .unwrap_or("?")
            .trim()
            .to_string();
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Machine {
            kernel,
            cpu,
            cores: core_affinity::get_core_ids().map_or(0, |c| c.len()),
            date: format!("unix {secs}"),
        }
    }
}

const COLORS: [&str; 8] = [
    "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];

/// An SVG plot: one panel per scenario, delivered Mpps (median, with min–max
/// whiskers) against frame size, one line per system.
pub fn svg(cfg: &BenchConfig, rows: &[Row]) -> String {
    let (pw, ph, ml, mt, mb, gap) = (330.0, 260.0, 52.0, 40.0, 44.0, 56.0);
    let n = cfg.scenarios.len().max(1) as f64;
    let width = ml + n * (pw + gap) + 150.0;
    let height = mt + ph + mb + 10.0;
    let ymax = rows
        .iter()
        .filter(|r| r.skipped.is_none())
        .map(|r| r.max)
        .fold(0.0, f64::max)
        .max(1.0)
        / 1e6;
    let ytop = nice_ceiling(ymax);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let sizes = &cfg.sizes;
    let xs = |i: usize| {
        if sizes.len() <= 1 {
            pw / 2.0
        } else {
            12.0 + (pw - 24.0) * i as f64 / (sizes.len() - 1) as f64
        }
    };
    let ys = |v: f64| ph - ph * (v / 1e6) / ytop;
    for (pi, &sc) in cfg.scenarios.iter().enumerate() {
        let ox = ml + pi as f64 * (pw + gap);
        let _ = writeln!(s, r#"<g transform="translate({ox:.1},{mt:.1})">"#);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="-14" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"#,
            pw / 2.0,
            sc.title()
        );
        let _ = writeln!(
            s,
            r##"<rect width="{pw}" height="{ph}" fill="none" stroke="#888"/>"##
        );
        for k in 0..=5 {
            let v = ytop * k as f64 / 5.0;
            let y = ph - ph * k as f64 / 5.0;
            let _ = writeln!(
                s,
                r##"<line x1="0" x2="{pw}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="-6" y="{:.1}" text-anchor="end">{v:.2}</text>"##,
                y + 4.0
            );
        }
        for (i, size) in sizes.iter().enumerate() {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{size}</text>"#,
                xs(i),
                ph + 16.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">frame size (bytes)</text>"#,
            pw / 2.0,
            ph + 34.0
        );
        if pi == 0 {
            let _ = writeln!(
                s,
                r#"<text transform="translate(-40,{:.1}) rotate(-90)" text-anchor="middle">delivered Mpps</text>"#,
                ph / 2.0
            );
        }
        for (si, sys) in cfg.systems.iter().enumerate() {
            let color = COLORS[si % COLORS.len()];
            let pts: Vec<(f64, &Row)> = sizes
                .iter()
                .enumerate()
                .filter_map(|(i, &z)| {
                    rows.iter()
                        .find(|r| {
                            r.scenario == sc
                                && r.size == z
                                && r.system == sys.label
                                && r.skipped.is_none()
                                && r.rounds > 0
                        })
                        .map(|r| (xs(i), r))
                })
                .collect();
            let path: Vec<String> = pts
                .iter()
                .map(|(x, r)| format!("{x:.1},{:.1}", ys(r.median)))
                .collect();
            if !path.is_empty() {
                let _ = writeln!(
                    s,
                    r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                    path.join(" ")
                );
            }
            for (x, r) in &pts {
                let _ = writeln!(
                    s,
                    r#"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="{color}"/><circle cx="{x:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                    ys(r.min),
                    ys(r.max),
                    ys(r.median)
                );
            }
        }
        let _ = writeln!(s, "</g>");
    }
    let lx = ml + n * (pw + gap);
    for (si, sys) in cfg.systems.iter().enumerate() {
        let color = COLORS[si % COLORS.len()];
        let y = mt + 10.0 + si as f64 * 20.0;
        let skipped = rows
            .iter()
            .any(|r| r.system == sys.label && r.skipped.is_some());
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}{}</text>"#,
            lx + 18.0,
            lx + 24.0,
            y + 4.0,
            xml_escape(&sys.label),
            if skipped { " (skipped)" } else { "" }
        );
    }
    let _ = writeln!(s, "</svg>");
    s
}

fn nice_ceiling(v: f64) -> f64 {
    let steps = [
        0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 10.0, 20.0, 50.0, 100.0,
    ];
    steps.into_iter().find(|&s| s >= v).unwrap_or(v.ceil())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The compact Markdown summary: per scenario, systems × frame sizes for the
/// delivered rate (with the paired ratio), the zero-loss rate and the CPU cost,
/// then each umacvlan variant's paired ratios against every other system.
pub fn summary(cfg: &BenchConfig, ms: &[Measurement], rows: &[Row]) -> String {
    let mut s = String::new();
    let refname = reference(cfg).unwrap_or_else(|| "-".into());
    let header = |s: &mut String, first: &str| {
        let _ = write!(s, "| {first} |");
        for z in &cfg.sizes {
            let _ = write!(s, " {z} B |");
        }
        let _ = write!(s, "\n|---|");
        for _ in &cfg.sizes {
            let _ = write!(s, "---|");
        }
        s.push('\n');
    };
    let row_of = |sc: Scenario, z: usize, sys: &str| {
        rows.iter()
            .find(|r| r.scenario == sc && r.size == z && r.system == sys)
    };
    type Cell<'a> = &'a dyn Fn(&Row) -> String;
    let delivered: Cell = &|r| match r.paired {
        Some(p) => format!("{} ({p:.2})", mpps(r.median)),
        None => mpps(r.median),
    };
    let zero_loss: Cell = &|r| r.zero_loss.map_or("-".into(), mpps);
    let cpu: Cell = &|r| r.cpu_ns_per_frame.map_or("-".into(), |c| format!("{c:.0}"));
    for &sc in &cfg.scenarios {
        let _ = writeln!(s, "\n### {}\n", sc.title());
        for (title, cell) in [
            (
                format!("Delivered Mpps, median of the rounds (paired ratio vs {refname})"),
                delivered,
            ),
            ("Zero-loss Mpps, median".to_string(), zero_loss),
            (
                "CPU ns per delivered frame, whole machine, at full load".to_string(),
                cpu,
            ),
        ] {
            let _ = writeln!(s, "{title}:\n");
            header(&mut s, "system");
            for sys in &cfg.systems {
                let _ = write!(s, "| {} |", sys.label);
                for &z in &cfg.sizes {
                    let c = match row_of(sc, z, &sys.label) {
                        Some(r) if r.skipped.is_some() || r.rounds == 0 => "skipped".into(),
                        Some(r) => cell(r),
                        None => "-".into(),
                    };
                    let _ = write!(s, " {c} |");
                }
                s.push('\n');
            }
            s.push('\n');
        }
    }
    for subject in cfg
        .systems
        .iter()
        .filter(|x| x.kind == super::SystemKind::Umacvlan)
    {
        let v = versus(cfg, ms, &subject.label);
        for &sc in &cfg.scenarios {
            let _ = writeln!(
                s,
                "\n{} against each system, {} (median of per-round ratios):\n",
                subject.label,
                sc.title()
            );
            header(&mut s, "against");
            for other in cfg.systems.iter().filter(|o| o.label != subject.label) {
                let _ = write!(s, "| {} |", other.label);
                for &z in &cfg.sizes {
                    let c = v
                        .iter()
                        .find(|(vs, vz, vo, _, _)| *vs == sc && *vz == z && *vo == other.label)
                        .map_or("-".into(), |(_, _, _, r, _)| format!("{r:.2}"));
                    let _ = write!(s, " {c} |");
                }
                s.push('\n');
            }
        }
    }
    s
}
