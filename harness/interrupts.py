"""Ctrl-C and SIGTERM held back while a write that must be whole is made (a sweep's parent run set RUNNING,
or ended), then raised as they would have been."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

HELD = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def deferred_interrupts():
    """Run the block with Ctrl-C and SIGTERM held: one that arrives meanwhile is raised (by the handler
    that was in place) once the block is done. Any thread may receive a process's signal, so the handlers
    are swapped rather than the signals blocked. Outside the main thread, the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    before = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in HELD}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        if got:
            _deliver(got[0], before[got[0]])


def _deliver(signum: int, handler) -> None:
    if callable(handler):
        handler(signum, None)  # raises, as KeyboardInterrupt does
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)
