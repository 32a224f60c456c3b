"""The chaos run's plan: what to emit, and which fault to inject when, all from one seed.

Pure: the same seed and options give the same plan (emission times, signatures, admins
per organization; fault kinds, moments, targets and durations). Only what the machine
does with the plan (how long a restart takes, which replica holds the slot at that
moment) is not in it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pipeline import events as ev

RUN_KILL = "run_kill"
WORKER_KILL = "worker_kill"
KAFKA_RESTART = "kafka_restart"
POSTGRES_RESTART = "postgres_restart"
TEMPORAL_OUTAGE = "temporal_outage"
LEADER_FREEZE = "leader_freeze"

FAULT_KINDS = (
    RUN_KILL,
    WORKER_KILL,
    KAFKA_RESTART,
    POSTGRES_RESTART,
    TEMPORAL_OUTAGE,
    LEADER_FREEZE,
)

# The chain event whose first commit after a fault's end says the pipeline moves again:
# the enqueue agent's pending needs the reader, Kafka and the agents; workflow_started
# needs the starter and Temporal; the queue outcome needs the worker.
RECOVERY_EVENT = {
    RUN_KILL: ev.QUEUE_PENDING,
    LEADER_FREEZE: ev.QUEUE_PENDING,
    KAFKA_RESTART: ev.QUEUE_PENDING,
    POSTGRES_RESTART: ev.QUEUE_PENDING,
    TEMPORAL_OUTAGE: ev.BOOTSTRAP_WORKFLOW_STARTED,
    WORKER_KILL: ev.QUEUE_COMPLETED,
}

DESCRIPTIONS = {
    RUN_KILL: "SIGKILL of a `pipeline run` replica, restarted after `hold` s",
    WORKER_KILL: "SIGKILL of `pipeline worker`, restarted at once",
    KAFKA_RESTART: "SIGKILL of the Kafka broker, restarted at once",
    POSTGRES_RESTART: "`pg_ctl restart -m immediate`",
    TEMPORAL_OUTAGE: "SIGKILL of the Temporal dev server, restarted after `hold` s",
    LEADER_FREEZE: "SIGSTOP of the replica holding the slot, SIGCONT after `hold` s",
}

# A rough time each fault takes on this machine, only to warn when a plan cannot fit.
_EXPECTED_SECONDS = {
    RUN_KILL: 2.0,
    WORKER_KILL: 2.0,
    KAFKA_RESTART: 12.0,
    POSTGRES_RESTART: 4.0,
    TEMPORAL_OUTAGE: 8.0,
    LEADER_FREEZE: 0.0,
}


@dataclass(frozen=True, slots=True)
class Emission:
    """One ``organization.bootstrap.initiated`` to commit ``at`` seconds into the load."""

    index: int
    at: float
    signature: str  # "stream" (edge functions) or "aggregate" (activities)
    admins: int


@dataclass(frozen=True, slots=True)
class PlannedFault:
    """A fault to inject ``at`` seconds into the load (later if the previous one is still
    going: faults run one after the other)."""

    index: int
    at: float
    kind: str
    target: int  # the replica a run_kill hits; 0 otherwise
    hold: float  # seconds down / frozen / before the restart


@dataclass(frozen=True, slots=True)
class Options:
    """What the plan is made from (the command-line options that shape it)."""

    seed: int
    bootstraps: int
    rate: float
    faults: int
    replicas: int
    temporal_outage: float = 30.0
    freeze_min: float = 5.0
    freeze_max: float = 15.0
    restart_delay_max: float = 2.0


@dataclass(frozen=True, slots=True)
class Plan:
    options: Options
    emissions: tuple[Emission, ...]
    faults: tuple[PlannedFault, ...]

    @property
    def load_seconds(self) -> float:
        return self.options.bootstraps / self.options.rate

    def expected_fault_seconds(self) -> float:
        """About how long the faults keep the harness busy, one after the other."""
        return sum(_EXPECTED_SECONDS[f.kind] + f.hold for f in self.faults)


def make_plan(options: Options) -> Plan:
    """The emissions and faults of a run; every kind of fault at least once."""
    if options.bootstraps < 1 or options.rate <= 0:
        raise ValueError("bootstraps must be >= 1 and rate > 0")
    if options.faults < len(FAULT_KINDS):
        raise ValueError(f"faults must be >= {len(FAULT_KINDS)}: one of each kind at least")
    if options.replicas not in (1, 2):
        raise ValueError("replicas must be 1 or 2")
    rng = random.Random(options.seed)
    emissions = tuple(
        Emission(
            index=k,
            at=k / options.rate,
            signature=rng.choice(("stream", "aggregate")),
            admins=rng.choice((1, 2)),
        )
        for k in range(options.bootstraps)
    )
    kinds = list(FAULT_KINDS) + [
        rng.choice(FAULT_KINDS) for _ in range(options.faults - len(FAULT_KINDS))
    ]
    rng.shuffle(kinds)
    load = options.bootstraps / options.rate
    # Faults start after a short warm-up and leave a tail of load after them, so the
    # chain has new events to carry after the last fault (its recovery is measurable).
    warmup = min(10.0, load * 0.05)
    tail = min(20.0, load * 0.15)
    slot = max(load - warmup - tail, 1.0) / len(kinds)
    faults = []
    for i, kind in enumerate(kinds):
        at = warmup + i * slot + rng.uniform(0.0, slot * 0.5)
        target = rng.randrange(options.replicas) if kind == RUN_KILL else 0
        if kind == TEMPORAL_OUTAGE:
            hold = options.temporal_outage
        elif kind == LEADER_FREEZE:
            hold = rng.uniform(options.freeze_min, options.freeze_max)
        elif kind == RUN_KILL:
            hold = rng.uniform(0.0, options.restart_delay_max)
        else:
            hold = 0.0
        faults.append(PlannedFault(i, round(at, 3), kind, target, round(hold, 3)))
    return Plan(options, emissions, tuple(faults))
