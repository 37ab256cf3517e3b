//! Legend placement. plotters draws the legend where it is told; this picks
//! the corner where it hides the least of the data.

use plotters::coord::ranged1d::Ranged;
use plotters::prelude::*;

use super::{DrawResult, FONT};

/// Draws the legend in the plot corner that hides the least of `ink`
/// (polylines in pixels), trying upper left, upper right, lower right, lower
/// left in turn: no fixed corner is free in every plot (a CPU-cost line
/// falls from the upper left, a latency line climbs to the upper right).
pub(super) fn legend<'a, X, Y>(
    cc: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    ink: &[Vec<(i32, i32)>],
    entries: usize,
) -> DrawResult
where
    X: Ranged,
    Y: Ranged,
{
    let (xs, ys) = cc.plotting_area().get_pixel_range();
    // The legend box, roughly: the widest label ("kamailio p99") plus its
    // sample line, and one row per entry at the 17-point label font.
    let (w, h) = (190, 12 + 21 * entries as i32);
    let corners = [
        (SeriesLabelPosition::UpperLeft, xs.start, ys.start),
        (SeriesLabelPosition::UpperRight, xs.end - w, ys.start),
        (SeriesLabelPosition::LowerRight, xs.end - w, ys.end - h),
        (SeriesLabelPosition::LowerLeft, xs.start, ys.end - h),
    ];
    let hidden = |x0: i32, y0: i32| {
        let inside = |(x, y): (f64, f64)| {
            (x0 as f64..=(x0 + w) as f64).contains(&x) && (y0 as f64..=(y0 + h) as f64).contains(&y)
        };
        // Sample each segment every few pixels, so a line that merely
        // crosses the box counts, not only its markers.
        let mut n = 0;
        for line in ink {
            for seg in line.windows(2) {
                let (a, b) = (
                    (seg[0].0 as f64, seg[0].1 as f64),
                    (seg[1].0 as f64, seg[1].1 as f64),
                );
                let steps = ((b.0 - a.0).hypot(b.1 - a.1) / 4.0).ceil().max(1.0) as usize;
                n += (0..=steps)
                    .map(|k| k as f64 / steps as f64)
                    .filter(|t| inside((a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t)))
                    .count();
            }
            if let [p] = line.as_slice() {
                n += usize::from(inside((p.0 as f64, p.1 as f64)));
            }
        }
        n
    };
    let best = corners
        .into_iter()
        .min_by_key(|(_, x0, y0)| hidden(*x0, *y0));
    let at = best.map_or(SeriesLabelPosition::UpperLeft, |c| c.0);
    cc.configure_series_labels()
        .position(at)
        .label_font((FONT, 17))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .draw()
}
