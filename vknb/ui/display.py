"""Text and HTML renderings of vknb's data: reflection cards, compile errors, devices, memory,
dispatch timings, the environment (``vknb info``); and the IPython formatters that show vknb's
objects with them.  Figures are drawn by :mod:`vknb.ui.plots`.

Data first, then display: every function here takes plain vknb objects (or their plain data)
and returns a string; one text and one HTML renderer per kind of object.  Nothing below vknb's
notebook layer imports this module: rich display is wired by :func:`register_formatters`, which
``%load_ext vknb`` calls.

Example
-------
>>> print(vknb.display.devices_text())                      # doctest: +SKIP
idx  name                              type  score (type+mem)  memory   api
*0   llvmpipe (LLVM 15.0.6, 256 bits)  cpu   2 (0+2)           2.0 GiB  1.3.230
"""

from __future__ import annotations

import html
import importlib.metadata
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..compute.timing import summarize, version_label
from .plots import plot_timings

if TYPE_CHECKING:  # pragma: no cover
    from ..compute.kernel import Kernel
    from ..compute.timing import DispatchRecord
    from ..core.device import Device
    from ..core.instance import DeviceInfo
    from ..core.memory import MemoryStats
    from ..errors import ShaderCompileError


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


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def plural(count: int, noun: str) -> str:
    """``'1 block'``, ``'2 blocks'``, ``'1 dispatch'``, ``'3 dispatches'``, ``'0 entries'``.

    Example
    -------
    >>> plural(1, "dispatch"), plural(2, "dispatch"), plural(0, "live buffer")
    ('1 dispatch', '2 dispatches', '0 live buffers')
    """
    if count == 1:
        return f"{count} {noun}"
    if noun.endswith(("s", "x", "ch", "sh")):
        return f"{count} {noun}es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return f"{count} {noun[:-1]}ies"
    return f"{count} {noun}s"


_n = plural


# JupyterLab right-aligns table cells and strips <style> from outputs: align inline.
_LEFT = " style='text-align:left;white-space:nowrap'"

# Colours that read on light and dark themes alike (no backgrounds of their own: text inherits
# the theme's colour; muted text is the theme's colour at lower opacity).
MUTED = "opacity:0.7"
ERROR_COLOR = "#e5484d"
WARNING_COLOR = "#c77700"
OK_COLOR = "#2f9e44"


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


class Rendered:
    """A pre-rendered view with an HTML and a plain-text form (notebooks show the HTML,
    terminals and ``print`` the text).

    Example
    -------
    >>> r = Rendered("<b>hi</b>", "hi")
    >>> r
    hi
    """

    def __init__(self, html: str, text: str, rows: Any = None) -> None:
        self.html = html
        self.text = text
        self.rows = rows  # the plain data it shows, where there is one

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.text

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.text)


# --- kernels -------------------------------------------------------------------------------

_BINDING_HEAD = ["set", "binding", "name", "kind", "access", "element"]

# Descriptor kinds in words (buffer rows keep their one-word kinds: 'storage', 'uniform').
_KIND_WORDS = {
    "storage_image": "storage image",
    "sampled_image": "sampled image",
    "combined_image_sampler": "sampled image + sampler",
    "sampler": "sampler",
    "uniform_texel_buffer": "uniform texel buffer",
    "storage_texel_buffer": "storage texel buffer",
    "input_attachment": "input attachment",
    "acceleration_structure": "acceleration structure",
}
_BUFFER_KINDS = ("storage", "uniform")
_IMAGE_KINDS = ("storage_image", "sampled_image", "combined_image_sampler")
_TEXEL_KINDS = ("uniform_texel_buffer", "storage_texel_buffer")
_FORMATTED_KINDS = ("storage_image", "storage_texel_buffer")  # a format qualifier fixes the dtype
_FILLABLE_DIMS = ("1d", "2d", "3d", "cube")  # what vknb.Image holds (compute/bind.py)
_DIM_WORDS = {"1d": "1D", "2d": "2D", "3d": "3D", "cube": "cube", "rect": "rect"}
_SHAPE_CORE = {"1d": "W", "2d": "H, W", "3d": "D, H, W", "cube": "6, H, W", "buffer": "N"}
# A format's numeric kind -> what a read returns in the shader (ImageInfo.sampled_type).
_READS_AS = {"float": "float", "unorm": "float", "snorm": "float", "uint": "uint", "sint": "int"}
_DTYPE_ORDER = (
    "float32",
    "float16",
    "uint8",
    "uint16",
    "int8",
    "int16",
    "uint32",
    "int32",
)  # 64-bit images (r64ui, r64i) need a device feature: left out of the card's lists
_DEFAULT_SAMPLER_TEXT = "default sampler: linear, clamp to edge"


def _dtype_words(dt: Any) -> str:
    """``'float32'``; a structured dtype as ``'struct {pos, mass, vel} (32 B)'``."""
    if dt is not None and dt.names:
        return f"struct {{{', '.join(dt.names)}}} ({dt.itemsize} B)"
    return str(dt)


def _access(b: Any) -> str:
    if b.readonly and not b.writeonly:
        return "readonly"
    if b.writeonly and not b.readonly:
        return "writeonly"
    return "read/write"


def _a(words: str) -> str:
    """``'a storage image'``, ``'an input attachment'``."""
    return ("an " if words[:1] in "aeiou" else "a ") + words


def _dims_words(info: Any) -> str:
    """``'2D'``, ``'2D array'``, ``'cube'``, ``'multisampled 2D'``, ``'2D shadow'``."""
    words = _DIM_WORDS.get(info.dim, info.dim)
    if info.arrayed:
        words += " array"
    if info.multisampled:
        words = "multisampled " + words
    if info.depth:
        words += " shadow"
    return words


def _shape_words(info: Any, channels: int) -> str:
    """The numpy shape an image or texel buffer takes: ``(H, W, 4)``, ``(L, H, W[, C])``,
    ``(N,)``; ``channels`` 0 where the array chooses them."""
    core = _SHAPE_CORE[info.dim]
    if info.arrayed:
        core = "6L, H, W" if info.dim == "cube" else "L, " + core
    if channels == 0:
        return f"({core}[, C])"
    if channels == 1:
        return f"({core})" if "," in core else f"({core},)"
    return f"({core}, {channels})"


def _dtypes_reading(sampled_type: str, normalized: bool) -> str:
    """The dtypes of the formats whose reads return ``sampled_type`` (``'float'``, ``'int'``,
    ``'uint'``), as ``'float32/float16/uint8/...'``; integers read as floats (normalized
    formats) only where ``normalized``."""
    from ..core.image import FORMATS

    have = {
        dtype
        for _vk, dtype, _c, numeric in FORMATS.values()
        if _READS_AS[numeric] == sampled_type and (normalized or numeric not in ("unorm", "snorm"))
    }
    return "/".join(d for d in _DTYPE_ORDER if d in have)


def _resource(b: Any, names: tuple[str, ...], access: Any, count: int) -> dict[str, Any]:
    """What a card shows of a binding that is not a buffer (an image, sampler, texel buffer,
    or a kind no call can fill), as plain data; ``cannot`` says why no call can fill it."""
    kind = b.kind
    kind_text = _KIND_WORDS.get(kind, kind.replace("_", " "))
    info = b.image
    r: dict[str, Any] = {
        "set": b.set,
        "binding": b.binding,
        "names": list(names),
        "count": count,
        "kind": kind,
        "kind_text": kind_text,
        "access": _access(access),
        "dims": None,
        "format": None,
        "shape": None,
        "dtype": None,
        "notes": [],
        "cannot": None,
        "why": "",
    }
    if kind == "sampler":
        r["dtype"] = "vknb.Sampler"
    elif info is not None and (kind in _IMAGE_KINDS or kind in _TEXEL_KINDS):
        if kind in _IMAGE_KINDS:
            r["dims"] = _dims_words(info)
        if kind in _IMAGE_KINDS and info.dim not in _FILLABLE_DIMS:
            r["cannot"] = _a(f"{r['dims']} {kind_text}")
        elif kind in _IMAGE_KINDS and info.multisampled:
            r["cannot"] = _a(f"{r['dims']} {kind_text}")
            r["why"] = "vknb images have one sample per texel"
        elif kind in _FORMATTED_KINDS and info.format is not None:
            r["format"] = info.format
            if info.dtype is None:
                r["cannot"] = _a(f"{kind_text} of format {info.format}")
                r["why"] = "no vknb image format holds it"
            else:
                r["shape"] = _shape_words(info, info.channels)
                r["dtype"] = info.dtype
                if info.normalized:
                    span = "[-1, 1]" if info.dtype.startswith("int") else "[0, 1]"
                    r["notes"].append(
                        f"{info.format} holds {info.dtype}, which the shader reads as floats "
                        f"in {span}"
                    )
        else:  # the array's dtype chooses the format
            r["shape"] = _shape_words(info, 0)
            r["dtype"] = _dtypes_reading(info.sampled_type, kind != "storage_image")
        if kind == "combined_image_sampler" and r["cannot"] is None:
            note = f"{_DEFAULT_SAMPLER_TEXT}; pass (image, vknb.Sampler(...)) to choose"
            if info.sampled_type != "float":
                note += " (integer formats need filter='nearest')"
            r["notes"].append(note)
    else:
        r["cannot"] = _a(kind_text)
    if count == 0:
        r["cannot"], r["why"] = "an unsized descriptor array ([])", "give it a size"
    return r


def _element(r: dict[str, Any]) -> str:
    """The card's ``element`` cell of a resource: ``'2D rgba8 → (H, W, 4) uint8'``."""
    head = " ".join(p for p in (r["dims"], r["format"]) if p)
    if r["cannot"] is not None:
        return f"{head} (cannot be filled)".lstrip()
    if r["kind"] in _FORMATTED_KINDS and r["format"] is None:
        head = f"{head}, format from the array" if head else "format from the array"
    takes = " ".join(p for p in (r["shape"], r["dtype"]) if p)
    return f"{head} → {takes}" if head else takes


def _cannot_line(name: str, set_: int, binding: int, what: str, why: str = "") -> str:
    """``"binding 'tlas' (set=0, binding=0) is an acceleration structure, which a kernel call
    cannot fill"``."""
    return (
        f"binding {name!r} (set={set_}, binding={binding}) is {what}, which a kernel call cannot "
        "fill" + (f" ({why})" if why else "")
    )


def _bindings(k: Kernel) -> tuple[list[list[str]], list[dict[str, Any]], list[str]]:
    """The binding table's rows (one per buffer binding, as ever; one per image, sampler or
    texel-buffer slot, its aliases' names together), the plain data of the bindings that are
    not buffers, and a line per binding that no call can fill."""
    slots = {(s.set, s.binding): s for s in getattr(k, "slots", ())}
    rows: list[list[str]] = []
    resources: list[dict[str, Any]] = []
    cannot: list[str] = []
    seen: set[tuple[int, int]] = set()
    for b in k.reflection.bindings:
        if b.kind in _BUFFER_KINDS:
            elem = "–"
            if b.block is not None and b.block.runtime_array is not None:
                elem = f"{b.block.runtime_array.type} → {_dtype_words(b.dtype)}"
            elif b.block is not None:
                elem = f"{b.block.name} ({b.block.size} B)"
            slot = slots.get((b.set, b.binding))
            names = list(slot.names) if slot is not None and slot.name == b.name else [b.name]
            if b.name not in names:
                names.insert(0, b.name)
            rows.append([str(b.set), str(b.binding), " / ".join(names), b.kind, _access(b), elem])
            if b.count == 0:
                what = "an unsized descriptor array ([])"
                cannot.append(_cannot_line(b.name, b.set, b.binding, what, "give it a size"))
            continue
        key = (b.set, b.binding)
        if key in seen:
            continue
        seen.add(key)
        slot = slots.get(key)
        if slot is not None:
            r = _resource(slot.primary, tuple(slot.names), slot, slot.count)
        else:
            r = _resource(b, (b.name, *b.aliases), b, b.count)
        resources.append(r)
        suffix = "" if r["count"] == 1 else f"[{r['count'] or ''}]"
        name = " / ".join(n + suffix for n in r["names"])
        rows.append([str(b.set), str(b.binding), name, r["kind_text"], r["access"], _element(r)])
        if r["cannot"] is not None:
            cannot.append(_cannot_line(r["names"][0], b.set, b.binding, r["cannot"], r["why"]))
    return rows, resources, cannot


def _spec_value(k: Kernel, spec: Any) -> Any:
    """The value a specialization constant has in ``k``: the workgroup size where it sets one,
    else what ``constants=`` gave it, else its default."""
    for dim, sid in enumerate(k.reflection.local_size_ids):
        if sid == spec.id:
            return k.local_size[dim]
    return k.constants.get(spec.name or str(spec.id), spec.default)


def _kernel_device(k: Kernel) -> str:
    from ..errors import VulkanError

    try:
        return str(k.device.info.name)
    except VulkanError:  # closed, or its device is
        return "(closed)"


def _type_hint(m: Any) -> str:
    """A push-constant member's type in a call signature: the numpy scalar type a scalar takes
    (``float32``), else its GLSL type (``vec3``, ``float[4]``)."""
    dt = m.dtype
    if m.array_length is None and dt.names is None and dt.subdtype is None and dt.shape == ():
        return str(dt)
    return str(m.type)


def signature(k: Kernel) -> str:
    """How to call a kernel: its bindings in positional order, then its push-constant members
    by keyword with their types, then ``grid=`` or ``groups=``.

    Example
    -------
    >>> signature(saxpy)                                       # doctest: +SKIP
    'saxpy(X, Y, *, a: float32, n: uint32, grid=|groups=)'
    """
    parts = [slot.name for slot in getattr(k, "slots", ())]
    parts.append("*")
    pc = k.reflection.push_constants
    if pc is not None:
        parts.extend(f"{m.name}: {_type_hint(m)}" for m in pc.members if m.name)
    parts.append("grid=|groups=")
    return f"{k.name}({', '.join(parts)})"


def _dims(m: Any) -> str:
    return "[]" if m.array_length == 0 else f"[{m.array_length}]"


def _member_rows(
    members: Any, prefix: str = "", base: int = 0, stride: str = ""
) -> list[list[str]]:
    """A block's members flattened into ``[offset, name, type, size]`` rows.

    Offsets are from the start of the block; inside an element of an array of structs they read
    ``'12 + 32·i'`` (the member's offset in element ``i``)."""
    rows: list[list[str]] = []
    for m in members:
        off = base + m.offset
        where = f"{off} + {stride}" if stride else str(off)
        name = prefix + (m.name or f"#{m.offset}")
        if m.array_length is not None:
            step = m.array_stride or 0
            size = f"stride {step} B" if m.array_length == 0 else f"{m.array_length} × {step} B"
        else:
            size = f"{m.size} B"
        rows.append([where, name, str(m.type), size])
        if m.members and len(prefix.split(".")) < 4:  # structs, nested a few levels at most
            if m.array_length is not None:
                rows.extend(
                    _member_rows(
                        m.members, f"{name.removesuffix(_dims(m))}[i].", off, f"{m.array_stride}·i"
                    )
                )
            else:
                rows.extend(_member_rows(m.members, name + ".", off, stride))
    return rows


def _blocks(k: Kernel) -> list[dict[str, Any]]:
    """Every buffer block and the push-constant block, with their members as rows."""
    out = []
    for b in k.reflection.bindings:
        if b.kind not in _BUFFER_KINDS or b.block is None:
            continue
        blk = b.block
        title = f"{b.kind} block {blk.name}"
        if b.name != blk.name:
            title += f" as {b.name}"
        parts = [f"binding {b.binding} (set {b.set})", _access(b)]
        ra = blk.runtime_array
        if blk.size or ra is None:
            parts.append(f"{blk.size} B" + (" fixed" if ra is not None else ""))
        if ra is not None:
            parts.append(f"then {ra.name}[] of {ra.array_stride} B each")
        tail = ", ".join(parts)
        out.append(
            {
                "name": b.name,
                "title": f"{title} — {tail}",
                "members": _member_rows(blk.members),
                "fixed": blk.size,
            }
        )
    pc = k.reflection.push_constants
    if pc is not None:
        out.append(
            {
                "name": pc.name,
                "title": f"push constants {pc.name} — {pc.size} B",
                "members": _member_rows(pc.members),
                "fixed": pc.size,
            }
        )
    return out


def kernel_summary(k: Kernel) -> dict[str, Any]:
    """The card's content as plain data.

    ``signature`` is how to call it (:func:`signature`); ``bindings`` are the table's rows (a
    buffer's name cell lists every name its slot answers to: instance, block and array member,
    as ``k.slots[i].names``); ``blocks`` are every uniform, storage and push-constant block,
    each with a ``title`` and its ``members`` as ``[offset, name, type, size]`` rows (nested
    struct members flattened as ``a.b`` and ``p[i].x``); ``resources`` describe the bindings
    that are not buffers (images, samplers, texel buffers, and kinds no call can fill), each
    with its ``names``, ``kind`` and ``kind_text`` (in words), ``count``, ``access``, ``dims``
    (``'2D array'``...), ``format``, the numpy ``shape`` and ``dtype`` it takes, ``notes``, and
    ``cannot`` (why no call can fill it, else None); ``notes`` and ``cannot_call`` are the
    lines below the table.

    Example
    -------
    >>> kernel_summary(k)["local_size"]                      # doctest: +SKIP
    (64, 1, 1)
    """
    ci = k.compile_info
    pc = k.reflection.push_constants
    rows, resources, cannot = _bindings(k)
    return {
        "name": k.name,
        "signature": signature(k),
        "local_size": k.local_size,
        "bindings": rows,
        "blocks": _blocks(k),
        "resources": resources,
        "notes": [f"{r['names'][0]}: {n}" for r in resources for n in r["notes"]],
        "cannot_call": cannot,
        "push_constants": []
        if pc is None
        else [[m.name, str(m.offset), m.type] for m in pc.members],
        "spec_constants": [
            [str(s.id), s.name, str(s.dtype), repr(s.default), repr(_spec_value(k, s))]
            for s in k.reflection.spec_constants
        ],
        "compile_ms": None if ci is None else ci.compile_ms,
        "cache_hit": None if ci is None else ci.cache_hit,
        "pipeline_ms": getattr(k, "pipeline_ms", None),
        "spirv_bytes": len(k.spirv),
        "device": _kernel_device(k),
        "version": getattr(k, "version", ""),
    }


def _kernel_foot(s: dict[str, Any]) -> str:
    parts = []
    if s["compile_ms"] is not None:
        hit = " (cache hit)" if s["cache_hit"] else ""
        parts.append(f"compile {s['compile_ms']:.1f} ms{hit}")
    if s["pipeline_ms"] is not None:
        parts.append(f"pipeline {s['pipeline_ms']:.1f} ms")
    parts.append(f"SPIR-V {s['spirv_bytes']} B")
    if s.get("version"):
        parts.append(f"version {s['version']}")
    parts.append(f"on {s['device']}")
    return ", ".join(parts)


_MEMBER_HEAD = ["offset", "name", "type", "size"]
# A block with more members than this is shown folded (a <details> to open).
_FOLD_MEMBERS = 8


def kernel_text(k: Kernel) -> str:
    """Plain-text reflection card of a kernel (what IPython shows as its ``text/plain``).

    The call signature, the bindings, every block's members with their offsets and types, the
    specialization constants.  Images, samplers and texel buffers show their kind in words,
    dimensionality, format and the numpy shape and dtype they take; a binding that no call
    can fill adds a ``cannot be called: ...`` line."""
    s = kernel_summary(k)
    out = [f"<vknb.Kernel {s['name']!r} local_size={s['local_size']}>", f"call: {s['signature']}"]
    if s["bindings"]:
        out.append(_table(_BINDING_HEAD, s["bindings"], False))
    out.extend(s["notes"])
    out.extend(f"cannot be called: {c}" for c in s["cannot_call"])
    for blk in s["blocks"]:
        rows = blk["members"]
        if len(rows) == 1:  # one line: "… : x float[] @0 (stride 4 B)"
            off, name, type_, size = rows[0]
            out.append(f"{blk['title']}: {name} {type_} @{off} ({size})")
            continue
        out.append(f"{blk['title']}:")
        out.extend("  " + line for line in _table(_MEMBER_HEAD, rows, False).splitlines())
    if s["spec_constants"]:
        out.append(
            "specialization constants: "
            + ", ".join(f"{n or '#' + i} = {v} ({t})" for i, n, t, _d, v in s["spec_constants"])
        )
    out.append(_kernel_foot(s))
    return "\n".join(out)


def kernel_html(k: Kernel) -> str:
    """HTML reflection card of a kernel (the content of :func:`kernel_text`); a block with
    many members is folded into a ``<details>`` element (no script needed to open it)."""
    s = kernel_summary(k)
    h = [
        f"<div class='vknb-kernel'><b>vknb kernel <code>{_esc(s['name'])}</code></b> "
        f"&nbsp; workgroup {_esc(s['local_size'])}"
        f"<div class='vknb-signature'><code>{_esc(s['signature'])}</code></div>"
    ]
    if s["bindings"]:
        h.append(_table(_BINDING_HEAD, s["bindings"], True))
    h.extend(f"<div class='vknb-note'>{_esc(n)}</div>" for n in s["notes"])
    h.extend(
        f"<div class='vknb-cannot-call'><b style='color:{ERROR_COLOR}'>cannot be called</b>: "
        f"{_esc(c)}</div>"
        for c in s["cannot_call"]
    )
    for blk in s["blocks"]:
        rows = blk["members"]
        # Open where there is something to read (a fixed part), folded when long; a block that
        # is one runtime array is summed up by its binding's row already.
        opened = " open" if blk["fixed"] and len(rows) <= _FOLD_MEMBERS else ""
        count = _n(len(rows), "member")
        h.append(
            f"<details class='vknb-block'{opened}><summary>{_esc(blk['title'])} "
            f"<span style='{MUTED}'>({count})</span></summary>"
            f"{_table(_MEMBER_HEAD, rows, True)}</details>"
        )
    if s["spec_constants"]:
        h.append(
            "<div>specialization constants: "
            + _table(["id", "name", "type", "default", "value"], s["spec_constants"], True)
            + "</div>"
        )
    h.append(f"<div style='{MUTED}'>{_esc(_kernel_foot(s))}</div></div>")
    return "".join(h)


# --- compile errors ------------------------------------------------------------------------


def compile_error_text(err: ShaderCompileError) -> str:
    """The numbered listing around each diagnostic."""
    from ..shader.compiler import format_diagnostics

    return format_diagnostics(err.source, err.diagnostics)


def compile_error_html(err: ShaderCompileError) -> str:
    """HTML view: the source with the offending lines marked and the messages below them.

    One block per line (no table: notebook themes stripe table rows, which would fall on the
    wrong lines), in the theme's text colour; a line with an error gets a translucent red tint
    and a red edge, a line with a warning an amber one, readable on light and dark themes."""
    lines = err.source.splitlines()
    by_line: dict[int, list[tuple[int, int, str, str]]] = {}
    for d in err.diagnostics:
        by_line.setdefault(d[0], []).append(d)
    width = len(str(len(lines)))
    tints = {
        "error": (ERROR_COLOR, "rgba(229,72,77,0.16)"),
        "warning": (WARNING_COLOR, "rgba(199,119,0,0.16)"),
    }
    rows = []
    for i, text in enumerate(lines, start=1):
        diags = by_line.get(i, [])
        worst = "error" if any(d[2] == "error" for d in diags) else ("warning" if diags else "")
        style = "padding-left:6px;border-left:3px solid transparent"
        if worst:
            edge, tint = tints[worst]
            style = f"padding-left:6px;border-left:3px solid {edge};background:{tint}"
        mark = " class='vknb-error-line'" if worst else ""
        rows.append(
            f"<div{mark} style='{style}'><span style='{MUTED};user-select:none'>"
            f"{str(i).rjust(width)}</span>  {_esc(text) or ' '}</div>"
        )
        for d in diags:
            color = tints.get(d[2], tints["warning"])[0]
            col = " " * max(d[1] - 1, 0) if d[1] else ""
            rows.append(
                f"<div class='vknb-diagnostic' style='padding-left:9px'>"
                f"<span style='user-select:none'>{' ' * width}  </span>{col}"
                f"<b style='color:{color}'>^ {_esc(d[2])}</b>: {_esc(d[3])}</div>"
            )
    other = [d for d in err.diagnostics if d[0] < 1 or d[0] > len(lines)]
    extra = "".join(
        f"<div><b style='color:{ERROR_COLOR if d[2] == 'error' else WARNING_COLOR}'>"
        f"{_esc(d[2])}</b>: {_esc(d[3])}</div>"
        for d in other
    )
    name = _esc(err.name or "kernel")
    return (
        f"<div class='vknb-error'><b style='color:{ERROR_COLOR}'>ShaderCompileError in "
        f"{name}</b><div class='vknb-listing' style='font-family:monospace;white-space:pre;"
        f"overflow-x:auto;margin:4px 0'>{''.join(rows)}</div>{extra}</div>"
    )


# --- devices --------------------------------------------------------------------------------

_DEV_HEAD = ["idx", "name", "type", "vendor", "driver", "api", "device-local", "score (type+mem)"]


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


def _devices_table(infos: list[DeviceInfo] | None, current: int | None, html_: bool) -> str:
    from ..core.instance import devices
    from ..core.session import current_device

    if current is None:
        d = current_device()
        current = d.index if d is not None else None
    rows, marks = _device_rows(devices() if infos is None else infos, current)
    return _table(_DEV_HEAD, rows, html_, marks if html_ else None)


def devices_text(infos: list[DeviceInfo] | None = None, current: int | None = None) -> str:
    """Plain-text device table; ``*`` marks the session device (or device ``current``)."""
    return _devices_table(infos, current, False)


def devices_html(infos: list[DeviceInfo] | None = None, current: int | None = None) -> str:
    """HTML device table; the session device (or device ``current``) in bold."""
    return _devices_table(infos, current, True)


def session_text() -> str:
    """One line on the session device and why it was chosen (creates no device).

    Example
    -------
    >>> session_text()                                       # doctest: +SKIP
    'session device: 0: llvmpipe (LLVM 15.0.6, 256 bits) (highest score 2 (cpu +0, ...))'
    """
    from ..core.session import current_device

    d = current_device()
    if d is None:
        return "no session device yet (vknb.device() creates the best-scored one)"
    return f"session device: {d.index}: {d.info.name} ({d.reason})"


def device_html(dev: Device) -> str:
    """HTML summary of a logical device."""
    i = dev.info
    return (
        f"<div><b>{_esc(i.name)}</b> ({_esc(i.type)}, score {i.score}: "
        f"type +{i.score_parts['type']}, memory +{i.score_parts['memory']}) — "
        f"{_esc(dev.reason)}</div>"
    )


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
    ops = lim.get("subgroup_operations") or []
    return {
        "device": [
            ("name", info.name),
            ("type", info.type),
            ("vendor", f"{info.vendor} (0x{info.vendor_id:04x})"),
            ("device id", f"0x{info.device_id:04x}"),
            ("driver", f"{info.driver} {info.driver_info}".strip()),
            ("API version", info.api_version),
            ("device-local memory", fmt_bytes(info.total_memory)),
        ],
        "score": [
            ("type bonus", f"+{p['type']} ({info.type}; discrete +1000, integrated +100)"),
            ("memory bonus", f"+{p['memory']} (1 per GiB device-local)"),
            ("total", str(info.score)),
        ],
        "compute limits": [
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
        ],
        "timestamps": [
            ("compute queue timestamps", "yes" if info.timestamps else "no"),
            ("period", f"{lim.get('timestamp_period_ns', 0):g} ns"),
            ("valid bits", str(lim.get("timestamp_valid_bits", "–"))),
        ],
        "features": [
            (label, "yes" if info.features.get(key) else "no") for key, label in _FEATURE_LABELS
        ],
        "memory heaps": [
            (
                f"heap {h.index}",
                f"{fmt_bytes(h.size)}, {'device-local' if h.device_local else 'host'}",
            )
            for h in info.heaps
        ],
        "memory types": [
            (f"type {t.index}", f"heap {t.heap}: {', '.join(t.flag_names) or '(no flags)'}")
            for t in info.memory_types
        ],
        "queue families": [
            (
                f"family {q.index}",
                f"{', '.join(q.capabilities)}; {_n(q.count, 'queue')}; "
                f"timestamps {q.timestamp_valid_bits} bits",
            )
            for q in info.queue_families
        ],
        "extensions": [("count", str(len(info.extensions)))]
        + [(e, "yes") for e in info.notable_extensions],
    }


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
            f"<tr><td style='padding:0 .8em 0 0;{MUTED}'>{_esc(k)}</td>"
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


# --- memory ----------------------------------------------------------------------------------

_HEAP_HEAD = ["heap", "kind", "size", "budget", "driver usage", "vknb allocated", "vknb used"]


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


def _memory_foot(s: MemoryStats) -> str:
    """vknb's blocks, buffers and images, what is cached for reuse, and a missing budget
    extension."""
    foot = (
        f"vknb: {fmt_bytes(s.allocated)} allocated in {_n(s.blocks, 'block')}, "
        f"{fmt_bytes(s.used)} used by {_n(s.buffers, 'live buffer')} and "
        f"{_n(s.images, 'live image')}"
    )
    cached = getattr(s, "cached", 0)
    if cached:
        foot += f"; {fmt_bytes(cached)} of it kept for reuse (Device.trim() frees it)"
    if s.heaps and all(h.budget is None for h in s.heaps):
        foot += " (budget and usage: the driver lacks VK_EXT_memory_budget)"
    return foot


# Bar colours: light enough on a dark theme, dark enough on a light one.
_USAGE_COLOR = "#f0a050"
_ALLOCATED_COLOR = "#8db8e0"
_USED_COLOR = "#2f7fd0"


def percent(part: int | None, whole: int) -> str:
    """``part / whole`` as a percentage that stays readable when small: ``'0.06%'``,
    ``'<0.01%'``, ``'3.2%'``, ``'47%'``.

    Example
    -------
    >>> percent(3 << 20, 8 << 30), percent(0, 10), percent(5, 10)
    ('0.04%', '0%', '50%')
    """
    if not part or whole <= 0:
        return "0%"
    p = 100.0 * part / whole
    if p < 0.01:
        return "<0.01%"
    if p < 1:
        return f"{p:.2f}%"
    if p < 10:
        return f"{p:.1f}%"
    return f"{p:.0f}%"


def _bar(parts: list[tuple[float, str, str]], width_px: int = 200) -> str:
    """A horizontal bar: ``parts`` are (fraction of the whole, colour, tooltip), drawn overlaid.

    A part above zero is at least 3 px wide, so a few MiB of a large heap still show."""
    inner = ""
    for frac, color, tip in parts:
        frac = min(max(frac, 0.0), 1.0)
        if frac <= 0:
            continue
        inner += (
            f"<div title='{_esc(tip)}' style='position:absolute;left:0;top:0;bottom:0;"
            f"width:{frac * 100:.3f}%;min-width:3px;background:{color}'></div>"
        )
    return (
        f"<div class='vknb-bar' style='position:relative;display:inline-block;"
        f"vertical-align:middle;width:{width_px}px;height:12px;"
        f"background:rgba(128,128,128,0.15);border:1px solid rgba(128,128,128,0.6)'>{inner}</div>"
    )


def heap_label(h: Any) -> str:
    """The words beside a heap's bar: ``'vknb used 0.06% · allocated 0.41% · driver 1.2%'``.

    Example
    -------
    >>> heap_label(vknb.device().memory_stats().heaps[0])     # doctest: +SKIP
    'vknb used 0.06% · allocated 0.41% of 2.0 GiB'
    """
    words = f"vknb used {percent(h.used, h.size)} · allocated {percent(h.allocated, h.size)}"
    if h.usage is not None:
        words += f" · driver {percent(h.usage, h.size)}"
    return f"{words} of {fmt_bytes(h.size)}"


def sparkline_svg(values: list[tuple[float, float]], width: int = 120, height: int = 22) -> str:
    """A sparkline of (used, allocated) samples, oldest first, as SVG text: ``used`` solid,
    ``allocated`` dashed, both scaled to the largest value shown (not to the heap), so a small
    change is visible.  No script, no text, fixed colours (it is shown through ``<img>``).

    Example
    -------
    >>> sparkline_svg([(1.0, 2.0), (2.0, 2.0)]).startswith("<svg")
    True
    """
    top = max((max(u, a) for u, a in values), default=0.0) or 1.0
    n = max(len(values) - 1, 1)

    def line(idx: int, color: str, dash: str) -> str:
        pts = " ".join(
            f"{i * (width - 2) / n + 1:.1f},{height - 2 - v[idx] / top * (height - 4):.1f}"
            for i, v in enumerate(values)
        )
        return (
            f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.5"'
            f'{dash} stroke-linejoin="round"/>'
        )

    body = line(1, _ALLOCATED_COLOR, ' stroke-dasharray="3 2"') + line(0, _USED_COLOR, "")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">{body}</svg>'
    )


def _sparkline(history: list[tuple[int, int]], seconds: float) -> str:
    """An ``<img>`` of :func:`sparkline_svg` (a data URI survives HTML sanitizers that strip
    inline SVG), with its range in words beside it."""
    import base64

    if len(history) < 2:
        return ""
    svg = sparkline_svg([(float(u), float(a)) for u, a in history])
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode("ascii")
    used = [u for u, _a in history]
    words = (
        f"vknb used over the last {seconds:.0f} s: {fmt_bytes(used[0])} → {fmt_bytes(used[-1])}, "
        f"peak {fmt_bytes(max(used))}"
    )
    return (
        f"<img class='vknb-sparkline' src='{uri}' width='120' height='22' alt='{_esc(words)}' "
        f"title='{_esc(words)}' style='vertical-align:middle'><br>"
        f"<span style='{MUTED};font-size:85%'>peak {_esc(fmt_bytes(max(used)))}</span>"
    )


def memory_stats_text(stats: MemoryStats, title: str = "") -> str:
    """Plain-text memory statistics (a ``MemoryStats``): one row per heap, then vknb's blocks,
    live buffers and live images.

    Example
    -------
    >>> "vknb used" in memory_stats_text(vknb.device().memory_stats())
    True
    """
    head = [*_HEAP_HEAD, "use"]
    rows = [[*_heap_cells(h), heap_label(h).split(" of ")[0]] for h in stats.heaps]
    table = _table(head, rows, False)
    return (f"{title}\n" if title else "") + f"{table}\n{_memory_foot(stats)}"


def memory_stats_html(
    stats: MemoryStats,
    title: str = "",
    history: dict[int, list[tuple[int, int]]] | None = None,
    seconds: float = 60.0,
) -> str:
    """HTML memory statistics (a ``MemoryStats``): per heap its size, the driver's budget and
    usage, vknb's allocated and used bytes, a bar with the percentages printed beside it, and
    (given ``history``: heap index -> ``(used, allocated)`` samples, oldest first, over the last
    ``seconds``) a sparkline of vknb's use; then vknb's blocks, live buffers and live images.

    Bars are relative to the heap's size: driver usage (orange), vknb allocated (light blue),
    vknb used (dark blue); a part above zero is never thinner than 3 px.

    Example
    -------
    >>> html = memory_stats_html(vknb.device().memory_stats())
    >>> "vknb used" in html
    True
    """
    rows = ""
    spark = history is not None
    for h in stats.heaps:
        size = max(h.size, 1)
        parts = []
        if h.usage is not None:
            parts.append((h.usage / size, _USAGE_COLOR, f"driver usage {fmt_bytes(h.usage)}"))
        parts.append(
            (h.allocated / size, _ALLOCATED_COLOR, f"vknb allocated {fmt_bytes(h.allocated)}")
        )
        parts.append((h.used / size, _USED_COLOR, f"vknb used {fmt_bytes(h.used)}"))
        cells = "".join(f"<td{_LEFT}>{_esc(c)}</td>" for c in _heap_cells(h))
        label = heap_label(h).split(" of ")[0]
        rows += (
            f"<tr>{cells}<td{_LEFT}>{_bar(parts)} <span class='vknb-bar-label' "
            f"style='font-size:85%;white-space:nowrap'>{_esc(label)}</span></td>"
        )
        if spark:
            assert history is not None
            rows += f"<td{_LEFT}>{_sparkline(history.get(h.index, []), seconds)}</td>"
        rows += "</tr>"
    heads = [*_HEAP_HEAD, "of the heap"] + ([f"last {seconds:.0f} s"] if spark else [])
    th = "".join(f"<th{_LEFT}>{_esc(x)}</th>" for x in heads)
    legend = (
        f"<span style='color:{_USAGE_COLOR}'>&#9632;</span> driver usage &nbsp;"
        f"<span style='color:{_ALLOCATED_COLOR}'>&#9632;</span> vknb allocated &nbsp;"
        f"<span style='color:{_USED_COLOR}'>&#9632;</span> vknb used"
    )
    title_html = f"<div><b>{_esc(title)}</b></div>" if title else ""
    return (
        f"<div class='vknb-memory'>{title_html}<table class='vknb'><thead><tr>{th}</tr></thead>"
        f"<tbody>{rows}</tbody></table><div class='vknb-memory-foot'>"
        f"{_esc(_memory_foot(stats))}</div>"
        f"<div style='font-size:90%;{MUTED}'>{legend}</div></div>"
    )


def memory_title(dev: Device) -> str:
    """``"Memory of device 0: <name>"``: the title of a device's memory statistics."""
    return f"Memory of device {dev.index}: {dev.info.name}"


def memory_text(dev: Device) -> str:
    """Plain-text memory statistics of a device (:func:`memory_stats_text`, with a title)."""
    return memory_stats_text(dev.memory_stats(), memory_title(dev))


def memory_html(dev: Device) -> str:
    """HTML memory statistics of a device (:func:`memory_stats_html`, with a title).

    Example
    -------
    >>> html = memory_html(vknb.device())                    # doctest: +SKIP
    """
    return memory_stats_html(dev.memory_stats(), memory_title(dev))


# --- dispatch timings ------------------------------------------------------------------------


def cluster_title(rows: list[dict[str, Any]]) -> str:
    """``Dask cluster: 2 workers on 1 device, 16 blocks run`` for ``vknb.dask.cluster_report``
    rows.

    Example
    -------
    >>> cluster_title([])
    'Dask cluster: 0 workers on 0 devices, 0 blocks run'
    """
    devices = len({(r["index"], r["name"]) for r in rows})
    blocks = sum(r["blocks"] for r in rows)
    return (
        f"Dask cluster: {plural(len(rows), 'worker')} on {plural(devices, 'device')}, "
        f"{plural(blocks, 'block')} run"
    )


def cluster_table(rows: list[dict[str, Any]], html_: bool) -> str:
    """One line per worker of ``vknb.dask.cluster_report`` rows: its device, memory, vknb's
    allocation, dispatches, GPU time, blocks and kernels built (HTML or text).

    Example
    -------
    >>> print(cluster_table([], False))
    worker  device  score  memory  allocated  dispatches  GPU ms  blocks  kernels built
    """
    from ..dask.workers import REPORT_HEAD, report_cells

    return _table(REPORT_HEAD, report_cells(rows), html_)


def timings_summary(records: list[DispatchRecord]) -> list[dict[str, Any]]:
    """Per-kernel-version aggregates of dispatch records (:func:`vknb.timing.summarize`): an
    edited kernel of the same name gets a row of its own (``'saxpy (v2)'``).

    Example
    -------
    >>> [s["kernel"] for s in timings_summary(vknb.timings())]   # doctest: +SKIP
    ['saxpy']
    """
    return summarize(records)


def timings_figure(records: list[DispatchRecord]) -> Any:
    """Deprecated: :func:`vknb.widgets.plot_timings` (``kind="all"``).

    Example
    -------
    >>> fig = timings_figure(vknb.timings())                 # doctest: +SKIP
    """
    import warnings

    warnings.warn(
        "vknb.display.timings_figure is now vknb.widgets.plot_timings(records)",
        DeprecationWarning,
        stacklevel=2,
    )
    return plot_timings(records)


_SUMMARY_HEAD = [
    "kernel",
    "version",
    "dispatches",
    "GPU ms total",
    "GPU ms median",
    "GPU ms mean",
    "GPU ms min",
    "GPU ms max",
    "host ms mean",
    "GB/s mean",
]


def _summary_table(records: list[DispatchRecord], html_: bool) -> str:
    rows = [
        [
            s["label"],
            s["version"] or "–",
            str(s["count"]) + (f" ({s['warmups']} warm-up)" if s["warmups"] else ""),
            _ms(s["gpu_ms_total"]),
            _ms(s["gpu_ms_median"]),
            _ms(s["gpu_ms_mean"]),
            _ms(s["gpu_ms_min"]),
            _ms(s["gpu_ms_max"]),
            _ms(s["host_ms_mean"]),
            "–" if s["bandwidth_gbs"] is None else f"{s['bandwidth_gbs']:.2f}",
        ]
        for s in timings_summary(records)
    ]
    return _table(_SUMMARY_HEAD, rows, html_)


def timings_summary_text(records: list[DispatchRecord]) -> str:
    """Plain-text table of :func:`timings_summary`: one row per kernel."""
    return _summary_table(records, False)


def timings_summary_html(records: list[DispatchRecord]) -> str:
    """HTML table of :func:`timings_summary`: one row per kernel."""
    return _summary_table(records, True)


_DISPATCH_HEAD = [
    "time",
    "kernel",
    "groups",
    "workgroup",
    "GPU ms",
    "host ms",
    "bytes in",
    "bytes out",
    "GB/s",
]


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def dispatch_rows(records: list[DispatchRecord]) -> list[list[str]]:
    """The dispatch table's cells, one list per record: time, kernel (its version's label,
    :func:`vknb.timing.version_label`), groups, workgroup,
    GPU ms, host ms, bytes in, bytes out, GB/s (achieved bandwidth, where the byte count is
    known).

    Example
    -------
    >>> dispatch_rows(vknb.timings(last=1))[0][1]                # doctest: +SKIP
    'saxpy'
    """
    return [
        [
            _clock(r.time),
            version_label(r.kernel, r.version),
            "x".join(map(str, r.groups)),
            "x".join(map(str, r.local_size)),
            _ms(r.gpu_ms),
            _ms(r.host_ms),
            fmt_bytes(r.bytes_in),
            fmt_bytes(r.bytes_out),
            "–" if r.bandwidth_gbs is None else f"{r.bandwidth_gbs:.2f}",
        ]
        for r in records
    ]


def timings_text(records: list[DispatchRecord]) -> str:
    """Plain-text table of dispatch records, one row each (:func:`dispatch_rows`)."""
    return _table(_DISPATCH_HEAD, dispatch_rows(records), False)


def timings_table_html(records: list[DispatchRecord]) -> str:
    """HTML table of dispatch records, one row each (:func:`dispatch_rows`)."""
    return _table(_DISPATCH_HEAD, dispatch_rows(records), True)


def _timings_headline(records: list[DispatchRecord], total: int | None) -> str:
    """``"N dispatches recorded; showing all"`` (or ``the last K``)."""
    shown = f"the last {len(records)}" if total is not None and total > len(records) else "all"
    n = len(records) if total is None else total
    return f"{plural(n, 'dispatch')} recorded; showing {shown}"


_VERSIONS_HEAD = [
    "version",
    "hash",
    "dispatches",
    "GPU ms median",
    "GPU ms mean",
    "GPU ms min",
    "GPU ms max",
    "host ms median",
    "speedup",
]


def _versions_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            r["label"],
            r["version"] or "–",
            str(r["count"]) + (f" (+{r['warmups']} warm-up)" if r["warmups"] else ""),
            _ms(r["gpu_ms_median"]),
            _ms(r["gpu_ms_mean"]),
            _ms(r["gpu_ms_min"]),
            _ms(r["gpu_ms_max"]),
            _ms(r["host_ms_median"]),
            "–" if r["speedup"] is None else f"{r['speedup']:.2f}x",
        ]
        for r in rows
    ]


def versions_text(kernel: str, rows: list[dict[str, Any]]) -> str:
    """Plain-text table of :func:`vknb.timing.compare_versions` rows."""
    if not rows:
        return f"{kernel}: no dispatches recorded"
    head = (
        f"{kernel}: {plural(len(rows), 'version')} "
        "(warm-ups left out; speedup: the first version's median over this one's)"
    )
    return head + "\n" + _table(_VERSIONS_HEAD, _versions_rows(rows), False)


def versions_html(kernel: str, rows: list[dict[str, Any]]) -> str:
    """HTML table of :func:`vknb.timing.compare_versions` rows."""
    if not rows:
        return f"<div class='vknb-versions'><b>{_esc(kernel)}</b>: no dispatches recorded</div>"
    return (
        f"<div class='vknb-versions'><b>{_esc(kernel)}</b>: {plural(len(rows), 'version')} "
        f"<span style='{MUTED}'>(warm-ups left out; speedup: the first version's median GPU "
        f"time over this one's)</span>{_table(_VERSIONS_HEAD, _versions_rows(rows), True)}</div>"
    )


def timings_report_text(records: list[DispatchRecord], total: int | None = None) -> str:
    """Per-kernel summary followed by the table of ``records`` (``total``: how many exist).

    Example
    -------
    >>> print(timings_report_text(vknb.timings(last=5)))    # doctest: +SKIP
    """
    if not records:
        return "no dispatches recorded yet"
    return (
        f"{_timings_headline(records, total)}\n{timings_summary_text(records)}\n\n"
        f"{timings_text(records)}"
    )


def timings_html(records: list[DispatchRecord], total: int | None = None) -> str:
    """HTML form of :func:`timings_report_text`: per-kernel summary, then one row per dispatch.

    Example
    -------
    >>> html = timings_html(vknb.timings(last=5))            # doctest: +SKIP
    """
    if not records:
        return "<div class='vknb-timings'>no dispatches recorded yet</div>"
    return (
        f"<div class='vknb-timings'><div>{_esc(_timings_headline(records, total))}</div>"
        f"{timings_summary_html(records)}<br>{timings_table_html(records)}</div>"
    )


def dispatch_text(rec: DispatchRecord) -> str:
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


def dispatch_html(rec: DispatchRecord) -> str:
    """HTML form of :func:`dispatch_text`.

    Example
    -------
    >>> html = dispatch_html(vknb.timings()[-1])             # doctest: +SKIP
    """
    return f"<div class='vknb-dispatch' style='{MUTED}'>{_esc(dispatch_text(rec))}</div>"


# --- the environment (``vknb info``, ``%vknb info``) -----------------------------------------


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _vknb_version() -> str:
    """vknb's version; from a source tree on ``sys.path`` (not installed), where it comes from."""
    from ..config import VERSION

    if _version("vknb") == "not installed":
        return f"{VERSION} (not installed: {Path(__file__).parents[1]})"
    return VERSION


def _vk_version(v: int) -> str:
    """A packed Vulkan version (``VK_MAKE_VERSION``) as ``major.minor.patch``."""
    return f"{(v >> 22) & 0x7F}.{(v >> 12) & 0x3FF}.{v & 0xFFF}"


def environment_info() -> dict[str, str]:
    """Versions and paths that matter for a bug report, as plain data: the table ``vknb info``
    and ``%vknb info`` show (through :func:`info_text` / :func:`info_html`).

    Creates the Vulkan instance if needed, but no device: where no session device exists yet,
    the one that would be chosen is described.  A missing driver or compiler is reported in
    the table, not raised.

    Example
    -------
    >>> print(info_text(environment_info()))                  # doctest: +SKIP
    """
    from ..core.instance import devices, get_instance, select_device_index
    from ..core.session import current_device
    from ..errors import VulkanError
    from ..shader.compiler import cache_dir, find_compiler

    info: dict[str, str] = {
        "vknb": _vknb_version(),
        "python": f"{platform.python_version()} ({sys.executable})",
        "vulkan (Python binding)": _version("vulkan"),
        "numpy": _version("numpy"),
        "IPython": _version("ipython"),
        "ipywidgets": _version("ipywidgets"),
    }
    try:
        inst = get_instance()
        info["Vulkan loader"] = _vk_version(inst.loader_version)
        info["Vulkan instance API"] = _vk_version(inst.api_version)
        info["validation"] = "on" if inst.validation else "off (VKNB_VALIDATION=1 turns it on)"
        infos = devices()
        session = current_device()
        if session is not None:
            d, state = session.info, f"session device ({session.reason})"
        else:
            idx, reason = select_device_index(infos)
            d, state = infos[idx], f"not created yet; would be chosen: {reason}"
        info["device"] = f"{d.index}: {d.name} ({d.type}) — {state}"
        info["driver"] = f"{d.driver} {d.driver_info}".strip()
        info["device Vulkan API"] = d.api_version
        info["devices"] = ", ".join(f"{x.index}: {x.name}" for x in infos)
    except VulkanError as e:
        info["Vulkan"] = f"unavailable: {e}"
    try:
        c = find_compiler()
        info["compiler"] = f"{c.description} ({c.path})"
    except VulkanError as e:
        info["compiler"] = f"unavailable: {e}"
    cdir = cache_dir()
    try:
        n = sum(1 for p in (cdir / "spirv").iterdir() if p.suffix == ".vkspv")
    except OSError:
        n = 0
    info["cache directory"] = f"{cdir} ({n} SPIR-V entries)"
    env = {k: v for k, v in os.environ.items() if k.startswith("VKNB_")}
    info["environment"] = ", ".join(f"{k}={v}" for k, v in sorted(env.items())) or "(no VKNB_*)"
    return info


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


# --- IPython formatters ----------------------------------------------------------------------


def _pretty(render: Callable[[Any], str]) -> Callable[[Any, Any, bool], None]:
    """A ``text/plain`` printer (IPython's pretty-printer protocol) from a text renderer."""

    def printer(obj: Any, p: Any, cycle: bool) -> None:
        p.text(render(obj))

    return printer


def _figure_png(fig: Any) -> bytes:
    from .plots import figure_bytes

    return figure_bytes(fig, "png")


def _figure_html(fig: Any) -> str:
    from .plots import figure_html

    return figure_html(fig)


# (MIME type, module, class name, renderer): registered by name, so that nothing is imported
# before the user's own code imports it.  vknb's figures are registered too: `%matplotlib
# inline` registers a PNG formatter for every Figure, which would win over the figure's own
# theme-neutral PNG.
_FORMATTERS: tuple[tuple[str, str, str, Callable[..., Any]], ...] = (
    ("text/html", "vknb.errors", "ShaderCompileError", compile_error_html),
    ("text/html", "vknb.compute.kernel", "Kernel", kernel_html),
    ("text/plain", "vknb.compute.kernel", "Kernel", _pretty(kernel_text)),
    ("text/html", "vknb.core.device", "Device", device_html),
    ("text/html", "vknb.compute.timing", "DispatchRecord", dispatch_html),
    ("image/png", "vknb.ui.plots", "TimingsFigure", _figure_png),
    ("text/html", "vknb.ui.plots", "TimingsFigure", _figure_html),
)


def register_formatters(ipython: Any) -> None:
    """Show vknb's objects with this module's renderers in ``ipython`` (``%load_ext vknb``).

    ``text/html`` for :class:`~vknb.ShaderCompileError` (the highlighted listing),
    :class:`~vknb.Kernel` (the reflection card), :class:`~vknb.Device` and
    :class:`~vknb.timing.DispatchRecord`; ``text/plain`` for a Kernel (the card as text).
    Registered by class name: nothing is imported, no device is created.

    Example
    -------
    >>> register_formatters(get_ipython())                   # doctest: +SKIP
    """
    formatters = ipython.display_formatter.formatters
    for mime, module, name, fn in _FORMATTERS:
        formatters[mime].for_type_by_name(module, name, fn)


def unregister_formatters(ipython: Any) -> None:
    """Undo :func:`register_formatters` (``%unload_ext vknb``).

    Example
    -------
    >>> unregister_formatters(get_ipython())                 # doctest: +SKIP
    """
    formatters = ipython.display_formatter.formatters
    for mime, module, name, _fn in _FORMATTERS:
        formatters[mime].pop(f"{module}.{name}", None)
