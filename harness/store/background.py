"""One writer thread per job: a chunk of runs is stored (its Parquet files encoded and compressed, then its
rows inserted in one transaction) while the job prepares the next chunk or computes the next part
(:meth:`harness.store.writer.Tracker.log_runs`).

pyarrow's encoder releases the GIL for most of its time, so the files' work overlaps the job's Python.
sqlite's inserts do not (``executemany`` takes the GIL back for each row), so a sqlite store's rows go
on from this thread to a writer process (:mod:`harness.store.process`); a database server's are
inserted from here (the server does their work). At most one chunk waits while another is written.

A failure in the thread is raised in the job at its next :meth:`Background.submit` or at
:meth:`Background.close`; after one, the chunks still waiting are dropped (each chunk is one
transaction, so a chunk is stored whole or not at all, and a rerun of the sweep stores the rest).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

_DONE = object()


class Background:
    """Runs submitted callables one after another in a thread, in order."""

    def __init__(self, name: str, depth: int = 1):
        self.name = name
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None  # raised once, in the job
        self._failed = False  # and nothing runs after it
        self._thread: threading.Thread | None = None

    def submit(self, work: Callable[[], None]) -> None:
        """Queue ``work``; blocks while ``depth`` chunks already wait. Raises a failure of earlier work."""
        self._raise()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()
        self._queue.put(work)

    def close(self, drop: bool = False) -> None:
        """Wait for the queued work (``drop``: only for the work already started) and end the thread;
        raises a failure of that work."""
        if self._thread is not None:
            if drop:
                self._drain()
            self._queue.put(_DONE)
            self._thread.join()
            self._thread = None
        self._raise()

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _loop(self) -> None:
        while (work := self._queue.get()) is not _DONE:
            if not self._failed:
                try:
                    work()
                except BaseException as e:  # noqa: BLE001 - raised in the job's thread
                    self._error, self._failed = e, True
