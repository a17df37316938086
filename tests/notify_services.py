"""The other side of notifications, for tests: a real SMTP server (aiosmtpd) keeping the mails it
receives, and a webhook receiver (http.server in a thread) that checks each request's signature
and timestamp the way the README tells receivers to, and can answer errors first."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import http.server
import json
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.conftest import free_port

MAX_AGE_SECONDS = 300


class Mailbox:
    """Every mail the SMTP server accepted, parsed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mails: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            self._mails.append(parsed)
        return "250 OK"

    def all(self) -> list[EmailMessage]:
        with self._lock:
            return list(self._mails)

    def to(self, address: str) -> list[EmailMessage]:
        return [mail for mail in self.all() if mail["To"] == address]


class SmtpServer:
    """aiosmtpd on a port of its own; ``start()`` and ``stop()`` may be called again and again
    (the port stays the same, so a server that was down comes back where it was)."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        self.mailbox = Mailbox()
        self._credentials = credentials
        self._controller: Controller | None = None

    def start(self) -> None:
        options: dict[str, Any] = {"auth_require_tls": False}
        if self._credentials is not None:
            options["authenticator"] = self._authenticate
        self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port, **options)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert self._credentials is not None
        if isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == self._credentials:
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


@dataclass(frozen=True)
class Received:
    """One webhook request and what the receiver made of it."""

    verified: bool
    delivery: str
    event: str
    timestamp: int
    body: dict[str, Any]
    answered: int


class WebhookReceiver:
    """An HTTP server that verifies ``X-Modelrunner-Signature`` with ``secret`` and rejects stale
    timestamps (401), and answers 500 to the first ``fail_first`` verified requests."""

    def __init__(self, fail_first: int = 0) -> None:
        self.secret = ""
        self.fail_first = fail_first
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver._answer(dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/modelrunner"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def _answer(self, headers: dict[str, str], body: bytes) -> int:
        timestamp = int(headers.get("X-Modelrunner-Timestamp", "0"))
        verified = verify(self.secret, headers.get("X-Modelrunner-Signature", ""), timestamp, body)
        with self._lock:
            verified_before = sum(1 for r in self.received if r.verified)
            status = 401 if not verified else (500 if verified_before < self.fail_first else 200)
            self.received.append(
                Received(
                    verified,
                    headers.get("X-Modelrunner-Delivery", ""),
                    headers.get("X-Modelrunner-Event", ""),
                    timestamp,
                    json.loads(body),
                    status,
                )
            )
        return status


def verify(secret: str, signature: str, timestamp: int, body: bytes) -> bool:
    """A receiver's check, as the README shows it: a fresh timestamp and the HMAC of both."""
    if not secret or abs(time.time() - timestamp) > MAX_AGE_SECONDS:
        return False
    expected = "v1=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def configure(workspace: Path, notifications: dict[str, Any], groups: dict[str, list[str]] | None = None) -> None:
    """Write the workspace's modelrunner.yaml: ``notifications``, and ``run`` on the listed models
    for each group (analysts may use noop and failing by default)."""
    grants = groups if groups is not None else {"analysts": ["noop", "failing", "flaky"]}
    spec = {
        "name": "test-workspace",
        "access": {"groups": {group: [{"models": models, "allow": "run"}] for group, models in grants.items()}},
        "notifications": notifications,
    }
    (workspace / "modelrunner.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")


def email_settings(smtp: SmtpServer, **overrides: Any) -> dict[str, Any]:
    """``notifications.email`` for the test SMTP server: no TLS, quick retries."""
    return {
        "host": "127.0.0.1",
        "port": smtp.port,
        "security": "none",
        "sender": "modelrunner@example.org",
        "timeout": 5,
        "attempts": 3,
        "backoff_seconds": 0.2,
        **overrides,
    }
