//! What went wrong in a config, in one sentence that names the file (or the `--set`), the key,
//! the value and what was expected.

use std::fmt;
use std::path::PathBuf;

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A config file (or text read as one, named by this path).
    File(PathBuf),
    /// `--set KEY=VALUE` on the command line, as given.
    Set { key: String, value: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "config {}", path.display()),
            Origin::Set { key, value } => {
                // Control characters (a newline) would break the one-line message: escape.
                if key.chars().chain(value.chars()).any(char::is_control) {
                    write!(f, "--set {key:?}={value:?}")
                } else {
                    write!(f, "--set {key}={value}")
                }
            }
        }
    }
}

/// A config that cannot be used. Every variant prints one line; only [`ConfigError::Read`]
/// has a `source()` (the OS error), which its own text does not repeat.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not TOML (`line` and `column` count from 1).
    #[error("{origin}: line {line}, column {column}: {message}")]
    Syntax {
        origin: Origin,
        line: usize,
        column: usize,
        message: String,
    },
    /// A key the service does not know (a typo, or a key of another version).
    #[error("{origin}: unknown key `{key}` (known: {known})")]
    UnknownKey {
        origin: Origin,
        /// The dotted key, e.g. `audio.sourse`.
        key: String,
        /// The known keys of the same table, comma-separated.
        known: String,
    },
    /// A value of the wrong type or out of its range.
    #[error("{}", InvalidText { origin, key, value, expected })]
    Invalid {
        origin: Origin,
        /// The dotted key, e.g. `motion.chunk_frames`.
        key: String,
        /// The value as written (TOML notation, strings quoted).
        value: String,
        /// What the key takes, e.g. `an integer >= 1`.
        expected: String,
    },
    /// A `--set` argument that is not `KEY=VALUE`.
    #[error("--set {arg:?}: expected KEY=VALUE, e.g. motion.chunk_frames=6")]
    BadSet { arg: String },
    /// The settings structs refused a table that passed the key check (serde's message); the
    /// key check is meant to catch every such case first with a better sentence.
    #[error("{origin}: {message}")]
    Schema { origin: Origin, message: String },
}

/// `config F: key = value: expected …`, or `--set key=value: expected …` (the value is in
/// the origin already).
struct InvalidText<'a> {
    origin: &'a Origin,
    key: &'a str,
    value: &'a str,
    expected: &'a str,
}

impl fmt::Display for InvalidText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.origin {
            Origin::Set { key, .. } if key == self.key => {
                write!(f, "{}: expected {}", self.origin, self.expected)
            }
            _ => write!(
                f,
                "{}: {} = {}: expected {}",
                self.origin, self.key, self.value, self.expected
            ),
        }
    }
}

impl ConfigError {
    /// Where the offending text came from (`None` for a file that could not be read and a
    /// malformed `--set`).
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            ConfigError::Syntax { origin, .. }
            | ConfigError::UnknownKey { origin, .. }
            | ConfigError::Invalid { origin, .. }
            | ConfigError::Schema { origin, .. } => Some(origin),
            ConfigError::Read { .. } | ConfigError::BadSet { .. } => None,
        }
    }
}
