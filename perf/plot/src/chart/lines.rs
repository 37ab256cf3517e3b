//! The line chart: one line per target (and statistic) over a load sweep.

use std::ops::Range;
use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::legend::legend;
use super::{
    footnote, frame, house_style, render, rounds_note, whiskers, Area, DrawResult, LineChart,
};
use crate::error::Error;
use crate::style;

/// Draws `chart` into the SVG file `path`.
pub(crate) fn line_chart(path: &Path, chart: &LineChart<'_>) -> Result<(), Error> {
    let cells = || chart.lines.iter().flat_map(|l| l.points.iter());
    let x_hi = cells().map(|p| p.0).fold(0.0, f64::max);
    let x_hi = if x_hi > 0.0 { x_hi * 1.05 } else { 1.0 };
    let note = rounds_note(cells().map(|p| &p.1));
    render(path, |root| {
        if chart.log_y {
            let lo = cells()
                .map(|p| p.1.min)
                .filter(|v| *v > 0.0)
                .fold(f64::INFINITY, f64::min);
            let hi = cells().map(|p| p.1.max).fold(0.0, f64::max);
            let (lo, hi) = if lo.is_finite() && hi > 0.0 {
                (lo, hi)
            } else {
                (1.0, 10.0)
            };
            let y = (lo / 1.6..hi * 1.6).log_scale();
            draw_lines(root, chart, 0.0..x_hi, y, lo / 1.6, &note)
        } else {
            let mut hi = cells().map(|p| p.1.max).fold(0.0, f64::max);
            if chart.offered_line {
                hi = hi.max(x_hi / 1.05);
            }
            let hi = if hi > 0.0 { hi * 1.08 } else { 1.0 };
            draw_lines(root, chart, 0.0..x_hi, 0.0..hi, f64::NEG_INFINITY, &note)
        }
    })
}

/// The body of [`line_chart`], generic over a linear or a log y axis (two
/// different plotters coordinate types). `y_floor` clamps whiskers that
/// would fall off a log axis.
fn draw_lines<Y>(
    root: &Area<'_>,
    chart: &LineChart<'_>,
    x: Range<f64>,
    y: Y,
    y_floor: f64,
    note: &str,
) -> DrawResult
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let x_hi = x.end;
    let mut cc = frame(root, chart.title).build_cartesian_2d(x, y)?;
    let y_hi = cc.y_range().end;
    let mut mesh = cc.configure_mesh();
    house_style(&mut mesh);
    mesh.x_desc(chart.x_desc)
        .y_desc(chart.y_desc)
        .x_label_formatter(&|v| style::tick(*v))
        .y_label_formatter(&|v| style::tick(*v))
        .draw()?;

    if chart.offered_line {
        let m = x_hi.min(y_hi);
        let grey = style::REFERENCE.stroke_width(2);
        cc.draw_series(DashedLineSeries::new([(0.0, 0.0), (m, m)], 8, 6, grey))?
            .label("offered")
            .legend(move |(x, y)| DashedPathElement::new([(x, y), (x + 24, y)], 6, 4, grey));
    }

    for line in &chart.lines {
        let medians: Vec<(f64, f64)> = line.points.iter().map(|(x, s)| (*x, s.median)).collect();
        let colour = line.colour;
        if line.dashed {
            let stroke = colour.stroke_width(2);
            cc.draw_series(DashedLineSeries::new(medians.clone(), 8, 5, stroke))?
                .label(line.label.as_str())
                .legend(move |(x, y)| DashedPathElement::new([(x, y), (x + 24, y)], 6, 4, stroke));
            cc.draw_series(medians.iter().map(|&p| Circle::new(p, 3, stroke)))?;
        } else {
            let stroke = colour.stroke_width(3);
            cc.draw_series(LineSeries::new(medians.clone(), stroke))?
                .label(line.label.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], stroke));
            // Markers keep a target with a single step visible: one point
            // makes no line.
            cc.draw_series(medians.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
        }
        whiskers(&mut cc, line.points, y_floor, colour.stroke_width(1))?;
    }

    // What the legend must not hide: every line, and the whiskers.
    let mut ink: Vec<Vec<(i32, i32)>> = Vec::new();
    for line in &chart.lines {
        ink.push(
            line.points
                .iter()
                .map(|(x, s)| cc.backend_coord(&(*x, s.median)))
                .collect(),
        );
        for (x, s) in line.points {
            ink.push(vec![
                cc.backend_coord(&(*x, s.min.max(y_floor))),
                cc.backend_coord(&(*x, s.max)),
            ]);
        }
    }
    if chart.offered_line {
        let m = x_hi.min(y_hi);
        ink.push(vec![
            cc.backend_coord(&(0.0, 0.0)),
            cc.backend_coord(&(m, m)),
        ]);
    }
    let entries = chart.lines.len() + usize::from(chart.offered_line);
    legend(&mut cc, &ink, entries)?;
    footnote(root, note)
}
