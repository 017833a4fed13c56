"""The session's shared device: created on first use, replaced by ``use`` and ``reset``.

Example
-------
>>> import vknb
>>> vknb.current_device() is None or vknb.current_device() is vknb.device()
True
"""

from __future__ import annotations

import threading

from .device import Device
from .instance import get_instance, select_device_index

# --- the session device ----------------------------------------------------------------------

_session: Device | None = None
_session_lock = threading.Lock()
_session_generation = 0


def device() -> Device:
    """The session's shared device, created on first use.

    The best-scored physical device, unless ``VKNB_DEVICE`` (an index or a name substring) or
    :func:`use` says otherwise.  ``vknb.device().reason`` says why it was chosen.

    Example
    -------
    >>> dev = vknb.device()
    >>> dev is vknb.device()
    True
    """
    global _session
    d = _session
    if d is not None and not d._closed:
        return d
    with _session_lock:
        if _session is None or _session._closed:
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
    infos = get_instance().physical_devices()
    i, reason = select_device_index(infos, str(index))
    with _session_lock:
        if _session is not None and not _session._closed and _session.index == i:
            return _session
        old = _session
        _session = Device(i)
        _session.reason = f"vknb.use({index!r})" if reason else reason
        _session_generation += 1
    if old is not None:
        old.synchronize()
    return _session


def reset() -> Device:
    """Close the session device (freeing everything on it) and bring up a fresh one.

    For a lost device or after a runaway kernel.  Kernels compiled before are rebuilt from the
    SPIR-V cache when next called.

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
        old.close()
    with _session_lock:
        _session = Device(idx)
        return _session


def session_generation() -> int:
    """Increments whenever the session device changes (kernels use it to rebuild)."""
    return _session_generation


def synchronize() -> None:
    """Wait for every asynchronous submission on the session device.

    Example
    -------
    >>> vknb.synchronize()
    """
    d = _session
    if d is not None and not d._closed:
        d.synchronize()




def current_device() -> Device | None:
    """The session device if one exists (and is open), else None; never creates one.

    Example
    -------
    >>> d = vknb.current_device()
    >>> d is None or d is vknb.device()
    True
    """
    d = _session
    return d if d is not None and not d.closed else None
