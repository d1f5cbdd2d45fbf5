"""Instructions of the pieces of a small call, each alone, in-process (no HTTP server in front).

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=starmap_next \\
        --callgrind-out-file=/tmp/piece.out .venv-proxy/bin/python benchmarks/callgrind/pieces.py \\
        PIECE CALLS UPSTREAM_PORT [APP_DIR]
    grep totals: /tmp/piece.out   # divided by CALLS

PIECE: app (the whole app, called as WSGI), upstream (urllib3's urlopen and the streamed
answer), connection (the same through the pool's connection, without urlopen), sign
(signing.sign), flask (a one-route Flask app answering 124 bytes), access_line (Exchange.write).
UPSTREAM_PORT: anything answering GET with a small body on 127.0.0.1 (run.sh's nginx).
Only the CALLS calls run inside itertools.starmap, so only they are counted.
"""

import io
import itertools
import logging
import os
import sys
from pathlib import Path

piece, calls, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
app_dir = sys.argv[4] if len(sys.argv) > 4 else str(Path(__file__).parents[2] / "helpers" / "app")
sys.path.insert(0, app_dir)
upstream_url = f"http://127.0.0.1:{port}"
os.environ.update(
    {
        "SM_MLFLOW_RESOURCE_ARN": "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/bench",
        "SM_MLFLOW_ENDPOINT_URL": upstream_url,
        "MLFLOW_PROXY_TOKENS": '[{"name":"demo","token":"demo-token-read-write","access":"read-write"}]',
        "AWS_ACCESS_KEY_ID": "AKIASTANDIN000000001",
        "AWS_SECRET_ACCESS_KEY": "standin" * 5,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
        "MLFLOW_PROXY_ARTIFACT_STORE_URI": "",
    }
)
import flask  # noqa: E402
import urllib3  # noqa: E402
from botocore.credentials import ReadOnlyCredentials  # noqa: E402

from mlflow_proxy import access_log, create_app, signing  # noqa: E402

app = create_app()
logging.getLogger("mlflow_proxy").handlers[0].stream = open(os.devnull, "w")
PATH, QUERY = "/api/2.0/mlflow/experiments/get", "experiment_id=0"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def environ():
    return {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": PATH, "QUERY_STRING": QUERY,
        "RAW_URI": f"{PATH}?{QUERY}", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "5555",
        "HTTP_HOST": "127.0.0.1:8080", "HTTP_USER_AGENT": "mlflow-python-client/3.17.2",
        "HTTP_ACCEPT_ENCODING": "gzip, deflate", "HTTP_ACCEPT": "*/*",
        "HTTP_CONNECTION": "keep-alive", "HTTP_AUTHORIZATION": "Bearer demo-token-read-write",
        "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr, "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": True,
        "wsgi.run_once": False, "wsgi.input_terminated": True,
    }


def wsgi_call(wsgi_app):
    def call():
        statuses = []
        body = wsgi_app(environ(), lambda status, headers, exc_info=None: statuses.append(status))
        b"".join(body)
        body.close()
        assert statuses[0].startswith("200"), statuses

    return call


pool = urllib3.connection_from_url(upstream_url, maxsize=16, block=False)
timeout = urllib3.Timeout(connect=10, read=300)
no_retries = urllib3.Retry(total=False, redirect=False)
sent = {
    "Host": f"127.0.0.1:{port}", "Accept-Encoding": "gzip, deflate", "Accept": "*/*",
    "User-Agent": "mlflow-python-client/3.17.2",
    "x-mlflow-sm-tracking-server-arn": os.environ["SM_MLFLOW_RESOURCE_ARN"],
    "X-Amz-Content-SHA256": EMPTY_SHA256, "X-Amz-Date": "20261201T160000Z",
    "Authorization": "AWS4-HMAC-SHA256 Credential=AKIASTANDIN000000001/20261201/us-east-1/"
    "sagemaker-mlflow/aws4_request, SignedHeaders=accept;accept-encoding;host;"
    "x-amz-content-sha256;x-amz-date;x-mlflow-sm-tracking-server-arn, Signature=" + "0" * 64,
}


def upstream():
    response = pool.urlopen(
        "GET", f"{PATH}?{QUERY}", headers=sent, timeout=timeout, retries=no_retries,
        redirect=False, preload_content=False, decode_content=False,
    )
    for _ in response.stream(65536, decode_content=False):
        pass
    response.release_conn()


def connection():
    conn = pool._get_conn()
    conn.request("GET", f"{PATH}?{QUERY}", headers=sent, preload_content=False, decode_content=False)
    for _ in conn.getresponse().stream(65536, decode_content=False):
        pass
    pool._put_conn(conn)


credentials = ReadOnlyCredentials("AKIASTANDIN000000001", "standin" * 5, None)
to_sign = {key: value for key, value in sent.items() if not key.startswith(("X-Amz", "Auth"))}


def sign():
    signing.sign(
        "GET", f"{upstream_url}{PATH}?{QUERY}", to_sign, EMPTY_SHA256, credentials,
        "sagemaker-mlflow", "us-east-1",
    )


bare = flask.Flask("bare")
bare.add_url_rule(PATH, "bare", lambda: flask.Response([b"x" * 124], content_type="application/json"))
exchange = access_log.Exchange(client="127.0.0.1", method="GET", path=PATH, caller="demo", status=200)
PIECES = {
    "app": wsgi_call(app), "upstream": upstream, "connection": connection, "sign": sign,
    "flask": wsgi_call(bare), "access_line": exchange.write,
}
run = PIECES[piece]
for _ in range(50):
    run()
for _ in itertools.starmap(run, [()] * calls):
    pass
