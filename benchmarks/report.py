"""Outputs: the markdown table (printed and written) and the JSON record of a run.

Example
-------
>>> from benchmarks.report import device_slug, fmt
>>> device_slug("NVIDIA H100 80GB HBM3")
'nvidia-h100-80gb-hbm3'
>>> fmt(1234.5), fmt(12.345), fmt(0.01234), fmt("not installed")
('1,234', '12.3', '0.0123', 'not installed')
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .suite import Row, _num

COLUMNS = ("metric", "vknb", "raw vulkan baseline", "ratio", "wgpu", "cupy", "target", "met?")


def device_slug(name: str) -> str:
    """A file-name-friendly form of a device name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "device"


def fmt(v: Any) -> str:
    """Three significant digits, thousands separated; strings as they are."""
    if v is None:
        return "—"
    if _num(v):
        x = float(v)
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        if x == 0:
            return "0"
        return f"{x:.3g}"
    return str(v)


def _met(row: Row) -> str:
    if row.met is True:
        return "met"
    if row.met is False:
        return "**not met**"
    if row.target:
        return f"n/a ({row.met_note})" if row.met_note else "n/a"
    return ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(meta: dict[str, Any], rows: list[Row]) -> str:
    """The report: a header with device, driver, date and versions, then the table and notes.

    Example
    -------
    >>> md = to_markdown({"device": {"name": "x"}}, [])
    >>> "| metric |" in md
    True
    """
    dev = meta.get("device", {})
    ver = meta.get("versions", {})
    lines = [
        f"# vknb benchmarks: {dev.get('name', '?')}",
        "",
        f"- device: {dev.get('name', '?')} ({dev.get('type', '?')}), driver "
        f"{dev.get('driver', '?')} {dev.get('driver_info', '')}, "
        f"Vulkan {dev.get('api_version', '?')}",
        f"- date: {meta.get('date', '?')}; host: {meta.get('host', '?')}",
        *([f"- placement: {meta['placement']}"] if meta.get("placement") else []),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in ver.items()),
        f"- size preset: `{meta.get('size', '?')}`; repeats: {meta.get('repeat', '?')}; "
        f"run time: {meta.get('runtime_s', 0):.0f} s",
        f"- correctness: {meta.get('checks', '?')}",
        "- method: " + meta.get("method", ""),
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join(["---"] + ["---:"] * 5 + ["---", "---"]) + "|",
    ]
    for r in rows:
        ratio = f"{r.ratio:.3g}×" if r.ratio is not None else "—"
        metric = f"{r.metric} [{r.unit}]" if r.unit else r.metric
        cells = [
            metric,
            fmt(r.vknb),
            fmt(r.raw),
            ratio,
            fmt(r.wgpu),
            fmt(r.cupy),
            r.target or "",
            _met(r),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += [
        "",
        "ratio = vknb / raw: below 1 is better for times (µs, ms), above 1 for rates "
        "(GB/s, GFLOP/s, %).",
        "",
        "Notes:",
        "",
    ]
    for r in rows:
        if r.notes or not r.check.startswith(("passed", "n/a")):
            check = "" if r.check in ("passed", "n/a") else f" Check: {r.check}."
            lines.append(f"- `{r.id}`: {r.notes.strip().splitlines()[0] if r.notes else ''}{check}")
    return "\n".join(lines) + "\n"


def to_json(meta: dict[str, Any], rows: list[Row]) -> str:
    """The run as JSON: ``{"meta": ..., "rows": [...]}`` (each row with its ratio)."""
    return (
        json.dumps(
            {"meta": meta, "rows": [r.to_dict() for r in rows]},
            indent=2,
            default=str,
            ensure_ascii=False,
        )
        + "\n"
    )


def write(
    meta: dict[str, Any], rows: list[Row], json_path: Path | None, md_path: Path | None
) -> None:
    """Write the JSON and the markdown (creating their folders), replacing files of the same
    name; a path that is None is skipped."""
    for path, render in ((json_path, to_json), (md_path, to_markdown)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(meta, rows), encoding="utf-8")
