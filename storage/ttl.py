"""TTL arguments: the one place that turns what a caller passes into seconds."""

from __future__ import annotations

import math
from datetime import timedelta

from .errors import InvalidArgumentError

__all__ = ["TTL", "ttl_seconds"]

#: What a caller may pass as a TTL: seconds, a timedelta, or None for no expiry.
TTL = int | float | timedelta | None


def ttl_seconds(ttl: TTL) -> float | None:
    """``ttl`` as a finite number of seconds > 0, or None; `InvalidArgumentError` otherwise."""
    if ttl is None:
        return None
    if type(ttl) is float and 0.0 < ttl < math.inf:  # the common case, checked at once
        return ttl
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        try:
            seconds = float(ttl)
        except OverflowError:
            raise InvalidArgumentError(f"ttl is out of range: {ttl!r}") from None
    else:
        raise InvalidArgumentError(f"ttl must be seconds (int, float) or a timedelta, not {ttl!r}")
    if not seconds > 0 or math.isinf(seconds):
        raise InvalidArgumentError(f"ttl must be a finite number of seconds > 0, not {ttl!r}")
    return seconds
