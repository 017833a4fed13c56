"""Ctrl-C held back where Python must not be interrupted: while Vulkan objects are made and
handed to their owner, while releases run, and in code that C calls back."""

from __future__ import annotations

import _thread
import os
import signal
import threading
from typing import Any

try:  # the C module: signal.signal's enum conversions cost microseconds a call
    import _signal as _sig
except ImportError:  # pragma: no cover - other Pythons
    _sig = signal
_SIGINT = int(signal.SIGINT)
# The ident of the thread that runs signal handlers (a C call to compare with: the Python
# calls of threading.current_thread() are points where Ctrl-C can land, before it is held).
_main = [threading.main_thread().ident]


def _after_fork_in_child() -> None:
    _main[0] = threading.main_thread().ident  # (the thread that forked)


os.register_at_fork(after_in_child=_after_fork_in_child)


class deferred_interrupt:
    """Hold Ctrl-C back while Vulkan objects are made and handed to their owner.

    Python raises ``KeyboardInterrupt`` in the main thread as soon as a C call returns: a
    ``vkCreate*`` that was running when Ctrl-C came returns its new handle, and the exception
    fires before any Python line can record it, so the object leaks (and the validation layer
    names it at ``vkDestroyDevice``); a release that destroys several handles stops halfway.
    Inside this block, SIGINT is only noted; on leaving, the previous handler runs
    (``KeyboardInterrupt`` by default), once the owner holds its handles.  Outside the main
    thread, or where SIGINT has no Python handler, it does nothing.  Costs two handler swaps
    (well under a microsecond).

    Example
    -------
    >>> with deferred_interrupt():
    ...     pass
    """

    __slots__ = ("_got", "_old")

    def __enter__(self) -> deferred_interrupt:
        self._old: Any = None
        self._got: list[int] = []
        if _thread.get_ident() != _main[0]:
            return self
        try:
            old = _sig.getsignal(_SIGINT)
            if callable(old):
                got: list[int] = []
                self._got = got
                # (the frame is not kept: it would hold the objects being made alive)
                _sig.signal(_SIGINT, lambda s, f: got.append(s))
                self._old = old
        except (ValueError, OSError):  # not the main interpreter
            pass
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        old = self._restore()
        if old is not None and not (
            exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        ):
            old(_SIGINT, None)  # the deferred Ctrl-C, now (default: KeyboardInterrupt)

    def _restore(self) -> Any:
        """Put the previous handler back; return it if a Ctrl-C was held back meanwhile."""
        old = self._old
        if old is None:
            return None
        self._old = None
        _sig.signal(_SIGINT, old)
        if not self._got:
            return None
        self._got = []
        return old

    def deliver(self) -> None:
        """Inside the block: run a Ctrl-C held back so far now, at a point the caller chose
        (where its handler's KeyboardInterrupt leaves nothing half done); else nothing.

        Example
        -------
        >>> with deferred_interrupt() as held:
        ...     held.deliver()
        """
        got = self._got
        if got and self._old is not None:
            got.clear()
            self._old(_SIGINT, None)


class held_in_callback(deferred_interrupt):
    """:class:`deferred_interrupt` for Python code that C calls back (the validation layer's
    messenger).  A ``KeyboardInterrupt`` raised there cannot reach the user: the caller in C
    cannot take it, so cffi prints "Exception ignored" and drops it, with the rest of the
    callback.  Here the callback runs whole, and a Ctrl-C held back meanwhile is handed to a
    new thread that sends it to the main thread again (``_thread.interrupt_main``) once the
    callback has returned and released the interpreter: it lands where the driver's call
    returns into Python, as any Ctrl-C may.

    Example
    -------
    >>> with held_in_callback():
    ...     pass
    """

    __slots__ = ()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._restore() is not None:
            _rearming.append(1)
            _thread.start_new_thread(_rearm, ())


_rearming: list[int] = []  # Ctrl-Cs handed to a thread by held_in_callback, not yet sent again


def _rearm() -> None:
    try:
        _thread.interrupt_main()
    finally:
        _rearming.pop()


def rearming() -> bool:
    """Whether a Ctrl-C held back in a callback is still on its way to the main thread.

    Example
    -------
    >>> rearming()
    False
    """
    return bool(_rearming)
