"""One long-lived loop per PhoenixAuth: a Kopf daemon that reconciles, then sleeps until woken.

Kopf starts the loop when it first sees a PhoenixAuth (created, or listed at start-up) and stops it
when the object is deleted or the operator exits. Everything that concerns the object only wakes
its loop: a spec change, an event of one of its children, a change of a Secret it references.
That one loop gives, without any lock or queue of ours:
- serialisation: one reconcile of an object at a time, because one task runs them;
- coalescing: wakes that arrive while it reconciles or waits set one flag, so they cost one more
  reconcile, not one each; after a wake it waits `debounce` seconds for the siblings of an event
  (a Deployment going 0→1→2 ready, its ReplicaSet and its Job finishing cost one reconcile);
- retries: a transient error sleeps an exponential backoff (capped), a permanent one waits for
  a change; both still wake on events;
- resync: with nothing to do it reconciles again every `resync_seconds` (level-based safety net).
The body Kopf gives a daemon is live (updated by every watch event), so each reconcile reads the
object as the watch last saw it. Bounded work: at most `concurrency` reconciles run at once, so a
thousand loops starting together queue instead of holding a thousand bodies and requests in flight.
A freed place goes first to an object reconciled before (`Slots`): its round is mostly a status
read and patch and is what turns it Ready, so it does not wait behind the first rounds (each
creating a dozen children) of every object created after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

import kopf

from phoenix_operator.errors import TransientError
from phoenix_operator.reconcile import ObjectState, Outcome, Reconciler

log = logging.getLogger(__name__)

OwnerKey = tuple[str, str]  # (namespace, name)
MAX_BACKOFF = 300.0
DEBOUNCE_SECONDS = 0.5


def backoff(retry: int, base: float) -> float:
    """Exponential backoff of transient errors: base, 2·base, 4·base ... capped at 5 minutes."""
    return min(MAX_BACKOFF, base * 2.0 ** max(0, retry))


class WakeFlag:
    """What a sleeping loop waits on: set by event handlers, cleared by the loop.

    Not an `asyncio.Event`: waiting on one beside a timeout and Kopf's stop flag took two tasks
    and `asyncio.wait` per sleeping loop, ~2 KB each at rest across a thousand loops. A sleep
    here is one future and one timer; Kopf's stop needs no waiter, because Kopf cancels a
    daemon that does not exit at once (cancellation_timeout, handlers.register)."""

    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[bool] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def clear(self) -> None:
        self._set = False

    async def wait(self, seconds: float) -> bool:
        """Sleep until set or `seconds` pass; True when set."""
        if self._set:
            return True
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(seconds, _expire, waiter)
        try:
            return bool(await waiter)
        finally:
            timer.cancel()
            self._waiter = None


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class Wakeups:
    """The flag each PhoenixAuth's loop sleeps on, by (namespace, name): what event handlers set;
    and the loop's state, so an event that wakes nothing can still tell it what the watch saw."""

    def __init__(self) -> None:
        self._flags: dict[OwnerKey, WakeFlag] = {}
        self._states: dict[OwnerKey, ObjectState] = {}

    def __len__(self) -> int:
        return len(self._flags)

    def register(self, key: OwnerKey, state: ObjectState | None = None) -> WakeFlag:
        flag = self._flags[key] = WakeFlag()
        if state is not None:
            self._states[key] = state
        return flag

    def forget(self, key: OwnerKey, flag: WakeFlag) -> None:
        if self._flags.get(key) is flag:
            del self._flags[key]
            self._states.pop(key, None)

    def seen(self, key: OwnerKey, version: int, status: dict[str, Any] | None = None) -> None:
        """The watch showed `key` at `version` with `status` (the event's own dict): its loop's
        copy of a status the body now holds goes at once, not at the next reconcile (status
        patches wake no loop, so that can be a resync away: ~7 KB per PhoenixAuth held
        meanwhile), and the event's status is kept compact (`ObjectState.keep_watched`). Before
        the loop runs there is no state, and the body keeps its status as it came."""
        state = self._states.get(key)
        if state is not None:
            state.unseen_status(version)
            if status is not None:
                state.keep_watched(status)

    def wake(self, key: OwnerKey) -> bool:
        """Wake the loop of `key`; False when it has none (not started yet, or gone)."""
        flag = self._flags.get(key)
        if flag is None:
            return False
        flag.set()
        return True


class Slots:
    """At most `limit` reconciles at once; a place that frees goes to a waiting object that has
    been reconciled before ("again") ahead of one that has not ("first"), and every
    `first_every`-th to a first round when one waits, so first rounds are never starved.

    In a first-come queue, of a thousand PhoenixAuths created together none turns Ready until
    nearly all are: each one's second round (its Deployment has become available) waits behind
    the first rounds of all those created after it."""

    def __init__(self, limit: int, first_every: int = 4) -> None:
        self._free = limit
        self._first_every = first_every
        self._again: deque[asyncio.Future[None]] = deque()
        self._first: deque[asyncio.Future[None]] = deque()
        self._granted = 0

    @contextlib.asynccontextmanager
    async def hold(self, first: bool) -> AsyncIterator[None]:
        await self._acquire(first)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, first: bool) -> None:
        if self._free > 0:
            self._free -= 1
            return
        queue = self._first if first else self._again
        place: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(place)
        try:
            await place
        except asyncio.CancelledError:
            if place.done() and not place.cancelled():
                self._release()  # handed over as it was cancelled: pass the place on
            elif place in queue:
                queue.remove(place)
            raise

    def _release(self) -> None:
        for queue in (self._first, self._again):  # a cancelled waiter leaves its queue later
            while queue and queue[0].done():
                queue.popleft()
        self._granted += 1
        if self._first and (not self._again or self._granted % self._first_every == 0):
            self._first.popleft().set_result(None)
        elif self._again:
            self._again.popleft().set_result(None)
        else:
            self._free += 1


class Loops:
    """The daemon body and what every loop shares: the reconciler, the wake flags, the limit."""

    def __init__(
        self,
        reconciler: Reconciler,
        wakeups: Wakeups,
        *,
        resync_seconds: float,
        debounce: float = DEBOUNCE_SECONDS,
        concurrency: int = 16,
    ) -> None:
        self.reconciler = reconciler
        self.wakeups = wakeups
        self.resync_seconds = resync_seconds
        self.debounce = debounce
        self._slots = Slots(concurrency)

    def next_wait(self, outcome: Outcome, retry: int) -> tuple[float, int]:
        """(seconds to sleep unless woken, the retry count for the next transient error)."""
        err = outcome.error
        if isinstance(err, TransientError):
            return backoff(retry, err.delay), retry + 1
        if err is not None:  # permanent: status says what to fix; a change (or the resync) wakes us
            log.warning("permanent error, waiting for a spec change: %s: %s", err.reason, err.message)
        return self.resync_seconds, 0

    async def run(self, body: Mapping[str, Any], stopped: kopf.DaemonStopped, **_: Any) -> None:
        """The Kopf daemon of one PhoenixAuth (`body` is live).

        Nothing taken from `body` outlives a reconcile: `body["metadata"]` is the dict of the
        event the daemon started with (managedFields included), and a local holding it for the
        loop's life kept a second copy of every PhoenixAuth's metadata (~1,000 of them at N=1,000)."""
        key: OwnerKey = (body["metadata"]["namespace"], body["metadata"]["name"])
        state = ObjectState()
        flag = self.wakeups.register(key, state)
        retry = 0
        first = True
        try:
            while not stopped:
                if (body.get("metadata") or {}).get("deletionTimestamp"):
                    return  # going: the garbage collector removes the children
                flag.clear()  # a wake from now on means one more round
                async with self._slots.hold(first):
                    if stopped:
                        return
                    outcome = await self.reconciler.reconcile(body, state)
                first = False
                delay, retry = self.next_wait(outcome, retry)
                if not stopped and await flag.wait(delay) and self.debounce > 0:
                    await asyncio.sleep(self.debounce)  # let the event's siblings arrive
        finally:
            self.wakeups.forget(key, flag)
