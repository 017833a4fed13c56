"""Generate ``docs/api.md`` from vknb's docstrings and ``docs/library.md`` from the headers of
``shaders/*`` (no MkDocs plugin needed).

Run after changing a public docstring or signature::

    .venv/bin/python docs/gen_api.py          # rewrite docs/api.md
    .venv/bin/python docs/gen_api.py --check  # exit 1 if docs/api.md is stale

``tests/test_docs.py`` fails when either page differs from what this script writes.

The page lists what ``vknb.__all__`` exports, then the public names of the modules users reach
into (``vknb.library``, ``vknb.widgets``, ``vknb.display``, ``vknb.ui.plots``, ``vknb.timing``,
``vknb.compiler``, ``vknb.spirv``, ``vknb.magics``).  Numpy-style docstrings are turned into
Markdown: sections become bold headings, parameter lists become bullet lists, examples become
``pycon`` code blocks.
The output depends only on the source code (never on the machine), so the check is stable.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import re
import sys
import types
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "api.md"
LIBRARY_OUT = HERE / "library.md"
SHADERS = ROOT / "vknb" / "library" / "shaders"

# Modules documented after the top-level API, in this order, with a one-line summary of why a
# user would look there.  A module that cannot be imported is left out (with a note on stderr).
MODULES = [
    ("vknb.library", "ready-made kernels from `shaders/`"),
    ("vknb.dask", "scale-out with Dask: kernels over blocks, one worker per device"),
    ("vknb.widgets", "Jupyter widgets and plots"),
    ("vknb.magics", "the IPython extension: `%%glsl` and `%vknb`"),
    ("vknb.display", "text and HTML renderings"),
    ("vknb.ui.plots", "matplotlib figures of dispatch timings"),
    ("vknb.timing", "dispatch records and listeners"),
    ("vknb.compiler", "GLSL to SPIR-V and the cache"),
    ("vknb.spirv", "SPIR-V reflection"),
    ("vknb.cli", "the `vknb` command"),
]

# Top-level names grouped for reading; anything in vknb.__all__ not named here lands in "Other".
GROUPS = [
    (
        "Devices",
        ["devices", "DeviceInfo", "device", "use", "reset", "synchronize", "Device", "Submission"],
    ),
    (
        "Kernels",
        ["compile", "Kernel", "BoundCall", "compile_glsl", "reflect", "Reflection", "clear_cache"],
    ),
    ("Memory", ["asarray", "empty", "zeros", "Array", "Buffer"]),
    ("Images", ["asimage", "zeros_image", "Image", "Sampler"]),
    ("Batches", ["batch", "Batch"]),
    ("Timings", ["timings", "clear_timings", "DispatchRecord"]),
    ("IPython", ["load_ipython_extension", "unload_ipython_extension"]),
]

_SECTION_NAMES = {
    "parameters",
    "other parameters",
    "returns",
    "yields",
    "raises",
    "warns",
    "attributes",
    "examples",
    "example",
    "notes",
    "see also",
    "references",
    "methods",
}
_LIST_SECTIONS = {
    "parameters",
    "other parameters",
    "returns",
    "yields",
    "raises",
    "warns",
    "attributes",
    "methods",
}
_ROLE_RE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj|const):`~?([^`]+)`")
_CODE_RE = re.compile(r"``([^`]+)``")
_ADDR_RE = re.compile(r" at 0x[0-9a-fA-F]+")


# --- docstring -> Markdown ----------------------------------------------------------------


def _inline(text: str) -> str:
    """RST inline markup -> Markdown; escape HTML outside code spans."""
    text = _ROLE_RE.sub(lambda m: f"`{m.group(1)}`", text)
    text = _CODE_RE.sub(lambda m: f"`{m.group(1)}`", text)
    parts = re.split(r"(`[^`]*`)", text)
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        parts[i] = re.sub(r"(?<![\w*])\*(?=\w)([^*\n]*?\w)\*(?![\w*])", r"*\1*", parts[i])
    return "".join(parts)


def _split_sections(doc: str) -> list[tuple[str | None, list[str]]]:
    """``[(title or None, lines)]``; a title is a line underlined with dashes or equals."""
    lines = doc.splitlines()
    out: list[tuple[str | None, list[str]]] = [(None, [])]
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if (
            line.strip()
            and not line.startswith(" ")
            and re.fullmatch(r"[-=~]{3,}", nxt.strip())
            and len(nxt.strip()) >= len(line.strip()) - 2
        ):
            out.append((line.strip(), []))
            i += 2
            continue
        out[-1][1].append(line)
        i += 1
    return out


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _prose(lines: list[str]) -> list[str]:
    """Free text: paragraphs, bullet lists, definition lists, ``::`` literal blocks, doctests.

    Indentation is removed from prose (in Markdown it would start a code block); a line followed
    by more deeply indented lines is a definition term and becomes a bold line of its own.
    """
    md: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            md.append("")
            i += 1
            continue
        if stripped.startswith(">>>"):
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i].strip())
                i += 1
            md += ["", "```pycon", *_strip_doctest_flags(block), "```", ""]
            continue
        if stripped.endswith("::"):
            head = stripped[:-2].rstrip()
            if head:
                md.append(_inline(head + ":"))
            base = _indent(line)
            i += 1
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
                block.append(lines[i])
                i += 1
            while block and not block[0].strip():
                block.pop(0)
            while block and not block[-1].strip():
                block.pop()
            cut = min((_indent(b) for b in block if b.strip()), default=0)
            md += ["", "```text", *[b[cut:] for b in block], "```", ""]
            continue
        nxt = next((ln for ln in lines[i + 1 :] if ln.strip()), "")
        is_term = (
            i + 1 < len(lines)
            and lines[i + 1].strip()
            and _indent(lines[i + 1]) > _indent(line)
            and not stripped.startswith(("* ", "- "))
            and len(stripped) < 80
            and not stripped.endswith((".", ",", ";", ":"))
        )
        if is_term and nxt:
            md += ["", f"**{_inline(stripped)}**", ""]
            i += 1
            continue
        md.append(_inline(stripped))
        i += 1
    return md


def _strip_doctest_flags(block: list[str]) -> list[str]:
    return [re.sub(r"\s+# doctest:.*$", "", ln) for ln in block]


def _list_section(lines: list[str]) -> list[str]:
    """``name : type`` entries with indented descriptions -> bullets."""
    md: list[str] = []
    entry: list[str] | None = None

    def flush() -> None:
        if entry is not None:
            head, desc = entry[0], " ".join(s.strip() for s in entry[1:] if s.strip())
            if " : " in head:
                name, typ = head.split(" : ", 1)
                item = f"- **{_inline(name.strip())}** (*{_inline(typ.strip())}*)"
            elif head.rstrip().endswith(":") or " " in head.strip():
                item = f"- {_inline(head.strip())}"
            else:
                item = f"- **{_inline(head.strip())}**"
            md.append(item + (f" — {_inline(desc)}" if desc else ""))

    for line in lines:
        if not line.strip():
            continue
        if not line.startswith(" "):
            flush()
            entry = [line]
        elif entry is not None:
            entry.append(line)
        else:
            entry = [line.strip()]
    flush()
    return [*md, ""]


def doc_to_md(doc: str | None) -> list[str]:
    """A numpy-style docstring as Markdown lines."""
    if not doc:
        return []
    doc = inspect.cleandoc(doc)
    md: list[str] = []
    for title, lines in _split_sections(doc):
        while lines and not lines[0].strip():
            lines = lines[1:]
        while lines and not lines[-1].strip():
            lines = lines[:-1]
        if title is None:
            md += _prose(lines)
            md.append("")
            continue
        key = title.lower()
        md += [f"**{title}**", ""]
        if key in _LIST_SECTIONS:
            md += _list_section(lines)
        elif key in ("example", "examples"):
            if any(ln.strip().startswith(">>>") for ln in lines):
                body = [
                    ln.strip() if ln.lstrip().startswith((">>>", "...")) else ln for ln in lines
                ]
                md += ["```pycon", *_strip_doctest_flags(body), "```", ""]
            else:  # a shell session or similar: keep it verbatim
                cut = min((_indent(ln) for ln in lines if ln.strip()), default=0)
                md += ["```text", *[ln[cut:] for ln in lines], "```", ""]
        else:
            md += [*_prose(lines), ""]
    return _tidy(md)


def _tidy(md: list[str]) -> list[str]:
    out: list[str] = []
    for line in md:
        line = line.rstrip()
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return out


# --- objects ------------------------------------------------------------------------------


def _annotation(a: Any) -> str:
    if isinstance(a, str):
        return a
    return inspect.formatannotation(a)


def _signature(obj: Any) -> str:
    """``(x: int, *, y: str = 'a') -> bool`` with annotations as written in the source."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    params = []
    for p in sig.parameters.values():
        if p.annotation is not inspect.Parameter.empty:
            text = f"{p.name}: {_annotation(p.annotation)}"
            if p.default is not inspect.Parameter.empty:
                text += f" = {_default(p.default)}"
        else:
            text = p.name
            if p.default is not inspect.Parameter.empty:
                text += f"={_default(p.default)}"
        params.append((p.kind, text))
    out: list[str] = []
    star = False
    for i, (kind, text) in enumerate(params):
        if kind is inspect.Parameter.VAR_POSITIONAL:
            out.append("*" + text)
            star = True
        elif kind is inspect.Parameter.VAR_KEYWORD:
            out.append("**" + text)
        elif kind is inspect.Parameter.KEYWORD_ONLY and not star:
            out.append("*")
            out.append(text)
            star = True
        else:
            out.append(text)
        if kind is inspect.Parameter.POSITIONAL_ONLY and (
            i + 1 == len(params) or params[i + 1][0] is not inspect.Parameter.POSITIONAL_ONLY
        ):
            out.append("/")
    res = f"({', '.join(out)})"
    if sig.return_annotation is not inspect.Signature.empty and not inspect.isclass(obj):
        res += f" -> {_annotation(sig.return_annotation)}"
    return res


def _default(v: Any) -> str:
    if isinstance(v, (Path, type(ROOT))):
        return "<path>"  # machine-dependent
    if inspect.isclass(v):
        mod = "np" if v.__module__ == "numpy" else v.__module__
        return f"{mod}.{v.__qualname__}"
    return _ADDR_RE.sub("", repr(v))


def _anchor(name: str) -> str:
    # Case kept: vknb.device (function) and vknb.Device (class) need distinct ids.
    return re.sub(r"[^A-Za-z0-9_-]", "", name.replace(".", "-"))


def _is_public(name: str) -> bool:
    return not name.startswith("_")


def _defined_in(obj: Any, module: types.ModuleType) -> bool:
    return getattr(obj, "__module__", None) == module.__name__


def _function(qual: str, obj: Any, level: int) -> list[str]:
    head = "#" * level
    return [
        f"{head} `{qual}{_signature(obj)}` {{#{_anchor(qual)}}}",
        "",
        *doc_to_md(obj.__doc__),
        "",
    ]


def _class(qual: str, cls: type, level: int) -> list[str]:
    head = "#" * level
    kind = "exception" if issubclass(cls, BaseException) else "class"
    sig = "" if issubclass(cls, BaseException) else _signature(cls)
    if dataclasses.is_dataclass(cls) or issubclass(cls, enum.Enum):
        sig = ""
    md = [f"{head} {kind} `{qual}{sig}` {{#{_anchor(qual)}}}", ""]
    bases = [b for b in cls.__bases__ if b is not object]
    if issubclass(cls, BaseException) and bases:
        md += ["Bases: " + ", ".join(f"`{b.__name__}`" for b in bases), ""]
    doc = cls.__doc__ if cls.__doc__ and not _is_default_doc(cls) else None
    md += doc_to_md(doc)
    md.append("")
    if dataclasses.is_dataclass(cls):
        fields = [f for f in dataclasses.fields(cls) if _is_public(f.name) and f.repr]
        if fields:
            md += ["**Fields**", ""]
            for f in fields:
                md.append(f"- `{f.name}`: `{_annotation(f.type)}`")
            md.append("")
    if issubclass(cls, BaseException):
        return md
    members = []
    for name, attr in cls.__dict__.items():
        if not _is_public(name) or name in getattr(cls, "__dataclass_fields__", {}):
            continue
        if isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        if isinstance(attr, property) or inspect.isfunction(attr):
            members.append((name, attr))
    for name, attr in sorted(members, key=lambda t: t[0]):
        if isinstance(attr, property):
            md += [
                f"- `{name}` (property)"
                + (f" — {_first_para(attr.__doc__)}" if attr.__doc__ else "")
            ]
        else:
            md += [
                f"- `{name}{_signature(attr)}`"
                + (f" — {_first_para(attr.__doc__)}" if attr.__doc__ else "")
            ]
    if members:
        md.insert(len(md) - len(members), "")
        md.insert(len(md) - len(members), "**Members**")
        md.insert(len(md) - len(members), "")
        md.append("")
    return md


def _is_default_doc(cls: type) -> bool:
    # dataclasses synthesize "Name(field: type, ...)" when the class has no docstring
    return dataclasses.is_dataclass(cls) and (cls.__doc__ or "").startswith(cls.__name__ + "(")


def _first_para(doc: str | None) -> str:
    if not doc:
        return ""
    para = inspect.cleandoc(doc).split("\n\n", 1)[0]
    return _inline(" ".join(para.split()))


def _object(qual: str, obj: Any, level: int) -> list[str]:
    if inspect.isclass(obj):
        return _class(qual, obj, level)
    if callable(obj):
        return _function(qual, obj, level)
    return [
        f"{'#' * level} `{qual}` {{#{_anchor(qual)}}}",
        "",
        f"`{_ADDR_RE.sub('', repr(obj))}`",
        "",
    ]


def _module_names(mod: types.ModuleType) -> list[str]:
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [
            n
            for n, v in vars(mod).items()
            if _is_public(n)
            and (inspect.isclass(v) or inspect.isfunction(v))
            and _defined_in(v, mod)
        ]
    return sorted(n for n in names if not inspect.ismodule(getattr(mod, n, None)))


def generate() -> str:
    """The whole page as a string."""
    sys.path.insert(0, str(ROOT))
    import vknb

    md = [
        "# Python API",
        "",
        "<!-- Generated by docs/gen_api.py from the docstrings: do not edit by hand. -->",
        "",
        "Everything the magics and widgets do is available from plain Python. This page is "
        "generated from the docstrings; run `.venv/bin/python docs/gen_api.py` after changing "
        "one.",
        "",
        "## `vknb` {#vknb}",
        "",
        *doc_to_md(vknb.__doc__),
        "",
    ]
    exported = [n for n in vknb.__all__ if n != "__version__"]
    done: set[str] = set()
    errors = [n for n in exported if _is_exception(vknb, n)]
    for title, names in GROUPS:
        present = [n for n in names if n in exported and _importable(vknb, n)]
        if not present:
            continue
        md += [f"### {title}", ""]
        for n in present:
            md += _object(f"vknb.{n}", getattr(vknb, n), 4)
            done.add(n)
    rest = [n for n in exported if n not in done and n not in errors and _importable(vknb, n)]
    if rest:
        md += ["### Other", ""]
        for n in rest:
            md += _object(f"vknb.{n}", getattr(vknb, n), 4)
    md += [
        "### Errors",
        "",
        "Every vknb error derives from `vknb.VulkanError`; argument mistakes are plain "
        "`TypeError` / `ValueError`.",
        "",
    ]
    from vknb import errors as errmod

    md += [*doc_to_md(errmod.__doc__), ""]
    for n in sorted(errors, key=lambda n: _error_order(getattr(vknb, n))):
        md += _object(f"vknb.{n}", getattr(vknb, n), 4)
    for modname, summary in MODULES:
        try:
            mod = importlib.import_module(modname)
        except ImportError as e:
            print(f"gen_api: {modname} cannot be imported ({e}); left out", file=sys.stderr)
            continue
        md += [
            f"## `{modname}` {{#{_anchor(modname)}}}",
            "",
            f"*{summary}*",
            "",
            *doc_to_md(mod.__doc__),
            "",
        ]
        for n in _module_names(mod):
            obj = getattr(mod, n)
            if inspect.isclass(obj) or callable(obj):
                md += _object(f"{modname}.{n}", obj, 3)
    return "\n".join(_tidy(md)) + "\n"


def _is_exception(pkg: types.ModuleType, name: str) -> bool:
    obj = getattr(pkg, name, None) if name in vars(pkg) else None
    return inspect.isclass(obj) and issubclass(obj, BaseException)


def _error_order(cls: type) -> tuple[int, str]:
    return (len(cls.__mro__), cls.__name__)


def _importable(pkg: types.ModuleType, name: str) -> bool:
    try:
        getattr(pkg, name)
    except (ImportError, AttributeError):
        print(f"gen_api: vknb.{name} is exported but cannot be imported; left out", file=sys.stderr)
        return False
    return True


# --- the shader library page -------------------------------------------------------------

_LIBRARY_INTRO = """\
# Shader library

`shaders/` holds ready-made compute kernels. Each file starts with a header that states its
bindings, push constants, specialization constants and how to dispatch it; this page collects
those headers. Two ways to use a kernel:

```python
import vknb.library as lib

k = lib.load("saxpy")                        # a vknb.Kernel, compiled once and cached
k(x, y, a=2.0, n=x.size, grid=x.size)

total = lib.reduce_sum(x)                    # or a helper that allocates, dispatches, returns numpy
```

The helpers (`saxpy`, `elementwise`, `reduce_sum`, `scan`, `histogram`, `matmul`, `transpose`,
`softmax`, `sort`, `argsort`, `sort_pairs`, `blur`, `convolve2d`, `sobel`, `mandelbrot`,
`random_uniform`) take numpy arrays or `vknb.Array`s and return numpy arrays; the image
helpers (`emboss`, `edge_detect`, `sharpen`, `filter3x3` on storage images; `resize`,
`warp_affine`, `rotate`, `blur_image` through samplers) take numpy images or `vknb.Image`s.
They are documented in the [Python API](api.md#vknb-library).
Their results are checked against numpy in the tests; tutorials 5, 6 and 7
(`notebooks/05_image_processing.ipynb`, `notebooks/06_algorithms.ipynb`,
`notebooks/07_images.ipynb`) use them.

`#include "random.glsl"` in your own shaders gives the PCG hash generator that
`random_uniform.comp` uses. The include path is `shaders/` (or `$VKNB_SHADERS`).

## Sorting

`sort(keys)`, `argsort(keys)` and `sort_pairs(keys, values)` sort 32-bit keys: uint32, int32 or
float32 (host arrays of other floats become float32, of other integers uint32 where they fit),
with uint32, int32 or float32 values.

- **Algorithm.** From `RADIX_MIN_KEYS` (2049) keys on: an LSD radix sort with 8-bit digits, four
  passes of three kernels each (`radix_sort_count`, `radix_sort_scan`, `radix_sort_scatter`,
  below) over tiles of 256 × ITEMS keys (4096 where the device's shared memory holds 19 KiB).
  The first count also gives the digit totals of all four passes (they do not change from pass
  to pass); a pass whose digit is the same for every key is skipped, so keys below 2^16 take
  two passes and equal keys none. Device `vknb.Array` inputs stay on the device; the passes run
  as one submission. Below that size: the bitonic network of `bitonic_sort`, whose keys are
  padded to a power of two on the host.
- **Stability.** Both paths are stable: `argsort(keys)` is `np.argsort(keys, kind="stable")`,
  and `sort_pairs` keeps equal keys' values in input order. The radix scatter ranks each key
  among the keys of its digit in tile order (subgroup ballots where the device has
  `GL_KHR_shader_subgroup_ballot`, a shared-memory comparison otherwise); the bitonic network
  orders pairs by key, then by index.
- **Key order.** int32 keys are sorted with their sign bit flipped, float32 keys with the sign
  bit flipped for positive numbers and all bits flipped for negative ones (`radix_sort.glsl`).
  Floats sort as numpy sorts them: `-inf` first, `-0.0` and `0.0` equal (in input order), NaNs
  of either sign last (in input order). Keys and values move as bits: NaN payloads and the sign
  of zero are kept.
- **Crossover.** `RADIX_MIN_KEYS` was measured on lavapipe, where the bitonic sort wins up to
  2048 keys and the radix sort from there on (5× faster at 2^20); re-measure it on a GPU
  (`benchmarks` rows `lib_radix_sort` and `lib_radix_sort_pairs`, next to CuPy).
"""


def _shader_header(path: Path) -> list[str]:
    """The leading ``//`` comment block of a shader, without the slashes."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("//"):
            break
        out.append(line[3:] if line.startswith("// ") else line[2:])
    while out and not out[-1].strip():
        out.pop()
    return out


def generate_library() -> str:
    """docs/library.md: an index of shaders/*.comp and each one's header."""
    md = [
        _LIBRARY_INTRO.rstrip(),
        "",
        "## Kernels",
        "",
        "| kernel | what it computes |",
        "| --- | --- |",
    ]
    comps = sorted(SHADERS.glob("*.comp"))
    headers = {p.stem: _shader_header(p) for p in comps}
    for name, head in headers.items():
        first = head[0] if head else ""
        summary = first.split(" -- ", 1)[1] if " -- " in first else first
        md.append(f"| [`{name}`](#{_anchor('shader-' + name)}) | {_inline(summary)} |")
    md.append("")
    for name, head in headers.items():
        md += [
            f"## `{name}` {{#{_anchor('shader-' + name)}}}",
            "",
            f"`shaders/{name}.comp`",
            "",
            "```text",
            *head,
            "```",
            "",
        ]
    glsl = sorted(SHADERS.glob("*.glsl"))
    if glsl:
        md += ["## Include files", ""]
        for p in glsl:
            md += [f"### `{p.name}`", "", "```text", *_shader_header(p), "```", ""]
    return "\n".join(_tidy(md)) + "\n"


CONFIG_PAGE = HERE / "getting-started.md"
_CONFIG_MARK = re.compile(
    r"(<!-- config-table: generated by docs/gen_api.py from vknb.config -->\n)(.*?)"
    r"(<!-- /config-table -->)",
    re.S,
)


def generate_config_page() -> str:
    """getting-started.md with its environment-variable table made from ``vknb.config``."""
    import vknb.config as config

    rows = ["| variable | read | effect |", "| --- | --- | --- |"]
    for name, read, doc in config.table():
        rows.append(f"| `{name}` | {read} | {doc} |")
    text = CONFIG_PAGE.read_text(encoding="utf-8")
    if not _CONFIG_MARK.search(text):
        raise SystemExit(f"{CONFIG_PAGE} lacks the config-table markers")
    return _CONFIG_MARK.sub(lambda m: m.group(1) + "\n".join(rows) + "\n" + m.group(3), text)


def main(argv: list[str]) -> int:
    pages = {OUT: generate(), LIBRARY_OUT: generate_library(), CONFIG_PAGE: generate_config_page()}
    if "--check" in argv:
        stale = [
            p
            for p, text in pages.items()
            if (p.read_text(encoding="utf-8") if p.exists() else "") != text
        ]
        for p in stale:
            print(f"{p} is stale: run `.venv/bin/python docs/gen_api.py`", file=sys.stderr)
        return 1 if stale else 0
    for p, text in pages.items():
        p.write_text(text, encoding="utf-8")
        print(f"wrote {p.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
