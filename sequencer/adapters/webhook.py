"""POST a JSON document to a webhook (stdlib urllib: one call, no session to manage)."""

from __future__ import annotations

import urllib.error
import urllib.request


class UrllibPoster:
    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        if not url.startswith(("https://", "http://")):
            raise OSError(f"not an http(s) URL: {url[:40]!r}")
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except urllib.error.URLError as exc:
            raise OSError(str(exc.reason)) from None
