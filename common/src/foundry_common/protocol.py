"""The wire contract between the services, written once: headers one service sets and another reads or passes on."""

from __future__ import annotations

# On an answer served without the request's `tools` (the model publishes no tool markers): why, in one line. Set by
# the embedded gateway; the router passes it on to the client, unlike the upstream's other X-Foundry-* headers.
TOOLS_IGNORED_HEADER = "x-foundry-tools-ignored"
# Upstream headers of ours that tell the client about its own request, and so cross the router.
PASSED_ON_HEADERS = frozenset({TOOLS_IGNORED_HEADER})
