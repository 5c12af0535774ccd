"""Where the web app may listen: loopback, or any address once API_TOKEN is set.

Apart from ``auth`` (which needs FastAPI) so that ``facestream run`` can refuse a bad ``--serve`` before anything
starts without importing the web stack, which a GPU-only install need not have."""

from __future__ import annotations

import ipaddress

from app.errors import FacestreamError


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, port: int, token: str) -> None:
    """Refuse to serve beyond this machine without a token (one line, exit 2)."""
    if not token and not is_loopback(host):
        raise FacestreamError(f"serving the web app on {host}:{port} (not loopback) needs API_TOKEN: set "
                              "API_TOKEN in .env (every request must then carry it), or serve on 127.0.0.1")
