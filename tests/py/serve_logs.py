"""CloudWatch Logs FilterLogEvents against `lightbox serve`, for a state machine created with
a loggingConfiguration (level ALL): the execution's events in Step Functions' log format."""
import json

from lbtest import REVIEW, client, expect_error, ok, pending_token

sfn = client()
logs = client("logs")
GROUP = "/aws/vendedlogs/states/review-logs"
cfg = {"level": "ALL", "includeExecutionData": True,
       "destinations": [{"cloudWatchLogsLogGroup": {"logGroupArn": f"arn:aws:logs:us-east-1:000000000000:log-group:{GROUP}:*"}}]}
sm = sfn.create_state_machine(name="logged", definition=json.dumps(REVIEW), roleArn="arn:aws:iam::000000000000:role/r",
                              loggingConfiguration=cfg)["stateMachineArn"]
assert sfn.describe_state_machine(stateMachineArn=sm)["loggingConfiguration"]["level"] == "ALL"
quiet = sfn.create_state_machine(name="quiet", definition=json.dumps(REVIEW), roleArn="arn:aws:iam::000000000000:role/r")
sfn.start_execution(stateMachineArn=quiet["stateMachineArn"], input="{}")
ex = sfn.start_execution(stateMachineArn=sm, name="l1", input='{"accession": "A9"}')["executionArn"]
sfn.send_task_failure(taskToken=pending_token(sfn, ex), error="Review.Rejected", cause="blurred")

events = logs.filter_log_events(logGroupName=GROUP)["events"]
history = sfn.get_execution_history(executionArn=ex)["events"]
assert len(events) == len(history), (len(events), len(history))
msgs = [json.loads(e["message"]) for e in events]
assert [m["type"] for m in msgs] == [h["type"] for h in history]
first = msgs[0]
assert first["id"] == "1" and first["previous_event_id"] == "0" and first["execution_arn"] == ex, first
assert json.loads(first["details"]["input"]) == {"accession": "A9"}
assert int(first["event_timestamp"]) == events[0]["timestamp"]
failed = [m for m in msgs if m["type"] == "TaskFailed"][0]
assert failed["details"]["cause"] == "blurred"
assert all(e["logStreamName"].startswith("states/logged/") for e in events)
ok("every event of a logged machine's execution, in Step Functions' log format")

later = logs.filter_log_events(logGroupName=GROUP, startTime=events[-1]["timestamp"] + 1)["events"]
assert later == [], later
paged, token = [], None
while True:
    kw = {"logGroupName": GROUP, "limit": 3}
    if token:
        kw["nextToken"] = token
    r = logs.filter_log_events(**kw)
    paged += [json.loads(e["message"])["id"] for e in r["events"]]
    token = r.get("nextToken")
    if not token:
        break
assert paged == [m["id"] for m in msgs], paged
only = logs.filter_log_events(logGroupName=GROUP, filterPattern="TaskFailed")["events"]
assert [json.loads(e["message"])["type"] for e in only] == ["TaskFailed"], only
ok("a cursor by startTime, pages, and a plain-term filter pattern")

expect_error("ResourceNotFoundException", logs.filter_log_events, logGroupName="/no/such/group")
print("serve_logs: all passed")
