"""The session's shared device: created on first use, replaced by ``use`` and ``reset``.

Example
-------
>>> import vknb
>>> vknb.current_device() is None or vknb.current_device() is vknb.device()
True
"""

from __future__ import annotations

import threading

from .. import _vk
from .device import CLOSED, OPEN, Device
from .instance import get_instance, printf_instance, replace_instance, select_device_index

# --- the session device ----------------------------------------------------------------------

_session: Device | None = None
_session_lock = threading.Lock()
_session_generation = 0

# How long reset() lets a healthy device finish its submitted work before abandoning it.
RESET_WAIT_S = 10.0

_prewarm: threading.Thread | None = None


def prewarm() -> None:
    """Start making the session device in the background if there is none yet, so that the
    driver's start-up (hundreds of milliseconds on a discrete GPU) overlaps work that does not
    need the device (a kernel's compile and reflection: :func:`vknb.compile` calls this first).

    Nothing changes for the caller: :func:`device` returns the same device, made once, and
    raises whatever making it raised.  The thread is not a daemon, so an exit waits for it
    (never tearing the driver down mid-creation) and then closes the device as usual.

    Example
    -------
    >>> vknb.core.session.prewarm()                          # doctest: +SKIP
    """
    global _prewarm
    if _session is not None or _prewarm is not None:
        return

    def make() -> None:
        try:
            device()
        except BaseException:  # device() raises it again, in the caller, where it is seen
            pass
        finally:
            _vk.background_creation -= 1

    t = threading.Thread(target=make, name="vknb-device", daemon=False)
    _prewarm = t
    _vk.background_creation += 1  # (before the thread can take any lock)
    try:
        t.start()
    except BaseException:
        _vk.background_creation -= 1
        raise


def device() -> Device:
    """The session's shared device, created on first use.

    The best-scored physical device, unless ``VKNB_DEVICE`` (an index or a name substring) or
    :func:`use` says otherwise.  ``vknb.device().reason`` says why it was chosen.  A lost
    session device stays the session device (its calls raise DeviceLost naming the fix) until
    :func:`reset`.

    Example
    -------
    >>> dev = vknb.device()
    >>> dev is vknb.device()
    True
    """
    global _session
    d = _session
    if d is not None and d.state is OPEN and d.epoch == _vk.epoch:
        return d
    if _vk.forked_mid_creation:  # the lock may be held by a thread the child does not have
        raise _vk.fork_error("the session device (being made when the process forked)")
    with _session_lock:
        d = _session
        if d is not None and d.state != CLOSED:
            if not d.usable_here():
                raise _vk.fork_error("the session device")
            return d  # lost: its calls say so
        _session = Device()
        return _session


def use(index: int | str) -> Device:
    """Make physical device ``index`` (or the first named like the string) the session device.

    Kernels compiled without ``device=`` follow the session device: they rebuild their pipeline
    on the new device at their next call (from the cached SPIR-V).  Arrays stay where they are.

    Example
    -------
    >>> vknb.use(0)                                          # doctest: +SKIP
    <vknb.Device 0: llvmpipe ...>
    """
    global _session, _session_generation
    if isinstance(index, bool) or not isinstance(index, (int, str)):
        raise TypeError(f"vknb.use: give a device index or a name substring, got {index!r}")
    infos = get_instance().physical_devices()
    i, reason = select_device_index(infos, str(index))
    with _session_lock:
        if _session is not None and _session.state is OPEN and _session.index == i:
            return _session
        old = _session
        _session = Device(i)
        _session.reason = f"vknb.use({index!r})" if reason else reason
        _session_generation += 1
    if old is not None and old.state is OPEN and old.usable_here():
        old.synchronize()
    return _session


def reset() -> Device:
    """Close the session device (freeing everything on it) and bring up a fresh one.

    For a lost device or after a runaway kernel: a lost device is abandoned at once (nothing
    waits for it; its memory is never reused).  A healthy one first finishes the work already
    submitted (at most 10 s; asynchronous calls still pending then raise on ``wait()``).
    Kernels compiled without ``device=`` are rebuilt on the new device from the SPIR-V cache
    when next called; Arrays of the old device are closed.

    Example
    -------
    >>> dev = vknb.reset()                                   # doctest: +SKIP
    """
    global _session, _session_generation
    with _session_lock:
        old = _session
        idx = old.index if old is not None else None
        _session = None
        _session_generation += 1
    if old is not None:
        old.close(wait_s=RESET_WAIT_S)
        if old.lost and old.usable_here():
            # Its runaway work may still occupy threads its instance shares (lavapipe).
            replace_instance()
    with _session_lock:
        if _session is None or _session.state is not OPEN:
            _session = Device(idx)
        return _session


def printf_device(index: int) -> Device:
    """The device kernels that call ``debugPrintfEXT`` run on when the session's instance
    cannot capture their output: physical device ``index`` on the debug-printf instance (one
    per index, made on first use).  Where the session has the validation layer on, it is the
    session device itself."""
    inst = printf_instance()
    with _session_lock:
        if inst is get_instance() and _session is not None and _session.state is OPEN:
            if _session.index == index:
                return _session
        d = _printf_devices.get(index)
        if d is None or d.state is not OPEN:
            d = _printf_devices[index] = Device(index, instance=inst)
        return d


_printf_devices: dict[int, Device] = {}


def session_generation() -> int:
    """Increments whenever the session device changes (kernels use it to rebuild)."""
    return _session_generation


def synchronize() -> None:
    """Wait for every asynchronous call on the session device (numpy outputs written back).

    Example
    -------
    >>> vknb.synchronize()
    """
    d = _session
    if d is not None and d.state != CLOSED:
        d.synchronize()


def current_device() -> Device | None:
    """The session device if one exists (lost ones included), else None; never creates one.

    Example
    -------
    >>> d = vknb.current_device()
    >>> d is None or d is vknb.device()
    True
    """
    d = _session
    return d if d is not None and d.state != CLOSED and d.usable_here() else None
