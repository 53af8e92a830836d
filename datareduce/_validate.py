"""Parameter checks shared by every public constructor: one place, one wording of the error."""
from __future__ import annotations

import math


class UsageError(ValueError):
    """Bad input: a value, a combination of flags or a file the user gave that cannot be used.

    The front ends (the trainers, ``datareduce``) print its message as one line and exit 2; any other exception
    is a bug and keeps its traceback. It subclasses ``ValueError``, so code that catches or expects
    ``ValueError`` from a bad parameter keeps working.
    """


def check_number(name: str, value, *, low=None, high=None, low_open=False, high_open=False, integer=False):
    """Return ``value`` if it lies in the stated interval, else raise ``UsageError`` naming it and the range."""
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or (not integer and not math.isfinite(value)):
        kind = "an integer" if integer else "a finite number"
        raise UsageError(f"{name} must be {kind}, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise UsageError(f"{name}={value!r} is out of range: allowed {interval}")
    return value


def check_choice(name: str, value, choices):
    """Return ``value`` if it is one of ``choices``, else raise ``UsageError`` listing them."""
    if value not in choices:
        raise UsageError(f"{name}={value!r} is not allowed: choose one of {', '.join(map(repr, choices))}")
    return value
