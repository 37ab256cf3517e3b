//! Colours, order and number formatting shared by every plot, so that
//! sipshard looks the same in all of them and a reader who learned the
//! colours on the first plot can read the rest without the legend.

use std::cmp::Ordering;

use plotters::style::RGBColor;

/// sipshard: blue.
const SIPSHARD: RGBColor = RGBColor(31, 119, 180);
/// Kamailio, the reference it is compared against: orange.
const KAMAILIO: RGBColor = RGBColor(230, 110, 0);
/// Any other target (a plain UDP relay as a floor, say), in order of
/// appearance: green, purple, brown, pink, olive, teal. None is blue- or
/// orange-like, so they never pass for the two main targets.
const OTHERS: [RGBColor; 6] = [
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
/// The y = x "offered" reference line.
pub(crate) const REFERENCE: RGBColor = RGBColor(128, 128, 128);

fn rank(target: &str) -> u8 {
    match target {
        "sipshard" => 0,
        "kamailio" => 1,
        _ => 2,
    }
}

/// sipshard first, kamailio second, then the rest by name.
pub(crate) fn target_order(a: &str, b: &str) -> Ordering {
    rank(a).cmp(&rank(b)).then_with(|| a.cmp(b))
}

/// The colour of `target`; `others_before` is how many non-main targets
/// precede it in [`target_order`] within the plot, so that two extra targets
/// in one plot get different colours.
pub(crate) fn colour(target: &str, others_before: usize) -> RGBColor {
    match target {
        "sipshard" => SIPSHARD,
        "kamailio" => KAMAILIO,
        _ => OTHERS[others_before % OTHERS.len()],
    }
}

/// Colours for targets listed in [`target_order`].
pub(crate) fn colours<'a>(targets: impl IntoIterator<Item = &'a str>) -> Vec<RGBColor> {
    let mut others = 0;
    targets
        .into_iter()
        .map(|t| {
            let c = colour(t, others);
            if rank(t) == 2 {
                others += 1;
            }
            c
        })
        .collect()
}

/// An axis tick: `25k` instead of `25000.0`, so rates read at a glance.
pub(crate) fn tick(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

/// A value printed on a bar: three significant figures are all a noisy
/// benchmark supports.
pub(crate) fn value(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// At most three decimals, trailing zeros dropped.
fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks() {
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(2500.0), "2.5k");
        assert_eq!(tick(800.0), "800");
        assert_eq!(tick(25000.0), "25k");
        assert_eq!(tick(12500.0), "12.5k");
        assert_eq!(tick(1.5e6), "1.5M");
        assert_eq!(tick(0.01), "0.01");
        assert_eq!(value(312.44), "312");
        assert_eq!(value(4.236), "4.24");
        assert_eq!(value(0.0), "0");
    }

    #[test]
    fn fixed_colours_and_order() {
        let c = colours(["sipshard", "kamailio", "a", "b"]);
        assert_eq!(c[0], SIPSHARD);
        assert_eq!(c[1], KAMAILIO);
        assert_ne!(c[2], c[3]);
        assert_eq!(target_order("relay", "kamailio"), Ordering::Greater);
        assert_eq!(target_order("sipshard", "kamailio"), Ordering::Less);
    }
}
