use std::ffi::CStr;
use std::fmt;
use std::os::raw::c_int;

use crate::sys;

/// A failure status of the C API (`llm_status` other than `LLM_OK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// NULL handle, bad size, bad parameter, ... (`LLM_ERR_INVALID_ARGUMENT`)
    InvalidArgument,
    /// A file cannot be opened, read or written (`LLM_ERR_IO`).
    Io,
    /// Model file malformed, corrupt or of the wrong version (`LLM_ERR_FORMAT`).
    Format,
    /// Valid input this build cannot handle (`LLM_ERR_UNSUPPORTED`).
    Unsupported,
    /// Allocation failed or memory budget exceeded (`LLM_ERR_OUT_OF_MEMORY`).
    OutOfMemory,
    /// The session's context cannot hold more tokens (`LLM_ERR_CONTEXT_FULL`).
    ContextFull,
    /// Output capacity too small (`LLM_ERR_BUFFER_TOO_SMALL`; the wrapper retries these itself).
    BufferTooSmall,
    /// [`CancelHandle::cancel`](crate::CancelHandle::cancel) was called (`LLM_ERR_CANCELLED`).
    Cancelled,
    /// Token id outside the vocabulary (`LLM_ERR_INVALID_TOKEN`).
    InvalidToken,
    /// A bug in libllm (`LLM_ERR_INTERNAL`).
    Internal,
    /// A status this version of the crate does not know (from a newer library).
    Unknown(i32),
}

impl Status {
    /// The status for a raw `llm_status`; `None` for `LLM_OK`.
    pub fn from_raw(status: sys::llm_status) -> Option<Status> {
        Some(match status {
            sys::LLM_OK => return None,
            sys::LLM_ERR_INVALID_ARGUMENT => Status::InvalidArgument,
            sys::LLM_ERR_IO => Status::Io,
            sys::LLM_ERR_FORMAT => Status::Format,
            sys::LLM_ERR_UNSUPPORTED => Status::Unsupported,
            sys::LLM_ERR_OUT_OF_MEMORY => Status::OutOfMemory,
            sys::LLM_ERR_CONTEXT_FULL => Status::ContextFull,
            sys::LLM_ERR_BUFFER_TOO_SMALL => Status::BufferTooSmall,
            sys::LLM_ERR_CANCELLED => Status::Cancelled,
            sys::LLM_ERR_INVALID_TOKEN => Status::InvalidToken,
            sys::LLM_ERR_INTERNAL => Status::Internal,
            other => Status::Unknown(other),
        })
    }

    /// The raw `llm_status` value.
    pub fn to_raw(self) -> sys::llm_status {
        match self {
            Status::InvalidArgument => sys::LLM_ERR_INVALID_ARGUMENT,
            Status::Io => sys::LLM_ERR_IO,
            Status::Format => sys::LLM_ERR_FORMAT,
            Status::Unsupported => sys::LLM_ERR_UNSUPPORTED,
            Status::OutOfMemory => sys::LLM_ERR_OUT_OF_MEMORY,
            Status::ContextFull => sys::LLM_ERR_CONTEXT_FULL,
            Status::BufferTooSmall => sys::LLM_ERR_BUFFER_TOO_SMALL,
            Status::Cancelled => sys::LLM_ERR_CANCELLED,
            Status::InvalidToken => sys::LLM_ERR_INVALID_TOKEN,
            Status::Internal => sys::LLM_ERR_INTERNAL,
            Status::Unknown(v) => v,
        }
    }

    /// The library's name for the status, e.g. `"LLM_ERR_FORMAT"`.
    pub fn name(self) -> &'static str {
        // SAFETY: llm_status_string accepts any value and returns a static,
        // never-NULL string.
        let s = unsafe { CStr::from_ptr(sys::llm_status_string(self.to_raw())) };
        s.to_str().unwrap_or("LLM_ERR_UNKNOWN")
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An error from libllm: the status and the library's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub status: Status,
    pub message: String,
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }

    /// The error for a failed call: `status` plus `llm_last_error()`. Must be
    /// called on the thread that made the call, before any other failing call.
    pub(crate) fn last(status: c_int) -> Error {
        // SAFETY: llm_last_error never returns NULL; the string is copied at once.
        let message = unsafe { CStr::from_ptr(sys::llm_last_error()) }
            .to_string_lossy()
            .into_owned();
        Error {
            status: Status::from_raw(status).unwrap_or(Status::Internal),
            message,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::new(Status::InvalidArgument, message)
    }

    pub fn status(&self) -> Status {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.status)
        } else {
            write!(f, "{} ({})", self.message, self.status)
        }
    }
}

impl std::error::Error for Error {}

/// `Ok(())` for `LLM_OK`, else the error recorded for this thread.
pub(crate) fn check(status: c_int) -> Result<()> {
    if status == sys::LLM_OK {
        Ok(())
    } else {
        Err(Error::last(status))
    }
}
