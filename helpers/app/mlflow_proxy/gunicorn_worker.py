"""gunicorn's threaded worker, answering an over-long request line the way MLflow answers: JSON.

gunicorn reads the request line before the app sees the request, and refuses one longer than
`limit_request_line` (gunicorn.conf.py) with its own HTML 414 page, which the MLflow client
cannot parse. Here that refusal is a 400 `{"error_code", "message"}` instead; whatever else
gunicorn refuses keeps gunicorn's answer. gunicorn.conf.py names this class as worker_class.
"""

import json

from gunicorn.http.errors import LimitRequestLine
from gunicorn.util import write_nonblock
from gunicorn.workers.gthread import ThreadWorker


class MlflowThreadWorker(ThreadWorker):
    def handle_error(self, req, client, addr, exc):
        if not isinstance(exc, LimitRequestLine):
            return super().handle_error(req, client, addr, exc)
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        body = json.dumps(
            {
                "error_code": "INVALID_PARAMETER_VALUE",
                "message": (
                    f"The request line is longer than {self.cfg.limit_request_line} bytes: "
                    "send fewer or shorter query parameters (or a POST with a JSON body)."
                ),
            }
        ).encode()
        head = (
            "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        try:
            write_nonblock(client, head + body)
        except OSError:
            self.log.debug("Failed to send error message.")
