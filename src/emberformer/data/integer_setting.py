"""An integer config value checked the one way every data set's settings are (``data.*`` keys)."""
from __future__ import annotations

import operator


def checked(key: str, value: object, minimum: int | None = None) -> int:
    """``value`` as an int (an integer, not a bool) of at least ``minimum``; else a ValueError
    naming the config ``key`` (e.g. ``data.simulated.seed``) and what it got."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{key} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"{key} must be >= {minimum}, got {number}")
    return number
