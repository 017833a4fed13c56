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
    from ._device import Device
    from .errors import ShaderCompileError
    from .instance import DeviceInfo
    from .kernel import Kernel


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


def _table(headers: list[str], rows: list[list[str]], html_: bool, marks: list[bool] | None = None) -> str:
    if html_:
        head = "".join(f"<th style='text-align:left'>{_esc(h)}</th>" for h in headers)
        body = ""
        for i, r in enumerate(rows):
            style = " style='font-weight:bold'" if marks and marks[i] else ""
            body += f"<tr{style}>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>"
        return f"<table class='vknb'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


# --- kernels -------------------------------------------------------------------------------


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
        "push_constants": [] if pc is None else [[m.name, str(m.offset), m.type] for m in pc.members],
        "spec_constants": [
            [str(s.id), s.name, str(s.dtype), repr(s.default), repr(k.constants.get(s.name, s.default))]
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
        parts.append(f"compile {s['compile_ms']:.1f} ms" + (" (cache hit)" if s["cache_hit"] else ""))
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
        out.append(_table(["set", "binding", "name", "kind", "access", "element"], s["bindings"], False))
    if s["push_constants"]:
        out.append("push constants: " + ", ".join(f"{n} ({t} @{o})" for n, o, t in s["push_constants"]))
    if s["spec_constants"]:
        out.append("specialization constants: " + ", ".join(
            f"{n or '#' + i} = {v} ({t})" for i, n, t, _d, v in s["spec_constants"]))
    out.append(_kernel_foot(s))
    return "\n".join(out)


def kernel_html(k: Kernel) -> str:
    """HTML reflection card of a kernel."""
    s = kernel_summary(k)
    h = [f"<div class='vknb-kernel'><b>vknb kernel <code>{_esc(s['name'])}</code></b> "
         f"&nbsp; workgroup {_esc(s['local_size'])}"]
    if s["bindings"]:
        h.append(_table(["set", "binding", "name", "kind", "access", "element"], s["bindings"], True))
    if s["push_constants"]:
        h.append("<div>push constants: " + _table(["name", "offset", "type"], s["push_constants"], True) + "</div>")
    if s["spec_constants"]:
        h.append("<div>specialization constants: " + _table(
            ["id", "name", "type", "default", "value"], s["spec_constants"], True) + "</div>")
    h.append(f"<div style='color:#666'>{_esc(_kernel_foot(s))}</div></div>")
    return "".join(h)


# --- compile errors ------------------------------------------------------------------------


def compile_error_text(err: ShaderCompileError) -> str:
    """The numbered listing around each diagnostic."""
    from .compiler import format_diagnostics

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
        rows.append(f"<tr{style}><td style='color:#888;text-align:right'>{i}</td>"
                    f"<td><pre style='margin:0'>{_esc(text)}</pre></td></tr>")
        for d in diags:
            c = "#c00" if d[2] == "error" else "#a60"
            rows.append(f"<tr><td></td><td style='color:{c}'><b>{_esc(d[2])}</b>: {_esc(d[3])}</td></tr>")
    other = [d for d in err.diagnostics if d[0] < 1 or d[0] > len(lines)]
    extra = "".join(f"<div style='color:#c00'>{_esc(d[2])}: {_esc(d[3])}</div>" for d in other)
    name = _esc(err.name or "kernel")
    return (f"<div class='vknb-error'><b style='color:#c00'>ShaderCompileError in {name}</b>"
            f"<table style='font-family:monospace'>{''.join(rows)}</table>{extra}</div>")


# --- devices --------------------------------------------------------------------------------


def _device_rows(infos: list[DeviceInfo], current: int | None) -> tuple[list[list[str]], list[bool]]:
    rows, marks = [], []
    for d in infos:
        mark = d.index == current
        p = d.score_parts
        rows.append([("*" if mark else "") + str(d.index), d.name, d.type, d.vendor, d.driver,
                     d.api_version, fmt_bytes(d.total_memory),
                     f"{d.score} ({p['type']}+{p['memory']})"])
        marks.append(mark)
    return rows, marks


_DEV_HEAD = ["idx", "name", "type", "vendor", "driver", "api", "device-local", "score (type+mem)"]


def _current_index() -> int | None:
    from . import _device as devmod

    d = devmod._session
    return d.index if d is not None and not d.closed else None


def devices_text(infos: list[DeviceInfo] | None = None, current: int | None = None) -> str:
    """Plain-text device table; ``*`` marks the session device."""
    from .instance import devices

    infos = devices() if infos is None else infos
    cur = _current_index() if current is None else current
    rows, _ = _device_rows(infos, cur)
    return _table(_DEV_HEAD, rows, False)


def devices_html(infos: list[DeviceInfo] | None = None, current: int | None = None) -> str:
    """HTML device table; the session device in bold."""
    from .instance import devices

    infos = devices() if infos is None else infos
    cur = _current_index() if current is None else current
    rows, marks = _device_rows(infos, cur)
    return _table(_DEV_HEAD, rows, True, marks)


def device_html(dev: Device) -> str:
    """HTML summary of a logical device."""
    i = dev.info
    return (f"<div><b>{_esc(i.name)}</b> ({_esc(i.type)}, score {i.score}: "
            f"type +{i.score_parts['type']}, memory +{i.score_parts['memory']}) — {_esc(dev.reason)}</div>")


# --- memory and timings ----------------------------------------------------------------------


def memory_text(dev: Device) -> str:
    """Plain-text memory statistics of a device."""
    s = dev.memory_stats()
    rows = [[str(h.index), "device-local" if h.device_local else "host", fmt_bytes(h.size),
             fmt_bytes(h.budget), fmt_bytes(h.usage), fmt_bytes(h.allocated), fmt_bytes(h.used)]
            for h in s.heaps]
    head = _table(["heap", "kind", "size", "budget", "driver usage", "vknb allocated", "vknb used"],
                  rows, False)
    return (f"{head}\nvknb: {fmt_bytes(s.allocated)} allocated in {s.blocks} blocks, "
            f"{fmt_bytes(s.used)} used by {s.buffers} buffers")


def timings_text(records: list[Any]) -> str:
    """Plain-text table of dispatch records."""
    rows = []
    for r in records:
        bw = r.bandwidth_gbs
        rows.append([r.kernel, "x".join(map(str, r.groups)), "x".join(map(str, r.local_size)),
                     "–" if r.gpu_ms is None else f"{r.gpu_ms:.3f}", f"{r.host_ms:.3f}",
                     fmt_bytes(r.bytes_in), fmt_bytes(r.bytes_out), "–" if bw is None else f"{bw:.1f}"])
    return _table(["kernel", "groups", "local", "gpu ms", "host ms", "in", "out", "GB/s"], rows, False)
