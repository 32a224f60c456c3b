"""The contract agrees with the code: the headers the reader puts on each record, the event
types, who sends and who receives each message, and the topic."""

from __future__ import annotations

import fastjsonschema
import pytest

from pipeline import events
from pipeline.contract import Contract
from replication.decoder import Relation, XLogData, decode_pgoutput, parse_copy_data
from replication.frame_loop import FrameLoop
from replication.rows import RelationCache
from replication.snapshot import snapshot_record
from replication.tracker import FlushTracker
from replication.value_encoder import ValueEncoder
from tests.unit import pgoutput_builder as b
from tests.unit.pgoutput_builder import read_frames
from tests.unit.pgoutput_fixtures import domain_events_insert
from tests.unit.pipeline.contract_headers import check_headers
from tests.unit.replication.test_snapshot import as_selected

INITIATED = events.BOOTSTRAP_INITIATED
PENDING = events.QUEUE_PENDING


@pytest.mark.parametrize(
    ("change", "path"),
    [
        pytest.param({"commit_lsn": "0/16b3748"}, "headers.commit_lsn", id="lower-case-lsn"),
        pytest.param({"commit_lsn": "16B3748"}, "headers.commit_lsn", id="lsn-without-slash"),
        pytest.param({"idx": "-1"}, "headers.idx", id="negative-idx"),
        pytest.param({"idx": "01"}, "headers.idx", id="zero-padded-idx"),
        pytest.param({"commit_ts": "yesterday"}, "headers.commit_ts", id="bad-commit-ts"),
    ],
)
def test_broken_headers_fail(contract: Contract, change: dict[str, str], path: str) -> None:
    headers = {**contract.examples(INITIATED)[0].headers, **change}
    with pytest.raises(fastjsonschema.JsonSchemaValueException) as caught:
        check_headers(contract, INITIATED, headers)
    assert caught.value.name == path.replace("headers.", "data.")


def test_missing_header_fails(contract: Contract) -> None:
    headers = dict(contract.examples(INITIATED)[0].headers)
    del headers["idx"]
    with pytest.raises(fastjsonschema.JsonSchemaValueException, match="idx"):
        check_headers(contract, INITIATED, headers)


def test_the_readers_headers_follow_the_contract(contract: Contract) -> None:
    """The headers the reader's FrameLoop puts on each record (golden frames of a real
    PostgreSQL) are what the contract says every event carries."""
    relations = RelationCache()
    sent: list[list[tuple[str, bytes]]] = []
    loop = FrameLoop(
        ValueEncoder(relations).encode,
        lambda pos, key, value, headers: sent.append(headers),
        FlushTracker(),
        1000,
    )
    frames = read_frames("multi_row_insert.bin")
    i = 0
    while i < len(frames):
        i = loop.run(frames, i)
        if i < len(frames):  # the Relation: the session's part
            msg = parse_copy_data(frames[i])
            if isinstance(msg, XLogData) and isinstance(
                rel := decode_pgoutput(msg.payload), Relation
            ):
                relations.add(rel)
            i += 1
    assert len(sent) == 3
    for headers in sent:
        check_headers(contract, INITIATED, {k: v.decode() for k, v in headers})


def test_the_snapshots_headers_follow_the_contract(contract: Contract) -> None:
    """The initial snapshot's records carry the same headers, with commit_lsn 0/0 and
    xid 0 (copied by a SELECT, not streamed from a transaction): the contract allows them."""
    tup = domain_events_insert(b.domain_event_tuple()).new
    _, _, _, headers = snapshot_record(as_selected(tup), 7)
    check_headers(contract, INITIATED, {k: v.decode() for k, v in headers})
    assert dict(headers)["xid"] == b"0"


# ---- (c) the contract describes exactly what the code emits and consumes -------------


def test_contract_event_types_are_the_codes_event_types(contract: Contract) -> None:
    in_contract = contract.event_types()
    in_code = events.ALL_EVENT_TYPES
    assert in_contract == in_code, (
        f"only in the contract: {sorted(in_contract - in_code)}; "
        f"only in pipeline/events.py: {sorted(in_code - in_contract)}"
    )


def test_operations_match_the_design(contract: Contract) -> None:
    def senders(event_type: str) -> tuple[str, ...]:
        return contract.message(event_type).sent_by

    # The pipeline consumes the request and emits the queue events that follow it.
    assert contract.message(INITIATED).received_by
    assert not senders(INITIATED)
    assert "starterReceiveQueuePending" in contract.message(PENDING).received_by
    assert senders(PENDING) == ("enqueueSendQueuePending",)
    assert senders(events.QUEUE_CLAIMED) == ("starterSendClaimAndStart",)
    assert senders(events.BOOTSTRAP_WORKFLOW_STARTED) == ("starterSendClaimAndStart",)
    pipeline_emitted = {INITIATED, PENDING, events.QUEUE_CLAIMED, events.BOOTSTRAP_WORKFLOW_STARTED}
    # The accept page of `pipeline run` records an accepted invitation.
    assert senders(events.INVITATION_ACCEPTED) == ("acceptPageSendInvitationAccepted",)
    for event_type in events.ALL_EVENT_TYPES - pipeline_emitted - {events.INVITATION_ACCEPTED}:
        assert senders(event_type) == ("workerSendWorkflowEvents",), event_type
    for event_type in events.ALL_EVENT_TYPES:
        assert "projectionReceiveAll" in contract.message(event_type).received_by


def test_contract_topic_is_the_domain_events_topic(contract: Contract) -> None:
    assert contract.topic == "domain-events"
