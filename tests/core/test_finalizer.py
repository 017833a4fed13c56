"""Finalizers of objects collected without close(): no Python code runs as the object goes (so
a Ctrl-C there cannot lose the release), the release runs once at the next safe point, and
memory comes back."""

from __future__ import annotations

import gc
import sys
import threading
from typing import Any

import numpy as np

import vknb
from vknb._vk import finalizer as F


class _Thing:
    pass


def test_release_runs_once_at_reap_and_detach_takes_it() -> None:
    ran: list[int] = []
    a, b = _Thing(), _Thing()
    fa = F.Finalizer(a, ran.append, 1)
    fb = F.Finalizer(b, ran.append, 2)
    assert fa.alive and fb.alive and fa.ref() is a
    del a
    assert ran == [] and fa.alive  # queued, not run: nothing ran as it went
    F.reap()
    assert ran == [1]
    F.reap()
    assert ran == [1]
    info = fb.detach()
    assert info is not None and info[0] is b and info[2] == (2,)
    assert fb.detach() is None and not fb.alive
    del b
    F.reap()
    assert ran == [1]  # detached: never run
    c = _Thing()
    fc = F.Finalizer(c, ran.append, 3)
    fc()
    fc()
    assert ran == [1, 3] and not fc.alive
    del c
    F.reap()
    assert ran == [1, 3]


def test_no_python_code_runs_as_a_vknb_object_is_collected(dev: Any) -> None:
    """What a Ctrl-C could interrupt: with weakref.finalize, its __call__ and vknb's callback
    ran right at ``del`` (a KeyboardInterrupt there is printed and dropped, with the release)."""
    objs = [
        vknb.Buffer(256),
        vknb.zeros(64, np.float32),
        vknb.asimage(np.zeros((4, 4, 4), np.float32)),
    ]
    with vknb.batch() as b:
        vknb.compile(
            "layout(local_size_x=1) in; layout(binding=0) buffer B { float v[]; }; "
            "void main() { v[0] += 1.0; }",
            name="fin_probe",
        )(objs[1], grid=1)
    objs.append(b)
    calls: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            calls.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")

    sys.setprofile(profile)
    try:
        objs.clear()
        del b
        gc.collect()
    finally:
        sys.setprofile(None)
    assert not [c for c in calls if "/vknb/" in c or "weakref" in c], calls
    assert F.pending() >= 4
    dev.collect()
    assert F.pending() == 0


def test_memory_comes_back_after_objects_are_dropped_in_a_loop(
    dev: Any, rng: Any, no_leaks: None
) -> None:
    x = rng.random(1 << 16, dtype=np.float32)
    for _ in range(50):
        a = vknb.asarray(x)
        m = vknb.Buffer(4096, memory="upload")
        with m.mapped(np.float32) as v:
            v[:] = 1.0
        del v
        np.testing.assert_array_equal(a.numpy(), x)
        del a, m
    assert F.pending() <= 3  # the last pass's drops: each earlier one was reaped by the next


def test_objects_dropped_from_8_threads_are_all_released(
    dev: Any, rng: Any, no_leaks: None
) -> None:
    x = rng.random(4096, dtype=np.float32)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(40):
                a = vknb.asarray(x)
                assert np.array_equal(a.numpy(), x)
                del a
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
