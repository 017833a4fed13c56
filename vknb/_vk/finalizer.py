"""Finalizers that a Ctrl-C cannot lose.

``weakref.finalize`` runs Python code (its ``__call__``, then the callback) at the moment the
garbage collector frees the object, which is anywhere in the user's code.  CPython checks for
signals as that code runs: a Ctrl-C landing there raises ``KeyboardInterrupt`` inside the
callback, where the interpreter prints it as "Exception ignored" and drops it, with the
release it stopped.  The object's Vulkan handles then leak until the device goes, and the
user's Ctrl-C is lost too.

A :class:`Finalizer` registers a weak reference whose callback is a C method
(``collections.deque.append``): no Python code runs when the object is freed, so there is
nothing for a signal to interrupt, and a pending Ctrl-C is raised in the user's code as usual.
The callback only queues the reference; :func:`reap` runs the queued releases later, at the
device's safe points (a poll, a wait, a submission, ``collect()``), with Ctrl-C held back
while each one is taken from the queue and run.  Releases therefore run on whichever thread
reaches such a point, possibly with a device lock held: they must take no locks themselves
(vknb's only queue their work with ``Device.retire_later``).
"""

from __future__ import annotations

import logging
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from .interrupts import deferred_interrupt

log = logging.getLogger("vknb")


class _Ref(weakref.ref):
    __slots__ = ("args", "func")
    func: Callable[..., Any]
    args: tuple[Any, ...]


# References whose objects are gone (appended by the C callback, taken by reap()); and the
# registered ones not yet run or detached, by id (the dict keeps each reference alive: a weak
# reference that is itself collected never calls back).
collected: deque[_Ref] = deque()
_live: dict[int, _Ref] = {}


class Finalizer:
    """Run ``func(*args)`` once after ``obj`` is collected, at the next :func:`reap`.

    The subset of ``weakref.finalize`` that vknb uses: :attr:`alive`, :meth:`detach`, and
    calling it runs the release now.  ``func`` and ``args`` must not refer to ``obj``.

    Example
    -------
    >>> class Thing: pass
    >>> t, ran = Thing(), []
    >>> f = Finalizer(t, ran.append, 1)
    >>> del t; reap(); ran
    [1]
    """

    __slots__ = ("_ref",)

    def __init__(self, obj: Any, func: Callable[..., Any], *args: Any) -> None:
        ref = _Ref(obj, collected.append)
        ref.func = func
        ref.args = args
        _live[id(ref)] = ref  # (one C call: registered, or not at all)
        self._ref = ref

    @property
    def ref(self) -> weakref.ref[Any]:
        """The weak reference to the object."""
        return self._ref

    @property
    def alive(self) -> bool:
        """Whether the release has neither run nor been detached."""
        return id(self._ref) in _live

    def detach(self) -> tuple[Any, Callable[..., Any], tuple[Any, ...]] | None:
        """Unregister: ``(obj, func, args)`` for the caller to run, or None if it ran or was
        detached already (exactly one caller gets it)."""
        ref = _live.pop(id(self._ref), None)
        if ref is None:
            return None
        return ref(), ref.func, ref.args

    def __call__(self) -> None:
        """Run the release now, unless it ran or was detached already."""
        with deferred_interrupt():
            info = self.detach()
            if info is not None:
                _run(info[1], info[2])


def _run(func: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        func(*args)
    except Exception:  # pragma: no cover - never raise from cleanup
        log.exception("a finalizer of vknb failed")


def pending() -> int:
    """How many collected objects wait for :func:`reap`.

    Example
    -------
    >>> pending() >= 0
    True
    """
    return len(collected)


def reap() -> None:
    """Run the releases of the objects collected so far (any thread; Ctrl-C is held back while
    each is taken from the queue and run, so none is lost or stopped halfway).

    Example
    -------
    >>> reap()
    """
    if not collected:
        return
    with deferred_interrupt():
        while True:
            try:
                ref = collected.popleft()
            except IndexError:
                return
            if _live.pop(id(ref), None) is not None:
                _run(ref.func, ref.args)


class WeakSet:
    """The objects added and not yet collected, held weakly (``weakref.WeakSet`` without its
    Python callback: an entry whose object goes is dropped by the C callback
    ``deque.append`` and swept at the next :meth:`add` or iteration, so no Python code runs,
    and no Ctrl-C can land, as the object goes).  Safe from any thread.

    Example
    -------
    >>> class Thing: pass
    >>> s, t = WeakSet(), Thing()
    >>> s.add(t); len(list(s))
    1
    >>> del t; list(s)
    []
    """

    __slots__ = ("_gone", "_refs")

    def __init__(self) -> None:
        self._refs: dict[int, weakref.ref[Any]] = {}  # by the reference's id (alive: unique)
        self._gone: deque[weakref.ref[Any]] = deque()

    def _sweep(self) -> None:
        gone, refs = self._gone, self._refs
        while gone:
            try:
                ref = gone.popleft()
            except IndexError:
                return
            refs.pop(id(ref), None)

    def add(self, obj: Any) -> None:
        """Add ``obj`` (each object once: an entry per call)."""
        self._sweep()
        ref = weakref.ref(obj, self._gone.append)
        self._refs[id(ref)] = ref

    def discard(self, obj: Any) -> None:
        """Remove ``obj`` if present."""
        for key, ref in list(self._refs.items()):
            if ref() is obj:
                self._refs.pop(key, None)

    def __iter__(self) -> Iterator[Any]:
        self._sweep()
        for ref in list(self._refs.values()):
            obj = ref()
            if obj is not None:
                yield obj

    def __len__(self) -> int:
        return sum(1 for _ in self)
