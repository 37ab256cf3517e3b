//! Which plots come from which CSV file: the column schemas the benchmark
//! scripts write, and for each plot its columns, title and axis text.
//!
//! Every file is parsed before any SVG is written, so a malformed file stops
//! the run without leaving a half-updated set of plots beside the data.

use std::path::{Path, PathBuf};

use crate::chart::{self, BarChart, Line, LineChart};
use crate::error::Error;
use crate::stats::{by_target, Series};
use crate::style;
use crate::table::Table;

/// `forwarding.csv`: one stateless-forwarding load step per row.
const FORWARDING: &[&str] = &[
    "target",
    "round",
    "offered_rps",
    "achieved_rps",
    "loss_pct",
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "cpu_us_per_msg",
];

/// `calls.csv`: one call-rate step per row (INVITE/200/ACK/BYE pairs).
const CALLS: &[&str] = &[
    "target",
    "round",
    "pairs",
    "offered_cps",
    "achieved_cps",
    "successful",
    "failed",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "cpu_us_per_call",
];

/// `registration.csv`: one registration run per row, at `users` bindings.
const REGISTRATION: &[&str] = &[
    "target",
    "round",
    "users",
    "offered_rps",
    "achieved_rps",
    "p50_us",
    "p99_us",
    "cpu_us_per_reg",
    "bytes_per_binding",
];

/// `transports.csv`: forwarding CPU per message by the caller's transport,
/// all rows at one offered rate (transport-bench.sh picks it). The
/// transport is a number code ([`transport_label`]) because a table has only
/// one text column, `target`; the codes also order the groups.
const TRANSPORTS: &[&str] = &[
    "target",
    "round",
    "transport",
    "offered_rps",
    "cpu_us_per_msg",
];

/// `connections.csv`: memory per idle connection by transport (1 = TCP,
/// 2 = TLS), all rows at one connection count.
const CONNECTIONS: &[&str] = &["target", "round", "transport", "conns", "bytes_per_conn"];

/// What a run did: SVGs written, and plots skipped with the reason.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) written: Vec<PathBuf>,
    pub(crate) skipped: Vec<String>,
}

/// Reads the CSV files in `dir` and writes the SVG plots beside them.
pub(crate) fn run(dir: &Path) -> Result<Outcome, Error> {
    let forwarding = Table::read(&dir.join("forwarding.csv"), FORWARDING)?;
    let calls = Table::read(&dir.join("calls.csv"), CALLS)?;
    let registration = Table::read(&dir.join("registration.csv"), REGISTRATION)?;
    let transports = Table::read(&dir.join("transports.csv"), TRANSPORTS)?;
    let connections = Table::read(&dir.join("connections.csv"), CONNECTIONS)?;
    // Checked before anything is drawn, like a parse error.
    let rate = one_value(dir, "transports.csv", transports.as_ref(), "offered_rps")?;
    let conns = one_value(dir, "connections.csv", connections.as_ref(), "conns")?;
    for (file, table) in [
        ("transports.csv", &transports),
        ("connections.csv", &connections),
    ] {
        known_transports(dir, file, table.as_ref())?;
    }

    let mut out = Outcome::default();
    let mut plot = Plotter { dir, out: &mut out };
    if let Some(t) = plot.usable("forwarding.csv", forwarding.as_ref()) {
        let text = Text {
            title: "Stateless forwarding: achieved vs offered load",
            x_desc: "offered requests/s",
            y_desc: "achieved requests/s",
        };
        let columns = ("offered_rps", "achieved_rps");
        plot.lines(t, "forwarding-rate.svg", &text, true, columns)?;
        let text = Text {
            title: "Forwarding latency (request sent → its 200 back, both through the proxy)",
            x_desc: "offered requests/s",
            y_desc: "latency (µs, log scale)",
        };
        let columns = ("offered_rps", "p50_us", "p99_us");
        plot.percentiles(t, "forwarding-latency.svg", &text, columns, true)?;
        let text = Text {
            title: "Forwarding CPU cost",
            x_desc: "offered requests/s",
            y_desc: "CPU µs per forwarded message",
        };
        let columns = ("offered_rps", "cpu_us_per_msg");
        plot.lines(t, "forwarding-cpu.svg", &text, false, columns)?;
    }
    if let Some(t) = plot.usable("calls.csv", calls.as_ref()) {
        let text = Text {
            title: "Calls: achieved vs offered call rate",
            x_desc: "offered calls/s",
            y_desc: "achieved calls/s",
        };
        let columns = ("offered_cps", "achieved_cps");
        plot.lines(t, "calls-rate.svg", &text, true, columns)?;
        let text = Text {
            title: "Call setup latency (INVITE → 200 OK)",
            x_desc: "offered calls/s",
            y_desc: "INVITE → 200 (ms, as SIPp counts: whole ms)",
        };
        let columns = ("offered_cps", "p50_ms", "p99_ms");
        // Linear: SIPp counts whole milliseconds, so many points are 0.
        plot.percentiles(t, "calls-latency.svg", &text, columns, false)?;
    }
    if let Some(t) = plot.usable("registration.csv", registration.as_ref()) {
        let users = Group {
            column: "users",
            desc: "registered users",
            label: |v| format!("{} users", count_label(v)),
        };
        let title = |title: &str, users: &[f64]| match users {
            [one] => format!("{title} at {} registered users", count_label(*one)),
            _ => format!("{title} by registered users"),
        };
        let bars = Bars {
            svg: "memory.svg",
            title: &|u| title("Location memory per binding", u),
            y_desc: "bytes per binding",
            unit: "B",
            y: "bytes_per_binding",
        };
        plot.bars(t, &bars, &users)?;
        let bars = Bars {
            svg: "registration-cpu.svg",
            title: &|u| title("Registration CPU cost", u),
            y_desc: "CPU µs per REGISTER",
            unit: "µs",
            y: "cpu_us_per_reg",
        };
        plot.bars(t, &bars, &users)?;
    }
    if let Some(t) = plot.usable("transports.csv", transports.as_ref()) {
        let title = match rate {
            Some(r) => format!(
                "Forwarding CPU cost by the caller's transport at {} requests/s",
                count_label(r)
            ),
            None => "Forwarding CPU cost by the caller's transport".to_string(),
        };
        let bars = Bars {
            svg: "transports-cpu.svg",
            title: &|_| title.clone(),
            y_desc: "CPU µs per forwarded message",
            unit: "µs",
            y: "cpu_us_per_msg",
        };
        let group = Group {
            column: "transport",
            desc: "the caller's transport",
            label: transport_label,
        };
        plot.bars(t, &bars, &group)?;
    }
    if let Some(t) = plot.usable("connections.csv", connections.as_ref()) {
        let title = match conns {
            Some(n) => format!(
                "Memory per idle connection with {} connections open",
                count_label(n)
            ),
            None => "Memory per idle connection".to_string(),
        };
        let bars = Bars {
            svg: "connections-memory.svg",
            title: &|_| title.clone(),
            y_desc: "bytes per idle connection",
            unit: "B",
            y: "bytes_per_conn",
        };
        let group = Group {
            column: "transport",
            desc: "transport",
            label: transport_label,
        };
        plot.bars(t, &bars, &group)?;
    }
    Ok(out)
}

/// The one value of `column` in `file` (`None` when no row has one), or an
/// error naming the values when there are several: the file's plot is drawn
/// at one value, and its title says which.
fn one_value(
    dir: &Path,
    file: &str,
    table: Option<&Table>,
    column: &str,
) -> Result<Option<f64>, Error> {
    let Some(t) = table else { return Ok(None) };
    match t.distinct(column).as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        many => Err(Error::Data {
            path: dir.join(file),
            msg: format!(
                "`{column}` takes {} values ({}); the file must hold one",
                many.len(),
                many.iter()
                    .map(|v| count_label(*v))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// The transport number codes of `transports.csv` and `connections.csv`,
/// by group label. A code not here is an error (the script and this tool
/// disagree), not a bar labelled with a bare number.
const TRANSPORT_CODES: [&str; 4] = ["UDP", "TCP", "TLS", "WS"];

/// Errors on a `transport` code outside [`TRANSPORT_CODES`].
fn known_transports(dir: &Path, file: &str, table: Option<&Table>) -> Result<(), Error> {
    let Some(t) = table else { return Ok(()) };
    match t
        .distinct("transport")
        .into_iter()
        .find(|v| code(*v).is_none())
    {
        None => Ok(()),
        Some(v) => Err(Error::Data {
            path: dir.join(file),
            msg: format!("`transport` {v} is not a transport code (0=UDP 1=TCP 2=TLS 3=WS)"),
        }),
    }
}

/// The name of transport code `v`, if it is one.
fn code(v: f64) -> Option<&'static str> {
    if v.fract() != 0.0 || v < 0.0 {
        return None;
    }
    TRANSPORT_CODES.get(v as usize).copied()
}

/// A group's tick label: `1` -> `TCP`. Codes were checked on reading, so
/// the fallback only keeps this total.
fn transport_label(v: f64) -> String {
    code(v).map_or_else(|| style::value(v), str::to_string)
}

/// How a bar chart's bars are grouped: by which column, and the words for
/// it. One struct rather than `users` hard-wired into [`Plotter::bars`], so
/// every bar chart shares one drawing path whatever its groups are.
struct Group {
    /// The column whose values make the groups.
    column: &'static str,
    /// Axis description when there are several groups.
    desc: &'static str,
    /// Tick label of one group's value.
    label: fn(f64) -> String,
}

/// One bar chart: its file, column and words.
struct Bars<'a> {
    svg: &'a str,
    /// The title, given the group values that have a bar, so that a chart of
    /// a single group can name it.
    title: &'a dyn Fn(&[f64]) -> String,
    y_desc: &'a str,
    /// Printed after each bar's value ("B", "µs").
    unit: &'a str,
    /// The column the bars measure.
    y: &'a str,
}

/// The words on a line chart.
struct Text<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
}

struct Plotter<'a> {
    dir: &'a Path,
    out: &'a mut Outcome,
}

impl Plotter<'_> {
    /// The table if it has data rows; otherwise notes why its plots are skipped.
    fn usable<'t>(&mut self, file: &str, table: Option<&'t Table>) -> Option<&'t Table> {
        match table {
            None => self.skip(format!("{file} not found: its plots are skipped")),
            Some(t) if t.is_empty() => {
                self.skip(format!("{file} has no data rows: its plots are skipped"))
            }
            Some(t) => return Some(t),
        }
        None
    }

    fn skip(&mut self, why: String) {
        self.out.skipped.push(why);
    }

    /// `false` (and a note) when there is no point to draw: every row left
    /// `column` empty. (`by_target` makes no empty series.)
    fn has_points(&mut self, svg: &str, series: &[&[Series]], column: &str) -> bool {
        if series.iter().any(|s| !s.is_empty()) {
            return true;
        }
        self.skip(format!("{svg}: no row has a value for `{column}`; skipped"));
        false
    }

    fn done(&mut self, path: PathBuf) {
        self.out.written.push(path);
    }

    /// One solid line per target of column `y` against `x`; with
    /// `offered_line`, the y = x line of a rate plot.
    fn lines(
        &mut self,
        t: &Table,
        svg: &str,
        text: &Text<'_>,
        offered_line: bool,
        (x, y): (&str, &str),
    ) -> Result<(), Error> {
        let series = by_target(t.pairs(x, y));
        if !self.has_points(svg, &[&series], y) {
            return Ok(());
        }
        let colours = style::colours(series.iter().map(|s| s.target.as_str()));
        let lines = series
            .iter()
            .zip(colours)
            .map(|(s, colour)| Line {
                label: s.target.clone(),
                colour,
                dashed: false,
                points: &s.points,
            })
            .collect();
        let chart = LineChart {
            title: text.title,
            x_desc: text.x_desc,
            y_desc: text.y_desc,
            log_y: false,
            offered_line,
            lines,
        };
        let path = self.dir.join(svg);
        chart::line_chart(&path, &chart)?;
        self.done(path);
        Ok(())
    }

    /// Per target, p99 solid and p50 dashed in the target's colour; a log
    /// y axis when latencies span decades (forwarding under overload).
    fn percentiles(
        &mut self,
        t: &Table,
        svg: &str,
        text: &Text<'_>,
        (x, p50, p99): (&str, &str, &str),
        log_y: bool,
    ) -> Result<(), Error> {
        let high = by_target(t.pairs(x, p99));
        let low = by_target(t.pairs(x, p50));
        if !self.has_points(svg, &[&high, &low], &format!("{p50}/{p99}")) {
            return Ok(());
        }
        // One colour per target across both percentiles, so the legend pairs
        // "sipshard p99" with "sipshard p50" by colour.
        let mut targets: Vec<&str> = high.iter().chain(&low).map(|s| s.target.as_str()).collect();
        targets.sort_by(|a, b| style::target_order(a, b));
        targets.dedup();
        let colours = style::colours(targets.iter().copied());
        let colour_of = |target: &str| {
            let i = targets.iter().position(|t| *t == target);
            i.map_or(style::REFERENCE, |i| colours[i])
        };
        let mut lines = Vec::new();
        for target in &targets {
            for (series, dashed, name) in [(&high, false, "p99"), (&low, true, "p50")] {
                if let Some(s) = series.iter().find(|s| s.target == *target) {
                    lines.push(Line {
                        label: format!("{target} {name}"),
                        colour: colour_of(target),
                        dashed,
                        points: &s.points,
                    });
                }
            }
        }
        let chart = LineChart {
            title: text.title,
            x_desc: text.x_desc,
            y_desc: text.y_desc,
            log_y,
            offered_line: false,
            lines,
        };
        let path = self.dir.join(svg);
        chart::line_chart(&path, &chart)?;
        self.done(path);
        Ok(())
    }

    /// A bar per target of column `b.y`, grouped by `group.column`.
    fn bars(&mut self, t: &Table, b: &Bars<'_>, group: &Group) -> Result<(), Error> {
        let series = by_target(t.pairs(group.column, b.y));
        if !self.has_points(b.svg, &[&series], b.y) {
            return Ok(());
        }
        let mut groups: Vec<f64> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .collect();
        groups.sort_by(f64::total_cmp);
        groups.dedup();
        let title = (b.title)(&groups);
        let chart = BarChart {
            title: &title,
            y_desc: b.y_desc,
            unit: b.unit,
            group_desc: group.desc,
            group_label: group.label,
            series: &series,
        };
        let path = self.dir.join(b.svg);
        chart::bar_chart(&path, &chart)?;
        self.done(path);
        Ok(())
    }
}

/// `100000` -> `100,000`: user, connection and rate counts in titles are
/// exact, so no `100k` rounding.
fn count_label(v: f64) -> String {
    if v.fract() != 0.0 || v.abs() >= 1e15 {
        return style::value(v);
    }
    let digits = format!("{}", v.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let name = format!(
                "sipshard-plot-{tag}-{}-{nanos}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            let dir = std::env::temp_dir().join(name);
            std::fs::create_dir(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn read(dir: &Path, svg: &str) -> String {
        std::fs::read_to_string(dir.join(svg)).unwrap_or_else(|e| panic!("{svg}: {e}"))
    }

    /// Whether `svg` has a `<text>` element reading exactly `text`
    /// (plotters writes the content on a line of its own).
    fn has_text(svg: &str, text: &str) -> bool {
        svg.split("<text").skip(1).any(|el| {
            let content = el.split_once('>').map(|(_, rest)| rest);
            content
                .and_then(|c| c.split_once("</text>"))
                .is_some_and(|(c, _)| c.trim() == text)
        })
    }

    #[test]
    fn plots_the_sample() {
        let tmp = TempDir::new("sample");
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample");
        for f in [
            "forwarding.csv",
            "calls.csv",
            "registration.csv",
            "transports.csv",
            "connections.csv",
        ] {
            std::fs::copy(sample.join(f), tmp.0.join(f)).unwrap();
        }
        let out = run(&tmp.0).unwrap();
        assert!(out.skipped.is_empty(), "{:?}", out.skipped);
        let expect = [
            (
                "forwarding-rate.svg",
                "Stateless forwarding: achieved vs offered load",
                &["sipshard", "kamailio", "offered"][..],
            ),
            (
                "forwarding-latency.svg",
                "Forwarding latency",
                &[
                    "sipshard p99",
                    "sipshard p50",
                    "kamailio p99",
                    "kamailio p50",
                ],
            ),
            (
                "forwarding-cpu.svg",
                "Forwarding CPU cost",
                &["sipshard", "kamailio", "CPU µs per forwarded message"],
            ),
            (
                "calls-rate.svg",
                "Calls: achieved vs offered call rate",
                &["sipshard", "kamailio", "offered"],
            ),
            (
                "calls-latency.svg",
                "Call setup latency",
                &["sipshard p99", "kamailio p50"],
            ),
            (
                "memory.svg",
                "Location memory per binding",
                &["sipshard", "kamailio", "bytes per binding"],
            ),
            (
                "registration-cpu.svg",
                "Registration CPU cost",
                &["sipshard", "kamailio"],
            ),
            (
                "transports-cpu.svg",
                "Forwarding CPU cost by the caller&apos;s transport at 25,000 requests/s",
                &[
                    "sipshard",
                    "kamailio",
                    "UDP",
                    "TCP",
                    "TLS",
                    "WS",
                    "CPU µs per forwarded message",
                ],
            ),
            (
                "connections-memory.svg",
                "Memory per idle connection with 10,000 connections open",
                &[
                    "sipshard",
                    "kamailio",
                    "TCP",
                    "TLS",
                    "bytes per idle connection",
                ],
            ),
        ];
        assert_eq!(out.written.len(), expect.len(), "{:?}", out.written);
        for (svg, title, texts) in expect {
            assert!(out.written.contains(&tmp.0.join(svg)), "{svg} not reported");
            let body = read(&tmp.0, svg);
            assert!(
                body.starts_with("<svg"),
                "{svg} starts with {:?}",
                &body[..body.len().min(40)]
            );
            assert!(body.contains(title), "{svg}: title {title:?} missing");
            for t in texts {
                assert!(has_text(&body, t), "{svg}: text {t:?} missing");
            }
        }
    }

    #[test]
    fn missing_empty_and_sparse_files() {
        let tmp = TempDir::new("sparse");
        std::fs::write(tmp.0.join("calls.csv"), CALLS.join(",") + "\n").unwrap();
        // One point for sipshard, a relay that stopped before kamailio, a
        // round with no latency, and two user counts.
        std::fs::write(
            tmp.0.join("forwarding.csv"),
            format!(
                "{}\nsipshard,1,1000,1000,0,40,50,60,70,3.5\n\
                 kamailio,1,1000,990,1,90,100,300,400,9\nkamailio,1,2000,1500,25,,,,,9.5\n\
                 relay,1,1000,1000,0,20,21,22,23,1\n",
                FORWARDING.join(",")
            ),
        )
        .unwrap();
        std::fs::write(
            tmp.0.join("registration.csv"),
            format!(
                "{}\nsipshard,1,1000,500,500,50,90,4,300\nsipshard,1,10000,500,500,50,90,4.2,310\n\
                 kamailio,1,10000,500,500,50,90,12,900\n",
                REGISTRATION.join(",")
            ),
        )
        .unwrap();
        let out = run(&tmp.0).unwrap();
        assert_eq!(out.written.len(), 5, "{:?}", out.written);
        assert!(
            out.skipped
                .iter()
                .any(|s| s.contains("calls.csv has no data rows")),
            "{:?}",
            out.skipped
        );
        assert!(has_text(&read(&tmp.0, "forwarding-rate.svg"), "relay"));
        let memory = read(&tmp.0, "memory.svg");
        assert!(memory.contains("by registered users"));
        assert!(has_text(&memory, "10,000 users"));
        assert!(!tmp.0.join("calls-rate.svg").exists());
    }

    /// compare.sh runs sipshard on both I/O backends; the second,
    /// `sipshard-uring`, is one more target with a colour of its own.
    #[test]
    fn both_backends_drawn() {
        let tmp = TempDir::new("backends");
        std::fs::write(
            tmp.0.join("forwarding.csv"),
            format!(
                "{}\nsipshard,1,1000,1000,0,40,50,60,70,3.5\n\
                 sipshard-uring,1,1000,1000,0,42,52,62,72,3.7\n\
                 kamailio,1,1000,990,1,90,100,300,400,9\nrelay,1,1000,1000,0,20,21,22,23,1\n",
                FORWARDING.join(",")
            ),
        )
        .unwrap();
        let out = run(&tmp.0).unwrap();
        assert_eq!(out.written.len(), 3, "{:?}", out.written);
        for (svg, label) in [
            ("forwarding-rate.svg", "sipshard-uring"),
            ("forwarding-latency.svg", "sipshard-uring p99"),
            ("forwarding-cpu.svg", "sipshard-uring"),
        ] {
            assert!(
                has_text(&read(&tmp.0, svg), label),
                "{svg}: {label} missing"
            );
        }
        let c = style::colours(["sipshard", "kamailio", "relay", "sipshard-uring"]);
        assert!(
            c[3] != c[0] && c[3] != c[2],
            "sipshard-uring needs a colour of its own"
        );
    }

    #[test]
    fn plot_without_values_is_skipped() {
        let tmp = TempDir::new("novalues");
        let row = "sipshard,1,2,100,100,3000,0,,,,20";
        std::fs::write(
            tmp.0.join("calls.csv"),
            format!("{}\n{row}\n", CALLS.join(",")),
        )
        .unwrap();
        let out = run(&tmp.0).unwrap();
        assert_eq!(out.written, vec![tmp.0.join("calls-rate.svg")]);
        let note = "calls-latency.svg: no row has a value for `p50_ms/p99_ms`; skipped";
        assert!(out.skipped.iter().any(|s| s == note), "{:?}", out.skipped);
    }

    #[test]
    fn bad_file_fails_before_writing() {
        let tmp = TempDir::new("bad");
        std::fs::write(
            tmp.0.join("forwarding.csv"),
            FORWARDING.join(",") + "\nsipshard,1\n",
        )
        .unwrap();
        let e = run(&tmp.0).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("forwarding.csv:2: 2 fields, but the header has 10"),
            "{e}"
        );
        assert_eq!(std::fs::read_dir(&tmp.0).unwrap().count(), 1);
    }

    /// transports.csv and connections.csv are drawn at one rate and one
    /// connection count; a file with two is an error, and nothing is drawn.
    #[test]
    fn mixed_rates_are_an_error() {
        let tmp = TempDir::new("mixed");
        std::fs::write(
            tmp.0.join("transports.csv"),
            format!(
                "{}\nsipshard,1,0,10000,7\nsipshard,1,0,25000,7.5\n",
                TRANSPORTS.join(",")
            ),
        )
        .unwrap();
        let e = run(&tmp.0).unwrap_err().to_string();
        assert!(
            e.ends_with("transports.csv: `offered_rps` takes 2 values (10,000, 25,000); the file must hold one"),
            "{e}"
        );
        assert_eq!(std::fs::read_dir(&tmp.0).unwrap().count(), 1);

        std::fs::remove_file(tmp.0.join("transports.csv")).unwrap();
        std::fs::write(
            tmp.0.join("connections.csv"),
            format!(
                "{}\nsipshard,1,1,10000,1500\nkamailio,1,1,20000,5000\n",
                CONNECTIONS.join(",")
            ),
        )
        .unwrap();
        let e = run(&tmp.0).unwrap_err().to_string();
        assert!(e.contains("connections.csv: `conns` takes 2 values"), "{e}");
    }

    #[test]
    fn unknown_transport_code_is_an_error() {
        let tmp = TempDir::new("code");
        std::fs::write(
            tmp.0.join("connections.csv"),
            format!("{}\nsipshard,1,4,10000,1500\n", CONNECTIONS.join(",")),
        )
        .unwrap();
        let e = run(&tmp.0).unwrap_err().to_string();
        assert!(e.contains("`transport` 4 is not a transport code"), "{e}");
        assert_eq!(transport_label(0.0), "UDP");
        assert_eq!(transport_label(3.0), "WS");
    }

    #[test]
    fn user_counts() {
        assert_eq!(count_label(100000.0), "100,000");
        assert_eq!(count_label(999.0), "999");
        assert_eq!(count_label(1000.0), "1,000");
    }
}
