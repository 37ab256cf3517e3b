//! The one error type of the tool. Every variant names the file it is about,
//! and CSV errors the line too, because the person reading the message has to
//! open that file and fix it: a bare "invalid float" would not say where.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a run stopped. `main` prints it and exits with status 1.
#[derive(Debug)]
pub(crate) enum Error {
    /// A file that exists could not be read, or an SVG could not be written.
    Io { path: PathBuf, source: io::Error },
    /// A CSV file is malformed at `line` (1-based, counting the header).
    Csv {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    /// plotters refused to draw (it reports backend errors as text).
    Draw { path: PathBuf, msg: String },
    /// A well-formed file whose rows cannot make the plot they are for (two
    /// offered rates in a file drawn at one rate): drawing anyway would
    /// mix incomparable rows into one bar.
    Data { path: PathBuf, msg: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Csv { path, line, msg } => write!(f, "{}:{line}: {msg}", path.display()),
            Error::Draw { path, msg } => write!(f, "{}: drawing failed: {msg}", path.display()),
            Error::Data { path, msg } => write!(f, "{}: {msg}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
