"""W1 through boto3: executions/s of a 10-state chained Pass workflow against a Step Functions
endpoint (`lightbox serve`, or moto's server). Run by `lightbox bench --serve`.

usage: bench_serve.py ENDPOINT EXECUTIONS CLIENT_THREADS
Prints one JSON line: {"executions": N, "seconds": S, "perSecond": R, "p50ms": .., "p99ms": ..}.
"""
import concurrent.futures
import json
import sys
import time

import boto3
import botocore.config

endpoint, n, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def client():
    return boto3.client("stepfunctions", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="bench", aws_secret_access_key="bench-secret",
                        config=botocore.config.Config(retries={"max_attempts": 2}, max_pool_connections=threads))


states = {f"P{i}": {"Type": "Pass", "Result": {"step": i}, "ResultPath": f"$.s{i}",
                    **({"Next": f"P{i + 1}"} if i < 9 else {"End": True})} for i in range(10)}
definition = json.dumps({"StartAt": "P0", "States": states})
sfn = client()
arn = sfn.create_state_machine(name=f"w1-{int(time.time() * 1000)}", definition=definition,
                               roleArn="arn:aws:iam::123456789012:role/bench")["stateMachineArn"]
clients = [client() for _ in range(threads)]
latencies = []


def start(i):
    c = clients[i % threads]
    t = time.perf_counter()
    r = c.start_execution(stateMachineArn=arn, name=f"e{i}", input=json.dumps({"i": i}))
    latencies.append(time.perf_counter() - t)
    return r["executionArn"]


t0 = time.perf_counter()
with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    arns = list(pool.map(start, range(n)))
# Done when every execution has succeeded (an engine may finish them after StartExecution returns).
pending = set(arns)
deadline = time.time() + 600
while pending and time.time() < deadline:
    token, done = None, set()
    while True:
        kw = {"stateMachineArn": arn, "statusFilter": "SUCCEEDED", "maxResults": 1000}
        if token:
            kw["nextToken"] = token
        r = sfn.list_executions(**kw)
        done |= {e["executionArn"] for e in r["executions"]}
        token = r.get("nextToken")
        if not token:
            break
    pending -= done
    if pending:
        time.sleep(0.05)
elapsed = time.perf_counter() - t0
if pending:
    print(json.dumps({"error": f"{len(pending)} executions did not succeed in time"}))
    sys.exit(1)
latencies.sort()
print(json.dumps({"executions": n, "seconds": round(elapsed, 3), "perSecond": round(n / elapsed, 1),
                  "p50ms": round(latencies[len(latencies) // 2] * 1000, 2),
                  "p99ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 2)}))
