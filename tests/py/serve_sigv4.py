"""boto3 against `lightbox serve` with [serve] credentials: signed with the right key it
works; a wrong secret, an unknown key and no signature are refused as AWS refuses them."""
import json
import os

import botocore
import botocore.config

from lbtest import REVIEW, client, expect_error, ok, pending_token, raw

KEY, SECRET = os.environ["LB_KEY"], os.environ["LB_SECRET"]
good = client(key=KEY, secret=SECRET)
sm = good.create_state_machine(name="signed", definition=json.dumps(REVIEW),
                               roleArn="arn:aws:iam::000000000000:role/r")["stateMachineArn"]
ex = good.start_execution(stateMachineArn=sm, name="s1", input="{}")["executionArn"]
good.send_task_success(taskToken=pending_token(good, ex), output="{}")
assert good.describe_execution(executionArn=ex)["status"] == "SUCCEEDED"
ok("a client signing with a configured key is served")

msg = expect_error("InvalidSignatureException", client(key=KEY, secret="wrong-secret").list_state_machines)
assert "signature" in msg.lower(), msg
expect_error("UnrecognizedClientException", client(key="AKIDUNKNOWN", secret=SECRET).list_state_machines)
unsigned = client(config={"signature_version": botocore.UNSIGNED})
expect_error("MissingAuthenticationTokenException", unsigned.list_state_machines)
status, body = raw("AWSStepFunctions.StartExecution", {"stateMachineArn": sm})
assert status == 403 and body["__type"] == "MissingAuthenticationTokenException", (status, body)
ok("a wrong secret, an unknown key and no signature are refused")

# Refused calls changed nothing.
assert [e["name"] for e in good.list_executions(stateMachineArn=sm)["executions"]] == ["s1"]
print("serve_sigv4: all passed")
