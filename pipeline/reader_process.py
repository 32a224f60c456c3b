"""``pipeline run``'s replication reader, in a process of its own.

The reader and the consumer edge used to share one process: one event loop and one GIL.
Under a backlog the edge's decoding and folding held the loop for tens of milliseconds
at a time, so commit -> Kafka, under 1 ms for ``pipeline reader`` alone, was 61-113 ms
p50 inside ``pipeline run`` (docs/benchmarks.md), and the two competed for one core of a
machine that has two. Now ``pipeline run`` starts the reader as a child process
(``python -m pipeline.reader_process``, the same settings from the same environment)
and supervises it:

- **One unit.** The child dies with its parent (``PR_SET_PDEATHSIG``: a SIGKILLed
  ``pipeline run`` leaves no reader behind holding the slot), and the parent dies the
  way its reader did: by the same signal, or with the same exit code (2 for a
  configuration error the reader found, its message already logged). A reader that
  stopped by itself (a SIGTERM sent to it alone) stops the parent gracefully. So, seen
  from the outside, ``pipeline run`` fails exactly as when the reader ran inside it.
- **Stopping.** A SIGTERM to ``pipeline run`` reaches the reader too (from the parent
  as its app stops, or from a signal to the process group): the reader flushes what
  Kafka holds and confirms it to the slot, as ``pipeline reader`` does; the parent
  waits for that up to :data:`STOP_GRACE_S`.
- **Its figures.** The child writes its :class:`~replication.reader_config.ReaderStats`
  into a small shared memory block (a memfd handed down) every :data:`PUBLISH_EVERY_S`;
  the parent copies them into a ``ReaderStats`` of its own, which ``/metrics`` and
  ``/readyz`` read as before (:mod:`pipeline.runner`). A seqlock keeps a copy from
  mixing two writes.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import mmap
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import Final, NoReturn

from prometheus_client import Counter

from pipeline import eventloop
from pipeline.logsetup import LOG_FORMAT
from replication.lsn import LSN
from replication.reader_config import ReaderStats
from replication.retry import EXIT_CONFIG

log = logging.getLogger(__name__)

SETUP_FAILURES = Counter("pipeline_reader_setup_failures", "Fatal reader setup errors.")

PUBLISH_EVERY_S: Final = 0.1
STOP_GRACE_S: Final = 20.0
_PR_SET_PDEATHSIG: Final = 1

# The shared block: a sequence number (odd while the child writes), then the stats.
_FIELDS: Final = (
    "active",
    "events_read",
    "events_acked",
    "dead_lettered",
    "dead_letters_unsent",
    "snapshot_rows",
    "transactions",
    "confirmed_lsn",
    "server_wal_end",
    "sessions",
    "waiting_for_slot_pid",
    "pending_transactions",
)
_LAYOUT: Final = struct.Struct(f"<Q{len(_FIELDS)}Q")
SIZE: Final = _LAYOUT.size


def pack(stats: ReaderStats) -> tuple[int, ...]:
    """The stats as the block's numbers (``waiting_for_slot_pid`` None as 0)."""
    return (
        int(stats.active),
        stats.events_read,
        stats.events_acked,
        stats.dead_lettered,
        stats.dead_letters_unsent,
        stats.snapshot_rows,
        stats.transactions,
        int(stats.confirmed_lsn),
        int(stats.server_wal_end),
        stats.sessions,
        stats.waiting_for_slot_pid or 0,
        stats.pending_transactions,
    )


def unpack(values: tuple[int, ...], into: ReaderStats) -> None:
    """Set ``into`` from the block's numbers (the inverse of :func:`pack`)."""
    (
        active,
        into.events_read,
        into.events_acked,
        into.dead_lettered,
        into.dead_letters_unsent,
        into.snapshot_rows,
        into.transactions,
        confirmed,
        wal_end,
        into.sessions,
        waiting,
        into.pending_transactions,
    ) = values
    into.active = bool(active)
    into.confirmed_lsn = LSN(confirmed)
    into.server_wal_end = LSN(wal_end)
    into.waiting_for_slot_pid = waiting or None


class StatsBlock:
    """The shared block: one writer (the child), one reader (the parent)."""

    def __init__(self, memory: mmap.mmap) -> None:
        self._memory = memory
        self._seq = 0

    def write(self, stats: ReaderStats) -> None:
        self._seq += 1  # odd: a write in progress
        struct.pack_into("<Q", self._memory, 0, self._seq)
        _LAYOUT.pack_into(self._memory, 0, self._seq, *pack(stats))
        self._seq += 1
        struct.pack_into("<Q", self._memory, 0, self._seq)

    def read(self, into: ReaderStats) -> bool:
        """Copy the last complete write into ``into``; False if none could be had now."""
        for _ in range(100):
            before, *values = _LAYOUT.unpack_from(self._memory, 0)
            if before % 2:
                continue
            (after,) = struct.unpack_from("<Q", self._memory, 0)
            if after == before:
                unpack(tuple(values), into)
                return True
        return False


# -- the parent's side -------------------------------------------------------------------


class ReaderProcess:
    """The reader child of ``pipeline run``: started, mirrored, stopped, followed."""

    def __init__(self, stats: ReaderStats) -> None:
        self.stats = stats
        self._fd = os.memfd_create("pipeline-reader-stats")
        os.ftruncate(self._fd, SIZE)
        self._block = StatsBlock(mmap.mmap(self._fd, SIZE))
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the child (stdout and stderr are this process's)."""
        # The child logs at this process's level: `pipeline -v run` debugs the reader too.
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.reader_process",
                str(self._fd),
                str(os.getpid()),
                level,
            ],
            pass_fds=(self._fd,),
            stdin=subprocess.DEVNULL,
        )
        log.info("replication reader started as process %d", self._proc.pid)

    async def run(self) -> None:
        """Start the child; mirror its stats until it exits, then end this process as it
        ended. Cancelled (the app stops): stop the child and wait for its last flush.

        Started with the app (an early task, after the topics were checked), as the
        reader was when it ran inside the process.
        """
        self.start()
        proc = self._proc
        assert proc is not None
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        pidfd = os.pidfd_open(proc.pid)
        loop.add_reader(pidfd, on_exit)
        try:
            while not exited.done():
                self._block.read(self.stats)
                await asyncio.wait([exited], timeout=PUBLISH_EVERY_S)
            code = proc.wait()
            self._block.read(self.stats)
            follow(code, proc.pid)
        except asyncio.CancelledError:
            await asyncio.shield(asyncio.to_thread(self.stop))
            raise
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)

    def stop(self) -> None:
        """SIGTERM the child and wait for it (SIGKILL after STOP_GRACE_S)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            log.error("replication reader did not stop within %.0fs; killing it", STOP_GRACE_S)
            proc.kill()
            proc.wait()
        self._block.read(self.stats)


def follow(
    code: int,
    pid: int,
    *,
    kill: Callable[[int, int], None] = os.kill,
    flush_logs: Callable[[], None] = logging.shutdown,
) -> None:
    """End this process the way its reader child ended (``code``: Popen's returncode)."""
    if code == 0:
        # Stopped by a signal of its own (the app's stop reaches the reader too): the
        # whole of `pipeline run` stops, gracefully.
        log.warning("replication reader process %d stopped; stopping pipeline run", pid)
        kill(os.getpid(), signal.SIGTERM)
        return
    if code < 0:
        sig = signal.Signals(-code)
        log.critical(
            "replication reader process %d died by %s; pipeline run dies with it", pid, sig.name
        )
        flush_logs()
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # those two cannot be handled
            signal.signal(sig, signal.SIG_DFL)
        kill(os.getpid(), sig)
        return
    if code == EXIT_CONFIG:  # its message (what to change) is in the log already
        SETUP_FAILURES.inc()
    log.critical("replication reader process %d exited with %d; so does pipeline run", pid, code)
    flush_logs()
    os._exit(code)


# -- the child's side --------------------------------------------------------------------


def _die_with(parent: int) -> None:
    """SIGKILL this process when its parent dies (Linux), as one process would have."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != parent:  # it died before the prctl took effect
        os._exit(1)


async def _read(block: StatsBlock) -> int:
    from pipeline.cli_exit import exit_code
    from pipeline.config import load_settings, reader_config
    from replication.errors import ReaderSetupError
    from replication.reader import Reader

    try:
        reader = Reader(reader_config(load_settings()))
    except Exception as exc:  # the parent read the same settings; say so if they changed
        log.critical("replication reader cannot start: %s", exc)
        return exit_code(exc)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def publish() -> None:
        while True:
            block.write(reader.stats)
            await asyncio.sleep(PUBLISH_EVERY_S)

    publishing = asyncio.create_task(publish())
    try:
        await reader.run(stop)
        return 0
    except Exception as exc:
        # What retrying cannot fix (replication.retry: FATAL; wal_level, privileges, a
        # pooler... or a bug): the parent exits with the same code.
        setup = isinstance(exc, ReaderSetupError)  # its message says what to change
        log.critical("replication reader cannot run: %s", exc, exc_info=None if setup else exc)
        return exit_code(exc)
    finally:
        publishing.cancel()
        reader.stats.active = False
        block.write(reader.stats)


_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def main(argv: list[str]) -> NoReturn:
    """``python -m pipeline.reader_process FD PARENT_PID [LEVEL]`` (started by
    :class:`ReaderProcess`; LEVEL is the parent's log level, default INFO)."""
    fd, parent = int(argv[1]), int(argv[2])
    level = argv[3] if len(argv) > 3 else "INFO"
    _die_with(parent)
    logging.basicConfig(
        level=level if level in _LEVELS else "INFO",
        format=LOG_FORMAT,
        stream=sys.stderr,
    )
    if level != "DEBUG":
        # As the CLI does without -v: aiokafka narrates every metadata refresh at INFO.
        logging.getLogger("aiokafka").setLevel(logging.WARNING)
    block = StatsBlock(mmap.mmap(fd, SIZE))
    code = 1
    try:
        code = eventloop.run(_read(block))
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    main(sys.argv)
