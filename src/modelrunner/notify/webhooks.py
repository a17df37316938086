"""Webhooks: a JSON POST signed with HMAC-SHA256, so a receiver can tell it came from this server
and is not a replay.

The request carries these headers:

- ``X-Modelrunner-Timestamp``: unix seconds when the request was signed (each attempt anew);
- ``X-Modelrunner-Signature``: ``v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``;
- ``X-Modelrunner-Delivery``: the delivery's idempotency key, the same on every attempt;
- ``X-Modelrunner-Event``: ``run.succeeded``, ``run.failed``, ``run.timed_out`` or ``run.cancelled``.

A receiver recomputes the signature over the raw body, compares with ``hmac.compare_digest``,
rejects timestamps older than a few minutes (a replay), and may drop a delivery key it has seen
(a retry after a lost answer).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import httpx

from modelrunner.notify.sent import Sent, redacted

SIGNATURE_VERSION = "v1"
SECRET_BYTES = 32
USER_AGENT = "modelrunner-webhooks/1"


def new_secret() -> str:
    """A random signing secret (256 bits) for a subscription that did not bring its own."""
    return secrets.token_urlsafe(SECRET_BYTES)


def body_of(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact JSON, keys sorted."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex>``: HMAC-SHA256 keyed with ``secret`` over ``f"{timestamp}."`` and the body."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def headers(secret: str, key: str, event: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers of one attempt, signed now (or at ``timestamp``)."""
    at = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Modelrunner-Timestamp": str(at),
        "X-Modelrunner-Signature": signature(secret, at, body),
        "X-Modelrunner-Delivery": key,
        "X-Modelrunner-Event": event,
    }


def post(url: str, secret: str, key: str, payload: dict[str, Any], timeout: float) -> Sent:
    """POST the payload once; a 2xx answer is delivered, anything else (or no answer) is not.
    Redirects are not followed: a webhook URL names the receiver itself."""
    body = body_of(payload)
    try:
        response = httpx.post(
            url,
            content=body,
            headers=headers(secret, key, str(payload.get("event", "")), body),
            timeout=timeout,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        return Sent(False, None, redacted(f"{type(exc).__name__}: {exc}", [secret]))
    if response.is_success:
        return Sent(True, response.status_code, None)
    return Sent(False, response.status_code, f"the receiver answered {response.status_code} {response.reason_phrase}")
