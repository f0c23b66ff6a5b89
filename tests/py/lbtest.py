"""What the serve tests' Python scripts share: boto3 clients for `lightbox serve`, and checks."""
import json
import os
import sys
import time
import urllib.request

import boto3
import botocore.config
import botocore.exceptions

ENDPOINT = os.environ["LIGHTBOX_ENDPOINT"]


def client(service="stepfunctions", key="test", secret="test", **kw):
    cfg = botocore.config.Config(retries={"max_attempts": 1}, **kw.pop("config", {}))
    return boto3.client(service, endpoint_url=ENDPOINT, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret, config=cfg, **kw)


def expect_error(code, fn, *args, **kwargs):
    """Call fn and check that it fails with the AWS error `code`; returns the error's message."""
    try:
        fn(*args, **kwargs)
    except botocore.exceptions.ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, f"expected {code}, got {got}: {e.response['Error'].get('Message')}"
        return e.response["Error"].get("Message", "")
    raise AssertionError(f"expected {code}, but the call succeeded")


def raw(target, body, content_type="application/x-amz-json-1.0"):
    """POST a raw body with an X-Amz-Target; returns (status, parsed JSON body)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(ENDPOINT + "/", data=data, method="POST",
                                 headers={"Content-Type": content_type, "X-Amz-Target": target})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def wait_status(sfn, arn, want, timeout=15.0):
    deadline = time.time() + timeout
    while True:
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] == want:
            return d
        assert time.time() < deadline, f"{arn} is {d['status']}, not {want}, after {timeout}s"
        time.sleep(0.05)


def pending_token(sfn, arn):
    """The task token of the newest TaskScheduled event, as a client reads it from history."""
    events = sfn.get_execution_history(executionArn=arn, reverseOrder=True)["events"]
    for e in events:
        if e["type"] == "TaskScheduled":
            params = json.loads(e["taskScheduledEventDetails"]["parameters"])
            return params["Payload"]["token"]
    raise AssertionError(f"{arn} has no TaskScheduled event")


REVIEW = {
    "StartAt": "Prep",
    "States": {
        "Prep": {"Type": "Pass", "Result": {"study": "CT-1"}, "ResultPath": "$.prep", "Next": "Review"},
        "Review": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                   "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token"}},
                   "End": True},
    },
}


def ok(name):
    print(f"ok: {name}")
    sys.stdout.flush()
