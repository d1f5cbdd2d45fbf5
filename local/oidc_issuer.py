"""A local OIDC issuer on loopback: what GitHub Actions, GitLab or a Kubernetes API server
publish for their ID tokens, and a way to mint tokens with the keys it makes.

    with LocalIssuer() as issuer:
        token = issuer.mint({"sub": "repo:demo-org/demo-repo:ref:refs/heads/main", ...})

It serves `/.well-known/openid-configuration` (issuer, jwks_uri) and the JWKS, counting the
requests for each. Looser than a real issuer: it signs whatever claims it is given (a real one
signs only facts about the job), over plain http on loopback (the proxy accepts http:// only
for loopback issuers), and `publish=False` keys are kept out of the JWKS so that tests can
present a kid the issuer does not publish.
"""

import json
import threading
import time
import uuid
from collections import Counter
from typing import Optional

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

TOKEN_LIFETIME_SECONDS = 300
# Keys this issuer can make: RS256 is what GitHub, GitLab and Kubernetes sign with.
KEY_MAKERS = {
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
}


class _QuietRequestHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        pass  # the demo's output is for the MLflow calls; issuer.requests counts these


class LocalIssuer:
    def __init__(self, port: int = 0):
        self._port = port
        self._keys: dict[str, tuple[str, object, bool]] = {}  # kid -> (alg, private key, published)
        self.requests: Counter = Counter()  # path -> how many times it was fetched
        self._server = None
        self._thread: Optional[threading.Thread] = None
        self.add_key("key-1")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def add_key(self, kid: str, alg: str = "RS256", publish: bool = True) -> None:
        self._keys[kid] = (alg, KEY_MAKERS[alg](), publish)

    def public_key(self, kid: str = "key-1"):
        return self._keys[kid][1].public_key()

    def mint(self, claims: dict, kid: str = "key-1", audience: Optional[str] = None) -> str:
        """A token signed with `kid`; iss, iat and exp default to this issuer and now."""
        now = int(time.time())
        payload = {
            "iss": self.url,
            "iat": now,
            "exp": now + TOKEN_LIFETIME_SECONDS,
            "jti": uuid.uuid4().hex,  # as real issuers do: no two tokens are the same
        }
        if audience is not None:
            payload["aud"] = audience
        payload.update(claims)
        alg, private_key, _ = self._keys[kid]
        return jwt.encode(payload, private_key, algorithm=alg, headers={"kid": kid})

    # -- serving ----------------------------------------------------------------------------

    def __enter__(self) -> "LocalIssuer":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        """Serve (again, on the same port after stop())."""
        self._server = make_server(
            "127.0.0.1", self._port, self._app, threaded=True, request_handler=_QuietRequestHandler
        )
        self._port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving: fetches are refused, as when the issuer is down."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None

    def _app(self, environ, start_response):
        request = Request(environ)
        self.requests[request.path] += 1
        if request.path == "/.well-known/openid-configuration":
            body = {
                "issuer": self.url,
                "jwks_uri": self.url + "/.well-known/jwks",
                "id_token_signing_alg_values_supported": sorted(KEY_MAKERS),
            }
        elif request.path == "/.well-known/jwks":
            published = [kid for kid, (_, _, publish) in self._keys.items() if publish]
            body = {"keys": [self._jwk(kid) for kid in published]}
        else:
            body = None
        status = 200 if body else 404
        return Response(json.dumps(body), status, content_type="application/json")(
            environ, start_response
        )

    def _jwk(self, kid: str) -> dict:
        alg, private_key, _ = self._keys[kid]
        algorithm = jwt.get_algorithm_by_name(alg)
        jwk = algorithm.to_jwk(private_key.public_key(), as_dict=True)
        return {**jwk, "kid": kid, "alg": alg, "use": "sig"}
