"""Device memory: the allocator (sub-allocation, dedicated allocations, the recycle cache,
fragmentation), memory statistics back at their baseline after loops, and allocations the
heap cannot hold.
"""

from __future__ import annotations

import gc
import json
import threading
from typing import Any

import numpy as np
import pytest
from helpers import DOUBLE, DOUBLE_A, leak_snapshot, make_staging, report, settle

import vknb
from vknb.core.memory import _fmt_bytes as fmt_bytes


def stats_tuple(dev: vknb.Device) -> tuple[int, int, int, int, int]:
    dev.trim()  # freed large allocations kept for reuse are not leaks
    return as_tuple(dev.memory_stats())


def as_tuple(s: vknb.core.memory.MemoryStats) -> tuple[int, int, int, int, int]:
    """The fields of ``stats_tuple`` from a snapshot taken earlier."""
    return (s.allocated, s.used, s.blocks, s.buffers, s.allocations)


def warm_up(dev: vknb.Device) -> None:
    """Do one upload/download so that lazily created staging buffers exist before a baseline."""
    vknb.asarray(np.zeros(4, np.float32), device=dev).numpy()
    settle()
    dev.synchronize()
    dev.trim()


# ---------------------------------------------------------------------------------------------
# The allocator
# ---------------------------------------------------------------------------------------------


def test_small_buffers_churn_returns_to_baseline(any_device, rng):
    d = any_device
    warm_up(d)
    base = d.memory_stats()
    base_live = d.live_objects()
    sizes = rng.integers(1, 64 * 1024 + 1, 3000)
    bufs = [vknb.Buffer(int(n), device=d) for n in sizes]
    s = d.memory_stats()
    assert s.buffers == base.buffers + 3000
    assert s.allocations == base.allocations + 3000
    assert s.used - base.used >= int(sizes.sum())
    assert s.used <= s.allocated
    assert s.blocks > base.blocks
    assert s.allocated - base.allocated == (s.blocks - base.blocks) * d.allocator.block_size
    assert sum(h.allocated for h in s.heaps) == s.allocated
    assert sum(h.used for h in s.heaps) == s.used
    assert d.live_objects().get("Buffer", 0) == base_live.get("Buffer", 0) + 3000
    # Spot-check that the buffers do not overlap: write a tag into each, read them all back.
    sample = rng.choice(3000, 200, replace=False)
    for i in sample:
        bufs[i].write(np.full(int(sizes[i]), i % 251, np.uint8))
    for i in sample:
        assert (bufs[i].read() == i % 251).all()
    order = rng.permutation(3000)
    for j, i in enumerate(order):
        bufs[i].close()
        if j == 1500:
            half = d.memory_stats()
            assert half.buffers == base.buffers + 1499
            assert half.allocations == base.allocations + 1499
    del bufs
    settle()
    assert stats_tuple(d) == as_tuple(base)
    assert d.live_objects() == base_live


def test_a_buffer_collected_while_the_allocator_is_busy_is_freed_after(dev, no_leaks):
    """The garbage collector may run a Buffer's finalizer on the thread that holds the
    allocator's lock (inside an allocation): that free waits for the section to end instead of
    deadlocking or changing the blocks under it."""

    class Cycle:
        pass

    def garbage() -> None:
        c = Cycle()
        c.me = c  # only the cycle collector frees it
        c.buf = vknb.Buffer(4096, device=dev)

    alloc = dev.allocator
    gc.disable()
    try:
        garbage()
        before = alloc.allocations
        done = threading.Event()

        def collect_inside_a_section() -> None:
            with alloc._lock:  # what an allocation holds when a collection starts
                gc.collect()  # the finalizer only queues the release: no deadlock
                assert alloc.allocations == before
            done.set()

        t = threading.Thread(target=collect_inside_a_section, daemon=True)
        t.start()
        t.join(20)
        assert done.is_set(), "the finalizer's free deadlocked inside the allocator's lock"
        dev.collect()  # the device's next safe point
        assert alloc.allocations == before - 1
    finally:
        gc.enable()


def test_freed_large_allocations_are_recycled(any_device, rng, monkeypatch):
    """A freed dedicated allocation serves the next Array of about its size; trim() frees it."""
    d = any_device
    warm_up(d)
    base = d.memory_stats()
    assert base.cached == 0
    size = 3 * d.allocator.block_size // 2  # dedicated
    a = vknb.empty(size // 4, np.float32, device=d)
    handle = a.buffer.allocation.memory
    a.close()
    s = d.memory_stats()
    assert s.cached == size and s.allocated == base.allocated + size
    assert s.used == base.used and s.buffers == base.buffers
    # about the same size (within 1/8): the same VkDeviceMemory, with correct contents
    x = rng.random(size // 4 - 1000).astype(np.float32)
    b = vknb.asarray(x, device=d)
    assert b.buffer.allocation.memory == handle
    assert d.memory_stats().cached == 0
    np.testing.assert_array_equal(b.numpy(), x)
    b.close()
    # much smaller: not served from the cache (it would waste more than 1/8)
    c = vknb.empty(size // 16, np.float32, device=d)
    assert c.buffer.allocation.memory != handle
    c.close()
    cached = d.memory_stats().cached
    assert cached >= size  # the first block, and c's
    assert d.trim() == cached
    assert d.memory_stats().cached == 0
    assert stats_tuple(d) == as_tuple(base)
    # the limit: nothing is kept when it is 0, and the cache never exceeds it
    monkeypatch.setattr(d.allocator, "recycle_limit", size + size // 2)
    arrs = [vknb.empty(size // 4, np.float32, device=d) for _ in range(3)]
    for arr in arrs:
        arr.close()
    assert d.memory_stats().cached == size  # two would exceed the limit
    monkeypatch.setattr(d.allocator, "recycle_limit", 0)
    e = vknb.empty(size // 2, np.float32, device=d)  # 2x the size: a new allocation
    e.close()
    assert d.memory_stats().cached == size  # the 0 limit kept nothing new
    d.trim()


def test_recycle_cache_gives_way_under_memory_pressure(any_device):
    """Cached blocks are freed before an allocation would exceed the heap."""
    d = any_device
    warm_up(d)
    heap = max(d.info.heaps, key=lambda h: h.size if h.device_local else 0)
    piece = (heap.size // 3) & ~0xFFFF
    old = d.allocator.recycle_limit
    d.allocator.recycle_limit = heap.size  # keep everything
    try:
        held = [vknb.Buffer(piece, device=d) for _ in range(2)]
        for b in held:
            b.close()
        assert d.memory_stats().cached == 2 * piece
        # 2 pieces cached + 2 new ones > the heap: the cache must give way
        held = [vknb.Buffer(piece + piece // 4, device=d) for _ in range(2)]
        assert d.memory_stats().cached < 2 * piece
        for b in held:
            b.close()
    finally:
        d.allocator.recycle_limit = old
        d.trim()
    assert d.memory_stats().cached == 0


def test_recycle_limit_from_the_environment(monkeypatch):
    from vknb.core.memory import recycle_limit

    heaps = vknb.device().info.heaps
    monkeypatch.setenv("VKNB_RECYCLE_MB", "0")
    assert recycle_limit(heaps) == 0
    monkeypatch.setenv("VKNB_RECYCLE_MB", "64")
    assert recycle_limit(heaps) == 64 << 20
    monkeypatch.setenv("VKNB_RECYCLE_MB", "lots")
    with pytest.raises(ValueError, match="VKNB_RECYCLE_MB"):
        recycle_limit(heaps)
    monkeypatch.delenv("VKNB_RECYCLE_MB")
    assert 0 < recycle_limit(heaps) <= 1 << 30


def test_dedicated_allocations_return_to_baseline(any_device, rng, monkeypatch):
    """50 buffers larger than a block each get their own VkDeviceMemory (at most 4 alive)."""
    d = any_device
    monkeypatch.setattr(d.allocator, "recycle_limit", 0)  # no reuse (tested on its own below)
    warm_up(d)
    base = d.memory_stats()
    block = d.allocator.block_size
    alive: list[vknb.Buffer] = []
    for _ in range(50):
        size = block + int(rng.integers(1, 1 << 20))
        before = d.memory_stats()
        b = vknb.Buffer(size, device=d)
        after = d.memory_stats()
        assert after.blocks == before.blocks + 1  # a dedicated allocation
        assert after.allocated - before.allocated >= size
        assert after.allocated - before.allocated == after.used - before.used
        assert b.allocation is not None and b.allocation.block.dedicated
        alive.append(b)
        if len(alive) > 3:
            alive.pop(int(rng.integers(0, len(alive)))).close()
    last = alive[-1]
    last.write(np.full(16, 7, np.uint8), offset=last.nbytes - 16)
    assert (last.read(offset=last.nbytes - 16) == 7).all()
    for b in alive:
        b.close()
    settle()
    assert stats_tuple(d) == as_tuple(base)


def test_fragmentation_holes_are_reused_and_coalesced(any_device):
    d = any_device
    warm_up(d)
    base = d.memory_stats()
    n, size = 512, 4096
    bufs = [vknb.Buffer(size, device=d) for _ in range(n)]
    full = d.memory_stats()
    assert full.blocks == base.blocks + 1  # 2 MiB fit in one block
    offsets = [b.allocation.offset for b in bufs]
    # Free every other buffer: the block stays, half its bytes are free.
    for b in bufs[::2]:
        b.close()
    holey = d.memory_stats()
    assert holey.blocks == full.blocks and holey.allocated == full.allocated
    assert holey.used == full.used - (n // 2) * bufs[1].allocation.size
    # Allocating the same sizes again fills the holes: no new memory.
    again = [vknb.Buffer(size, device=d) for _ in range(n // 2)]
    refill = d.memory_stats()
    assert refill.allocated == full.allocated and refill.blocks == full.blocks
    assert refill.used == full.used
    assert sorted(b.allocation.offset for b in again) == sorted(offsets[::2])
    # Coalescing: free two neighbours, then a buffer of twice the size fits exactly there.
    i = 10
    neighbours = [again[i // 2], bufs[i + 1]]
    assert neighbours[0].allocation.offset == offsets[i]
    lo = offsets[i]
    for b in neighbours:
        b.close()
    big = vknb.Buffer(2 * size, device=d)
    assert big.allocation.offset == lo
    assert d.memory_stats().blocks == full.blocks
    for b in [*again, *bufs, big]:
        b.close()
    settle()
    assert stats_tuple(d) == as_tuple(base)


def test_memory_stats_to_dict_and_heaps(dev):
    s = dev.memory_stats()
    d = s.to_dict()
    json.dumps(d)
    assert set(d) >= {"heaps", "allocated", "used", "blocks", "buffers", "allocations"}
    assert len(s.heaps) == len(dev.info.heaps)
    for h, info in zip(s.heaps, dev.info.heaps, strict=True):
        assert h.size == info.size and h.device_local == info.device_local
        assert 0 <= h.used <= h.allocated
        assert (h.budget is None) == (h.usage is None)


def test_staging_buffers_are_counted_apart(rng, monkeypatch):
    """``staging`` counts vknb's own transfer staging buffers (part of ``used``) once the first
    transfer through staging made them, so that what a user's data uses is ``used - staging``.
    A fresh device: lavapipe never stages unless told to."""
    monkeypatch.setenv("VKNB_FORCE_STAGING", "1")
    monkeypatch.setenv("VKNB_STAGING_MB", "2")
    with vknb.Device() as d:
        assert d.memory_stats().staging == 0
        x = rng.random(1000, dtype=np.float32)
        a = vknb.asarray(x, device=d)
        np.testing.assert_array_equal(a.numpy(), x)
        s = d.memory_stats()
        assert s.staging == 4 * (2 << 20)  # two halves each way
        assert s.used - s.staging == a.nbytes
        assert s.to_dict()["staging"] == s.staging


# ---------------------------------------------------------------------------------------------
# Leaks: loops of Buffers, Arrays and dispatches
# ---------------------------------------------------------------------------------------------


def test_leaks_buffer_and_array_loops(dev, rng, record_property):
    make_staging(dev)
    before = leak_snapshot(dev)
    k = vknb.compile(DOUBLE_A, name="leak_double")
    k_live = leak_snapshot(dev)
    for i in range(1000):
        n = int(rng.integers(1, 20000))
        if i % 3 == 0:
            b = vknb.Buffer(n * 4)
            b.write(np.ones(n, np.float32))
            if i % 2:
                b.close()  # half closed explicitly, half dropped
        elif i % 3 == 1:
            a = vknb.asarray(rng.standard_normal(n).astype(np.float32))
            k(a, a=2.0, grid=n)
            if i % 2:
                a.close()
        else:
            z = vknb.zeros(n, np.int32)
            assert z.numpy()[-1] == 0
    del b, a, z
    after_loop = leak_snapshot(dev)
    k.close()
    del k
    after = leak_snapshot(dev)
    report(
        record_property,
        "leaks_1000_buffers",
        {"before": before, "kernel alive": k_live, "after loop": after_loop, "after": after},
    )
    assert after == before


# ---------------------------------------------------------------------------------------------
# Impossible allocations
# ---------------------------------------------------------------------------------------------


def _largest_heap(dev: vknb.Device) -> int:
    return max(h.size for h in dev.info.heaps)


@pytest.mark.parametrize("factor", [1.5, 64])
def test_allocation_bigger_than_the_heap(dev, rng, factor, no_leaks):
    heap = _largest_heap(dev)
    size = int(heap * factor) // 4 * 4
    before = stats_tuple(dev)
    with pytest.raises(vknb.AllocationFailed) as ei:
        vknb.Buffer(size)
    msg = str(ei.value)
    assert str(size) in msg or fmt_bytes(size) in msg, msg
    assert "heap" in msg and (str(heap) in msg or fmt_bytes(heap) in msg), msg
    assert isinstance(ei.value, vknb.VulkanError)
    with pytest.raises(vknb.AllocationFailed, match="heap"):
        vknb.empty((size // 4,), np.float32)
    assert stats_tuple(dev) == before  # nothing leaked by the failed attempts
    # The session keeps working.
    x = rng.standard_normal(1000).astype(np.float32)
    np.testing.assert_array_equal(vknb.asarray(x).numpy(), x)
    k = vknb.compile(DOUBLE, name="double")
    y = x.copy()
    k(y, grid=y.size)
    np.testing.assert_allclose(y, 2 * x, rtol=1e-6)
    k.close()


def test_more_than_the_heap_raises_and_the_session_survives(dev, rng, no_leaks):
    heap = max(h.size for h in dev.info.heaps)
    for size in (heap + 4, 2 * heap, 1 << 50):
        with pytest.raises(vknb.AllocationFailed) as ei:
            vknb.Buffer(size)
        msg = str(ei.value)
        assert "heap" in msg and str(heap) in msg and str((size + 3) // 4 * 4) in msg, msg
    x = rng.standard_normal(1000).astype(np.float32)
    np.testing.assert_array_equal(vknb.asarray(x).numpy(), x)


def test_filling_the_heap_in_pieces_fails_cleanly(dev, rng, record_property):
    """Allocate 30% of the heap at a time: the 4th piece (120%) must fail (<= 2.4 GiB here)."""
    heap = max(h.size for h in dev.info.heaps)
    piece = int(heap * 0.3) // 4096 * 4096
    held: list[vknb.Buffer] = []
    error: vknb.AllocationFailed | None = None
    try:
        for _ in range(4):
            try:
                held.append(vknb.Buffer(piece))
            except vknb.AllocationFailed as e:
                error = e
                break
        report(
            record_property,
            "heap_pieces",
            {"heap": heap, "piece": piece, "allocated before failing": len(held)},
        )
    finally:
        for b in held:
            b.close()
        settle()
    # The session keeps working either way.
    x = rng.standard_normal(1000).astype(np.float32)
    np.testing.assert_array_equal(vknb.asarray(x).numpy(), x)
    assert error is not None, "4 pieces of 30% of the heap were all allocated"
    msg = str(error)
    assert "heap" in msg and ("GiB" in msg or "MiB" in msg or str(piece) in msg), msg


def test_an_emptied_block_is_kept_for_the_next_allocation(dev, monkeypatch, no_leaks):
    """A loop that makes and closes small buffers gets at most one new VkDeviceMemory: the
    block its last buffer empties goes to the recycle cache (``cached``), not to the driver,
    and trim() gives it back."""
    made: list[int] = []
    real = dev.allocator._allocate_memory

    def counted(size: int, memory_type: int, label: str) -> Any:
        made.append(size)
        return real(size, memory_type, label)

    monkeypatch.setattr(dev.allocator, "_allocate_memory", counted)
    dev.trim()
    for _ in range(50):
        b = vknb.Buffer(4096, device=dev)
        b.write(np.arange(1024, dtype=np.float32))
        b.close()
        dev.collect()
    assert len(made) <= 1, made
    s = dev.memory_stats()
    if made:  # (else an existing block had room)
        assert s.cached >= dev.allocator.block_size
    dev.trim()
    assert dev.memory_stats().cached == 0
