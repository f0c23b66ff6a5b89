//! The one validation layer for request fields: each operation's members with their JSON
//! type and AWS's length and range constraints (the Step Functions API Reference), checked
//! before an operation runs, so every operation refuses the same way.
//!
//! A member of the wrong JSON type is a `SerializationException`; a string or number out of
//! its bounds is a `ValidationException` in AWS's wording ("N validation errors detected:
//! Value at 'input' failed to satisfy constraint: …"). Unlike AWS, the message never quotes
//! the value: inputs, outputs and causes may hold patient data, and error messages travel
//! into clients' logs. Members not listed are ignored, as AWS ignores unknown members.

use serde_json::Value;

use super::error::ApiError;

/// What a member must be.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A string of `min..=max` characters (`bytes`: UTF-8 bytes, for payloads).
    Str {
        min: usize,
        max: usize,
        bytes: bool,
    },
    Bool,
    Int {
        min: i64,
        max: i64,
    },
    Object,
    List,
}

const fn chars(min: usize, max: usize) -> Kind {
    Kind::Str { min, max, bytes: false }
}
const fn bytes(max: usize) -> Kind {
    Kind::Str { min: 0, max, bytes: true }
}

/// The largest payload (input, output, variables): 256 KiB in UTF-8 bytes.
pub const MAX_PAYLOAD: usize = 262_144;
/// The largest definition, in characters.
pub const MAX_DEFINITION: usize = 1_048_576;

const NAME: Kind = chars(1, 80);
const ARN: Kind = chars(1, 256);
const DEFINITION: Kind = chars(1, MAX_DEFINITION);
const PAYLOAD: Kind = bytes(MAX_PAYLOAD);
const ERROR: Kind = chars(0, 256);
const CAUSE: Kind = chars(0, 32_768);
const TOKEN: Kind = chars(1, 2048);
const NEXT: Kind = chars(1, 1024);
const MAX_RESULTS: Kind = Kind::Int { min: 0, max: 1000 };
const TEXT: Kind = chars(0, 256);
const MAP_RUN_ARN: Kind = chars(1, 2000);
const LIST_NEXT: Kind = chars(1, 3096);
const CLIENT_TOKEN: Kind = chars(1, 64);

/// The members of each operation this server reads or AWS constrains.
fn members(op: &str) -> &'static [(&'static str, Kind)] {
    match op {
        "CreateStateMachine" => &[
            ("name", NAME),
            ("definition", DEFINITION),
            ("roleArn", ARN),
            ("type", TEXT),
            ("loggingConfiguration", Kind::Object),
            ("tracingConfiguration", Kind::Object),
            ("encryptionConfiguration", Kind::Object),
            ("tags", Kind::List),
            ("publish", Kind::Bool),
            ("versionDescription", TEXT),
        ],
        "DescribeStateMachine" | "DeleteStateMachine" => &[("stateMachineArn", ARN), ("includedData", TEXT)],
        "ListStateMachines" => &[("maxResults", MAX_RESULTS), ("nextToken", NEXT)],
        "UpdateStateMachine" => &[
            ("stateMachineArn", ARN),
            ("definition", DEFINITION),
            ("roleArn", ARN),
            ("loggingConfiguration", Kind::Object),
            ("tracingConfiguration", Kind::Object),
            ("encryptionConfiguration", Kind::Object),
            ("publish", Kind::Bool),
            ("versionDescription", TEXT),
        ],
        "StartExecution" | "StartSyncExecution" => {
            &[("stateMachineArn", ARN), ("name", NAME), ("input", PAYLOAD), ("traceHeader", TEXT), ("includedData", TEXT)]
        }
        "DescribeExecution" | "DescribeStateMachineForExecution" => &[("executionArn", ARN), ("includedData", TEXT)],
        "ListExecutions" => &[
            ("stateMachineArn", ARN),
            ("mapRunArn", MAP_RUN_ARN),
            ("statusFilter", TEXT),
            ("redriveFilter", TEXT),
            ("maxResults", MAX_RESULTS),
            ("nextToken", LIST_NEXT),
        ],
        "GetExecutionHistory" => &[
            ("executionArn", ARN),
            ("maxResults", MAX_RESULTS),
            ("reverseOrder", Kind::Bool),
            ("includeExecutionData", Kind::Bool),
            ("nextToken", NEXT),
        ],
        "StopExecution" => &[("executionArn", ARN), ("error", ERROR), ("cause", CAUSE)],
        "RedriveExecution" => &[("executionArn", ARN), ("clientToken", CLIENT_TOKEN)],
        "SendTaskSuccess" => &[("taskToken", TOKEN), ("output", PAYLOAD)],
        "SendTaskFailure" => &[("taskToken", TOKEN), ("error", ERROR), ("cause", CAUSE)],
        "SendTaskHeartbeat" => &[("taskToken", TOKEN)],
        "TestState" => &[
            ("definition", DEFINITION),
            ("roleArn", ARN),
            ("input", PAYLOAD),
            ("variables", PAYLOAD),
            ("stateName", NAME),
            ("inspectionLevel", TEXT),
            ("revealSecrets", Kind::Bool),
        ],
        "ValidateStateMachineDefinition" => &[("definition", DEFINITION), ("type", TEXT), ("severity", TEXT), ("maxResults", MAX_RESULTS)],
        _ => &[],
    }
}

fn type_name(k: Kind) -> &'static str {
    match k {
        Kind::Str { .. } => "a string",
        Kind::Bool => "a boolean",
        Kind::Int { .. } => "an integer",
        Kind::Object => "an object",
        Kind::List => "a list",
    }
}

/// Check `body`'s members for `op`: types first (a `SerializationException`), then every
/// length and range problem together (one `ValidationException` listing them all).
pub fn check(op: &str, body: &Value) -> Result<(), ApiError> {
    let mut problems = vec![];
    for (name, kind) in members(op) {
        let Some(v) = body.get(*name).filter(|v| !v.is_null()) else { continue };
        let type_ok = match kind {
            Kind::Str { .. } => v.is_string(),
            Kind::Bool => v.is_boolean(),
            // A whole number, even a huge or negative one, is of the right type; its range is checked below.
            Kind::Int { .. } => v.as_i64().is_some() || v.as_u64().is_some() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
            Kind::Object => v.is_object(),
            Kind::List => v.is_array(),
        };
        if !type_ok {
            return Err(ApiError::new("SerializationException", format!("Value for '{name}' must be {}", type_name(*kind))));
        }
        match (kind, v) {
            (Kind::Str { min, max, bytes }, Value::String(s)) => {
                let len = if *bytes { s.len() } else { s.chars().count() };
                if len < *min {
                    problems.push(format!(
                        "Value at '{name}' failed to satisfy constraint: Member must have length greater than or equal to {min}"
                    ));
                } else if len > *max {
                    problems.push(format!(
                        "Value at '{name}' failed to satisfy constraint: Member must have length less than or equal to {max}"
                    ));
                }
            }
            (Kind::Int { min, max }, v) => {
                let n = v.as_i64().unwrap_or(if v.as_f64().is_some_and(|f| f < 0.0) { i64::MIN } else { i64::MAX });
                if n < *min {
                    problems.push(format!(
                        "Value at '{name}' failed to satisfy constraint: Member must have value greater than or equal to {min}"
                    ));
                } else if n > *max {
                    problems.push(format!(
                        "Value at '{name}' failed to satisfy constraint: Member must have value less than or equal to {max}"
                    ));
                }
            }
            _ => {}
        }
    }
    match problems.len() {
        0 => Ok(()),
        1 => Err(ApiError::validation(format!("1 validation error detected: {}", problems[0]))),
        n => Err(ApiError::validation(format!("{n} validation errors detected: {}", problems.join("; ")))),
    }
}

/// An IAM role's ARN (`arn:PARTITION:iam::ACCOUNT:role/NAME`), as `roleArn` must be.
pub fn check_role_arn(arn: &str) -> Result<(), ApiError> {
    let p: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = p.len() == 6
        && p[0] == "arn"
        && p[1].starts_with("aws")
        && p[2] == "iam"
        && p[3].is_empty()
        && p[4].len() == 12
        && p[4].bytes().all(|b| b.is_ascii_digit())
        && p[5].strip_prefix("role/").is_some_and(|n| !n.is_empty() && !n.chars().any(|c| c.is_whitespace() || c.is_control()));
    if ok { Ok(()) } else { Err(ApiError::new("InvalidArn", "Invalid Arn: 'Invalid Role Arn: the role must be an IAM role ARN'")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(op: &str, body: Value) -> Option<(&'static str, String)> {
        check(op, &body).err().map(|e| (e.code, e.message))
    }

    #[test]
    fn lengths_are_checked_in_characters_or_bytes_and_listed_together() {
        assert!(code("StartExecution", json!({"stateMachineArn": "a", "name": "é".repeat(80)})).is_none());
        let (c, m) = code("StartExecution", json!({"stateMachineArn": "a", "name": "a".repeat(81)})).unwrap();
        assert_eq!(c, "ValidationException");
        assert!(m.starts_with("1 validation error detected: Value at 'name'"), "{m}");
        // A payload's limit is in bytes: 200,000 two-byte characters is over it.
        let (_, m) = code("StartExecution", json!({"stateMachineArn": "a", "input": format!("\"{}\"", "é".repeat(200_000))})).unwrap();
        assert!(m.contains("'input'") && m.contains("262144"), "{m}");
        let (_, m) = code("SendTaskFailure", json!({"taskToken": "t", "error": "e".repeat(257), "cause": "c".repeat(32_769)})).unwrap();
        assert!(m.starts_with("2 validation errors detected") && m.contains("'error'") && m.contains("'cause'"), "{m}");
        let (_, m) = code("CreateStateMachine", json!({"name": "", "definition": "{}", "roleArn": "r".repeat(257)})).unwrap();
        assert!(m.contains("'name'") && m.contains("'roleArn'"), "{m}");
    }

    #[test]
    fn the_value_is_never_quoted() {
        let secret = format!("SYN-00042 {}", "x".repeat(MAX_PAYLOAD));
        let (_, m) = code("SendTaskSuccess", json!({"taskToken": "t", "output": secret})).unwrap();
        assert!(!m.contains("SYN-00042"), "{m}");
    }

    #[test]
    fn wrong_types_and_ranges() {
        assert_eq!(code("ListStateMachines", json!({"maxResults": "5"})).unwrap().0, "SerializationException");
        assert_eq!(code("GetExecutionHistory", json!({"reverseOrder": "yes"})).unwrap().0, "SerializationException");
        assert_eq!(code("CreateStateMachine", json!({"tags": "x"})).unwrap().0, "SerializationException");
        assert_eq!(code("ListStateMachines", json!({"maxResults": -1})).unwrap().0, "ValidationException");
        assert_eq!(code("ListStateMachines", json!({"maxResults": 1e30})).unwrap().0, "ValidationException");
        assert!(code("ListStateMachines", json!({"maxResults": 0, "extra": [1, 2]})).is_none());
        let (c, m) = code("ListStateMachines", json!({"maxResults": 1001})).unwrap();
        assert!(c == "ValidationException" && m.contains("less than or equal to 1000"), "{m}");
    }

    #[test]
    fn role_arns() {
        assert!(check_role_arn("arn:aws:iam::000000000000:role/radiology").is_ok());
        assert!(check_role_arn("arn:aws-us-gov:iam::123456789012:role/path/r").is_ok());
        for bad in
            ["r", "arn:aws:iam::000000000000:user/x", "arn:aws:iam::0:role/x", "arn:aws:states:::role/x", "arn:aws:iam::000000000000:role/"]
        {
            assert_eq!(check_role_arn(bad).unwrap_err().code, "InvalidArn", "{bad}");
        }
    }
}
