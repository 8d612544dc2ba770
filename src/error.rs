use std::fmt;

/// Everything the core can fail with. Messages are one line and name the problem, because
/// they end up verbatim in pytest usage errors.
#[derive(Debug)]
pub enum Error {
    /// The ring has no free cell (or the blob arena no free space) right now.
    Full,
    /// The ring was closed: no more pushes; pops drain what is left.
    Closed,
    /// A message larger than the blob arena can ever hold.
    TooLarge { len: usize, max: usize },
    /// The segment exists but was made by another layout or program.
    BadHeader(String),
    /// No lease slot left for another process.
    NoLeaseSlot,
    /// Creating, sizing or mapping the segment failed.
    Io { what: String, source: std::io::Error },
    /// Waiting timed out.
    Timeout,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(what: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        Error::Io { what: what.into(), source: source.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Full => write!(f, "ring is full"),
            Error::Closed => write!(f, "ring is closed"),
            Error::TooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the blob arena ({max} bytes usable)")
            }
            Error::BadHeader(why) => write!(f, "not a pytest-mproc ring segment: {why}"),
            Error::NoLeaseSlot => write!(f, "no free lease slot in the ring segment"),
            Error::Io { what, source } => write!(f, "{what}: {source}"),
            Error::Timeout => write!(f, "timed out"),
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
