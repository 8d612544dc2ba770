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
    /// The segment exists but was made by another layout or program (or its header is damaged).
    BadHeader(String),
    /// Sizes asked of a new ring or store that it cannot have.
    BadOptions(String),
    /// A lease slot number outside the segment's lease table.
    BadSlot { slot: u32, slots: u32 },
    /// Shared memory holds something the protocol never writes (a damaged or hostile
    /// segment): the item is skipped, never trusted.
    Corrupt(String),
    /// A fixture store key that is published already.
    DuplicateKey(String),
    /// A fixture store key longer than an entry can hold.
    KeyTooLong { len: usize, max: usize },
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
            Error::BadHeader(why) => write!(f, "not a usable pytest-mproc segment: {why}"),
            Error::BadOptions(why) => write!(f, "{why}"),
            Error::BadSlot { slot, slots } => write!(f, "lease slot {slot} out of range 0..{slots}"),
            Error::Corrupt(why) => write!(f, "damaged shared memory: {why}"),
            Error::DuplicateKey(key) => write!(f, "fixture store key published twice: {key}"),
            Error::KeyTooLong { len, max } => {
                write!(f, "fixture store key of {len} bytes is longer than the {max} bytes an entry holds")
            }
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
