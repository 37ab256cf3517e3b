//! Reading one benchmark CSV file into a [`Table`].
//!
//! The files are written by our own scripts, so the format is the simplest
//! CSV: a header line naming the columns, then one row per (target, round,
//! load step), comma separated, no quoting. Columns may come in any order,
//! but the set must be exactly the schema the plot expects: an unknown or
//! missing column means the script and this tool disagree, and guessing would
//! draw a wrong plot that looks right.
//!
//! Blank lines and lines starting with `#` are skipped, so a script may note
//! its command line at the top. An empty field is "not measured" (a target
//! that stopped early in a sweep has no latency for the next step); any
//! other field must be a finite number.

use std::path::{Path, PathBuf};

use crate::error::Error;

/// The name of the one text column; every other column is a number.
pub(crate) const TARGET: &str = "target";

/// The rows of one file, with the number columns stored in schema order.
#[derive(Debug)]
pub(crate) struct Table {
    schema: &'static [&'static str],
    rows: Vec<Row>,
}

/// One data line. `values[i]` belongs to `schema[i]`; the slot of the
/// `target` column itself is always `None`.
#[derive(Debug)]
struct Row {
    target: String,
    values: Vec<Option<f64>>,
}

impl Table {
    /// Reads `path`. A file that does not exist is `Ok(None)`, because each
    /// benchmark may be skipped on its own and its plots with it.
    pub(crate) fn read(
        path: &Path,
        schema: &'static [&'static str],
    ) -> Result<Option<Self>, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path, schema).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses the text of a file; `path` only names it in errors.
    pub(crate) fn parse(
        text: &str,
        path: &Path,
        schema: &'static [&'static str],
    ) -> Result<Self, Error> {
        let err = |line: usize, msg: String| Error::Csv {
            path: PathBuf::from(path),
            line,
            msg,
        };
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));

        let Some((header_line, header)) = lines.next() else {
            return Err(err(
                1,
                format!("empty file; expected a header line: {}", schema.join(",")),
            ));
        };
        // For each field position in the file, its index in the schema.
        let mut slots = Vec::with_capacity(schema.len());
        for name in header.split(',').map(str::trim) {
            let Some(slot) = schema.iter().position(|s| *s == name) else {
                return Err(err(
                    header_line,
                    format!("unknown column `{name}`; expected: {}", schema.join(",")),
                ));
            };
            if slots.contains(&slot) {
                return Err(err(header_line, format!("column `{name}` appears twice")));
            }
            slots.push(slot);
        }
        if let Some(missing) = (0..schema.len()).find(|i| !slots.contains(i)) {
            return Err(err(
                header_line,
                format!(
                    "missing column `{}`; expected: {}",
                    schema[missing],
                    schema.join(",")
                ),
            ));
        }

        let mut rows = Vec::new();
        for (line, text) in lines {
            let fields: Vec<&str> = text.split(',').map(str::trim).collect();
            if fields.len() != slots.len() {
                return Err(err(
                    line,
                    format!(
                        "{} fields, but the header has {}",
                        fields.len(),
                        slots.len()
                    ),
                ));
            }
            let mut row = Row {
                target: String::new(),
                values: vec![None; schema.len()],
            };
            for (&slot, field) in slots.iter().zip(&fields) {
                let name = schema[slot];
                if name == TARGET {
                    if field.is_empty() {
                        return Err(err(line, "empty `target`".to_string()));
                    }
                    row.target = (*field).to_string();
                } else if !field.is_empty() {
                    match field.parse::<f64>() {
                        Ok(v) if v.is_finite() => row.values[slot] = Some(v),
                        _ => {
                            return Err(err(
                                line,
                                format!("column `{name}`: `{field}` is not a finite number"),
                            ))
                        }
                    }
                }
            }
            rows.push(row);
        }
        Ok(Table { schema, rows })
    }

    /// True when the file had a header but no data line.
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// `(target, x, y)` for every row where both columns were measured.
    ///
    /// The column names are compile-time constants in `plots.rs`, so a name
    /// outside the schema is a bug there, not bad input; the sample-data test
    /// draws every plot and would fail on it.
    pub(crate) fn pairs<'a>(
        &'a self,
        x: &str,
        y: &str,
    ) -> impl Iterator<Item = (&'a str, f64, f64)> + 'a {
        let (xi, yi) = (self.slot(x), self.slot(y));
        self.rows
            .iter()
            .filter_map(move |r| Some((r.target.as_str(), r.values[xi]?, r.values[yi]?)))
    }

    /// The distinct measured values of column `name`, ascending: what a
    /// plot drawn at one value of a column (one offered rate) checks, so a
    /// file mixing values is an error instead of a silently mixed bar.
    pub(crate) fn distinct(&self, name: &str) -> Vec<f64> {
        let i = self.slot(name);
        let mut out: Vec<f64> = self.rows.iter().filter_map(|r| r.values[i]).collect();
        out.sort_by(f64::total_cmp);
        out.dedup();
        out
    }

    fn slot(&self, name: &str) -> usize {
        self.schema
            .iter()
            .position(|s| *s == name)
            .unwrap_or_else(|| {
                panic!("plots.rs asks for column `{name}`, which is not in its schema")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &[&str] = &["target", "round", "offered_rps", "p99_us"];

    fn parse(text: &str) -> Result<Table, Error> {
        Table::parse(text, Path::new("t.csv"), SCHEMA)
    }

    fn csv_error(text: &str) -> (usize, String) {
        match parse(text) {
            Err(Error::Csv { line, msg, .. }) => (line, msg),
            other => panic!("expected a CSV error, got {other:?}"),
        }
    }

    #[test]
    fn good_file() {
        let t = parse(
            "# made by compare.sh\n\
             target,round,offered_rps,p99_us\n\
             sipshard,1,1000,80.5\r\n\
             \n\
             kamailio, 1 , 1000 ,\n\
             kamailio,2,2000,120\n",
        )
        .unwrap();
        assert!(!t.is_empty());
        let got: Vec<_> = t.pairs("offered_rps", "p99_us").collect();
        // kamailio round 1 has no p99, so it drops out of this pair.
        assert_eq!(
            got,
            vec![("sipshard", 1000.0, 80.5), ("kamailio", 2000.0, 120.0)]
        );
        let rounds: Vec<_> = t.pairs("offered_rps", "round").map(|p| p.2).collect();
        assert_eq!(rounds, vec![1.0, 1.0, 2.0]);
        assert_eq!(t.distinct("offered_rps"), vec![1000.0, 2000.0]);
        assert_eq!(t.distinct("p99_us"), vec![80.5, 120.0]);
    }

    #[test]
    fn columns_in_any_order() {
        let t = parse("p99_us,target,offered_rps,round\n7,relay,10,1\n").unwrap();
        assert_eq!(
            t.pairs("offered_rps", "p99_us").collect::<Vec<_>>(),
            vec![("relay", 10.0, 7.0)]
        );
    }

    #[test]
    fn header_only_is_empty() {
        assert!(parse("target,round,offered_rps,p99_us\n")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn malformed_line_names_its_line() {
        let text = "target,round,offered_rps,p99_us\nsipshard,1,1000,80\nsipshard,1,2000\n";
        let (line, msg) = csv_error(text);
        assert_eq!(line, 3);
        assert!(msg.contains("3 fields"), "{msg}");

        let (line, msg) = csv_error("target,round,offered_rps,p99_us\n\nsipshard,1,abc,80\n");
        assert_eq!(line, 3, "blank lines still count");
        assert!(msg.contains("offered_rps") && msg.contains("abc"), "{msg}");

        let (_, msg) = csv_error("target,round,offered_rps,p99_us\nsipshard,1,NaN,80\n");
        assert!(msg.contains("not a finite number"), "{msg}");

        let (line, msg) = csv_error("target,round,offered_rps,p99_us\n,1,10,80\n");
        assert_eq!(line, 2);
        assert!(msg.contains("target"), "{msg}");
    }

    #[test]
    fn missing_unknown_and_duplicate_columns() {
        let (line, msg) = csv_error("target,round,offered_rps\nsipshard,1,10\n");
        assert_eq!(line, 1);
        assert!(msg.contains("missing column `p99_us`"), "{msg}");

        let (_, msg) = csv_error("target,round,offered_rps,p99_us,p42_us\n");
        assert!(msg.contains("unknown column `p42_us`"), "{msg}");

        let (_, msg) = csv_error("target,round,round,offered_rps,p99_us\n");
        assert!(msg.contains("appears twice"), "{msg}");

        let (line, msg) = csv_error("\n# nothing here\n");
        assert_eq!(line, 1);
        assert!(msg.contains("empty file"), "{msg}");
    }

    #[test]
    fn error_message_has_file_and_line() {
        let e = parse("target,round,offered_rps,p99_us\nx,1,2\n").unwrap_err();
        assert!(e.to_string().starts_with("t.csv:2: "), "{e}");
    }

    #[test]
    fn missing_file_is_none() {
        let path = std::env::temp_dir().join("sipshard-plot-no-such-file.csv");
        assert!(Table::read(&path, SCHEMA).unwrap().is_none());
    }
}
