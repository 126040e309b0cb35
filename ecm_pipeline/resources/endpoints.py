"""API endpoints set from the environment: https only, so a token or a key is never sent in clear
text, except to this machine's loopback (a local test server)."""

from __future__ import annotations

from urllib.parse import urlsplit

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class EndpointError(ValueError):
    """An endpoint URL that would send credentials unencrypted or off the machine."""


def require_https(url: str, variable: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK):
        return url
    raise EndpointError(f"{variable} must be an https:// URL (plain http is allowed only on 127.0.0.1), got "
                        f"{parts.scheme or 'no'} scheme")
