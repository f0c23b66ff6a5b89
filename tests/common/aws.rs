//! What the AWS-backend tests share: the moto server scripts/test.sh starts, names of a run's
//! own, and one AWS JSON-protocol call as the SDKs make it.

use serde_json::Value;

/// The moto server's URL; a test without it FAILS, saying how to get one.
pub fn moto() -> String {
    std::env::var("LIGHTBOX_TEST_MOTO_URL").expect(
        "LIGHTBOX_TEST_MOTO_URL is not set: run ./scripts/test.sh, which starts moto_server (pip install 'moto[server]') on a free port",
    )
}

/// A name of this run's own, so the tests can run again against the same server.
pub fn unique(base: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{base}-{:x}{:x}", std::process::id(), nanos)
}

/// One AWS JSON-protocol call (Step Functions, SQS or CloudWatch Logs by its target), signed
/// with a dummy key as moto accepts; fails the test on an error answer.
pub fn call(url: &str, target: &str, body: Value) -> Value {
    let (service, content_type) = if target.starts_with("Logs") {
        ("logs", "application/x-amz-json-1.1")
    } else if target.starts_with("AmazonSQS") {
        ("sqs", "application/x-amz-json-1.0")
    } else {
        ("states", "application/x-amz-json-1.0")
    };
    let r = reqwest::blocking::Client::new()
        .post(url)
        .header("X-Amz-Target", target)
        .header("Content-Type", content_type)
        .header(
            "Authorization",
            format!("AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=00"),
        )
        .body(body.to_string())
        .send()
        .unwrap_or_else(|e| panic!("{target}: {e}"));
    let status = r.status();
    let v: Value = r.json().unwrap_or(Value::Null);
    assert!(status.is_success(), "{target}: {status} {v}");
    v
}

/// Let moto run the state machines it is given (it only records them otherwise).
pub fn run_state_machines(url: &str) {
    let cfg = reqwest::blocking::Client::new()
        .post(format!("{url}/moto-api/config"))
        .json(&serde_json::json!({"stepfunctions": {"execute_state_machine": true}}))
        .send()
        .expect("moto config");
    assert!(cfg.status().is_success());
}

/// A review machine on moto: a callback (`sqs:sendMessage.waitForTaskToken` to a queue of its
/// own) whose message is `body` (with `"token.$": "$$.Task.Token"` in it to carry the token),
/// then Succeed. Returns the machine's ARN.
pub fn sqs_review_machine(url: &str, machine: &str, body: Value) -> String {
    let q = call(url, "AmazonSQS.CreateQueue", serde_json::json!({"QueueName": format!("{machine}-q")}));
    let def = serde_json::json!({"StartAt": "Review", "States": {
        "Review": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                   "Parameters": {"QueueUrl": q["QueueUrl"], "MessageBody": body},
                   "Next": "Done"},
        "Done": {"Type": "Succeed"}}});
    call(
        url,
        "AWSStepFunctions.CreateStateMachine",
        serde_json::json!({"name": machine, "definition": def.to_string(), "roleArn": "arn:aws:iam::123456789012:role/lightbox"}),
    )["stateMachineArn"]
        .as_str()
        .expect("machine arn")
        .to_string()
}
