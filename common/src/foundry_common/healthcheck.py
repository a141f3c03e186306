"""Container HEALTHCHECK of the Python services (no curl in their images): exit 0 when the service answers
its /healthz with 200, else 1 (Docker reserves exit code 2).

    python -m foundry_common.healthcheck PORT_VARIABLE DEFAULT_PORT     # e.g. PORT 5273, CHAT_PORT 8080

/healthz is liveness in every service: 200 while it runs (503 while it stops). The embedded gateway says 200 while
its model is still downloading or loading, so that nothing waits on a download (its /readyz says when the model is
served); the router and the chat service say 200 whatever their upstreams do (an upstream that is down shows in
their /readyz, not as a restart loop).
"""

from __future__ import annotations

import os
import sys
import urllib.request

USAGE = "usage: python -m foundry_common.healthcheck PORT_VARIABLE DEFAULT_PORT"


def check(url: str, timeout: float = 3.0) -> int:
    """0 when `url` answers 200, else 1 with the reason on stderr."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own loopback URL
            return 0 if response.status == 200 else 1
    except OSError as exc:  # HTTPError (e.g. 503 while the service stops) included
        print(f"not healthy: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(USAGE, file=sys.stderr)
        return 1
    variable, default = args
    return check(f"http://127.0.0.1:{os.environ.get(variable) or default}/healthz")


if __name__ == "__main__":
    sys.exit(main())
