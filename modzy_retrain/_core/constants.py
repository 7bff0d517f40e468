"""Defaults in one place."""

from __future__ import annotations

import httpx

# Connect fast, but give a results body (which can be large) time to arrive.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# A call's whole life, every attempt and wait included. The timeouts above are per
# read, so a server sending a byte a second would keep a call alive for ever without
# it. Longer than the retry budget (120 s) plus a slow attempt: it cuts only calls a
# server keeps alive by trickling.
DEFAULT_DEADLINE = 300.0
# Enough connections for the fetcher's default concurrency, plus headroom.
DEFAULT_MAX_CONNECTIONS = 64
# A response body larger than this is refused before it is read into memory. A job's
# results are kilobytes per input; 64 MiB is thousands of inputs with explanations.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
# Pages one history walk reads at most: a million jobs at the default page size. A
# server that always answers a full page would otherwise be walked without end.
DEFAULT_MAX_HISTORY_PAGES = 10_000
# The server's default page is 10; bigger pages mean fewer round trips. The Java SDK
# and Modzy.NET sent 1000 with no recorded failure, so that is our ceiling.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

# Label states a training run can use as they are: what retraining thresholds count.
# ``needs_label`` and ``conflict`` rows wait for a human; ``labelled`` is a human's.
TRAINABLE_LABEL_STATES: frozenset[str] = frozenset({"confirmed", "corrected", "labelled"})

API_KEY_ENV = "MODZY_API_KEY"
BASE_URL_ENV = "MODZY_BASE_URL"
