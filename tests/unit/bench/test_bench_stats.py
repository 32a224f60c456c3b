"""The benchmark's pure helpers: statistics, the commit-log parser, the doc splice.

No timing is asserted anywhere: these check arithmetic and parsing only.
"""

from __future__ import annotations

import math

import pytest

from bench import probe, report, stats


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert stats.percentile(values, 50) == 50.0
    assert stats.percentile(values, 95) == 95.0
    assert stats.percentile(values, 99) == 99.0
    assert stats.percentile(values, 100) == 100.0
    assert stats.percentile([7.0], 1) == 7.0


@pytest.mark.parametrize("q", [0, -1, 101])
def test_percentile_rejects_bad_q(q: float) -> None:
    with pytest.raises(ValueError):
        stats.percentile([1.0], q)


def test_percentile_rejects_empty() -> None:
    with pytest.raises(ValueError):
        stats.percentile([], 50)


def test_summarize() -> None:
    s = stats.summarize([3.0, 1.0, 2.0, 4.0])
    assert s is not None
    assert (s.n, s.p50, s.p95, s.p99, s.max, s.mean) == (4, 2.0, 4.0, 4.0, 4.0, 2.5)
    assert stats.summarize([]) is None


def test_summarize_censored_counts_missing_as_infinitely_late() -> None:
    s = stats.summarize_censored([1.0, 2.0, 3.0], missing=1)
    assert s is not None
    assert s.n == 4
    assert s.p50 == 2.0
    assert math.isinf(s.p99) and math.isinf(s.max)
    assert s.mean == 2.0
    assert stats.summarize_censored([], 0) is None
    only_missing = stats.summarize_censored([], 2)
    assert only_missing is not None and math.isinf(only_missing.p50)


def test_latencies_ms_pairs_by_key_and_counts_missing() -> None:
    samples, missing = stats.latencies_ms(
        {"a": 10.0, "b": 20.0, "c": 30.0}, {"a": 10.25, "c": 31.0}
    )
    assert sorted(samples) == [250.0, 1000.0]
    assert missing == 1


def test_cdf() -> None:
    xs, ys = stats.cdf([3.0, 1.0, 2.0, 2.0])
    assert xs == [1.0, 2.0, 2.0, 3.0]
    assert ys == [0.25, 0.5, 0.75, 1.0]


def test_per_second_buckets_from_origin() -> None:
    assert stats.per_second([99.0, 100.0, 100.5, 101.2, 103.9], origin=100.0) == [2, 1, 0, 1]
    assert stats.per_second([], origin=0.0) == []


def test_rates_and_ratio() -> None:
    assert stats.rate(10, 2.0) == 5.0
    assert stats.rate(10, 0.0) == 0.0
    assert stats.span_rate([5.0, 1.0, 3.0]) == 0.5
    assert stats.span_rate([1.0]) == 0.0
    assert stats.ratio(9.0, 10.0) == 0.9
    assert stats.ratio(1.0, 0.0) is None


TEST_DECODING = [
    "BEGIN 700",
    "table public.domain_events: INSERT: id[uuid]:'11111111-1111-1111-1111-111111111111' "
    "stream_id[uuid]:'22222222-2222-2222-2222-222222222222' stream_type[text]:'organization' "
    "stream_version[integer]:1 event_type[text]:'organization.bootstrap.initiated' "
    "event_data[jsonb]:'{\"name\": \"it''s\"}' event_metadata[jsonb]:'{}'",
    "COMMIT 700 (at 2026-01-01 00:00:00.5+00)",
    "BEGIN 701",
    "table public.workflow_queue_projection: INSERT: job_id[uuid]:'11111111-1111-1111-1111-111111111111' "
    "stream_id[uuid]:'22222222-2222-2222-2222-222222222222' stream_type[text]:'organization' "
    "event_type[text]:'x' event_data[jsonb]:'{}' status[text]:'pending' workflow_type[text]:null",
    "table public.pipeline_checkpoints: INSERT: consumer[text]:'p'",
    "COMMIT 701 (at 2026-01-01 00:00:01.25+00)",
    "BEGIN 702",
    "table public.workflow_queue_projection: UPDATE: job_id[uuid]:'11111111-1111-1111-1111-111111111111' "
    "stream_id[uuid]:'22222222-2222-2222-2222-222222222222' status[text]:'processing'",
    "COMMIT 702 (at 2026-01-01 00:00:02+00)",
]


def test_probe_parse_keeps_commit_times_and_first_projection_write() -> None:
    log = probe.parse(TEST_DECODING)
    (event,) = log.events
    assert event.event_type == "organization.bootstrap.initiated"
    assert event.stream_id == "22222222-2222-2222-2222-222222222222"
    job = "11111111-1111-1111-1111-111111111111"
    assert log.job_first_write[job] - event.committed == pytest.approx(0.75)
    assert log.job_first_status[job] == "pending"
    assert list(log.by_type("organization.bootstrap.initiated")) == [job]


def test_probe_parse_rejects_commit_without_timestamp() -> None:
    with pytest.raises(ValueError):
        probe.parse(["BEGIN 1", "COMMIT 1"])


def test_splice_replaces_only_its_own_block() -> None:
    other = "# Benchmarks\n\n## Reader: WAL -> Kafka drain\n\nreader table\n"
    first = report.splice(other, "v1")
    assert first.startswith(other.rstrip("\n"))
    assert report.HEADING in first and "v1" in first
    second = report.splice(first + "\n## Later section\n\nkept\n", "v2")
    assert "v1" not in second and "v2" in second
    assert "reader table" in second and "kept" in second
    assert second.count(report.START) == 1 and second.count(report.HEADING) == 1


def test_splice_into_empty_file_adds_title() -> None:
    text = report.splice("", "body")
    assert text.startswith("# Benchmarks")
    assert text.index(report.HEADING) < text.index(report.START) < text.index("body")


def test_profile_summary_shares() -> None:
    from bench import profiling

    raw = "main (a.py:1);work (b.py:2) 3\nmain (a.py:1);idle (c.py:3) 1\n"
    summary = profiling.summarize(raw)
    assert summary["self"][0] == ("work (b.py)", 0.75)
    assert ("main (a.py)", 1.0) in summary["inclusive"]
