"""Retry a write transaction that lost a race (unique violation or a locked SQLite file)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import IntegrityError, OperationalError

from tenants.errors import Conflict

T = TypeVar("T")


def retry_on_race(attempt: Callable[[], T], *, attempts: int = 20) -> T:
    """Run `attempt` (one whole transaction) again after a constraint race, with jitter."""
    for n in range(attempts):
        try:
            return attempt()
        except IntegrityError:
            pass
        except OperationalError as exc:
            if "locked" not in str(exc.orig):
                raise
        time.sleep(random.uniform(0, 0.002 * (n + 1)))
    raise Conflict("too many concurrent writers; try again")
