"""Where token buckets live: this process, PostgreSQL (or SQLite), or Redis.

Every store takes all the amounts of one request or none of them, atomically with respect to
every other taker of the same buckets: a lock here, one transaction holding the rows' locks in
the database, one Lua script (run atomically by the server) in Redis. Shared stores use their
server's clock, so replicas with skewed clocks still refill a bucket at one rate.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tenants.database import Database
from tenants.models import RateBucket

_BUCKETS = RateBucket.__table__
IDLE_EXPIRY_S = 120  # a bucket idle this long is full again: the shared copy may go


@dataclass(frozen=True, slots=True)
class Take:
    """Take `amount` from bucket `name` holding up to `capacity` (refilled over a minute)."""

    name: str
    capacity: float
    amount: float


@dataclass(frozen=True, slots=True)
class Refusal:
    index: int  # which take did not fit
    wait_s: float  # until it would fit (inf: larger than the capacity)


def refilled(level: float, stamp: float, capacity: float, now: float) -> float:
    return min(capacity, level + max(0.0, now - stamp) * capacity / 60.0)


def wait_for(level: float, capacity: float, amount: float) -> float:
    if amount <= level:
        return 0.0
    if amount > capacity:
        return math.inf
    return (amount - level) * 60.0 / capacity


class RateStore(Protocol):
    def take(self, takes: Sequence[Take]) -> Refusal | None:
        """Take every amount (None) or nothing (the first refusal)."""

    def give(self, take: Take) -> None:
        """Put `amount` back (a refund), never beyond the capacity."""

    def forget(self, names: Sequence[str]) -> None: ...


class LocalRateStore:
    """One process: buckets in a dict."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, takes: Sequence[Take]) -> Refusal | None:
        with self._lock:
            now = self._clock()
            levels = [self._level(t, now) for t in takes]
            for i, (t, level) in enumerate(zip(takes, levels, strict=True)):
                wait = wait_for(level, t.capacity, t.amount)
                if wait:
                    return Refusal(i, wait)
            for t, level in zip(takes, levels, strict=True):
                self._buckets[t.name] = (level - t.amount, now)
            return None

    def give(self, take: Take) -> None:
        with self._lock:
            now = self._clock()
            self._buckets[take.name] = (min(take.capacity, self._level(take, now) + take.amount),
                                        now)

    def forget(self, names: Sequence[str]) -> None:
        with self._lock:
            for name in names:
                self._buckets.pop(name, None)

    def _level(self, t: Take, now: float) -> float:
        level, stamp = self._buckets.get(t.name, (t.capacity, now))
        return refilled(level, stamp, t.capacity, now)


class SqlRateStore:
    """Buckets as rows of `usage_rate_buckets`, shared by every replica on the database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert

    def take(self, takes: Sequence[Take]) -> Refusal | None:
        order = sorted(range(len(takes)), key=lambda i: takes[i].name)  # one lock order
        with self.db.session() as session:
            now = self._now(session)
            levels: dict[int, float] = {}
            for i in order:
                t = takes[i]
                session.execute(self._insert(_BUCKETS).values(
                    name=t.name, level=t.capacity, stamp=now).on_conflict_do_nothing())
                level, stamp = session.execute(
                    select(_BUCKETS.c.level, _BUCKETS.c.stamp)
                    .where(_BUCKETS.c.name == t.name).with_for_update()).one()
                levels[i] = refilled(level, stamp, t.capacity, now)
            for i, t in enumerate(takes):
                wait = wait_for(levels[i], t.capacity, t.amount)
                if wait:
                    return Refusal(i, wait)
            for i in order:
                session.execute(update(_BUCKETS).where(_BUCKETS.c.name == takes[i].name)
                                .values(level=levels[i] - takes[i].amount, stamp=now))
            return None

    def give(self, take: Take) -> None:
        with self.db.session() as session:
            now = self._now(session)
            row = session.execute(select(_BUCKETS.c.level, _BUCKETS.c.stamp)
                                  .where(_BUCKETS.c.name == take.name).with_for_update()).first()
            if row is None:
                return
            level = min(take.capacity, refilled(row[0], row[1], take.capacity, now) + take.amount)
            session.execute(update(_BUCKETS).where(_BUCKETS.c.name == take.name)
                            .values(level=level, stamp=now))

    def forget(self, names: Sequence[str]) -> None:
        with self.db.session() as session:
            session.execute(_BUCKETS.delete().where(_BUCKETS.c.name.in_(list(names))))

    def _now(self, session: Any) -> float:
        if self.db.dialect == "postgresql":
            return float(session.execute(select(func.extract("epoch",
                                                             func.clock_timestamp()))).scalar())
        return time.time()


# KEYS: bucket names; ARGV: capacity, amount per key. Returns {0, ""} or {refused index, wait}.
_TAKE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local levels = {}
for i = 1, #KEYS do
  local cap = tonumber(ARGV[2 * i - 1])
  local amount = tonumber(ARGV[2 * i])
  local v = redis.call('HMGET', KEYS[i], 'level', 'stamp')
  local level = tonumber(v[1]) or cap
  local stamp = tonumber(v[2]) or now
  level = math.min(cap, level + math.max(0, now - stamp) * cap / 60.0)
  levels[i] = level
  if amount > cap then return {i, 'inf'} end
  if amount > level then return {i, tostring((amount - level) * 60.0 / cap)} end
end
for i = 1, #KEYS do
  redis.call('HSET', KEYS[i], 'level', tostring(levels[i] - tonumber(ARGV[2 * i])),
             'stamp', tostring(now))
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[#ARGV]))
end
return {0, ''}
"""
_GIVE_LUA = """
local v = redis.call('HMGET', KEYS[1], 'level', 'stamp')
if not v[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cap = tonumber(ARGV[1])
local level = math.min(cap, tonumber(v[1]) + math.max(0, now - tonumber(v[2])) * cap / 60.0)
redis.call('HSET', KEYS[1], 'level', tostring(math.min(cap, level + tonumber(ARGV[2]))),
           'stamp', tostring(now))
return 1
"""


class RedisRateStore:
    """Buckets as Redis hashes `prefixgate:rl:<name>`, updated by server-side scripts."""

    def __init__(self, url: str) -> None:
        import redis  # optional at import time: only deployments that configure Redis need it

        self._client = redis.Redis.from_url(url)
        self._take = self._client.register_script(_TAKE_LUA)
        self._give = self._client.register_script(_GIVE_LUA)

    def take(self, takes: Sequence[Take]) -> Refusal | None:
        args: list[float] = []
        for t in takes:
            args += [t.capacity, t.amount]
        index, wait = self._take(keys=[_key(t.name) for t in takes], args=[*args, IDLE_EXPIRY_S])
        if int(index) == 0:
            return None
        return Refusal(int(index) - 1, float(wait))

    def give(self, take: Take) -> None:
        self._give(keys=[_key(take.name)], args=[take.capacity, take.amount])

    def forget(self, names: Sequence[str]) -> None:
        if names:
            self._client.delete(*[_key(n) for n in names])


def _key(name: str) -> str:
    return f"prefixgate:rl:{name}"
