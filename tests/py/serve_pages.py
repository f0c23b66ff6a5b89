"""Pages are bounded in bytes as well as in events: an execution whose every event carries a
large payload comes back from GetExecutionHistory and FilterLogEvents in pages of about 1 MB
(at least one event each), and following nextToken yields every event once, in order."""
import json

from lbtest import client, ok, wait_status

sfn = client()
logs = client("logs")
GROUP = "/aws/vendedlogs/states/pages"
cfg = {"level": "ALL", "includeExecutionData": True,
       "destinations": [{"cloudWatchLogsLogGroup": {"logGroupArn": f"arn:aws:logs:us-east-1:000000000000:log-group:{GROUP}:*"}}]}
states = {f"P{i}": {"Type": "Pass", "Next": f"P{i + 1}"} for i in range(12)}
states["P12"] = {"Type": "Pass", "End": True}
sm = sfn.create_state_machine(name="heavy", definition=json.dumps({"StartAt": "P0", "States": states}),
                              roleArn="arn:aws:iam::000000000000:role/r", loggingConfiguration=cfg)["stateMachineArn"]
ex = sfn.start_execution(stateMachineArn=sm, input=json.dumps({"blob": "x" * 200_000}))["executionArn"]
wait_status(sfn, ex, "SUCCEEDED")

bare = sfn.get_execution_history(executionArn=ex, includeExecutionData=False)
total = len(bare["events"])
assert total > 25 and "nextToken" not in bare, (total, bare.get("nextToken"))

for reverse in (False, True):
    ids, token, pages = [], None, 0
    while True:
        kw = {"executionArn": ex, "maxResults": 1000, "reverseOrder": reverse}
        if token:
            kw["nextToken"] = token
        r = sfn.get_execution_history(**kw)
        pages += 1
        size = len(json.dumps(r["events"], default=str))
        assert size < 1_600_000, f"a history page is {size} bytes"
        assert r["events"], "every page holds at least one event"
        ids += [e["id"] for e in r["events"]]
        token = r.get("nextToken")
        if not token:
            break
    want = list(range(1, total + 1))
    assert ids == (want[::-1] if reverse else want), ids
    assert pages >= 4, pages
ok("history pages end at about 1 MB; paging yields every event once, in order")

# A second machine logs small events to the same group: more rows than one read takes per machine.
chatty_states = {f"C{i}": {"Type": "Pass", "Next": f"C{i + 1}"} for i in range(40)}
chatty_states["C40"] = {"Type": "Pass", "End": True}
chatty = sfn.create_state_machine(name="chatty", definition=json.dumps({"StartAt": "C0", "States": chatty_states}),
                                  roleArn="arn:aws:iam::000000000000:role/r", loggingConfiguration=cfg)["stateMachineArn"]
small = [sfn.start_execution(stateMachineArn=chatty, input="{}")["executionArn"] for _ in range(8)]
expected = {(ex, i) for i in range(1, total + 1)}
for arn in small:
    n = len(sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"])
    expected |= {(arn, i) for i in range(1, n + 1)}
assert len(expected) > 600

msgs, token, pages = [], None, 0
while True:
    kw = {"logGroupName": GROUP}
    if token:
        kw["nextToken"] = token
    r = logs.filter_log_events(**kw)
    pages += 1
    assert len(json.dumps(r["events"])) < 1_600_000
    msgs += [json.loads(e["message"]) for e in r["events"]]
    token = r.get("nextToken")
    if not token:
        break
keys = [(m["execution_arn"], int(m["id"])) for m in msgs]
assert len(keys) == len(set(keys)) and set(keys) == expected, (len(keys), len(set(keys)), len(expected))
assert [int(m["id"]) for m in msgs if m["execution_arn"] == ex] == list(range(1, total + 1))
stamps = [int(m["event_timestamp"]) for m in msgs]
assert stamps == sorted(stamps), "events come in time order across machines"
assert pages >= 4, pages
ok("FilterLogEvents pages end at about 1 MB as CloudWatch Logs' do")
print("serve_pages: all passed")
