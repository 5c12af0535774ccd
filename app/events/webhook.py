"""Webhook sink: each event POSTed as JSON, signed with HMAC-SHA256 of the body, one at a time, in order.

The receiver checks ``X-Facestream-Signature: sha256=<hex>`` against its copy of WEBHOOK_SECRET with
``verify_signature``; a 2xx answer is a delivery, anything else (or no answer) is retried with backoff by the
publisher, so an event reaches the receiver at least once and never before the one accepted before it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

from app.errors import FacestreamError
from app.events.sink import SendFailed

log = logging.getLogger("facestream.events")
SIGNATURE_HEADER = "X-Facestream-Signature"


def sign(body: bytes, secret: str) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secret: str) -> bool:
    """Whether ``header`` is the signature of ``body`` under ``secret`` (constant-time comparison)."""
    return bool(header) and hmac.compare_digest(header.strip(), sign(body, secret))


def check_url(url: str) -> str:
    """Validate WEBHOOK_URL; return its origin (scheme://host:port), the only part of it ever logged (a path
    can hold a token, e.g. Home Assistant's webhook id)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FacestreamError(f"WEBHOOK_URL must be an http:// or https:// URL with a host, e.g. "
                              f"http://127.0.0.1:8123/api/webhook/facestream (got scheme {parts.scheme!r})")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


class WebhookSink:
    name = "webhook"
    window = 1  # one POST at a time: the receiver sees events in order

    def __init__(self, url: str, secret: str = "", timeout: float = 10.0) -> None:
        self.origin = check_url(url)
        self.url, self.secret, self.timeout = url, secret, timeout
        if not secret:
            log.warning("WEBHOOK_SECRET is empty: webhook requests to %s are not signed", self.origin)

    def start(self, ack: Callable[[int], None]) -> None:
        pass  # every send is acknowledged by its own answer

    def send(self, seq: int, body: bytes) -> bool:
        head = json.loads(body)
        headers = {"Content-Type": "application/json", "User-Agent": "facestream",
                   "X-Facestream-Event": head["type"], "X-Facestream-Delivery": head["id"]}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(body, self.secret)
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                answer.read()
        except urllib.error.HTTPError as exc:
            hint = " — check WEBHOOK_SECRET" if exc.code in (401, 403) else ""
            raise SendFailed(f"webhook {self.origin} answered {exc.code} {exc.reason}{hint}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SendFailed(f"webhook {self.origin} cannot be reached ({reason})") from None
        return True

    def close(self) -> None:
        pass
