"""Ctrl-C at any moment of a command-line run: exit 130 with one line.

An entry point calls :func:`install` before its heavy imports (jax, orbax: seconds);
from then on Ctrl-C ends the process at once with the line ``interrupted``, until
:func:`raise_from_now_on` hands Ctrl-C back to Python (``KeyboardInterrupt``) where a
run handles it itself (training waits for a checkpoint being written and names the last
one). :func:`leave` then ends the process without the interpreter's teardown, which can
crash (rc 139) while XLA's compile threads are still running. Without :func:`install`
(a library call, a test) nothing changes. Standard library only, so that it loads in
milliseconds.
"""

from __future__ import annotations

import os
import signal
import sys

_installed = False
_pending = False  # a Ctrl-C arrived (after raise_from_now_on)


def _exit_now(signum, frame) -> None:
    print("interrupted", file=sys.stderr, flush=True)
    os._exit(130)


def install() -> None:
    """Ctrl-C ends the process with one line, now (an entry point's first statement)."""
    global _installed
    _installed = True
    signal.signal(signal.SIGINT, _exit_now)


def _raise(signum, frame) -> None:
    global _pending
    _pending = True
    raise KeyboardInterrupt


def raise_from_now_on() -> None:
    """Ctrl-C raises ``KeyboardInterrupt`` again (after :func:`install`), and is remembered
    for :func:`check`."""
    if _installed:
        signal.signal(signal.SIGINT, _raise)
        sys.unraisablehook = _unraisable


def _unraisable(info) -> None:
    """A Ctrl-C raised where Python cannot propagate it (a gc callback) is not printed as a
    traceback: :func:`check` raises it again where it can."""
    if not isinstance(info.exc_value, KeyboardInterrupt):
        sys.__unraisablehook__(info)


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C came and was swallowed: Python ignores an
    exception raised inside a garbage-collector callback (jax has one), so a long loop
    calls this between its steps."""
    if _pending:
        raise KeyboardInterrupt


def leave(rc: int) -> int:
    """Return ``rc``; after :func:`install`, end the process with it, skipping teardown."""
    sys.stdout.flush()
    sys.stderr.flush()
    if _installed:
        os._exit(rc)
    return rc
