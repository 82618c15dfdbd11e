//! One error type for the library. Every error that comes from a file carries its path,
//! and where we know them, the line or the key inside it.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A problem located in a file (config, weights, image, note, template).
    #[error("{}: {msg}", path.display())]
    At { path: PathBuf, msg: String },
    /// A problem at a known line of a file.
    #[error("{}:{line}: {msg}", path.display())]
    AtLine { path: PathBuf, line: usize, msg: String },
    /// An I/O failure on a known path.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{0}")]
    Msg(String),
    /// Where a failure happened: the model, the image, the method and the class.
    #[error("{context}: {source}")]
    Context { context: String, source: Box<Error> },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn at(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::At {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
    pub fn at_line(path: impl AsRef<Path>, line: Option<usize>, msg: impl Into<String>) -> Self {
        match line {
            Some(line) => Error::AtLine {
                path: path.as_ref().to_path_buf(),
                line,
                msg: msg.into(),
            },
            None => Error::at(path, msg),
        }
    }
    /// A YAML error of text that starts on line `first_line` of `path`, at the file's line,
    /// with serde_yaml's message (its own position dropped) put into `msg`.
    pub fn yaml(
        path: impl AsRef<Path>,
        first_line: usize,
        e: &serde_yaml::Error,
        msg: impl Fn(&str) -> String,
    ) -> Self {
        let line = e.location().map(|l| l.line() + first_line - 1);
        let text = e.to_string();
        Error::at_line(path, line, msg(text.split(" at line ").next().unwrap_or(&text)))
    }
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
    pub fn msg(msg: impl Into<String>) -> Self {
        Error::Msg(msg.into())
    }
    /// This error, said to have happened in `context` (`model `x` × image `y``, ...).
    pub fn context(self, context: impl Into<String>) -> Self {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }
}

/// Attach a path to errors from I/O calls.
pub trait IoContext<T> {
    fn at_path(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at_path(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

pub fn read_to_string(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).at_path(path)?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
        let col = at - bytes[..at].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
        Error::at_line(
            path,
            Some(line),
            format!(
                "not valid UTF-8: byte 0x{:02X} at column {col} (offset {at}); save the file as UTF-8",
                bytes[at]
            ),
        )
    })
}
