"""boto3 over TLS to `lightbox serve` with a certificate from a test CA."""
import json
import os

import boto3
import botocore.exceptions

from lbtest import ENDPOINT, expect_error, ok

KEY, SECRET, CA = os.environ["LB_KEY"], os.environ["LB_SECRET"], os.environ["LB_CA"]
endpoint = ENDPOINT.replace("127.0.0.1", "localhost")
sfn = boto3.client("stepfunctions", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id=KEY, aws_secret_access_key=SECRET, verify=CA)
d = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}
sm = sfn.create_state_machine(name="tls", definition=json.dumps(d), roleArn="arn:aws:iam::000000000000:role/r")
ex = sfn.start_execution(stateMachineArn=sm["stateMachineArn"], input='{"x": 1}')
assert sfn.describe_execution(executionArn=ex["executionArn"])["status"] == "SUCCEEDED"
ok("https with the test CA")

untrusting = boto3.client("stepfunctions", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=KEY, aws_secret_access_key=SECRET)
try:
    untrusting.list_state_machines()
    raise AssertionError("a client that does not trust the CA connected")
except botocore.exceptions.SSLError:
    pass
ok("a client without the CA refuses the certificate")
expect_error("InvalidSignatureException", boto3.client("stepfunctions", endpoint_url=endpoint, region_name="us-east-1",
             aws_access_key_id=KEY, aws_secret_access_key="nope-nope", verify=CA).list_state_machines)
ok("signatures are still checked over TLS")
print("serve_tls: all passed")
