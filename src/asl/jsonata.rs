// TEMPORARY development placeholder, replaced by the real evaluator before commit.
use serde_json::{Map, Value};
pub struct Bindings<'a> {
    pub states: &'a Value,
    pub variables: &'a Map<String, Value>,
}
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct JsonataError(pub String);
pub fn evaluate(_expr: &str, _b: &Bindings, _r: &mut dyn FnMut() -> u64) -> Result<Option<Value>, JsonataError> {
    Err(JsonataError("unavailable".into()))
}
