"""boto3 against `lightbox serve`, as a careless or hostile client: every operation's members
out of AWS's bounds, of the wrong type or of the wrong kind of ARN get AWS's error before
anything runs, and patient data sent in payloads never comes back inside an error message.
LB_PHI is a marker the calling test then looks for in the log and the audit trail."""
import json
import os

from lbtest import REVIEW, client, expect_error, ok, pending_token, raw, wait_status

PHI = os.environ["LB_PHI"]
sfn = client()
sync = client(config={"inject_host_prefix": False})
ROLE = "arn:aws:iam::000000000000:role/radiology"
PASS = json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}})

# ----- roleArn: an IAM role ARN of at most 256 characters --------------------------------
expect_error("ValidationException", sfn.create_state_machine, name="m", definition=PASS, roleArn="arn:aws:iam::000000000000:role/" + "r" * 300)
expect_error("InvalidArn", sfn.create_state_machine, name="m", definition=PASS, roleArn="nope")
expect_error("InvalidArn", sfn.create_state_machine, name="m", definition=PASS,
             roleArn="arn:aws:states:us-east-1:000000000000:stateMachine:x")
sm = sfn.create_state_machine(name="limits", definition=json.dumps(REVIEW), roleArn=ROLE)["stateMachineArn"]
expect_error("InvalidArn", sfn.update_state_machine, stateMachineArn=sm, roleArn="just-a-name")
assert sfn.describe_state_machine(stateMachineArn=sm)["roleArn"] == ROLE
assert [m["name"] for m in sfn.list_state_machines()["stateMachines"]] == ["limits"], "refused creates stored nothing"
ok("roleArn must be an IAM role ARN of at most 256 characters")

# ----- definitions: at most 1,048,576 characters ----------------------------------------
big = json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": "x" * 1_048_600, "End": True}}})
msg = expect_error("ValidationException", sfn.validate_state_machine_definition, definition=big)
assert "'definition'" in msg and "1048576" in msg, msg
expect_error("ValidationException", sfn.create_state_machine, name="big", definition=big, roleArn=ROLE)
ok("a definition over 1 MiB is refused by every operation that takes one")

# ----- input and output: 262,144 bytes of UTF-8, counted as sent --------------------------
padded = "{" + " " * 262_144 + "}"
msg = expect_error("ValidationException", sfn.start_execution, stateMachineArn=sm, name="padded", input=padded)
assert "'input'" in msg and "262144" in msg, msg
wide = json.dumps({"note": "é" * 140_000})  # 140,000 characters, 280,000 bytes
expect_error("ValidationException", sfn.start_execution, stateMachineArn=sm, input=wide)
expect_error("ValidationException", sync.test_state, definition=json.dumps({"Type": "Pass", "End": True}), roleArn=ROLE,
             input=json.dumps({"a": "x" * 262_144}))
assert sfn.list_executions(stateMachineArn=sm)["executions"] == [], "nothing started"
ex = sfn.start_execution(stateMachineArn=sm, name="phi", input=json.dumps({"patient": PHI}))["executionArn"]
tok = pending_token(sfn, ex)
msg = expect_error("ValidationException", sfn.send_task_success, taskToken=tok, output=json.dumps({"patient": PHI, "pad": "x" * 262_144}))
assert PHI not in msg, msg
msg = expect_error("InvalidOutput", sfn.send_task_success, taskToken=tok, output="{" + PHI)
assert PHI not in msg, msg
ok("input and output limits are in bytes as sent; error messages never quote them")

# ----- SendTaskFailure: error and cause are bounded before the token is looked up ----------
msg = expect_error("ValidationException", sfn.send_task_failure, taskToken="ab" * 32, error="E" * 257)
assert "'error'" in msg, msg
msg = expect_error("ValidationException", sfn.send_task_failure, taskToken=tok, error="Review.Rejected", cause=PHI + "c" * 32_768)
assert "'cause'" in msg and PHI not in msg, msg
assert sfn.describe_execution(executionArn=ex)["status"] == "RUNNING", "a refused rejection changed nothing"
expect_error("ValidationException", sfn.send_task_heartbeat, taskToken="t" * 2049)
expect_error("InvalidToken", sfn.send_task_heartbeat, taskToken=tok[:32])
sfn.send_task_failure(taskToken=tok, error="Review.Rejected", cause=f"wrong patient {PHI}")
wait_status(sfn, ex, "FAILED")
ok("SendTaskFailure's error (256) and cause (32,768) are bounded, and a cut token is InvalidToken")

# ----- wrong JSON types are SerializationException, ranges ValidationException -------------
for target, body in [
    ("CreateStateMachine", {"name": "t", "definition": PASS, "tags": "not-a-list"}),
    ("CreateStateMachine", {"name": "t", "definition": PASS, "loggingConfiguration": "ALL"}),
    ("GetExecutionHistory", {"executionArn": ex, "reverseOrder": "true"}),
    ("ListExecutions", {"stateMachineArn": sm, "maxResults": "10"}),
    ("StartExecution", {"stateMachineArn": sm, "input": {"a": 1}}),
]:
    status, b = raw("AWSStepFunctions." + target, body)
    assert status == 400 and b["__type"] == "SerializationException", (target, body, status, b)
for target, body in [
    ("ListStateMachines", {"maxResults": -1}),
    ("ListStateMachines", {"maxResults": 1001}),
    ("ListStateMachines", {"nextToken": ""}),
    ("StopExecution", {"executionArn": ex, "error": "e" * 257}),
    ("DescribeExecution", {"executionArn": "a" * 257}),
    ("RedriveExecution", {"executionArn": ex, "clientToken": "c" * 65}),
]:
    status, b = raw("AWSStepFunctions." + target, body)
    assert status == 400 and b["__type"] == "ValidationException", (target, status, b)
status, b = raw("AWSStepFunctions.ListStateMachines", {"maxResults": 0, "somethingNew": [1, 2, 3]})
assert status == 200, "unknown members are ignored, as AWS ignores them"
ok("wrong types and out-of-range values get AWS's error codes")
print("serve_limits: all passed")
