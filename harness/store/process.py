"""A sqlite store's writer process: it inserts a sweep's chunks of runs, each in one transaction, while the
job computes the next ones and its writer thread (:mod:`harness.store.background`) encodes their Parquet files.

Why a process: sqlite's ``executemany`` takes the GIL back for every row it binds, so inserts in a thread
and the job's Python took turns (measured on 2 cores: a 20,000-run sweep kept about one core busy). A
process has its own interpreter. Only the rows travel to it, pickled through a pipe; the curves stay in
the job's process, whose writer thread writes the files first (a run never lacks them).

The protocol, one message each way per chunk: the job sends the chunk's rows (the arguments of
:meth:`~harness.store.tables.Tables.insert_runs`); the process inserts them and answers ``None`` or the
error's text. At most ``depth`` chunks wait beyond the one being inserted, so memory stays bounded however many
runs the job has.

A failure in the process is raised in the job at its next :meth:`WriterProcess.submit` or at
:meth:`WriterProcess.close`, as :class:`WriterError`; the process then stores nothing more. A chunk is
one transaction, so it is stored whole or not at all (a rerun of the sweep stores the rest). The process
runs in a session of its own, so a terminal's Ctrl-C does not reach it, and it ignores SIGINT and
SIGTERM: they are the job's to handle. When the job ends, however it ends (``kill -9`` included), the
pipe closes, and the process inserts the chunks it was sent and ends.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path


class WriterError(RuntimeError):
    """A chunk failed in the writer process (its message carries the process's error)."""


class WriterProcess:
    """Inserts submitted chunks of rows in order, in a process holding its own connection to the sqlite file ``db``."""

    def __init__(self, db: Path, depth: int = 1):
        self.db, self.depth = Path(db), depth
        self._proc: subprocess.Popen | None = None
        self._waiting = 0  # chunks sent and not yet answered
        self._error: str | None = None  # raised once, in the job
        self._failed = False  # and the answers after it (nothing more stored) are not

    def submit(self, rows: tuple) -> None:
        """Send a chunk's rows; blocks while more than ``depth`` chunks are unanswered. Raises an earlier failure."""
        self._raise()
        if self._proc is None:
            self._proc = subprocess.Popen([sys.executable, "-m", "harness.store.process", str(self.db)], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, start_new_session=True, env=_importable())
        while self._waiting > self.depth:
            self._answer()
        self._raise()
        try:
            pickle.dump(rows, self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._proc.stdin.flush()
        except BrokenPipeError:
            self._answer()  # the process ended: its last answer says why
            self._raise()
            raise
        self._waiting += 1

    def close(self) -> None:
        """Wait until every chunk sent is stored and the process has ended (after an interrupt too: the
        chunks sent are computed runs, and storing them takes a fraction of a second); raises what failed there."""
        proc, self._proc = self._proc, None
        if proc is None:
            return self._raise()
        try:
            proc.stdin.close()
            while self._waiting:
                self._answer(proc)
            proc.wait()
        except BaseException:
            proc.kill()  # a second interrupt: the chunk in progress is rolled back
            proc.wait()
            raise
        self._raise()

    def _answer(self, proc: subprocess.Popen | None = None) -> None:
        proc = proc or self._proc
        try:
            error = pickle.load(proc.stdout)
        except EOFError:
            code = proc.wait()
            self._waiting = 0
            error = f"the store's writer process ended (exit code {code}) with chunks unstored"
        else:
            self._waiting -= 1
        if error is not None and not self._failed:
            self._error, self._failed = error, True

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise WriterError(error)


def _importable() -> dict[str, str]:
    """The environment, with the directory holding this package first on the process's path (the job
    may have found it through its working directory or a path it was given)."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root if not path else f"{root}{os.pathsep}{path}"}


def serve(db: Path) -> None:
    """The process's loop: each chunk of rows read from stdin is inserted; its answer goes to stdout."""
    from harness.store.tables import Tables

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing printed may corrupt the answers
    tables = Tables.open_sqlite(db)
    failed = False
    while True:
        try:
            rows = pickle.load(inp)
        except EOFError:
            break
        error = None
        if failed:
            error = "not stored: an earlier chunk failed"
        else:
            try:
                tables.insert_runs(*rows)
            except BaseException as e:  # noqa: BLE001 - answered to the job, which raises it
                error, failed = f"{type(e).__name__}: {e}", True
        pickle.dump(error, out)
        out.flush()
    tables.close()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
