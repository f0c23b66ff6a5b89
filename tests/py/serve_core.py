"""boto3 against `lightbox serve`: the state machine and execution operations, task tokens,
redrive and stop, error codes, and pagination."""
import json
import time

from lbtest import REVIEW, client, expect_error, ok, pending_token, raw, wait_status

sfn = client()
ROLE = "arn:aws:iam::000000000000:role/radiology"

# ----- state machines ---------------------------------------------------------
review = sfn.create_state_machine(name="review", definition=json.dumps(REVIEW), roleArn=ROLE)
sm = review["stateMachineArn"]
assert sm == "arn:aws:states:us-east-1:000000000000:stateMachine:review", sm
assert hasattr(review["creationDate"], "year"), "creationDate must parse as a date (epoch seconds)"
again = sfn.create_state_machine(name="review", definition=json.dumps(REVIEW), roleArn=ROLE)
assert again["stateMachineArn"] == sm and again["creationDate"] == review["creationDate"], "the same create is idempotent"
expect_error("StateMachineAlreadyExists", sfn.create_state_machine, name="review",
             definition=json.dumps({"StartAt": "X", "States": {"X": {"Type": "Succeed"}}}), roleArn=ROLE)
d = sfn.describe_state_machine(stateMachineArn=sm)
assert d["name"] == "review" and d["status"] == "ACTIVE" and d["type"] == "STANDARD" and d["roleArn"] == ROLE
assert json.loads(d["definition"]) == REVIEW
ok("create and describe a state machine")

msg = expect_error("InvalidDefinition", sfn.create_state_machine, name="broken",
                   definition=json.dumps({"StartAt": "Nope", "States": {"A": {"Type": "Pass", "End": True}}}), roleArn=ROLE)
assert "Nope" in msg, msg
expect_error("InvalidDefinition", sfn.create_state_machine, name="broken", definition="{not json", roleArn=ROLE)
expect_error("InvalidName", sfn.create_state_machine, name="bad name", definition=json.dumps(REVIEW), roleArn=ROLE)
expect_error("InvalidArn", sfn.describe_state_machine, stateMachineArn="review")
expect_error("StateMachineDoesNotExist", sfn.describe_state_machine,
             stateMachineArn="arn:aws:states:us-east-1:000000000000:stateMachine:nope")
ok("state machine errors")

for i in range(5):
    sfn.create_state_machine(name=f"page-{i}", definition=json.dumps(REVIEW), roleArn=ROLE)
names, token, pages = [], None, 0
while True:
    kw = {"maxResults": 2}
    if token:
        kw["nextToken"] = token
    r = sfn.list_state_machines(**kw)
    pages += 1
    assert len(r["stateMachines"]) <= 2
    names += [m["name"] for m in r["stateMachines"]]
    token = r.get("nextToken")
    if not token:
        break
assert names == sorted(names) and set(names) == {"review"} | {f"page-{i}" for i in range(5)}, names
assert pages == 3, pages
first = sfn.list_state_machines(maxResults=2)["nextToken"]
tampered = first[:-2] + ("00" if first[-2:] != "00" else "11")
expect_error("InvalidToken", sfn.list_state_machines, maxResults=2, nextToken=tampered)
expect_error("InvalidToken", sfn.list_state_machines, maxResults=2, nextToken="garbage")
ok("list state machines, paged; a tampered nextToken is refused")

# ----- executions ---------------------------------------------------------------
e1 = sfn.start_execution(stateMachineArn=sm, name="study-1", input='{"accession": "A1"}')
assert e1["executionArn"].endswith(":execution:review:study-1"), e1
same = sfn.start_execution(stateMachineArn=sm, name="study-1", input='{"accession": "A1"}')
assert same["executionArn"] == e1["executionArn"], "same name and input while running is idempotent"
expect_error("ExecutionAlreadyExists", sfn.start_execution, stateMachineArn=sm, name="study-1", input='{"accession": "B"}')
expect_error("InvalidExecutionInput", sfn.start_execution, stateMachineArn=sm, name="bad-input", input="{nope")
expect_error("InvalidName", sfn.start_execution, stateMachineArn=sm, name="has space", input="{}")
expect_error("StateMachineDoesNotExist", sfn.start_execution,
             stateMachineArn="arn:aws:states:us-east-1:000000000000:stateMachine:nope", input="{}")
d = sfn.describe_execution(executionArn=e1["executionArn"])
assert d["status"] == "RUNNING" and json.loads(d["input"]) == {"accession": "A1"} and d["name"] == "study-1"
assert d["stateMachineArn"] == sm and d["redriveStatus"] == "NOT_REDRIVABLE" and "stopDate" not in d
expect_error("ExecutionDoesNotExist", sfn.describe_execution,
             executionArn="arn:aws:states:us-east-1:000000000000:execution:review:nope")
expect_error("InvalidArn", sfn.describe_execution, executionArn="study-1")
ok("start (idempotent) and describe executions, and their errors")

# Approve: SendTaskSuccess with the token from the history.
tok = pending_token(sfn, e1["executionArn"])
assert len(tok) == 64
sfn.send_task_heartbeat(taskToken=tok)
sfn.send_task_success(taskToken=tok, output='{"approved": true}')
d = wait_status(sfn, e1["executionArn"], "SUCCEEDED")
assert json.loads(d["output"]) == {"approved": True}, d["output"]
assert d["stopDate"] >= d["startDate"]
expect_error("TaskTimedOut", sfn.send_task_success, taskToken=tok, output="{}")
expect_error("TaskTimedOut", sfn.send_task_heartbeat, taskToken=tok)
expect_error("TaskDoesNotExist", sfn.send_task_success, taskToken="ab" * 32, output="{}")
expect_error("InvalidToken", sfn.send_task_failure, taskToken="not-a-token")
ok("heartbeat and approve a task; answering it again is TaskTimedOut")

# Reject: the error and the cause are kept (moto drops the cause).
e2 = sfn.start_execution(stateMachineArn=sm, name="study-2", input="{}")
tok2 = pending_token(sfn, e2["executionArn"])
e2_out = expect_error("InvalidOutput", sfn.send_task_success, taskToken=tok2, output="{not json")
sfn.send_task_failure(taskToken=tok2, error="Review.Rejected", cause="motion artefact on series 3")
d = wait_status(sfn, e2["executionArn"], "FAILED")
assert d["error"] == "Review.Rejected" and d["cause"] == "motion artefact on series 3", d
assert d["redriveStatus"] == "REDRIVABLE", d
hist = sfn.get_execution_history(executionArn=e2["executionArn"])["events"]
failed = [e for e in hist if e["type"] == "TaskFailed"]
assert failed and failed[0]["taskFailedEventDetails"]["cause"] == "motion artefact on series 3", failed
ok("reject a task: error and cause kept in the execution and its history")

# Redrive the rejected execution: it waits at the review again, then succeeds.
r = sfn.redrive_execution(executionArn=e2["executionArn"])
assert hasattr(r["redriveDate"], "year")
d = sfn.describe_execution(executionArn=e2["executionArn"])
assert d["status"] == "RUNNING" and d["redriveCount"] == 1, d
tok3 = pending_token(sfn, e2["executionArn"])
assert tok3 != tok2
sfn.send_task_success(taskToken=tok3, output='{"approved": "second look"}')
d = wait_status(sfn, e2["executionArn"], "SUCCEEDED")
assert d["redriveCount"] == 1 and "redriveDate" in d
expect_error("ExecutionNotRedrivable", sfn.redrive_execution, executionArn=e2["executionArn"])
assert any(e["type"] == "ExecutionRedriven" for e in sfn.get_execution_history(executionArn=e2["executionArn"])["events"])
ok("redrive a failed execution")

# Stop an execution waiting for a token (moto leaves it running).
e3 = sfn.start_execution(stateMachineArn=sm, name="study-3", input="{}")
tok4 = pending_token(sfn, e3["executionArn"])
s = sfn.stop_execution(executionArn=e3["executionArn"], error="Operator.Cancelled", cause="duplicate order")
assert hasattr(s["stopDate"], "year")
d = sfn.describe_execution(executionArn=e3["executionArn"])
assert d["status"] == "ABORTED" and d.get("error") == "Operator.Cancelled" and d.get("cause") == "duplicate order", d
expect_error("TaskTimedOut", sfn.send_task_success, taskToken=tok4, output="{}")
again = sfn.stop_execution(executionArn=e3["executionArn"])
assert again["stopDate"] == s["stopDate"], "stopping a stopped execution changes nothing"
ok("stop an execution waiting for a token")

# ListExecutions: filters and pages (newest first).
for i in range(4):
    sfn.start_execution(stateMachineArn=sm, name=f"bulk-{i}", input="{}")
    time.sleep(0.005)
running = sfn.list_executions(stateMachineArn=sm, statusFilter="RUNNING")["executions"]
assert {e["name"] for e in running} == {f"bulk-{i}" for i in range(4)}, [e["name"] for e in running]
assert all(e["status"] == "RUNNING" and "stopDate" not in e for e in running)
seen, token = [], None
while True:
    kw = {"stateMachineArn": sm, "maxResults": 3}
    if token:
        kw["nextToken"] = token
    r = sfn.list_executions(**kw)
    seen += r["executions"]
    token = r.get("nextToken")
    if not token:
        break
assert len(seen) == 7 and len({e["executionArn"] for e in seen}) == 7, [e["name"] for e in seen]
starts = [e["startDate"] for e in seen]
assert starts == sorted(starts, reverse=True), "newest first"
redriven = sfn.list_executions(stateMachineArn=sm, redriveFilter="REDRIVEN")["executions"]
assert [e["name"] for e in redriven] == ["study-2"], redriven
not_redriven = sfn.list_executions(stateMachineArn=sm, redriveFilter="NOT_REDRIVEN")["executions"]
assert "study-2" not in [e["name"] for e in not_redriven] and len(not_redriven) == 6
tok_p = sfn.list_executions(stateMachineArn=sm, maxResults=3)["nextToken"]
expect_error("InvalidToken", sfn.list_executions, stateMachineArn=sm, statusFilter="RUNNING", maxResults=3, nextToken=tok_p)
expect_error("StateMachineDoesNotExist", sfn.list_executions,
             stateMachineArn="arn:aws:states:us-east-1:000000000000:stateMachine:nope")
ok("list executions: status and redrive filters, pages; a token from another request is refused")

# GetExecutionHistory: forward, reverse, without data, in pages.
arn1 = e1["executionArn"]
all_events = sfn.get_execution_history(executionArn=arn1)["events"]
ids = [e["id"] for e in all_events]
assert ids == list(range(1, len(ids) + 1)) and all_events[0]["type"] == "ExecutionStarted"
assert all_events[-1]["type"] == "ExecutionSucceeded"
assert all_events[1]["previousEventId"] == 1
rev = sfn.get_execution_history(executionArn=arn1, reverseOrder=True)["events"]
assert [e["id"] for e in rev] == ids[::-1]
bare = sfn.get_execution_history(executionArn=arn1, includeExecutionData=False)["events"]
assert "input" not in bare[0]["executionStartedEventDetails"], bare[0]
assert "input" in all_events[0]["executionStartedEventDetails"]
paged, token = [], None
while True:
    kw = {"executionArn": arn1, "maxResults": 2, "reverseOrder": True}
    if token:
        kw["nextToken"] = token
    r = sfn.get_execution_history(**kw)
    paged += [e["id"] for e in r["events"]]
    token = r.get("nextToken")
    if not token:
        break
assert paged == ids[::-1], paged
ok("execution history: forward, reverse, without data, paged")

# ----- the engine loop runs timers --------------------------------------------
wait_def = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
                                       "Done": {"Type": "Pass", "Result": "waited", "End": True}}}
w = sfn.create_state_machine(name="waiter", definition=json.dumps(wait_def), roleArn=ROLE)
we = sfn.start_execution(stateMachineArn=w["stateMachineArn"], input="{}")
assert sfn.describe_execution(executionArn=we["executionArn"])["status"] == "RUNNING"
d = wait_status(sfn, we["executionArn"], "SUCCEEDED", timeout=10)
assert json.loads(d["output"]) == "waited"
ok("a Wait state fires on the server's engine loop")

# ----- update, definitions, delete ----------------------------------------------
old = sfn.describe_state_machine_for_execution(executionArn=arn1)
assert json.loads(old["definition"]) == REVIEW and old["name"] == "review"
new_def = {"StartAt": "Only", "States": {"Only": {"Type": "Pass", "End": True}}}
u = sfn.update_state_machine(stateMachineArn=sm, definition=json.dumps(new_def))
assert hasattr(u["updateDate"], "year")
assert json.loads(sfn.describe_state_machine(stateMachineArn=sm)["definition"]) == new_def
assert json.loads(sfn.describe_state_machine_for_execution(executionArn=arn1)["definition"]) == REVIEW, \
    "an execution keeps the definition it started with"
expect_error("InvalidDefinition", sfn.update_state_machine, stateMachineArn=sm, definition='{"StartAt": 1}')
ok("update a state machine; executions keep their definition")

v = sfn.validate_state_machine_definition(definition=json.dumps(REVIEW))
assert v["result"] == "OK" and v["diagnostics"] == [], v
v = sfn.validate_state_machine_definition(definition=json.dumps({"StartAt": "Z", "States": {"A": {"Type": "Pass"}}}))
assert v["result"] == "FAIL" and v["diagnostics"] and all(x["severity"] == "ERROR" for x in v["diagnostics"]), v
ok("validate definitions")

# TestState and StartSyncExecution have a "sync-" host prefix on AWS: a local endpoint needs it off.
sync = client(config={"inject_host_prefix": False})
t = sync.test_state(definition=json.dumps({"Type": "Pass", "Parameters": {"x.$": "$.a"}, "End": True}),
                   roleArn=ROLE, input='{"a": 5}')
assert t["status"] == "SUCCEEDED" and json.loads(t["output"]) == {"x": 5}, t
ok("TestState")

express = sfn.create_state_machine(name="fast", type="EXPRESS", roleArn=ROLE,
                                   definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": {"ok": 1}, "End": True}}}))
r = sync.start_sync_execution(stateMachineArn=express["stateMachineArn"], input='{"a": 1}')
assert r["status"] == "SUCCEEDED" and json.loads(r["output"]) == {"ok": 1}, r
expect_error("StateMachineTypeNotSupported", sync.start_sync_execution, stateMachineArn=sm, input="{}")
ok("StartSyncExecution on an EXPRESS machine")

sfn.delete_state_machine(stateMachineArn=w["stateMachineArn"])
expect_error("StateMachineDoesNotExist", sfn.describe_state_machine, stateMachineArn=w["stateMachineArn"])
sfn.delete_state_machine(stateMachineArn=w["stateMachineArn"])
assert sfn.describe_execution(executionArn=we["executionArn"])["status"] == "SUCCEEDED"
ok("delete a state machine (again: still fine); its executions remain")

# ----- the protocol itself ----------------------------------------------------
status, body = raw("AWSStepFunctions.NoSuchThing", {})
assert status == 400 and body["__type"] == "UnknownOperationException", (status, body)
status, body = raw("AWSStepFunctions.ListStateMachines", b"{not json")
assert status == 400 and body["__type"] == "SerializationException", (status, body)
status, body = raw("AWSStepFunctions.ListStateMachines", {"maxResults": 5000})
assert status == 400 and body["__type"] == "ValidationException", (status, body)
status, body = raw("AWSStepFunctions.DescribeExecution", {})
assert status == 400 and body["__type"] == "ValidationException", (status, body)
status, body = raw("AWSStepFunctions.ListExecutions", {"stateMachineArn": sm, "statusFilter": "BOGUS"})
assert status == 400 and body["__type"] == "ValidationException", (status, body)
ok("unknown operations, bad JSON and invalid parameters get AWS's error shapes")
print("serve_core: all passed")
