//! The one error type of the crate: where a query is wrong and what was
//! expected there.

/// A query that could not be parsed.
///
/// `column` is the 1-based position, counted in characters, of the first
/// character that could not be understood (or one past the end of the text
/// when the query stops too early). `message` is one sentence saying what was
/// expected there, so that the error can be shown as is to whoever wrote the
/// query: `column 7: expected a value after "level:"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ParseError {
    /// 1-based character column of the problem.
    pub column: usize,
    /// What went wrong, in one sentence without the column.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(column: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            column,
            message: message.into(),
        }
    }
}
