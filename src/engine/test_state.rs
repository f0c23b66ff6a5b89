//! The AWS TestState API: run one state with its input processing, mocks and inspection data.
use serde_json::Value;
pub fn run(_definition: &str, _input: &str, _args: &Value) -> Result<Value, String> {
    Err("TestState is not implemented yet".into())
}
