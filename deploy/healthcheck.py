#!/usr/bin/env python3
"""Container health probe: GET a gateway path on loopback, exit 0 on HTTP 200, else 1.

The slim and CUDA images ship no curl or wget, so Docker's HEALTHCHECK and the compose file
call this stdlib-only script: `prefixgate-healthcheck /healthz` (liveness) or `/readyz`.
The port is PREFIXGATE_PORT, the one the gateway listens on (8000 by default).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_PORT = "8000"
TIMEOUT_S = 4.0


def probe(path: str, port: str) -> bool:
    """True when http://127.0.0.1:<port><path> answers 200 within the timeout."""
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "/healthz"
    if not path.startswith("/"):
        print(f"usage: {argv[0]} [/healthz|/readyz]", file=sys.stderr)
        return 2
    port = os.environ.get("PREFIXGATE_PORT") or DEFAULT_PORT
    healthy = probe(path, port)
    if not healthy:
        print(f"unhealthy: GET {path} on port {port} did not answer 200", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
