"""Container HEALTHCHECK: exit 0 when the service answers /healthz (no curl in the image).

Liveness only: an upstream that is down is reported by /readyz and in the chat, not by restarting us.
"""

from __future__ import annotations

import os
import sys
import urllib.request


def main() -> int:
    url = f"http://127.0.0.1:{os.environ.get('CHAT_PORT', '8080')}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"not healthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
