"""The requests waiting for a slot in one model's batch, by call, and the order in which they get slots.

A lone Reason or ReasonStream is a call of one request; the requests of one ReasonBatch are one call
(`Ticket.call`). Free slots go to the calls in turn:

    each next slot goes to the waiting call with the fewest requests in the batch (those admitted at this
    boundary included), the call that came first among equals; a call's own requests go in arrival order.

Seen as levels: a call with k requests in the batch has its i-th waiting request at level k + i, and the
slots go to the lowest levels, the earlier call first within a level. So a caller with nothing in the batch
never waits behind a batch job's own queue (it waited for all of it: a ReasonBatch of 256 Sudoku grids is
four full batches of up to 8 steps), and a batch job keeps a request in the batch however many callers come.
With lone calls only, this is first come, first served. A parked request (one the scheduler took out of the
batch before its end, its state kept) waits first among its call's requests, its call in its place by arrival.
"""

from __future__ import annotations

import collections
import heapq
import itertools
from collections.abc import Iterator

from trm_service.scheduler.ticket import Ticket


class WaitingQueue:
    """The waiting requests of one model, grouped by call in order of the calls' arrival."""

    def __init__(self) -> None:
        self._calls: dict[object, collections.deque[Ticket]] = {}
        self._count = 0  # requests in all the calls' queues (kept, not summed: read at every submit)
        self._parked: set[Ticket] = set()  # the requests put back (kept: looked at every step boundary)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Ticket]:
        return itertools.chain.from_iterable(self._calls.values())

    def add(self, ticket: Ticket) -> None:
        """Queue `ticket` behind its call's earlier requests."""
        self._calls.setdefault(ticket.call, collections.deque()).append(ticket)
        self._count += 1

    def put_back(self, ticket: Ticket) -> None:
        """Queue a parked request first among its call's requests, the calls kept in order of arrival."""
        queue = self._calls.get(ticket.call)
        if queue is not None:
            queue.appendleft(ticket)
        else:
            self._calls[ticket.call] = collections.deque([ticket])
            self._calls = dict(sorted(self._calls.items(), key=lambda item: item[1][0].arrival))
        self._count += 1
        self._parked.add(ticket)

    def parked(self) -> list[Ticket]:
        """The parked requests that wait."""
        return list(self._parked)

    def remove(self, ticket: Ticket) -> bool:
        """Take `ticket` out of the queue; whether it was waiting."""
        queue = self._calls.get(ticket.call)
        if queue is None or ticket not in queue:
            return False
        queue.remove(ticket)
        self._drop_if_empty(ticket.call)
        self._count -= 1
        self._parked.discard(ticket)
        return True

    def take(self, slots: int, in_batch: collections.Counter[object]) -> list[Ticket]:
        """The next `slots` requests to admit (see the module docstring), taken out of the queue; `in_batch`
        counts the batch's requests by call."""
        if slots >= self._count:
            chosen = list(self)
            self._calls.clear()
            self._count = 0
            self._parked.clear()
            return chosen
        levels = (
            (in_batch[call] + index, order, index, call)
            for order, (call, queue) in enumerate(self._calls.items())
            for index in range(min(len(queue), slots))  # no call can take more than all the slots
        )
        taken = collections.Counter(call for *_, call in heapq.nsmallest(slots, levels))
        chosen = []
        for call, count in taken.items():
            queue = self._calls[call]
            chosen += [queue.popleft() for _ in range(count)]
            self._drop_if_empty(call)
        self._count -= len(chosen)
        self._parked.difference_update(chosen)
        return chosen

    def queued(self, call: object) -> int:
        """How many requests of `call` wait."""
        queue = self._calls.get(call)
        return len(queue) if queue else 0

    def ahead_of_new(self, call: object, in_batch: collections.Counter[object]) -> int:
        """How many waiting requests would get a slot before a request of `call` queued now."""
        own = self._calls.get(call)
        return self.ahead_of(call, len(own) if own else 0, in_batch)

    def ahead_of(self, call: object, index: int, in_batch: collections.Counter[object]) -> int:
        """How many waiting requests get a slot before the `index`-th waiting request of `call`."""
        level = in_batch[call] + index
        ahead = index
        earlier = True  # whether the call at hand came before `call` (a new call comes after every waiting one)
        for other, queue in self._calls.items():
            if other is call:
                earlier = False
                continue
            ahead += min(len(queue), max(0, level - in_batch[other] + earlier))
        return ahead

    def firsts_with_nothing_in_batch(self, in_batch: collections.Counter[object]) -> list[Ticket]:
        """The first waiting request of each call that has no request in the batch (the lowest level), in
        turn order."""
        return [queue[0] for call, queue in self._calls.items() if not in_batch[call]]

    def _drop_if_empty(self, call: object) -> None:
        if not self._calls[call]:
            del self._calls[call]
