"""An AWS endpoint on 127.0.0.1 that answers every call with one error, as AWS
would (JSON protocol: `__type` and `message`, status 400), e.g. Secrets Manager
refusing GetSecretValue to a role without the grant. Point a client at it with
`AWS_ENDPOINT_URL_<SERVICE>`; `calls` lists the X-Amz-Target of each request."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

from ecr_mirror_testing.loopback import LoopbackServer


class FailingAws(LoopbackServer):
    def __init__(self, code: str = "AccessDeniedException",
                 message: str = "User: arn:aws:sts::123456789012:assumed-role/x is not authorized "
                                "to perform: secretsmanager:GetSecretValue", status: int = 400) -> None:
        self.code, self.message, self.status = code, message, status
        self.calls: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.calls.append(self.headers.get("X-Amz-Target", ""))
                body = json.dumps({"__type": outer.code, "message": outer.message}).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        super().__init__(Handler)
