"""N sequential small calls on one keep-alive connection, with the MLflow client's headers."""

import http.client
import sys

port, calls = int(sys.argv[1]), int(sys.argv[2])
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
for _ in range(calls):
    connection.request(
        "GET",
        "/api/2.0/mlflow/experiments/get?experiment_id=0",
        headers={
            "Authorization": "Bearer demo-token-read-write",
            "User-Agent": "mlflow-python-client/3.17.2",
            "Accept-Encoding": "gzip, deflate",
            "Accept": "*/*",
        },
    )
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        sys.exit(f"status {response.status}: {body[:200]!r}")
