"""The Table service's clock, learnt from its responses: lease expiry is judged by it.

Each worker's own clock may be off. Were leases judged by it, a host ahead by
a lease would take over live leases (and count attempts) and a host behind
would wait past dead ones. Every response of the Table service carries a
`Date` header, the service's time to the second: the offset between it and
the host's clock, learnt from responses the ledger receives anyway (opening
the table, reading a row), turns the host's clock into the service's. An
offset under `DEAD_BAND` is within the header's one-second resolution and
is taken as none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

REFRESH_S = 300.0
"""How long a learnt offset is kept before the next response refreshes it."""
_HALF_SECOND = timedelta(seconds=0.5)
"""`Date` is cut to the second: the service's time is, on average, half a second later."""
DEAD_BAND = timedelta(seconds=2)
"""Offsets smaller than this are the header's resolution, not skew: the host's clock is used.

Two workers in step with the service would otherwise each carry up to half a
second of error, in opposite directions, and see a short lease differently."""


def host_now() -> datetime:
    """This host's clock, UTC."""
    return datetime.now(UTC)


class ServiceClock:
    """The service's time: the host's clock plus the offset learnt from a `Date` header.

    Until a response was seen, the host's clock is used as it is.
    """

    def __init__(self, host: Callable[[], datetime] = host_now) -> None:
        self._host = host
        self._offset: timedelta | None = None
        self._learnt_at = 0.0
        self._lock = threading.Lock()

    @property
    def offset(self) -> timedelta | None:
        """The service's time minus the host's, once learnt."""
        return self._offset

    @property
    def stale(self) -> bool:
        """Whether the offset is unknown or older than `REFRESH_S` (the next response teaches)."""
        return self._offset is None or time.monotonic() - self._learnt_at >= REFRESH_S

    def observe(self, pipeline_response: Any) -> None:
        """A `raw_response_hook`: learn the offset from the response's `Date` header."""
        if not self.stale:
            return
        try:
            header = pipeline_response.http_response.headers.get("Date")
            service = parsedate_to_datetime(header) + _HALF_SECOND if header else None
        except (AttributeError, TypeError, ValueError):
            return
        if service is None or service.tzinfo is None:
            return
        offset = service - self._host()
        with self._lock:
            self._offset = offset if abs(offset) >= DEAD_BAND else timedelta(0)
            self._learnt_at = time.monotonic()

    def now(self) -> datetime:
        """The service's time as best known."""
        offset = self._offset
        return self._host() + offset if offset is not None else self._host()


def response_hook_of(client: Any) -> Callable[[Any], None] | None:
    """The `raw_response_hook` an SDK client was built with, if any (found in its pipeline).

    A hook passed to one call replaces the client's own for that call; calling
    this one too keeps whatever the client's owner counts or logs.
    """
    from azure.core.pipeline.policies import CustomHookPolicy

    try:
        policies = client._client._client._pipeline._impl_policies
    except AttributeError:
        return None
    for policy in policies:
        inner = getattr(policy, "_policy", policy)
        if isinstance(inner, CustomHookPolicy):
            hook: Callable[[Any], None] | None = inner._response_callback
            return hook
    return None
