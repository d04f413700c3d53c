//! Fatal errors: a run that cannot finish. Row-level problems are not errors but
//! rejects (see `rejects.csv`); these stop the run and publish nothing.

use std::path::Path;

/// Why a run stopped. Every variant names what a user has to look at.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Input(String),
    #[error("{file}:{line}{}: {message}", column.as_ref().map(|c| format!(" column '{c}'")).unwrap_or_default())]
    Data {
        file: String,
        line: u64,
        column: Option<String>,
        message: String,
    },
    #[error("{file}: {message}")]
    Config { file: String, message: String },
    /// A sum or conversion of accruals whose exact result is not a decimal:
    /// what it is about (partner, customer, program, currency) and why.
    #[error("{what}: {cause}: nothing was published")]
    Overflow { what: String, cause: String },
    /// A worker thread failed (a bug): the run cannot be trusted.
    #[error("internal error: {0}: nothing was published")]
    Worker(String),
    /// The `--history` database cannot be used, or refused a close.
    #[error(transparent)]
    History(#[from] crate::history::HistoryError),
    #[error("{count} rows rejected, more than --max-rejects {max}: nothing was published (the first of them are listed above, unless --quiet; `porledger validate --show N` lists them; raise --max-rejects to publish anyway)")]
    TooManyRejects {
        count: u64,
        max: u64,
        /// The first rejected rows, listed before the message.
        samples: Vec<crate::ingest::designations::Reject>,
    },
}

impl Fatal {
    pub fn io(path: &Path, source: std::io::Error) -> Fatal {
        Fatal::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
