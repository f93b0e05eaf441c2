"""Container healthcheck: exit 0 when the server's ``/v2/health/ready`` answers 200, 1 otherwise.

Used by the images' ``HEALTHCHECK`` and the compose healthchecks, so that Docker (and anything reading its
health state) sees the same readiness a load balancer does: 503 while models load and from the first moment
of a SIGTERM drain. Stdlib only, because the image has neither curl nor wget. The URL follows the server's
own settings (``CALOFLOW_HTTP_PORT``; ``https`` when ``CALOFLOW_TLS_CERT`` is set, without verifying the
certificate, which names the service rather than the loopback address); an argument overrides it.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

TIMEOUT_S = 4.0
READY_PATH = "/v2/health/ready"


def ready_url(env: Mapping[str, str]) -> str:
    """The loopback readiness URL of a server configured by ``env``."""
    scheme = "https" if env.get("CALOFLOW_TLS_CERT") else "http"
    return f"{scheme}://127.0.0.1:{env.get('CALOFLOW_HTTP_PORT', '8000')}{READY_PATH}"


def is_ready(url: str) -> bool:
    context = ssl._create_unverified_context() if url.startswith("https:") else None  # loopback only
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError) as exc:
        print(f"not ready: {url}: {exc}", file=sys.stderr)
        return False


def main(argv: Sequence[str]) -> int:
    url = argv[1] if len(argv) > 1 else ready_url(os.environ)
    return 0 if is_ready(url) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
