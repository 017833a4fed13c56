"""Text and HTML renderings of vknb's data: reflection cards, compile errors, device tables.

Data first, then display: every function here takes plain vknb objects and returns a string.

Example
-------
>>> print(vknb.display.devices_text())                      # doctest: +SKIP
idx  name                              type  score (type+mem)  memory   api
*0   llvmpipe (LLVM 15.0.6, 256 bits)  cpu   2 (0+2)           2.0 GiB  1.3.230
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..core.device import Device
    from ..errors import ShaderCompileError
    from ..core.instance import DeviceInfo
    from ..compute.kernel import Kernel


def fmt_bytes(n: int | None) -> str:
    """``1536 -> '1.5 KiB'``.

    Example
    -------
    >>> fmt_bytes(3 << 20)
    '3.0 MiB'
    """
    if n is None:
        return "–"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _esc(s: Any) -> str:
    return html.escape(str(s))


# JupyterLab right-aligns table cells and strips <style> from outputs: align inline.
_LEFT = " style='text-align:left'"


def _table(
    headers: list[str], rows: list[list[str]], html_: bool, marks: list[bool] | None = None
) -> str:
    if html_:
        head = "".join(f"<th style='text-align:left'>{_esc(h)}</th>" for h in headers)
        body = ""
        for i, r in enumerate(rows):
            style = " style='font-weight:bold'" if marks and marks[i] else ""
            body += f"<tr{style}>" + "".join(f"<td{_LEFT}>{_esc(c)}</td>" for c in r) + "</tr>"
        return f"<table class='vknb'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


# --- kernels -------------------------------------------------------------------------------

_BINDING_HEAD = ["set", "binding", "name", "kind", "access", "element"]


def _access(b: Any) -> str:
    if b.readonly and not b.writeonly:
        return "readonly"
    if b.writeonly and not b.readonly:
        return "writeonly"
    return "read/write"


def _binding_rows(k: Kernel) -> list[list[str]]:
    rows = []
    for b in k.reflection.bindings:
        elem = "–"
        if b.block is not None and b.block.runtime_array is not None:
            elem = f"{b.block.runtime_array.type} → {b.dtype}"
        elif b.block is not None:
            elem = f"{b.block.name} ({b.block.size} B)"
        rows.append([str(b.set), str(b.binding), b.name, b.kind, _access(b), elem])
    return rows


def kernel_summary(k: Kernel) -> dict[str, Any]:
    """The card's content as plain data."""
    ci = k.compile_info
    pc = k.reflection.push_constants
    return {
        "name": k.name,
        "local_size": k.local_size,
        "bindings": _binding_rows(k),
        "push_constants": []
        if pc is None
        else [[m.name, str(m.offset), m.type] for m in pc.members],
        "spec_constants": [
            [
                str(s.id),
                s.name,
                str(s.dtype),
                repr(s.default),
                repr(k._spec_values.get(s.id, k.constants.get(s.name, s.default))),
            ]
            for s in k.reflection.spec_constants
        ],
        "compile_ms": None if ci is None else ci.compile_ms,
        "cache_hit": None if ci is None else ci.cache_hit,
        "pipeline_ms": getattr(k, "pipeline_ms", None),
        "spirv_bytes": len(k.spirv),
        "device": k._pipeline.device.info.name if k._pipeline is not None else "(closed)",
    }


def _kernel_foot(s: dict[str, Any]) -> str:
    parts = []
    if s["compile_ms"] is not None:
        hit = " (cache hit)" if s["cache_hit"] else ""
        parts.append(f"compile {s['compile_ms']:.1f} ms{hit}")
    if s["pipeline_ms"] is not None:
        parts.append(f"pipeline {s['pipeline_ms']:.1f} ms")
    parts.append(f"SPIR-V {s['spirv_bytes']} B")
    parts.append(f"on {s['device']}")
    return ", ".join(parts)


def kernel_text(k: Kernel) -> str:
    """Plain-text reflection card of a kernel (its ``repr``)."""
    s = kernel_summary(k)
    out = [f"<vknb.Kernel {s['name']!r} local_size={s['local_size']}>"]
    if s["bindings"]:
        out.append(_table(_BINDING_HEAD, s["bindings"], False))
    if s["push_constants"]:
        out.append(
            "push constants: " + ", ".join(f"{n} ({t} @{o})" for n, o, t in s["push_constants"])
        )
    if s["spec_constants"]:
        out.append(
            "specialization constants: "
            + ", ".join(f"{n or '#' + i} = {v} ({t})" for i, n, t, _d, v in s["spec_constants"])
        )
    out.append(_kernel_foot(s))
    return "\n".join(out)


def kernel_html(k: Kernel) -> str:
    """HTML reflection card of a kernel."""
    s = kernel_summary(k)
    h = [
        f"<div class='vknb-kernel'><b>vknb kernel <code>{_esc(s['name'])}</code></b> "
        f"&nbsp; workgroup {_esc(s['local_size'])}"
    ]
    if s["bindings"]:
        h.append(_table(_BINDING_HEAD, s["bindings"], True))
    if s["push_constants"]:
        h.append(
            "<div>push constants: "
            + _table(["name", "offset", "type"], s["push_constants"], True)
            + "</div>"
        )
    if s["spec_constants"]:
        h.append(
            "<div>specialization constants: "
            + _table(["id", "name", "type", "default", "value"], s["spec_constants"], True)
            + "</div>"
        )
    h.append(f"<div style='color:#666'>{_esc(_kernel_foot(s))}</div></div>")
    return "".join(h)


# --- compile errors ------------------------------------------------------------------------


def compile_error_text(err: ShaderCompileError) -> str:
    """The numbered listing around each diagnostic."""
    from ..shader.compiler import format_diagnostics

    return format_diagnostics(err.source, err.diagnostics)


def compile_error_html(err: ShaderCompileError) -> str:
    """HTML view: the source with the offending lines highlighted and the messages below them."""
    lines = err.source.splitlines()
    by_line: dict[int, list[tuple[int, int, str, str]]] = {}
    for d in err.diagnostics:
        by_line.setdefault(d[0], []).append(d)
    rows = []
    for i, text in enumerate(lines, start=1):
        diags = by_line.get(i, [])
        color = "#fdd" if any(d[2] == "error" for d in diags) else ("#ffd" if diags else "")
        style = f" style='background:{color}'" if color else ""
        rows.append(
            f"<tr{style}><td style='color:#888;text-align:right'>{i}</td>"
            f"<td{_LEFT}><pre style='margin:0'>{_esc(text)}</pre></td></tr>"
        )
        for d in diags:
            c = "#c00" if d[2] == "error" else "#a60"
            rows.append(
                f"<tr><td></td><td style='color:{c};text-align:left'><b>{_esc(d[2])}</b>: "
                f"{_esc(d[3])}</td></tr>"
            )
    other = [d for d in err.diagnostics if d[0] < 1 or d[0] > len(lines)]
    extra = "".join(f"<div style='color:#c00'>{_esc(d[2])}: {_esc(d[3])}</div>" for d in other)
    name = _esc(err.name or "kernel")
    return (
        f"<div class='vknb-error'><b style='color:#c00'>ShaderCompileError in "
        f"{name}</b><table class='vknb' style='font-family:monospace'>{''.join(rows)}</table>"
        f"{extra}</div>"
    )


# --- devices --------------------------------------------------------------------------------


def _device_rows(
    infos: list[DeviceInfo], current: int | None
) -> tuple[list[list[str]], list[bool]]:
    rows, marks = [], []
    for d in infos:
        mark = d.index == current
        p = d.score_parts
        rows.append(
            [
                ("*" if mark else "") + str(d.index),
                d.name,
                d.type,
                d.vendor,
                d.driver,
                d.api_version,
                fmt_bytes(d.total_memory),
                f"{d.score} ({p['type']}+{p['memory']})",
            ]
        )
        marks.append(mark)
    return rows, marks


_DEV_HEAD = ["idx", "name", "type", "vendor", "driver", "api", "device-local", "score (type+mem)"]


def _current_index() -> int | None:
    from ..core.session import current_device

    d = current_device()
    return d.index if d is not None else None


def devices_text(infos: list[DeviceInfo] | None = None, current: int | None = None) -> str:
    """Plain-text device table; ``*`` marks the session device."""
    from ..core.instance import devices

    infos = devices() if infos is None else infos
    cur = _current_index() if current is None else current
    rows, _ = _device_rows(infos, cur)
    return _table(_DEV_HEAD, rows, False)


def devices_html(infos: list[DeviceInfo] | None = None, current: int | None = None) -> str:
    """HTML device table; the session device in bold."""
    from ..core.instance import devices

    infos = devices() if infos is None else infos
    cur = _current_index() if current is None else current
    rows, marks = _device_rows(infos, cur)
    return _table(_DEV_HEAD, rows, True, marks)


def device_html(dev: Device) -> str:
    """HTML summary of a logical device."""
    i = dev.info
    return (
        f"<div><b>{_esc(i.name)}</b> ({_esc(i.type)}, score {i.score}: "
        f"type +{i.score_parts['type']}, memory +{i.score_parts['memory']}) — "
        f"{_esc(dev.reason)}</div>"
    )


# --- memory and timings ----------------------------------------------------------------------


def _heap_cells(h: Any) -> list[str]:
    """One heap's row: index, kind, size, driver budget and usage, vknb's allocated and used."""
    return [
        str(h.index),
        "device-local" if h.device_local else "host",
        fmt_bytes(h.size),
        fmt_bytes(h.budget),
        fmt_bytes(h.usage),
        fmt_bytes(h.allocated),
        fmt_bytes(h.used),
    ]


def _cached_note(s: Any) -> str:
    """``"; 256.0 MiB of it kept for reuse"`` where freed allocations are cached, else ``""``."""
    c = getattr(s, "cached", 0)
    return f"; {fmt_bytes(c)} of it kept for reuse (Device.trim() frees it)" if c else ""


def memory_text(dev: Device) -> str:
    """Plain-text memory statistics of a device."""
    s = dev.memory_stats()
    rows = [_heap_cells(h) for h in s.heaps]
    head = _table(
        ["heap", "kind", "size", "budget", "driver usage", "vknb allocated", "vknb used"],
        rows,
        False,
    )
    return (
        f"{head}\nvknb: {fmt_bytes(s.allocated)} allocated in {s.blocks} blocks, "
        f"{fmt_bytes(s.used)} used by {s.buffers} buffers{_cached_note(s)}"
    )


def timings_text(records: list[Any]) -> str:
    """Plain-text table of dispatch records."""
    return _table(_TIMING_HEAD, _timing_rows(records), False)


def memory_html(dev: Device) -> str:
    """HTML memory statistics of a device: one row per heap, with a bar of vknb's share.

    Example
    -------
    >>> html = memory_html(vknb.device())                    # doctest: +SKIP
    """
    s = dev.memory_stats()
    rows = []
    for h in s.heaps:
        frac = 0.0 if not h.size else min(1.0, h.allocated / h.size)
        bar = (
            f"<div style='width:120px;height:8px;background:#eee;display:inline-block'>"
            f"<div style='width:{frac * 120:.0f}px;height:8px;background:#4a8'></div></div>"
        )
        cells = _heap_cells(h)
        rows.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in cells) + f"<td>{bar}</td></tr>")
    head = "".join(
        f"<th style='text-align:left'>{_esc(h)}</th>"
        for h in [
            "heap",
            "kind",
            "size",
            "budget",
            "driver usage",
            "vknb allocated",
            "vknb used",
            "",
        ]
    )
    return (
        f"<div class='vknb-memory'><b>{_esc(dev.info.name)}</b>"
        f"<table class='vknb'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody>"
        f"</table><div style='color:#666'>vknb: {_esc(fmt_bytes(s.allocated))} allocated in "
        f"{s.blocks} blocks, {_esc(fmt_bytes(s.used))} used by {s.buffers} buffers"
        f"{_esc(_cached_note(s))}</div></div>"
    )


def _timing_rows(records: list[Any]) -> list[list[str]]:
    rows = []
    for r in records:
        bw = r.bandwidth_gbs
        rows.append(
            [
                r.kernel,
                "x".join(map(str, r.groups)),
                "x".join(map(str, r.local_size)),
                "–" if r.gpu_ms is None else f"{r.gpu_ms:.3f}",
                f"{r.host_ms:.3f}",
                fmt_bytes(r.bytes_in),
                fmt_bytes(r.bytes_out),
                "–" if bw is None else f"{bw:.1f}",
            ]
        )
    return rows


_TIMING_HEAD = ["kernel", "groups", "local", "gpu ms", "host ms", "in", "out", "GB/s"]


def timings_summary(records: list[Any]) -> list[dict[str, Any]]:
    """Per-kernel totals of dispatch records, as plain data (first-seen order).

    Each entry: ``kernel, count, gpu_ms_total, gpu_ms_mean, gpu_ms_min, host_ms_mean`` (the GPU
    figures are None where no record of that kernel has a GPU time).

    Example
    -------
    >>> [s["kernel"] for s in timings_summary(vknb.timings())]   # doctest: +SKIP
    ['saxpy']
    """
    groups: dict[str, list[Any]] = {}
    for r in records:
        groups.setdefault(r.kernel, []).append(r)
    out = []
    for name, recs in groups.items():
        gpu = [r.gpu_ms for r in recs if r.gpu_ms is not None]
        out.append(
            {
                "kernel": name,
                "count": len(recs),
                "gpu_ms_total": sum(gpu) if gpu else None,
                "gpu_ms_mean": sum(gpu) / len(gpu) if gpu else None,
                "gpu_ms_min": min(gpu) if gpu else None,
                "host_ms_mean": sum(r.host_ms for r in recs) / len(recs),
            }
        )
    return out


def _summary_rows(records: list[Any]) -> list[list[str]]:
    def ms(v: float | None) -> str:
        return "–" if v is None else f"{v:.3f}"

    return [
        [
            s["kernel"],
            str(s["count"]),
            ms(s["gpu_ms_total"]),
            ms(s["gpu_ms_mean"]),
            ms(s["gpu_ms_min"]),
            ms(s["host_ms_mean"]),
        ]
        for s in timings_summary(records)
    ]


_SUMMARY_HEAD = [
    "kernel",
    "dispatches",
    "gpu ms total",
    "gpu ms mean",
    "gpu ms min",
    "host ms mean",
]


def _timings_headline(records: list[Any], total: int | None) -> str:
    """``"N dispatches recorded; showing all"`` (or ``the last K``)."""
    shown = f"the last {len(records)}" if total is not None and total > len(records) else "all"
    n = len(records) if total is None else total
    return f"{n} dispatch{'es' if n != 1 else ''} recorded; showing {shown}"


def timings_report_text(records: list[Any], total: int | None = None) -> str:
    """Per-kernel summary followed by the table of ``records`` (``total``: how many exist).

    Example
    -------
    >>> print(timings_report_text(vknb.timings(last=5)))    # doctest: +SKIP
    """
    if not records:
        return "no dispatches recorded yet"
    return (
        _timings_headline(records, total)
        + "\n"
        + _table(_SUMMARY_HEAD, _summary_rows(records), False)
        + "\n\n"
        + timings_text(records)
    )


def timings_html(records: list[Any], total: int | None = None) -> str:
    """HTML form of :func:`timings_report_text`: per-kernel summary, then one row per dispatch.

    Example
    -------
    >>> html = timings_html(vknb.timings(last=5))            # doctest: +SKIP
    """
    if not records:
        return "<div class='vknb-timings'>no dispatches recorded yet</div>"
    return (
        f"<div class='vknb-timings'><div>{html.escape(_timings_headline(records, total))}</div>"
        + _table(_SUMMARY_HEAD, _summary_rows(records), True)
        + "<br>"
        + _table(_TIMING_HEAD, _timing_rows(records), True)
        + "</div>"
    )


def dispatch_text(rec: Any) -> str:
    """One line describing a :class:`~vknb.timing.DispatchRecord`.

    Example
    -------
    >>> print(dispatch_text(k(x, y, a=2.0, grid=n)))         # doctest: +SKIP
    saxpy: 16x1x1 groups of 64x1x1, gpu 0.012 ms, host 0.090 ms, in 8.0 KiB, out 4.0 KiB
    """
    parts = [
        f"{rec.kernel}: {'x'.join(map(str, rec.groups))} groups of "
        f"{'x'.join(map(str, rec.local_size))}"
    ]
    parts.append("gpu –" if rec.gpu_ms is None else f"gpu {rec.gpu_ms:.3f} ms")
    parts.append(f"host {rec.host_ms:.3f} ms")
    parts.append(f"in {fmt_bytes(rec.bytes_in)}, out {fmt_bytes(rec.bytes_out)}")
    if rec.bandwidth_gbs is not None:
        parts.append(f"{rec.bandwidth_gbs:.3g} GB/s")
    return ", ".join(parts)


def dispatch_html(rec: Any) -> str:
    """HTML form of :func:`dispatch_text`.

    Example
    -------
    >>> html = dispatch_html(vknb.timings()[-1])             # doctest: +SKIP
    """
    return f"<div class='vknb-dispatch' style='color:#444'>{_esc(dispatch_text(rec))}</div>"


def info_text(info: dict[str, str]) -> str:
    """Two-column text table of ``key -> value`` (for ``%vknb info``).

    Example
    -------
    >>> print(info_text({"vknb": "0.1.0"}))
    vknb  0.1.0
    """
    width = max((len(k) for k in info), default=0)
    return "\n".join(f"{k.ljust(width)}  {v}".rstrip() for k, v in info.items())


def info_html(info: dict[str, str]) -> str:
    """HTML two-column table of ``key -> value``.

    Example
    -------
    >>> info_html({"vknb": "0.1.0"}).count("<tr>")
    1
    """
    rows = "".join(
        f"<tr><th style='text-align:left'>{_esc(k)}</th><td>{_esc(v)}</td></tr>"
        for k, v in info.items()
    )
    return f"<table class='vknb'><tbody>{rows}</tbody></table>"


def timings_figure(records: list[Any]) -> Any:
    """A matplotlib Figure of dispatch times: GPU ms per dispatch over time, and a histogram
    per kernel (host ms where a record has no GPU time).

    Uses ``matplotlib.figure.Figure`` directly (no pyplot, no global state): save it with
    ``fig.savefig(...)``.

    Example
    -------
    >>> fig = timings_figure(vknb.timings())                 # doctest: +SKIP
    >>> fig.savefig("timings.png")                           # doctest: +SKIP
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax_t, ax_h = fig.subplots(1, 2, width_ratios=(3, 2))
    by_kernel: dict[str, list[tuple[int, float]]] = {}
    gpu = all(r.gpu_ms is not None for r in records)
    for i, r in enumerate(records):
        ms = r.gpu_ms if r.gpu_ms is not None else r.host_ms
        by_kernel.setdefault(r.kernel, []).append((i, ms))
    for name, pts in by_kernel.items():
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        ax_t.plot(xs, ys, ".-", label=name, markersize=4, linewidth=0.8)
        ax_h.hist(ys, bins=min(30, max(5, len(ys) // 3)), alpha=0.6, label=name)
    what = "GPU ms" if gpu else "ms (GPU where measured, else host)"
    ax_t.set_xlabel("dispatch #")
    ax_t.set_ylabel(what)
    ax_t.set_title("time per dispatch")
    ax_h.set_xlabel(what)
    ax_h.set_ylabel("dispatches")
    ax_h.set_title("distribution per kernel")
    if by_kernel:
        ax_t.legend(fontsize="small")
    else:
        ax_t.text(0.5, 0.5, "no dispatches recorded yet", ha="center", transform=ax_t.transAxes)
    return fig


class Rendered:
    """A pre-rendered view with an HTML and a plain-text form (notebooks show the HTML,
    terminals and ``print`` the text).

    Example
    -------
    >>> r = Rendered("<b>hi</b>", "hi")
    >>> r
    hi
    """

    def __init__(self, html: str, text: str) -> None:
        self.html = html
        self.text = text

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.text

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.text)


# --- widgets: device details, memory bars, timing tables -------------------------------------
# (for vknb.widgets: the widgets render these, and so do their nbconvert fallbacks)

_FEATURE_LABELS = (
    ("float64", "float64"),
    ("int64", "int64"),
    ("int16", "int16"),
    ("float16", "float16"),
    ("int8", "int8"),
    ("storage_8bit", "8-bit storage"),
    ("storage_16bit", "16-bit storage"),
    ("atomic_int64", "int64 atomics"),
    ("atomic_float", "float atomics"),
    ("buffer_device_address", "buffer device address"),
)


def _xyz(v: Any) -> str:
    return " x ".join(str(int(c)) for c in v) if isinstance(v, (tuple, list)) else str(v)


def device_details(info: DeviceInfo) -> dict[str, list[tuple[str, str]]]:
    """A physical device's details as plain data: section -> [(field, value)].

    Sections: ``device``, ``score``, ``compute limits``, ``timestamps``, ``features``,
    ``memory heaps``, ``memory types``, ``queue families``, ``extensions``.

    Example
    -------
    >>> d = device_details(vknb.devices()[0])
    >>> dict(d["score"])["total"] == str(vknb.devices()[0].score)
    True
    """
    lim = info.limits
    p = info.score_parts
    out: dict[str, list[tuple[str, str]]] = {}
    out["device"] = [
        ("name", info.name),
        ("type", info.type),
        ("vendor", f"{info.vendor} (0x{info.vendor_id:04x})"),
        ("device id", f"0x{info.device_id:04x}"),
        ("driver", f"{info.driver} {info.driver_info}".strip()),
        ("API version", info.api_version),
        ("device-local memory", fmt_bytes(info.total_memory)),
    ]
    out["score"] = [
        ("type bonus", f"+{p['type']} ({info.type}; discrete +1000, integrated +100)"),
        ("memory bonus", f"+{p['memory']} (1 per GiB device-local)"),
        ("total", str(info.score)),
    ]
    ops = lim.get("subgroup_operations") or []
    out["compute limits"] = [
        ("max workgroup size", _xyz(lim.get("max_workgroup_size", "–"))),
        ("max workgroup count", _xyz(lim.get("max_workgroup_count", "–"))),
        ("max invocations / workgroup", str(lim.get("max_workgroup_invocations", "–"))),
        ("max shared memory", fmt_bytes(lim.get("max_shared_memory"))),
        ("subgroup size", str(lim.get("subgroup_size", "–"))),
        ("subgroup operations", ", ".join(ops) if ops else "–"),
        ("max push constants", fmt_bytes(lim.get("max_push_constants_size"))),
        ("max storage buffer range", fmt_bytes(lim.get("max_storage_buffer_range"))),
        ("max uniform buffer range", fmt_bytes(lim.get("max_uniform_buffer_range"))),
        ("max bound descriptor sets", str(lim.get("max_bound_descriptor_sets", "–"))),
        (
            "storage buffer offset alignment",
            str(lim.get("min_storage_buffer_offset_alignment", "–")),
        ),
    ]
    out["timestamps"] = [
        ("compute queue timestamps", "yes" if info.timestamps else "no"),
        ("period", f"{lim.get('timestamp_period_ns', 0):g} ns"),
        ("valid bits", str(lim.get("timestamp_valid_bits", "–"))),
    ]
    out["features"] = [
        (label, "yes" if info.features.get(key) else "no") for key, label in _FEATURE_LABELS
    ]
    out["memory heaps"] = [
        (f"heap {h.index}", f"{fmt_bytes(h.size)}, {'device-local' if h.device_local else 'host'}")
        for h in info.heaps
    ]
    out["memory types"] = [
        (f"type {t.index}", f"heap {t.heap}: {', '.join(t.flag_names) or '(no flags)'}")
        for t in info.memory_types
    ]
    out["queue families"] = [
        (
            f"family {q.index}",
            f"{', '.join(q.capabilities)}; {q.count} queue(s); "
            f"timestamps {q.timestamp_valid_bits} bits",
        )
        for q in info.queue_families
    ]
    notable = info.notable_extensions
    out["extensions"] = [("count", str(len(info.extensions)))] + [(e, "yes") for e in notable]
    return out


def device_details_text(info: DeviceInfo) -> str:
    """Plain-text details of a physical device (limits, memory, queues, features).

    Example
    -------
    >>> print(device_details_text(vknb.devices()[0]))          # doctest: +SKIP
    """
    lines = [f"Device {info.index}: {info.name}"]
    for section, pairs in device_details(info).items():
        lines.append(f"[{section}]")
        w = max((len(k) for k, _ in pairs), default=0)
        lines.extend(f"  {k.ljust(w)}  {v}" for k, v in pairs)
    return "\n".join(lines)


def device_details_html(info: DeviceInfo) -> str:
    """HTML details of a physical device: one small table per section, side by side.

    Example
    -------
    >>> "compute limits" in device_details_html(vknb.devices()[0])
    True
    """
    boxes = []
    for section, pairs in device_details(info).items():
        rows = "".join(
            f"<tr><td style='padding:0 .8em 0 0;color:#666'>{_esc(k)}</td>"
            f"<td style='padding:0'>{_esc(v)}</td></tr>"
            for k, v in pairs
        )
        boxes.append(
            f"<div style='margin:0 1.5em .6em 0'><b>{_esc(section)}</b>"
            f"<table class='vknb'>{rows}</table></div>"
        )
    return (
        f"<div class='vknb-device-details'><div><b>Device {info.index}: {_esc(info.name)}</b>"
        f"</div><div style='display:flex;flex-wrap:wrap;align-items:flex-start'>"
        f"{''.join(boxes)}</div></div>"
    )


def _n(count: int, noun: str) -> str:
    """``_n(1, 'block') -> '1 block'``, ``_n(2, 'block') -> '2 blocks'``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _bar(parts: list[tuple[float, str, str]], width_px: int = 220) -> str:
    """A horizontal bar: ``parts`` are (fraction of the whole, colour, tooltip), drawn overlaid."""
    inner = ""
    for frac, color, tip in parts:
        frac = min(max(frac, 0.0), 1.0)
        w = f"max(2px,{frac * 100:.3f}%)" if frac > 0 else "0"
        inner += (
            f"<div title='{_esc(tip)}' style='position:absolute;left:0;top:0;bottom:0;"
            f"width:{w};background:{color}'></div>"
        )
    return (
        f"<div class='vknb-bar' style='position:relative;width:{width_px}px;height:12px;"
        f"background:#e8e8e8;border:1px solid #bbb'>{inner}</div>"
    )


def memory_stats_html(stats: Any, title: str = "") -> str:
    """HTML memory statistics (a ``MemoryStats``): per heap its size, the driver's budget and
    usage, vknb's allocated and used bytes, with bars; then vknb's blocks and live buffers.

    Bars are relative to the heap's size: driver usage (orange), vknb allocated (light blue),
    vknb used (dark blue).

    Example
    -------
    >>> html = memory_stats_html(vknb.device().memory_stats())
    >>> "vknb used" in html
    True
    """
    head = ["heap", "kind", "size", "budget", "driver usage", "vknb allocated", "vknb used", ""]
    rows = ""
    for h in stats.heaps:
        size = max(h.size, 1)
        parts = []
        if h.usage is not None:
            parts.append((h.usage / size, "#f0a050", f"driver usage {fmt_bytes(h.usage)}"))
        parts.append((h.allocated / size, "#9cc3e6", f"vknb allocated {fmt_bytes(h.allocated)}"))
        parts.append((h.used / size, "#1f5fa0", f"vknb used {fmt_bytes(h.used)}"))
        cells = _heap_cells(h)
        rows += (
            "<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in cells) + f"<td>{_bar(parts)}</td></tr>"
        )
    th = "".join(f"<th style='text-align:left'>{_esc(h)}</th>" for h in head)
    budget_note = ""
    if stats.heaps and all(h.budget is None for h in stats.heaps):
        budget_note = " (budget and usage: the driver lacks VK_EXT_memory_budget)"
    legend = (
        "<span style='color:#f0a050'>&#9632;</span> driver usage &nbsp;"
        "<span style='color:#9cc3e6'>&#9632;</span> vknb allocated &nbsp;"
        "<span style='color:#1f5fa0'>&#9632;</span> vknb used"
    )
    title_html = f"<div><b>{_esc(title)}</b></div>" if title else ""
    return (
        f"<div class='vknb-memory'>{title_html}<table class='vknb'><thead><tr>{th}</tr></thead>"
        f"<tbody>{rows}</tbody></table><div style='color:#444'>vknb: "
        f"{_esc(fmt_bytes(stats.allocated))} allocated in {_n(stats.blocks, 'block')}, "
        f"{_esc(fmt_bytes(stats.used))} used by {_n(stats.buffers, 'live buffer')}"
        f"{_esc(_cached_note(stats))}{_esc(budget_note)}</div>"
        f"<div style='font-size:90%'>{legend}</div></div>"
    )
