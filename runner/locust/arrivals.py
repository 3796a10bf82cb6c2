"""An open model's schedule: requests due at a fixed arrival rate, whether or not the server keeps up.

Why: in a closed loop a stalled server stalls the load too -- its users stop sending, and the
requests they would have sent are never timed (coordinated omission; wrk2's README measures p99
2x too low on a quiet run and 200x with one stall). Here requests arrive on their own clock: each
has an intended send time, and its corrected latency runs from that time, as in wrk2 (-R); the
uncorrected one runs from the actual send (wrk2's --u_latency).

Strategy: `OpenLoop` is pure -- no sockets, no clock of its own: the caller (runner/locust/engine.py,
or a test over simulated time) passes `now` in and gets back the intended times to send now, at
most one per free connection. Arrivals are `constant` (k / rate from the start: no drift builds up
from rounding) or `poisson` (exponential gaps, a seeded random.Random). A request whose time came
while every connection was busy waits in a FIFO queue; its corrected latency grows with the wait.

Dropped: a queued request still unsent `drop_after_s` after its intended time (the engine passes
load.request_timeout_s) is dropped, not sent: had it been sent it would already count as a timeout,
and sending it would only feed the server a backlog that no longer reflects the rate. Like k6's
dropped_iterations it is counted, never logged as a request (the server never saw it, and Locust's
total must still match the server's own count). It also bounds the queue at rate x drop_after_s.
What is still queued when the last connection closes (the run ended) is dropped too.

Epochs (`mark`, one per phase of the run): a request counts in the epoch its intended time fell in,
however late it was sent, so a window's counts are the requests due in it.

Late: a request sent more than `late_s` after its intended time. LATE_S = 10 ms: well above the
engine's own jitter on a schedule it can keep -- a hub turn and a batch of ready connections take
about 1 ms here, a gevent timer fires within 1-2 ms, a runnable process on a shared core waits a
few ms for its slice -- and at or below the service time of the slowest workload measured here (io:
10 ms), so a late request has waited about one request's worth. Late sends are split by cause: a
request that waited in the queue for a connection (`queued`: the server, or load.users connections,
did not keep up) or one that had a free connection and was still late (`generator_late`: the
generator itself fell behind its schedule -- runner/run/validity.py's `generator-bound`).
"""

from __future__ import annotations

import bisect
import random
from collections import deque
from dataclasses import asdict, dataclass

from runner.schema import ARRIVALS, LoadConfig

LATE_S = 0.010  # see the module docstring


@dataclass
class Counts:
    """What became of the requests whose intended time came."""

    intended: int = 0  # intended send time reached
    sent: int = 0
    late: int = 0  # sent more than late_s after the intended time
    queued: int = 0  # sent after waiting for a free connection (late or not)
    generator_late: int = 0  # late although a connection was free: the generator fell behind
    dropped: int = 0  # never sent: still queued drop_after_s after the intended time, or when the run ended

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def since(self, before: Counts) -> dict[str, int]:
        """What happened between `before` (a copy of these counts, dataclasses.replace) and now."""
        return {key: value - getattr(before, key) for key, value in asdict(self).items()}


class OpenLoop:
    """Intended send times at `rate` per second (> 0: runner/config.py refuses any other load.arrival_rate before a
    run starts, and a rate search's rates are runner/capacity.py next_rate's) and the queue of those not sent yet."""

    def __init__(
        self,
        rate: float,
        kind: str = "constant",
        *,
        late_s: float = LATE_S,
        drop_after_s: float = LoadConfig.request_timeout_s,
        rng: random.Random | None = None,
    ) -> None:
        if kind not in ARRIVALS:
            raise ValueError(f"arrivals are one of {', '.join(ARRIVALS)}, got {kind!r}")
        self.rate, self.kind, self.late_s, self.drop_after_s = rate, kind, late_s, drop_after_s
        self.rng = rng or random.Random()
        self.counts = Counts()  # the whole run
        # per epoch (mark()): a request counts in the epoch its intended time fell in, whenever it was sent -- a
        # window's requests are those due in it, not those the engine happened to handle before its end
        self.epochs = [Counts()]
        self._bounds: list[float] = []  # where epochs 1, 2, ... begin
        self.queue: deque[float] = deque()  # intended times come and not sent, oldest first
        self._blocked = 0  # the first this many in the queue found no free connection at a dispatch
        self._start: float | None = None
        self._k = 0  # arrivals so far (constant: the next is start + k / rate)
        self.next_at = float("inf")  # the next intended time; inf until started

    def start(self, now: float, rate: float | None = None) -> None:
        """Begin the schedule at `now` (the first request is due at once); again after stop(), or at a new
        `rate` (a rate search's next step) -- constant arrivals then count k / rate from now."""
        if rate is not None:
            self.rate = rate
        self._start, self._k, self.next_at = now, 0, now

    def stop(self) -> None:
        """No connection left: the queue is dropped (it will never be sent), arrivals resume at the next start()."""
        self._start, self.next_at = None, float("inf")
        while self.queue:
            self.counts.dropped += 1
            self._of(self.queue.popleft()).dropped += 1
        self._blocked = 0

    def mark(self, now: float) -> int:
        """Begin a new epoch at `now` (a phase of the run); its index in `epochs`."""
        self.arrive(now)  # every request due before now belongs to the epochs before
        self._bounds.append(now)
        self.epochs.append(Counts())
        return len(self.epochs) - 1

    def _of(self, intended: float) -> Counts:
        return self.epochs[bisect.bisect_left(self._bounds, intended)]  # due at a bound: arrive(bound) queued it before

    def _advance(self) -> None:
        self._k += 1
        if self.kind == "constant":
            self.next_at = self._start + self._k / self.rate
        else:
            self.next_at += self.rng.expovariate(self.rate)

    def arrive(self, now: float) -> None:
        """Queue the requests due by now and drop the stale ones."""
        queue, counts, epoch = self.queue, self.counts, self.epochs[-1]
        while self.next_at <= now:
            queue.append(self.next_at)
            counts.intended += 1
            epoch.intended += 1
            self._advance()
        limit = now - self.drop_after_s
        while queue and queue[0] < limit:
            counts.dropped += 1
            self._of(queue.popleft()).dropped += 1
            self._blocked = max(self._blocked - 1, 0)

    def dispatch(self, now: float, free: int) -> list[float]:
        """The intended times to send now, oldest first, at most `free` of them (one per free connection)."""
        self.arrive(now)
        queue, counts = self.queue, self.counts
        out = [queue.popleft() for _ in range(min(free, len(queue)))]
        for intended in out:
            epoch = self._of(intended)
            epoch.sent += 1
            waited = self._blocked > 0
            if waited:
                self._blocked -= 1
                counts.queued += 1
                epoch.queued += 1
            if now - intended > self.late_s:
                counts.late += 1
                epoch.late += 1
                if not waited:
                    counts.generator_late += 1
                    epoch.generator_late += 1
        counts.sent += len(out)
        self._blocked = len(queue)  # whatever is left found every connection busy
        return out
