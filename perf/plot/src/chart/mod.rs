//! Drawing: the two chart shapes every plot is made of (lines over a load
//! sweep, and bars per target) on plotters' SVG backend.
//!
//! Text: the crate is built without plotters' `ttf` feature, so it never
//! loads a font. It sizes labels with a fixed-width estimate and the SVG
//! backend writes each label as a `<text font-family="sans-serif">` element
//! that the viewer renders; labels stay searchable and selectable text, at
//! the cost of layout being approximate (a long legend entry may be a little
//! wider or narrower than its box).
//!
//! Each SVG is rendered into a `String` and written with `std::fs::write`,
//! so a write error is reported with its path instead of being lost in the
//! backend's `Drop`.

mod bars;
mod legend;
mod lines;

use std::io;
use std::path::Path;

use plotters::chart::MeshStyle;
use plotters::coord::ranged1d::Ranged;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::Error;
use crate::stats::{Series, Stat};

pub(crate) use bars::bar_chart;
pub(crate) use lines::line_chart;

/// Pixels: wide enough for a legend of six entries beside the data, small
/// enough to sit two abreast in a results page.
const SIZE: (u32, u32) = (800, 500);
pub(super) const FONT: &str = "sans-serif";
// Font sizes below are plotters' nominal sizes; its SVG backend writes
// `font-size` as that divided by 1.24, so 16 comes out as about 13 px.

pub(super) type DrawResult = Result<(), DrawingAreaErrorKind<io::Error>>;
pub(super) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// The axis text and grid every chart shares.
pub(super) fn house_style<X, Y>(mesh: &mut MeshStyle<'_, '_, X, Y, SVGBackend<'_>>)
where
    X: Ranged,
    Y: Ranged,
{
    mesh.axis_desc_style((FONT, 18))
        .label_style((FONT, 16))
        .bold_line_style(RGBColor(210, 210, 210))
        .light_line_style(RGBColor(242, 242, 242));
}

/// The frame every chart shares (title, margins, room for the axis
/// labels), so that lines and bars line up when set side by side.
pub(super) fn frame<'a, 'b>(
    root: &'a Area<'b>,
    title: &str,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, (FONT, 26))
        .margin(12)
        .margin_right(28)
        .x_label_area_size(50)
        .y_label_area_size(70);
    builder
}

/// One line of a [`LineChart`].
pub(crate) struct Line<'a> {
    pub(crate) label: String,
    pub(crate) colour: RGBColor,
    /// Dashed marks the secondary statistic (p50 beside a solid p99).
    pub(crate) dashed: bool,
    pub(crate) points: &'a [(f64, Stat)],
}

/// A y-vs-x chart over a load sweep.
pub(crate) struct LineChart<'a> {
    pub(crate) title: &'a str,
    pub(crate) x_desc: &'a str,
    pub(crate) y_desc: &'a str,
    /// Log scale, for latencies that span decades as a target saturates.
    pub(crate) log_y: bool,
    /// Draw y = x as a dashed grey "offered" line: on a rate plot, a target
    /// keeping up sits on it and the gap below it is loss.
    pub(crate) offered_line: bool,
    pub(crate) lines: Vec<Line<'a>>,
}

/// A bar per target, in groups by an x value (user count, transport code).
pub(crate) struct BarChart<'a> {
    pub(crate) title: &'a str,
    pub(crate) y_desc: &'a str,
    /// Printed after each bar's value ("B", "µs").
    pub(crate) unit: &'a str,
    /// Axis description when there are several groups.
    pub(crate) group_desc: &'a str,
    /// Tick label of a group's x value.
    pub(crate) group_label: fn(f64) -> String,
    pub(crate) series: &'a [Series],
}

/// Min–max whiskers: a vertical line with a short cap at each end, only
/// where the rounds disagree. Drawn by hand rather than with plotters'
/// `ErrorBar`, which also rings the median and clutters the markers.
/// `floor` clamps the low end onto a log axis.
pub(super) fn whiskers<'a, X, Y>(
    cc: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    cells: &[(f64, Stat)],
    floor: f64,
    style: ShapeStyle,
) -> DrawResult
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let spread = || cells.iter().filter(|(_, s)| s.max > s.min);
    cc.draw_series(
        spread().map(|&(x, s)| PathElement::new([(x, s.min.max(floor)), (x, s.max)], style)),
    )?;
    let cap =
        |x: f64, y: f64| EmptyElement::at((x, y)) + PathElement::new([(-5, 0), (5, 0)], style);
    cc.draw_series(spread().flat_map(|&(x, s)| [cap(x, s.min.max(floor)), cap(x, s.max)]))?;
    Ok(())
}

/// How the points were aggregated, in small grey text at the bottom left, so
/// a reader knows what a whisker means without a separate document.
pub(super) fn rounds_note<'a>(stats: impl Iterator<Item = &'a Stat>) -> String {
    let (lo, hi) = stats.fold((usize::MAX, 0), |(lo, hi), s| {
        (lo.min(s.rounds), hi.max(s.rounds))
    });
    match (lo, hi) {
        (_, 0 | 1) => "one round per point".to_string(),
        (l, h) if l == h => format!("median of {h} rounds; whiskers: min–max"),
        (l, h) => format!("median of {l}–{h} rounds; whiskers: min–max"),
    }
}

pub(super) fn footnote(root: &Area<'_>, note: &str) -> DrawResult {
    let style = TextStyle::from((FONT, 14).into_font()).color(&RGBColor(110, 110, 110));
    root.draw(&Text::new(note, (10, SIZE.1 as i32 - 14), style))
}

/// Renders with `draw` into a string, then writes it to `path`.
pub(super) fn render(path: &Path, draw: impl FnOnce(&Area<'_>) -> DrawResult) -> Result<(), Error> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let drawn = root
            .fill(&WHITE)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present());
        drawn.map_err(|e| Error::Draw {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
    }
    std::fs::write(path, svg).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}
