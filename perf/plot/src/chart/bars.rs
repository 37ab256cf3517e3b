//! The bar chart: a bar per target, grouped by an x value (user count,
//! transport code).

use std::ops::Range;
use std::path::Path;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::legend::legend;
use super::{footnote, frame, house_style, render, rounds_note, whiskers, BarChart, FONT};
use crate::error::Error;
use crate::stats::Stat;
use crate::style;

/// Draws `chart` into the SVG file `path`.
pub(crate) fn bar_chart(path: &Path, chart: &BarChart<'_>) -> Result<(), Error> {
    let mut groups: Vec<f64> = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    groups.sort_by(f64::total_cmp);
    groups.dedup();
    let cells = || chart.series.iter().flat_map(|s| s.points.iter());
    let note = rounds_note(cells().map(|p| &p.1));
    let y_hi = cells().map(|p| p.1.max).fold(0.0, f64::max);
    // Head room for the value printed above the tallest whisker.
    let y_hi = if y_hi > 0.0 { y_hi * 1.18 } else { 1.0 };

    // Group g spans x in [g, g+1); its middle 80% is split into one slot per
    // target, so a target keeps its slot (and gap) in every group.
    let slot = 0.8 / chart.series.len().max(1) as f64;
    let centre = |g: usize, i: usize| g as f64 + 0.1 + slot * (i as f64 + 0.5);
    let (ticks, x_desc): (Vec<(f64, String)>, &str) = if groups.len() == 1 {
        let t = chart
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| (centre(0, i), s.target.clone()));
        (t.collect(), "target")
    } else {
        let t = groups
            .iter()
            .enumerate()
            .map(|(g, v)| (g as f64 + 0.5, (chart.group_label)(*v)));
        (t.collect(), chart.group_desc)
    };
    let colours = style::colours(chart.series.iter().map(|s| s.target.as_str()));

    render(path, |root| {
        let x = Ticks {
            range: (0.0..groups.len().max(1) as f64).into(),
            at: ticks.iter().map(|t| t.0).collect(),
        };
        let mut cc = frame(root, chart.title).build_cartesian_2d(x, 0.0..y_hi)?;
        let label_of = |v: &f64| {
            let nearest = ticks
                .iter()
                .min_by(|a, b| (a.0 - v).abs().total_cmp(&(b.0 - v).abs()));
            nearest.map(|t| t.1.clone()).unwrap_or_default()
        };
        let mut mesh = cc.configure_mesh();
        house_style(&mut mesh);
        mesh.disable_x_mesh()
            .x_desc(x_desc)
            .y_desc(chart.y_desc)
            .x_label_formatter(&label_of)
            .y_label_formatter(&|v| style::tick(*v))
            .draw()?;

        let half = slot * 0.35;
        // What the legend must not hide: each bar, and the value above it.
        let mut ink: Vec<Vec<(i32, i32)>> = Vec::new();
        let text =
            TextStyle::from((FONT, 16).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
        for (i, (series, &colour)) in chart.series.iter().zip(&colours).enumerate() {
            let bars = series.points.iter().filter_map(|(v, s)| {
                let g = groups.iter().position(|x| x == v)?;
                Some((centre(g, i), *s))
            });
            let bars: Vec<(f64, Stat)> = bars.collect();
            cc.draw_series(bars.iter().map(|(c, s)| {
                Rectangle::new([(c - half, 0.0), (c + half, s.median)], colour.filled())
            }))?
            .label(series.target.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], colour.filled()));
            whiskers(&mut cc, &bars, f64::NEG_INFINITY, BLACK.stroke_width(1))?;
            for (c, s) in &bars {
                for x in [c - half, *c, c + half] {
                    let (px, top) = cc.backend_coord(&(x, s.max));
                    let (_, bottom) = cc.backend_coord(&(x, 0.0));
                    // 22 px: the printed value's line above the bar.
                    ink.push(vec![(px, bottom), (px, top - 22)]);
                }
            }
            cc.draw_series(bars.iter().map(|(c, s)| {
                let label = format!("{} {}", style::value(s.median), chart.unit);
                EmptyElement::at((*c, s.max)) + Text::new(label, (0, -5), text.clone())
            }))?;
        }
        legend(&mut cc, &ink, chart.series.len())?;
        footnote(root, &note)
    })
}

/// An f64 axis with ticks exactly at `at` (bar or group centres), where a
/// plain f64 axis puts them at round numbers. plotters' own `with_key_points`
/// does this too, but its f64 flavour cannot take a label formatter.
struct Ticks {
    range: RangedCoordf64,
    at: Vec<f64>,
}

impl Ranged for Ticks {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.range.map(value, limit)
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.at.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.range()
    }
}
