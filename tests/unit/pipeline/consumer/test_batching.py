"""batching.AckLedger: a record is acked once its effects are all done, in each
partition's arrival order (pure)."""

from __future__ import annotations

import itertools

import pytest

from pipeline.consumer.batching import AckLedger


def test_a_record_finished_early_waits_for_the_ones_before_it() -> None:
    acked: list[str] = []
    ledger: AckLedger[str] = AckLedger(acked.append)
    tickets = {e: ledger.track("p0", e, 1) for e in ("a", "b", "c")}
    other = ledger.track("p1", "x", 1)
    ledger.done([tickets["c"], tickets["b"]])
    assert acked == []  # 'a' is unfinished: acking b or c would let Faust commit past it
    ledger.done([other])
    assert acked == ["x"]  # another partition does not wait
    ledger.done([tickets["a"]])
    assert acked == ["x", "a", "b", "c"]
    assert ledger.waiting() == 0


def test_a_record_is_acked_after_its_last_effect_and_never_counted_twice() -> None:
    acked: list[str] = []
    ledger: AckLedger[str] = AckLedger(acked.append)
    both = ledger.track("p", "initiated", 2)  # its projection and its enqueue
    ledger.done([both])
    assert acked == [] and not both.settled  # the enqueue has not happened yet
    ledger.done([both])
    assert acked == ["initiated"] and both.settled
    with pytest.raises(RuntimeError):
        ledger.done([both])  # a double count would ack before an effect happened
    with pytest.raises(ValueError):
        ledger.track("p", "nothing", 0)


def test_one_call_settles_a_batch_spread_over_partitions() -> None:
    acked: list[tuple[str, int]] = []
    ledger: AckLedger[tuple[str, int]] = AckLedger(acked.append)
    batch = [ledger.track(p, (p, o), 1) for o in range(3) for p in ("p0", "p1")]
    ledger.done(batch)
    assert sorted(acked) == sorted((p, o) for o in range(3) for p in ("p0", "p1"))
    assert [o for p, o in acked if p == "p0"] == [0, 1, 2]
    assert [o for p, o in acked if p == "p1"] == [0, 1, 2]


@pytest.mark.parametrize("order", list(itertools.permutations(range(6))))
def test_acks_are_the_prefix_of_the_records_whose_effects_are_all_done(
    order: tuple[int, ...],
) -> None:
    """One partition: initiated (2 effects), other, pending (2), unreadable. The four
    projections and the two handlers finish in every order; after each step exactly the
    longest prefix of records whose every effect is done has been acked."""
    acked: list[int] = []
    ledger: AckLedger[int] = AckLedger(acked.append)
    tickets = [ledger.track("p0", offset, n) for offset, n in enumerate((2, 1, 2, 1))]
    steps = [*tickets, tickets[0], tickets[2]]
    for k in order:
        ledger.done([steps[k]])
        prefix = 0
        while prefix < len(tickets) and tickets[prefix].settled:
            prefix += 1
        assert acked == list(range(prefix))
    assert acked == [0, 1, 2, 3]


def test_waiting_counts_records_tracked_and_not_acked() -> None:
    """The edge's bound on records held (EdgeLimits.max_unacked) reads this count."""
    ledger: AckLedger[int] = AckLedger(lambda _: None)
    tickets = [ledger.track(f"p{o % 2}", o, 1) for o in range(6)]
    assert ledger.waiting() == 6
    ledger.done(tickets[2:])  # p0's head (offset 0) and p1's (offset 1) are unfinished
    assert ledger.waiting() == 6
    ledger.done([tickets[1]])  # p1: 1, 3, 5 acked
    assert ledger.waiting() == 3
    ledger.done([tickets[0]])
    assert ledger.waiting() == 0
