//! Aggregation over rounds: every benchmark step is run several times on a
//! shared, noisy machine, so a plot shows the median of the rounds (robust to
//! one disturbed round, unlike the mean) with the min–max spread as whiskers,
//! which tells the reader how far to trust a gap between two lines.

use std::cmp::Ordering;

/// Median, min and max of one (target, x) cell over its rounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Stat {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    /// How many rounds were measured; whiskers are drawn only when > 1.
    pub(crate) rounds: usize,
}

impl Stat {
    /// `None` for no values. Sorts `values` in place (they are a scratch
    /// copy). With an even count the median is the mean of the middle two.
    pub(crate) fn of(values: &mut [f64]) -> Option<Stat> {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let (&min, &max) = (values.first()?, values.last()?);
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Some(Stat {
            median,
            min,
            max,
            rounds: n,
        })
    }
}

/// One target's points, sorted by x.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Series {
    pub(crate) target: String,
    pub(crate) points: Vec<(f64, Stat)>,
}

/// Groups `(target, x, y)` triples by target, then by x (exact equality: the
/// scripts write the same offered rate for every round of a step), and
/// aggregates each group's y values. Targets come out in the order of
/// [`crate::style::target_order`], so every plot lists them alike.
pub(crate) fn by_target<'a>(rows: impl IntoIterator<Item = (&'a str, f64, f64)>) -> Vec<Series> {
    let mut rows: Vec<_> = rows.into_iter().collect();
    rows.sort_by(|a, b| crate::style::target_order(a.0, b.0).then(a.1.total_cmp(&b.1)));
    let mut out: Vec<Series> = Vec::new();
    let mut ys = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let (target, x, _) = rows[i];
        ys.clear();
        while let Some(&(t, xx, y)) = rows.get(i) {
            if t != target || xx.total_cmp(&x) != Ordering::Equal {
                break;
            }
            ys.push(y);
            i += 1;
        }
        // `ys` holds at least rows[i] of the outer loop, so a Stat exists;
        // `if let` keeps that reasoning out of a panic path.
        if let Some(stat) = Stat::of(&mut ys) {
            match out.last_mut() {
                Some(s) if s.target == target => s.points.push((x, stat)),
                _ => out.push(Series {
                    target: target.to_string(),
                    points: vec![(x, stat)],
                }),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        let s = Stat::of(&mut [3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.rounds), (2.0, 1.0, 3.0, 3));
        let s = Stat::of(&mut [4.0, 1.0, 10.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.rounds), (3.0, 1.0, 10.0, 4));
        let s = Stat::of(&mut [7.5]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.rounds), (7.5, 7.5, 7.5, 1));
        assert_eq!(Stat::of(&mut []), None);
    }

    #[test]
    fn grouped_by_target_then_x() {
        let rows = [
            ("kamailio", 2000.0, 9.0),
            ("sipshard", 1000.0, 1.0),
            ("relay", 1000.0, 5.0),
            ("sipshard", 2000.0, 4.0),
            ("sipshard", 1000.0, 3.0),
            ("kamailio", 1000.0, 6.0),
            ("sipshard", 1000.0, 2.0),
        ];
        let series = by_target(rows);
        let names: Vec<_> = series.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(names, ["sipshard", "kamailio", "relay"]);
        let sip = &series[0].points;
        assert_eq!(sip.len(), 2);
        assert_eq!(sip[0].0, 1000.0);
        assert_eq!(
            (sip[0].1.median, sip[0].1.min, sip[0].1.max),
            (2.0, 1.0, 3.0)
        );
        assert_eq!((sip[1].0, sip[1].1.rounds), (2000.0, 1));
        let kam: Vec<_> = series[1].points.iter().map(|p| p.0).collect();
        assert_eq!(kam, [1000.0, 2000.0]);
        assert_eq!(series[2].points.len(), 1);
    }

    #[test]
    fn empty_input() {
        assert!(by_target(std::iter::empty()).is_empty());
    }
}
