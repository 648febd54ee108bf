//! Wire recording: every frame received (`> {json}`) and sent (`< {json}`), one per line.
//!
//! The format is what `shared/protocols/validate` reads, so a recording can be validated as
//! is. Recording is off unless [`crate::ServerConfig::record`] or
//! [`crate::ServerConfig::record_in_memory`] asks for it.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Which way a frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server (`>`).
    In,
    /// Server to client (`<`).
    Out,
}

/// A shared, cheap-to-clone recorder. A disabled recorder does nothing.
#[derive(Clone, Default)]
pub struct Recorder {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    file: Option<Mutex<BufWriter<File>>>,
    memory: Option<Mutex<Vec<String>>>,
}

impl Recorder {
    /// A recorder writing to `path` (truncated) and/or keeping lines in memory.
    pub fn new(path: Option<&Path>, in_memory: bool) -> std::io::Result<Self> {
        if path.is_none() && !in_memory {
            return Ok(Recorder { inner: None });
        }
        let file = match path {
            Some(p) => Some(Mutex::new(BufWriter::new(
                OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(true)
                    .open(p)?,
            ))),
            None => None,
        };
        Ok(Recorder {
            inner: Some(Arc::new(Inner {
                file,
                memory: in_memory.then(|| Mutex::new(Vec::new())),
            })),
        })
    }

    /// Whether anything is recorded (lets callers skip formatting).
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Records one frame. Newlines inside a non-JSON frame are escaped so that a frame
    /// stays on one line.
    pub fn record(&self, dir: Direction, frame: &str) {
        let Some(inner) = &self.inner else { return };
        let prefix = match dir {
            Direction::In => '>',
            Direction::Out => '<',
        };
        let body = if frame.contains('\n') {
            frame.replace('\r', "\\r").replace('\n', "\\n")
        } else {
            frame.to_owned()
        };
        let line = format!("{prefix} {body}");
        if let Some(file) = &inner.file {
            if let Ok(mut f) = file.lock() {
                let _ = writeln!(f, "{line}");
                let _ = f.flush();
            }
        }
        if let Some(mem) = &inner.memory {
            if let Ok(mut m) = mem.lock() {
                m.push(line);
            }
        }
    }

    /// Writes a `# note` line (the validator skips it): closes, drops, other facts.
    pub fn note(&self, text: &str) {
        let Some(inner) = &self.inner else { return };
        let line = format!("# {}", text.replace(['\r', '\n'], " "));
        if let Some(file) = &inner.file {
            if let Ok(mut f) = file.lock() {
                let _ = writeln!(f, "{line}");
                let _ = f.flush();
            }
        }
        if let Some(mem) = &inner.memory {
            if let Ok(mut m) = mem.lock() {
                m.push(line);
            }
        }
    }

    /// The lines recorded in memory so far (empty when in-memory recording is off).
    pub fn lines(&self) -> Vec<String> {
        self.inner
            .as_ref()
            .and_then(|i| i.memory.as_ref())
            .and_then(|m| m.lock().ok().map(|m| m.clone()))
            .unwrap_or_default()
    }

    /// Forgets the in-memory lines.
    pub fn clear(&self) {
        if let Some(mem) = self.inner.as_ref().and_then(|i| i.memory.as_ref()) {
            if let Ok(mut m) = mem.lock() {
                m.clear();
            }
        }
    }
}
