//! The one error type of the Step Functions API as `lightbox serve` answers it; the operations
//! (`api`) and the member checks (`fields`) both speak it.

use serde_json::{Value, json};

/// An error in AWS's shape: `{"__type": code, "message": message}` with an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
    pub status: u16,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), status: 400 }
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError { code: "InternalFailure", message: message.into(), status: 500 }
    }
    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new("ValidationException", message)
    }
    pub fn to_json(&self) -> Value {
        json!({"__type": self.code, "message": self.message})
    }
}
