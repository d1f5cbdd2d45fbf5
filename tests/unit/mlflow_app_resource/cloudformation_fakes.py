"""Stand-ins for what CloudFormation and Lambda give a custom resource, shared by the handler tests.

crhelper answers CloudFormation with an HTTPS PUT to the event's pre-signed ResponseURL through
http.client.HTTPSConnection. The stand-in is a real TLS server on a loopback port with a throwaway
self-signed certificate; the helper under test trusts it through crhelper's own `ssl_verify`
option (a CA file), so the response travels over real TLS and nothing in crhelper is patched.
"""

import datetime
import ipaddress
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from botocore.stub import ANY, Stubber
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ACCOUNT = "123456789012"
REGION = "us-east-1"


def write_self_signed_certificate(directory):
    """Write cert.pem and key.pem for 127.0.0.1; return their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloudformation-response-stand-in")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class ResponseServer:
    """Records the responses PUT to it, as CloudFormation's pre-signed S3 URL would receive them."""

    def __init__(self, cert_path, key_path):
        self.responses = []
        responses = self.responses

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                responses.append({"path": self.path, "body": json.loads(body)})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    @property
    def url(self):
        port = self._server.server_address[1]
        return (f"https://127.0.0.1:{port}/cloudformation-custom-resource-response-useast1/"
                "arn%3Aaws%3Acloudformation%3Aus-east-1%3A123456789012%3Astack/mlflow/abc%7CMlflowApp"
                "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=0123abcd")


class LambdaContext:
    function_name = "mlflow-proxy-MlflowAppFunction"
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
    aws_request_id = "6f6b3c1e-0d59-4f62-9c1a-1b2f5d0f0a11"

    def get_remaining_time_in_millis(self):
        return 120_000


class Capture:
    """An expected parameter for Stubber that accepts any value and keeps it."""

    def __init__(self):
        self.value = None

    def __eq__(self, other):
        self.value = other
        return True

    def __ne__(self, other):
        return not self.__eq__(other)


def load_event(directory, name, response_url):
    event = json.loads((directory / "events" / f"{name}.json").read_text())
    event["ResponseURL"] = response_url
    return event


class PollingStubs:
    """crhelper's EventBridge and Lambda calls, stubbed against their service models."""

    def __init__(self, helper, logical_id):
        self.events = Stubber(helper._events_client)
        self.lambda_ = Stubber(helper._lambda_client)
        self.rule_arn = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{logical_id}ABCD1234"
        self.function_name = LambdaContext.function_name

    def __enter__(self):
        self.events.activate()
        self.lambda_.activate()
        return self

    def __exit__(self, *exc_info):
        self.events.deactivate()
        self.lambda_.deactivate()

    def expect_setup(self) -> Capture:
        """Returns a Capture of the event crhelper schedules for its re-invocations."""
        poll_input = Capture()
        self.events.add_response(
            "put_rule", {"RuleArn": self.rule_arn},
            {"Name": ANY, "ScheduleExpression": "rate(1 minute)", "State": "ENABLED"})
        self.lambda_.add_response(
            "add_permission", {"Statement": "{}"},
            {"FunctionName": self.function_name, "StatementId": ANY, "Action": "lambda:InvokeFunction",
             "Principal": "events.amazonaws.com", "SourceArn": self.rule_arn})
        self.events.add_response(
            "put_targets", {"FailedEntryCount": 0, "FailedEntries": []},
            {"Rule": self.rule_arn.split("/")[1],
             "Targets": [{"Id": "1", "Arn": self.function_arn(), "Input": poll_input}]})
        return poll_input

    def expect_teardown(self, statement_id):
        rule_name = self.rule_arn.split("/")[1]
        self.events.add_response("remove_targets", {"FailedEntryCount": 0, "FailedEntries": []},
                                 {"Rule": rule_name, "Ids": ["1"]})
        self.lambda_.add_response("remove_permission", {},
                                  {"FunctionName": self.function_name, "StatementId": statement_id})
        self.events.add_response("delete_rule", {}, {"Name": rule_name})

    def function_arn(self):
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def assert_done(self):
        self.events.assert_no_pending_responses()
        self.lambda_.assert_no_pending_responses()


@pytest.fixture
def aws_environment(monkeypatch):
    """What the Lambda runtime sets; the credentials are never used (every call is stubbed)."""
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SAM_LOCAL", raising=False)  # crhelper skips polling under `sam local`
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def response_server(tmp_path):
    cert_path, key_path = write_self_signed_certificate(tmp_path)
    with ResponseServer(cert_path, key_path) as server:
        server.cert_path = cert_path
        yield server
