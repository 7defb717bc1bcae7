"""The order in which waiting requests get a model's batch slots (scheduler/waiting.py), against a
slot-by-slot reference: each slot to the call with the fewest requests in the batch, the earlier call first."""

from __future__ import annotations

import collections
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from trm_service.scheduler.waiting import WaitingQueue


@dataclass(eq=False)
class Request:
    """What the queue reads of a ticket: the call it came with."""

    call: str


def one_slot_at_a_time(waiting: dict[str, list[Request]], in_batch: collections.Counter, slots: int) -> list[Request]:
    """The rule as stated, one slot after another; `waiting` holds the calls in order of arrival."""
    queues = {call: list(requests) for call, requests in waiting.items() if requests}
    counts = collections.Counter(in_batch)
    chosen = []
    for _ in range(slots):
        if not queues:
            break
        call = min(queues, key=lambda c: (counts[c], list(queues).index(c)))
        chosen.append(queues[call].pop(0))
        counts[call] += 1
        if not queues[call]:
            del queues[call]
    return chosen


calls = st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(1, 6)), max_size=8)  # (call, requests) arrivals


def build(arrivals: list[tuple[str, int]]) -> tuple[WaitingQueue, dict[str, list[Request]]]:
    queue, by_call = WaitingQueue(), {}
    for call, count in arrivals:
        for _ in range(count):
            request = Request(call)
            queue.add(request)  # type: ignore[arg-type]
            by_call.setdefault(call, []).append(request)
    return queue, by_call


@settings(max_examples=300, deadline=None)
@given(arrivals=calls, in_batch=st.dictionaries(st.sampled_from("abcdefg"), st.integers(0, 5)),
       slots=st.integers(1, 20))
def test_take_gives_the_slots_as_the_rule_does_one_by_one(arrivals, in_batch, slots):
    queue, by_call = build(arrivals)
    expected = one_slot_at_a_time(by_call, collections.Counter(in_batch), slots)
    taken = queue.take(slots, collections.Counter(in_batch))
    assert {id(r) for r in taken} == {id(r) for r in expected}
    assert len(queue) == sum(map(len, by_call.values())) - len(taken)


@settings(max_examples=300, deadline=None)
@given(arrivals=calls, in_batch=st.dictionaries(st.sampled_from("abcdefg"), st.integers(0, 5)),
       newcomer=st.sampled_from("abcdefg"))
def test_ahead_of_new_counts_the_requests_served_before_a_new_one(arrivals, in_batch, newcomer):
    queue, by_call = build(arrivals)
    counts = collections.Counter(in_batch)
    ahead = queue.ahead_of_new(newcomer, counts)
    new = Request(newcomer)
    queue.add(new)  # type: ignore[arg-type]
    by_call.setdefault(newcomer, []).append(new)
    order = one_slot_at_a_time(by_call, counts, len(queue))
    assert order.index(new) == ahead


def test_a_lone_call_goes_before_a_batch_jobs_own_queue_and_the_job_keeps_a_slot():
    queue, _ = build([("job", 200), ("lone-1", 1), ("lone-2", 1)])
    taken = queue.take(2, collections.Counter({"job": 64}))
    assert [r.call for r in taken] == ["lone-1", "lone-2"]  # the job has 64 in the batch, they have none
    assert queue.firsts_with_nothing_in_batch(collections.Counter({"job": 64})) == []
    queue.add(Request("lone-3"))  # type: ignore[arg-type]
    taken = queue.take(1, collections.Counter({"lone-1": 1, "lone-2": 1}))  # the job's last request left
    assert [r.call for r in taken] == ["job"]  # level 0, and it came first


def test_remove_takes_a_waiting_request_out_and_only_once():
    queue, by_call = build([("a", 2), ("b", 1)])
    assert queue.remove(by_call["a"][0]) and not queue.remove(by_call["a"][0])
    assert queue.remove(by_call["b"][0])
    assert len(queue) == 1 and list(queue) == [by_call["a"][1]]
    assert queue.firsts_with_nothing_in_batch(collections.Counter()) == [by_call["a"][1]]


def test_a_parked_request_is_listed_until_it_leaves_the_queue():
    queue, _ = build([("job", 2), ("lone", 1)])
    parked = Request("job")
    queue.put_back(parked)  # type: ignore[arg-type]
    assert queue.parked() == [parked] and next(iter(queue)) is parked  # first of its call
    assert queue.take(1, collections.Counter()) == [parked]  # the job came first, its parked request first
    assert queue.parked() == []
    queue.put_back(parked)  # type: ignore[arg-type]
    assert queue.remove(parked) and queue.parked() == []
