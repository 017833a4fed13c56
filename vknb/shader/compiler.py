"""GLSL -> SPIR-V: the compiler front end and its content-addressed cache.

Compute shaders are compiled by ``glslc`` (Debian: ``glslc``) or, failing that, by
``glslangValidator`` (Debian: ``glslang-tools``), run as a subprocess in a private temporary
directory.  Results are cached twice: in a dictionary of this process (a re-run notebook cell
costs microseconds) and on disk under :func:`cache_dir` ``/ "spirv"`` (a new kernel process
starts warm).  Included files are recorded with their SHA-256 and re-checked on every lookup,
so editing an include recompiles the shaders that use it.

Diagnostics are reported in the user's own line numbers: a source without ``#version`` gets
``#version 450`` and a ``#line`` directive prepended, so the compiler counts lines as the user
does.

Limits, checked before the compiler runs (each a clear error naming the line, never a hang):
an ``#include`` cycle through files without an include guard, includes nested more than 32
deep, a lone surrogate or NUL character, an empty source, a ``#pragma shader_stage`` other than
compute, a define too long for a command line.  The compiler process gets
``VKNB_COMPILE_TIMEOUT_S`` seconds (default 60) and 4 GiB of address space.  ``#pragma once``
works (glslang does not implement it: the compiler reads guarded copies of such files).

Example
-------
>>> from vknb.shader.compiler import compile_glsl
>>> spirv = compile_glsl('''
... layout(local_size_x = 64) in;
... layout(set = 0, binding = 0) buffer Y { float y[]; };
... void main() { y[gl_GlobalInvocationID.x] *= 2.0; }
... ''', name="double")
>>> spirv[:4] == b"\\x03\\x02\\x23\\x07"
True
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import hashlib
import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import types
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .. import config
from ..errors import NotAvailable, ShaderCompileError

__all__ = [
    "CacheWarning",
    "CompileResult",
    "CompilerInfo",
    "ShaderWarning",
    "cache_dir",
    "clear_cache",
    "compile_glsl",
    "compile_glsl_info",
    "find_compiler",
    "format_diagnostics",
    "validate_spirv",
    "validator_options",
]

Diagnostic = tuple[int, int, str, str]

SPIRV_MAGIC = 0x07230203

_PACKAGES_HINT = (
    "install glslc (Debian/Ubuntu: `apt-get install glslc`) or glslangValidator "
    "(`apt-get install glslang-tools`)"
)
_INSTALL_HINT = _PACKAGES_HINT + ", or set VKNB_GLSLC to the path of either tool"


#: Number of compiler processes this module has started (for tests and diagnostics).
_compiler_runs = 0


class ShaderWarning(UserWarning):
    """The compiler warned about a shader that it did compile.

    Attributes
    ----------
    name : str
        The kernel name.
    line, column : int
        In the user's own line numbers (0 when unknown).
    text : str
        The compiler's message.
    """

    def __init__(
        self, message: str, *, name: str = "", line: int = 0, column: int = 0, text: str = ""
    ) -> None:
        super().__init__(message)
        self.name = name
        self.line = line
        self.column = column
        self.text = text


class CacheWarning(UserWarning):
    """The SPIR-V cache directory cannot be used; compiling goes on without the disk cache."""


# --------------------------------------------------------------------------------------------
# The compiler
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CompilerInfo:
    """The GLSL compiler vknb runs.

    Attributes
    ----------
    path : str
        Absolute path of the executable.
    kind : str
        ``'glslc'`` or ``'glslangValidator'``.
    version : str
        Short version, e.g. ``'2023.2 / glslang 11.13.0'``.
    version_text : str
        The full ``--version`` output (part of the cache key).
    """

    path: str
    kind: str
    version: str
    version_text: str = dataclasses.field(default="", repr=False)

    @property
    def description(self) -> str:
        """``'glslc 2023.2 / glslang 11.13.0'``: what to show a user."""
        return f"{self.kind} {self.version}"


_compiler_cache: dict[str, CompilerInfo] = {}
_lock = threading.Lock()


def _probe(path: str) -> CompilerInfo | None:
    """The compiler at ``path``, from its ``--version``; remembered on disk per executable (its
    real path, size and modification time), so that a new process runs no probe."""
    try:
        st = os.stat(path)
        key = f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}"
    except OSError:
        return None
    store = cache_dir() / "compilers.json"
    try:
        known = json.loads(store.read_text())
        hit = known.get(key) if isinstance(known, dict) else None
        if isinstance(hit, dict) and {"kind", "version", "version_text"} <= hit.keys():
            return CompilerInfo(
                path, str(hit["kind"]), str(hit["version"]), str(hit["version_text"])
            )
    except (OSError, ValueError):
        known = {}
    info = _probe_run(path)
    if info is not None:
        entry = {"kind": info.kind, "version": info.version, "version_text": info.version_text}
        known = {**(known if isinstance(known, dict) else {}), key: entry}
        try:  # written whole, then renamed: a reader never sees half of it
            store.parent.mkdir(parents=True, exist_ok=True)
            tmp = store.with_name(f".compilers.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(known))
            os.replace(tmp, store)
        except OSError:
            pass  # a read-only cache: probe again next time
    return info


def _probe_run(path: str) -> CompilerInfo | None:
    try:
        proc = subprocess.run(
            [path, "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = (proc.stdout + proc.stderr).strip()
    num = r"(\d+(?:\.\d+)+)"
    if re.search(r"^shaderc\b", text, re.M):
        shaderc = re.search(r"^shaderc\s+v?" + num, text, re.M)
        glslang = re.search(r"^glslang\s+v?" + num, text, re.M)
        version = shaderc.group(1) if shaderc else "unknown"
        if glslang:
            version += f" / glslang {glslang.group(1)}"
        return CompilerInfo(path, "glslc", version, text)
    if "Glslang Version" in text:
        m = re.search(r"Glslang Version:\s*(?:\d+:)?" + num, text)
        return CompilerInfo(path, "glslangValidator", m.group(1) if m else "unknown", text)
    return None


def find_compiler() -> CompilerInfo:
    """Locate the GLSL compiler: ``$VKNB_GLSLC``, else ``glslc``, else ``glslangValidator``.

    The answer is cached per value of ``VKNB_GLSLC``; failures are not cached, so installing a
    compiler later works without restarting.

    Returns
    -------
    CompilerInfo

    Raises
    ------
    NotAvailable
        No compiler exists, or ``VKNB_GLSLC`` names something that is not one; the message
        says which Debian package to install.

    Example
    -------
    >>> find_compiler().kind in ("glslc", "glslangValidator")
    True
    """
    env = os.environ.get("VKNB_GLSLC", "")
    with _lock:
        cached = _compiler_cache.get(env)
    if cached is not None:
        return cached
    if env:
        path = shutil.which(os.path.expanduser(env))
        info = _probe(os.path.abspath(path)) if path else None
        if info is None:
            raise NotAvailable(
                f"VKNB_GLSLC={env!r} is not an executable glslc or glslangValidator: point "
                f"VKNB_GLSLC at one, or unset it and {_PACKAGES_HINT}."
            )
    else:
        info = None
        for tool in ("glslc", "glslangValidator"):
            path = shutil.which(tool)
            if path and (info := _probe(os.path.abspath(path))) is not None:
                break
        if info is None:
            raise NotAvailable(f"No GLSL compiler found: {_INSTALL_HINT}.")
    with _lock:
        _compiler_cache[env] = info
    return info


# --------------------------------------------------------------------------------------------
# Cache location
# --------------------------------------------------------------------------------------------


def cache_dir() -> pathlib.Path:
    """The vknb cache directory (it need not exist yet).

    ``$VKNB_CACHE_DIR``, else ``$XDG_CACHE_HOME/vknb``, else ``~/.cache/vknb``.  SPIR-V lives in
    its ``spirv`` subdirectory.

    Example
    -------
    >>> spirv_cache = cache_dir() / "spirv"   # where compile_glsl keeps its entries
    >>> spirv_cache.name
    'spirv'
    """
    return config.cache_dir()


def _spirv_dir() -> pathlib.Path:
    return cache_dir() / "spirv"


_ENTRY_SUFFIX = ".vkspv"


def clear_cache() -> int:
    """Delete the cached SPIR-V (on disk and in this process).

    Returns
    -------
    int
        The number of disk entries removed.

    Example
    -------
    >>> n = clear_cache()
    >>> n >= 0
    True
    """
    _reset_memory_cache()
    removed = 0
    directory = _spirv_dir()
    try:
        children = list(directory.iterdir())
    except OSError:
        return 0
    for child in children:
        is_entry = child.name.endswith(_ENTRY_SUFFIX)
        if is_entry or child.name.startswith(".tmp-"):
            try:
                child.unlink()
            except OSError:
                continue
            removed += is_entry
    return removed


# --------------------------------------------------------------------------------------------
# Results and cache entries
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class CompileResult:
    """What :func:`compile_glsl_info` returns.

    Attributes
    ----------
    spirv : bytes
        The SPIR-V module.
    cache_hit : bool
        True when no compiler ran (memory or disk cache).
    compile_ms : float
        Wall time of this call in milliseconds (a lookup, for a cache hit).
    warnings : list of (line, column, severity, message)
        The compiler's warnings, in the user's line numbers (kept in the cache too).
    command : list of str
        The compiler command line (run in a temporary directory holding the source as
        ``<stem>.vknb.comp``, the stem being at most 32 characters of the kernel's name).
    compiler : str
        E.g. ``'glslc 2023.2 / glslang 11.13.0'``.
    key : str
        The cache key (hex SHA-256).
    includes : list of str
        Absolute paths of the files the source included.
    """

    spirv: bytes
    cache_hit: bool
    compile_ms: float
    warnings: list[Diagnostic]
    command: list[str]
    compiler: str
    key: str
    includes: list[str]


@dataclasses.dataclass
class _Include:
    path: str
    sha256: str
    stat: tuple[int, int] | None = None  # (mtime_ns, size) when last found unchanged


@dataclasses.dataclass
class _Entry:
    spirv: bytes
    includes: list[_Include]
    warnings: list[Diagnostic]
    command: list[str]
    compiler: str


_memory: dict[str, _Entry] = {}
_cache_warned: set[str] = set()


def _reset_memory_cache() -> None:
    """Forget the in-process cache (and which cache directories were warned about)."""
    with _lock:
        _memory.clear()
        _cache_warned.clear()


def _sha256_file(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _includes_unchanged(includes: list[_Include]) -> bool:
    """True when every included file still has the recorded content.

    A file whose (mtime, size) matches the last check is trusted without reading it.
    """
    for inc in includes:
        st = _stat(inc.path)
        if st is None:
            return False
        if inc.stat == st:
            continue
        if _sha256_file(inc.path) != inc.sha256:
            return False
        inc.stat = st
    return True


# Disk format: header, then payload = JSON metadata + SPIR-V.  The header carries the lengths
# and the payload's SHA-256, so a truncated or damaged file is recognised and never trusted.
_MAGIC = b"VKNBSPV\x00"
_FORMAT = 1
_HEADER = struct.Struct("<8sIIQ32s")  # magic, format, meta length, SPIR-V length, sha256


def _encode_entry(entry: _Entry) -> bytes:
    meta = json.dumps(
        {
            "includes": [[i.path, i.sha256] for i in entry.includes],
            "warnings": [list(w) for w in entry.warnings],
            "command": entry.command,
            "compiler": entry.compiler,
        }
    ).encode()
    payload = meta + entry.spirv
    digest = hashlib.sha256(payload).digest()
    return _HEADER.pack(_MAGIC, _FORMAT, len(meta), len(entry.spirv), digest) + payload


def _decode_entry(data: bytes) -> _Entry | None:
    if len(data) < _HEADER.size:
        return None
    magic, fmt, meta_len, spirv_len, digest = _HEADER.unpack_from(data)
    payload = data[_HEADER.size :]
    if (
        magic != _MAGIC
        or fmt != _FORMAT
        or len(payload) != meta_len + spirv_len
        or hashlib.sha256(payload).digest() != digest
    ):
        return None
    spirv = payload[meta_len:]
    if not _is_spirv(spirv):
        return None
    try:
        meta = json.loads(payload[:meta_len])
        includes = [_Include(str(p), str(h)) for p, h in meta["includes"]]
        warns = [(int(a), int(b), str(c), str(d)) for a, b, c, d in meta["warnings"]]
        return _Entry(
            spirv, includes, warns, [str(c) for c in meta["command"]], str(meta["compiler"])
        )
    except (ValueError, KeyError, TypeError):
        return None


def _is_spirv(data: bytes) -> bool:
    return (
        len(data) >= 20 and len(data) % 4 == 0 and struct.unpack_from("<I", data)[0] == SPIRV_MAGIC
    )


def _cache_warn(directory: pathlib.Path, exc: OSError) -> None:
    with _lock:
        if str(directory) in _cache_warned:
            return
        _cache_warned.add(str(directory))
    _warn(
        CacheWarning(
            f"SPIR-V cache directory {str(directory)!r} is not usable ({exc.strerror or exc}); "
            "compiling without the disk cache. Set VKNB_CACHE_DIR to a writable directory."
        )
    )


def _disk_load(key: str) -> _Entry | None:
    path = _spirv_dir() / (key + _ENTRY_SUFFIX)
    try:
        data = path.read_bytes()
    except OSError:
        return None
    entry = _decode_entry(data)
    if entry is None:
        # Damaged (a crash mid-write, a full disk, a stray edit): drop it and rebuild.
        with contextlib.suppress(OSError):
            path.unlink()
    return entry


def _disk_store(key: str, entry: _Entry) -> None:
    directory = _spirv_dir()
    tmp = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
        with os.fdopen(fd, "wb") as f:
            f.write(_encode_entry(entry))
        os.replace(tmp, directory / (key + _ENTRY_SUFFIX))
        tmp = None
    except OSError as exc:
        _cache_warn(directory, exc)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


# --------------------------------------------------------------------------------------------
# Source preparation
# --------------------------------------------------------------------------------------------

_VERSION_RE = re.compile(r"^[ \t]*#[ \t]*version\b", re.M)
_INCLUDE_RE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*[<"]([^">]+)[">]', re.M)
_INCLUDE_EXT_RE = re.compile(r"^[ \t]*#[ \t]*extension[ \t]+GL_GOOGLE_include_directive\b", re.M)
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TARGET_RE = re.compile(r"vulkan1\.\d\Z")
_NEWLINE_RE = re.compile(r"\r\n|\r|\n")
_MAX_ARG_BYTES = 100_000  # Linux refuses a single argument of 128 KiB or more (MAX_ARG_STRLEN)
_MAX_INCLUDE_DEPTH = 32  # nested #include levels
_MAX_INCLUDE_FILES = 1024  # distinct files reachable through #include
#: Address space the compiler process may use (bytes): a runaway compile fails fast instead of
#: eating the machine.  Normal compiles use well under 100 MiB.
_COMPILER_ADDRESS_SPACE = 4 << 30


# --------------------------------------------------------------------------------------------
# Checks before the compiler runs
# --------------------------------------------------------------------------------------------

_COMMENT_RE = re.compile(r'"[^"\r\n]*"|//[^\r\n]*|/\*.*?(?:\*/|\Z)', re.S)
_DIRECTIVE_RE = re.compile(r"[ \t]*#[ \t]*([A-Za-z_]\w*)(.*)")
_FIRST_IDENT_RE = re.compile(r"\s*([A-Za-z_]\w*)")
_NOT_DEFINED_RE = re.compile(r"\s*!\s*defined\s*(?:\(\s*([A-Za-z_]\w*)\s*\)|([A-Za-z_]\w*))\s*$")
_INCLUDE_ARG_RE = re.compile(r'\s*(?:"([^"]*)"|<([^>]*)>)')
_PRAGMA_ONCE_RE = re.compile(r"^[ \t]*#[ \t]*pragma[ \t]+once\b[^\r\n]*", re.M)
_STAGE_PRAGMA_RE = re.compile(r"\s+shader_stage\s*\(\s*(\w*)\s*\)")
_SURROGATE_RE = re.compile("[\ud800-\udfff\x00]")


def _strip_comments(text: str) -> str:
    """``text`` without comments, every line where it was (a block comment keeps its line
    breaks); ``"..."`` (an #include's file name) is kept as it is."""

    def repl(m: re.Match[str]) -> str:
        s = m.group(0)
        if s[0] == '"':
            return s
        if s[1] == "/":
            return ""
        return " " + "".join(_NEWLINE_RE.findall(s))

    return _COMMENT_RE.sub(repl, text)


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based (line, column) of ``text[index]``."""
    breaks = list(_NEWLINE_RE.finditer(text, 0, index))
    start = breaks[-1].end() if breaks else 0
    return len(breaks) + 1, index - start + 1


def _printable(source: str) -> str:
    """``source`` with lone surrogates and NULs replaced by U+FFFD (same columns), so that a
    message quoting it can be printed and sent to a notebook."""
    return _SURROGATE_RE.sub("\ufffd", source)


def _refuse(name: str, source: str, diags: list[Diagnostic], head: str) -> ShaderCompileError:
    shown = _printable(source)
    listing = format_diagnostics(shown, diags)
    return ShaderCompileError(
        f"GLSL kernel {name!r} cannot be compiled: {head}\n{listing}",
        diagnostics=diags,
        source=shown,
        name=name,
    )


def _check_source(source: str, name: str) -> None:
    """Refuse, with the line and column, what the compiler would mishandle."""
    m = _SURROGATE_RE.search(source)
    if m is not None:
        line, col = _position(source, m.start())
        ch = m.group(0)
        if ch == "\x00":
            what = "a NUL character (U+0000): the source looks like binary data"
        else:
            what = (
                f"the character U+{ord(ch):04X} (a lone surrogate), which cannot be encoded "
                "as UTF-8"
            )
        msg = f"line {line}, column {col}: {what}"
        raise _refuse(name, source, [(line, col, "error", what)], msg)
    stripped = _strip_comments(source)
    if not stripped.strip():
        what = (
            "the source is empty: a compute shader needs at least "
            "`layout(local_size_x = 64) in;` and `void main() { ... }`"
        )
        raise _refuse(name, source, [(0, 0, "error", what)], what)
    for n, text in enumerate(_NEWLINE_RE.split(stripped), 1):
        d = _DIRECTIVE_RE.match(text)
        if d is None or d.group(1) != "pragma":
            continue
        p = _STAGE_PRAGMA_RE.match(d.group(2))
        if p is not None and p.group(1) not in ("compute", "comp"):
            what = (
                f"#pragma shader_stage({p.group(1)}): vknb compiles compute shaders only; "
                "remove the pragma"
            )
            col = len(text) - len(text.lstrip()) + 1
            raise _refuse(name, source, [(n, col, "error", what)], f"line {n}: {what}")


@dataclasses.dataclass
class _IncludeEdge:
    line: int  # in the including file
    column: int
    spelled: str  # as written between the quotes
    target: str | None  # the path the compiler opens (see _lookup), None when not found
    guarded: bool  # under an include guard whose macro is defined before it


@dataclasses.dataclass
class _IncludeFile:
    edges: list[_IncludeEdge]
    pragma_once: bool


def _scan_text(text: str) -> tuple[list[tuple[int, int, str, bool, bool]], bool]:
    """The ``#include`` directives of ``text`` as (line, column, name, angle, guarded), and
    whether it has ``#pragma once``.

    Comments and ``#if 0`` blocks are skipped.  An include is *guarded* when it sits inside
    ``#ifndef X`` (or ``#if !defined(X)``) after ``#define X`` in the same block (a file's
    include guard, or a guard around the include itself): entering the file a second time
    skips it, so it cannot recurse without end.
    """
    # Each open conditional: [active, guard macro or None, guard macro defined yet]
    frames: list[list[Any]] = []
    found: list[tuple[int, int, str, bool, bool]] = []
    once = False
    for n, line in enumerate(_NEWLINE_RE.split(_strip_comments(text)), 1):
        d = _DIRECTIVE_RE.match(line)
        if d is None:
            continue
        word, rest = d.group(1), d.group(2)
        if word in ("if", "ifdef", "ifndef"):
            guard = None
            if word == "ifndef":
                g = _FIRST_IDENT_RE.match(rest)
                guard = g.group(1) if g else None
            elif word == "if":
                g = _NOT_DEFINED_RE.match(rest)
                guard = (g.group(1) or g.group(2)) if g else None
            frames.append([not (word == "if" and rest.strip() == "0"), guard, False])
            continue
        if word in ("else", "elif"):
            if frames:
                frames[-1] = [True, None, False]
            continue
        if word == "endif":
            if frames:
                frames.pop()
            continue
        if not all(f[0] for f in frames):
            continue
        if word == "define":
            g = _FIRST_IDENT_RE.match(rest)
            if g and frames and frames[-1][1] == g.group(1):
                frames[-1][2] = True
        elif word == "include":
            a = _INCLUDE_ARG_RE.match(rest)
            if a is not None:
                col = line.index("#") + 1
                spelled = a.group(1) if a.group(1) is not None else a.group(2)
                guarded = any(f[1] is not None and f[2] for f in frames)
                found.append((n, col, spelled, a.group(2) is not None, guarded))
        elif word == "pragma" and re.match(r"\s+once\b", rest):
            once = True
    if once:  # vknb gives `#pragma once` the meaning of a guard around the whole file
        found = [(n, c, s, angle, True) for n, c, s, angle, _ in found]
    return found, once


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _lookup(spelled: str, angle: bool, here: str | None, dirs: Sequence[str]) -> str | None:
    """The path glslc opens for an include: ``"x"`` next to the including file (``here``)
    first, then the include dirs in order; ``<x>`` in the include dirs only.  The path is
    absolute and normalized but not resolved through symbolic links (the compiler does not
    resolve them either)."""
    if not spelled or "\x00" in spelled:
        return None
    for d in ([here] if here and not angle else []) + list(dirs):
        candidate = os.path.normpath(os.path.join(d, spelled))
        if os.path.isfile(candidate):
            return candidate
    return None


def _scan_includes(
    source: str, dirs: Sequence[str]
) -> tuple[list[_IncludeEdge], dict[str, _IncludeFile]]:
    """The include graph of ``source``: its own edges and every file reachable from them."""
    root_edges = [
        _IncludeEdge(n, c, s, _lookup(s, angle, None, dirs), g)
        for n, c, s, angle, g in _scan_text(source)[0]
    ]
    files: dict[str, _IncludeFile] = {}
    queue = [e.target for e in root_edges if e.target]
    while queue:
        path = queue.pop()
        if path in files:
            continue
        if len(files) >= _MAX_INCLUDE_FILES:
            raise _IncludeLimit(f"more than {_MAX_INCLUDE_FILES} distinct files are included")
        here = os.path.dirname(path)
        found, once = _scan_text(_read_text(path))
        edges = [
            _IncludeEdge(n, c, s, _lookup(s, angle, here, dirs), g) for n, c, s, angle, g in found
        ]
        files[path] = _IncludeFile(edges, once)
        queue.extend(e.target for e in edges if e.target and e.target not in files)
    return root_edges, files


class _IncludeLimit(Exception):
    pass


def _find_cycle(files: Mapping[str, _IncludeFile]) -> list[str] | None:
    """A cycle of unguarded includes, as [a, b, ..., a], or None (depth-first, colors)."""
    gray, black = 1, 2
    color: dict[str, int] = {}

    def unguarded(path: str) -> Iterator[str]:
        return iter([e.target for e in files[path].edges if e.target and not e.guarded])

    for start in files:
        if color.get(start):
            continue
        color[start] = gray
        path = [start]
        stack = [unguarded(start)]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                color[path.pop()] = black
                stack.pop()
            elif color.get(nxt) == gray:
                return [*path[path.index(nxt) :], nxt]
            elif not color.get(nxt):
                color[nxt] = gray
                path.append(nxt)
                stack.append(unguarded(nxt))
    return None


def _deepest_chain(roots: Sequence[str], files: Mapping[str, _IncludeFile]) -> list[str]:
    """The longest chain of nested includes from ``roots`` (an include back into the chain
    is not followed; shared files are measured once)."""
    depth: dict[str, int] = {}
    best: dict[str, str | None] = {}
    on_path: set[str] = set()

    def targets(path: str) -> list[str]:
        return [e.target for e in files[path].edges if e.target]

    for top in roots:
        if top in depth:
            continue
        on_path.add(top)
        work = [(top, iter(targets(top)))]
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is None:
                done = [t for t in targets(node) if t in depth and t not in on_path]
                child = max(done, key=lambda t: depth[t], default=None)
                depth[node] = 1 + (depth[child] if child is not None else 0)
                best[node] = child
                on_path.discard(node)
                work.pop()
            elif nxt not in depth and nxt not in on_path:
                on_path.add(nxt)
                work.append((nxt, iter(targets(nxt))))
    chain: list[str] = []
    at = max(roots, key=lambda t: depth[t], default=None)
    while at is not None:
        chain.append(at)
        at = best[at]
    return chain


def _check_includes(name: str, source: str, dirs: Sequence[str]) -> dict[str, _IncludeFile]:
    """Refuse an include graph that would make the compiler recurse without end or nest
    deeper than ``_MAX_INCLUDE_DEPTH``; return the files reachable from ``source``.

    A cycle is refused only where none of its ``#include`` lines is guarded (see
    :func:`_scan_text`): a guarded include is skipped on the second visit, which ends it.
    """
    try:
        root_edges, files = _scan_includes(source, dirs)
    except _IncludeLimit as exc:
        what = f"{exc}: check the include directories"
        raise _refuse(name, source, [(0, 0, "error", what)], what) from None
    roots = list(dict.fromkeys(e.target for e in root_edges if e.target))
    if not roots:
        return files
    cycle = _find_cycle(files)
    chain = _deepest_chain(roots, files) if cycle is None else []
    if cycle is None and len(chain) <= _MAX_INCLUDE_DEPTH:
        return files

    # The way from the user's source to the files (breadth-first), for the message.
    parents: dict[str, str | None] = dict.fromkeys(roots)
    first: dict[str, _IncludeEdge] = {}
    for edge in root_edges:
        if edge.target:
            first.setdefault(edge.target, edge)
    order = list(roots)
    for path in order:
        for edge in files[path].edges:
            if edge.target and edge.target not in parents:
                parents[edge.target] = path
                first[edge.target] = first[path]
                order.append(edge.target)
    if cycle is not None:  # start the loop where the user's includes first reach it
        entry = min(cycle[:-1], key=order.index)
        k = cycle.index(entry)
        cycle = [*cycle[k:-1], *cycle[:k], entry]
    else:
        entry = chain[0]
    lead: list[str] = []
    at = parents[entry]
    while at is not None:
        lead.append(at)
        at = parents[at]
    lead.reverse()
    where = first[entry]

    def names(paths: list[str]) -> str:
        shown = [_short_path(p, dirs) for p in paths]
        if len(shown) > 8:
            shown = [*shown[:4], "...", *shown[-3:]]
        return " -> ".join(shown)

    if cycle is not None:
        what = (
            f"#include cycle {names(lead + cycle)}: none of these files has an include "
            "guard, so the compiler would include them without end; wrap the file in "
            "`#ifndef NAME_GLSL` / `#define NAME_GLSL` ... `#endif` (or add `#pragma once`), "
            "or remove the #include"
        )
        head = f"line {where.line}: #include cycle {names(cycle)}"
    else:
        what = (
            f"#include nests {len(lead) + len(chain)} files deep ({names(lead + chain)}); "
            f"at most {_MAX_INCLUDE_DEPTH} levels are allowed"
        )
        head = f"line {where.line}: #include nests more than {_MAX_INCLUDE_DEPTH} files deep"
    raise _refuse(name, source, [(where.line, where.column, "error", what)], head)


def _mirror_includes(files: Mapping[str, _IncludeFile], root: str) -> None:
    """Copy every reachable include file under ``root`` (at ``root`` + the path the compiler
    opens), giving
    the files with ``#pragma once`` (which glslang does not implement) an include guard.

    The guard and a ``#line 1`` go before the file's first line, so the compiler numbers its
    lines as the file does.
    """
    for path, info in files.items():
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        if info.pragma_once:
            macro = (
                "VKNB_ONCE_"
                + hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:16]
            )
            text = data.decode("utf-8", "surrogateescape")
            text = _PRAGMA_ONCE_RE.sub("", text)
            text = f"#ifndef {macro}\n#define {macro}\n#line 1\n{text}\n#endif\n"
            data = text.encode("utf-8", "surrogateescape")
        dest = _mirrored(root, path)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "wb") as f:
            f.write(data)


def _mirrored(root: str, path: str) -> str:
    return os.path.join(root, os.path.splitdrive(path)[1].lstrip("/\\"))


def _unmirror(root: str | None, path: str) -> str:
    if root and path.startswith(root + os.sep):
        return path[len(root) :]
    return path


def _prepare_source(source: str, kind: str) -> str:
    """Add what the compiler needs while keeping the compiler's line numbers = the user's.

    With ``#version`` >= 330 (every version that has compute shaders), ``#line N`` gives the
    *next* line the number N (checked against glslc 2023.2 / glslang 11.13).
    """
    need_ext = (
        kind == "glslangValidator"
        and _INCLUDE_RE.search(source) is not None
        and _INCLUDE_EXT_RE.search(source) is None
    )
    ext = "#extension GL_GOOGLE_include_directive : require\n" if need_ext else ""
    m = _VERSION_RE.search(source)
    if m is None:
        return f"#version 450\n{ext}#line 1\n{source}"
    if not ext:
        return source
    # Insert the extension right after the user's #version line, then renumber.
    eol = _NEWLINE_RE.search(source, m.end())
    if eol is None:
        return source + "\n" + ext
    version_line = len(_NEWLINE_RE.findall(source, 0, m.start())) + 1
    return f"{source[: eol.end()]}{ext}#line {version_line + 1}\n{source[eol.end() :]}"


def _define_args(defines: Mapping[str, object] | None) -> list[str]:
    if defines is None:
        return []
    if not isinstance(defines, Mapping):
        raise TypeError(
            f"defines must be a mapping of name to value, e.g. {{'N': 4}}, "
            f"not {type(defines).__name__}"
        )
    args = []
    for dname, value in sorted(defines.items(), key=lambda kv: str(kv[0])):
        if not isinstance(dname, str) or not _IDENT_RE.match(dname):
            raise ValueError(f"define {dname!r} is not a valid GLSL identifier")
        if value is None:
            args.append(f"-D{dname}")
            continue
        text = "1" if value is True else "0" if value is False else str(value)
        if "\n" in text or "\r" in text:
            raise ValueError(f"define {dname!r} has a value spanning several lines")
        if "\x00" in text:
            raise ValueError(f"define {dname!r} has a NUL character in its value")
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise ValueError(
                f"define {dname!r} has a character that cannot be encoded as UTF-8 "
                f"({text[e.start]!a} at position {e.start})"
            ) from None
        if size > _MAX_ARG_BYTES:
            raise ValueError(
                f"define {dname!r} is {size} bytes long: a define travels on the compiler's "
                f"command line, which holds at most {_MAX_ARG_BYTES} bytes per define; put "
                "large data in an #include file or a buffer"
            )
        args.append(f"-D{dname}={text}")
    return args


def _file_stem(name: str) -> str:
    """A short, safe file-name stem for the kernel ``name`` (which is kept for messages only).

    At most 32 ASCII letters, digits and underscores: a long name, a path or non-ASCII text
    cannot make a file name too long or start with ``-``.
    """
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")[:32].rstrip("_") or "kernel"


# --------------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------------

# glslc:            kernel.comp:5: error: 'x' : undeclared identifier   (and FILE:LINE:COL:)
#                   kernel.comp: error: Linking compute stage: ...      (no line)
_GLSLC_RE = re.compile(
    r"^(?P<file>.*?):(?:(?P<line>\d+):(?:(?P<col>\d+):)?)?\s*"
    r"(?P<sev>fatal error|error|warning):\s*(?P<msg>.*)$"
)
# glslangValidator: ERROR: kernel.comp:5: 'x' : undeclared identifier  (or 0:5:, or no location)
_GLSLANG_RE = re.compile(
    r"^(?P<sev>ERROR|WARNING|INTERNAL ERROR|UNIMPLEMENTED):\s*"
    r"(?:(?P<file>[^:\s][^:]*):(?P<line>\d+):(?:(?P<col>\d+):)?)?\s*(?P<msg>.*)$"
)
_NOISE_RE = re.compile(r"^(?:\d+ compilation errors?\.|'' : compilation terminated\s*$)")


def _parse_output(
    text: str,
    kind: str,
    main_file: str,
    source: str,
    search_dirs: Sequence[str],
    cwd: str,
    mirror: str | None = None,
) -> list[Diagnostic]:
    """Compiler output -> [(line, column, severity, message)] in the user's lines."""
    raw: list[tuple[str | None, int, int, str, str]] = []
    for line in text.splitlines():
        line = line.rstrip()
        m = (_GLSLANG_RE if kind == "glslangValidator" else _GLSLC_RE).match(line)
        if m is None and kind == "glslangValidator":
            m = _GLSLC_RE.match(line)
        if m is None:
            continue
        msg = m.group("msg").strip()
        if not msg or _NOISE_RE.match(msg):
            continue
        sev = "warning" if m.group("sev").lower() == "warning" else "error"
        lineno = int(m.group("line")) if m.group("line") else 0
        col = int(m.group("col")) if m.group("col") else 0
        raw.append((m.group("file"), lineno, col, sev, msg))

    # glslangValidator reports a missing entry point after any compile error: a cascade.
    if any(r[3] == "error" and not r[4].startswith("Linking") for r in raw):
        raw = [r for r in raw if not r[4].startswith("Linking")]

    include_lines = _include_map(source, search_dirs)
    diags: list[Diagnostic] = []
    for file, lineno, col, sev, msg in raw:
        if file is None or file == "0" or _same_file(file, main_file, cwd):
            diags.append((lineno, col, sev, msg))
            continue
        resolved = os.path.realpath(os.path.join(cwd, file))
        if mirror:
            resolved = os.path.realpath(_unmirror(mirror, resolved))
        if not os.path.isfile(resolved):
            # "glslc: error: ..." and other messages about no file in particular
            diags.append((0, 0, sev, f"{file}:{lineno}: {msg}" if lineno else msg))
            continue
        # Inside an included file: point at the #include line that brought it in.
        shown = _short_path(resolved, search_dirs)
        where = f"{shown}:{lineno}" if lineno else shown
        diags.append((include_lines.get(resolved, 0), 0, sev, f"{where}: {msg}"))
    return diags


def _same_file(file: str, main_file: str, cwd: str) -> bool:
    return file == main_file or os.path.realpath(os.path.join(cwd, file)) == os.path.realpath(
        os.path.join(cwd, main_file)
    )


def _short_path(path: str, search_dirs: Sequence[str]) -> str:
    for d in search_dirs:
        try:
            rel = os.path.relpath(path, d)
        except ValueError:
            continue
        if not rel.startswith(".."):
            return rel
    return path


def _resolve_include(
    name: str, including_dir: str | None, search_dirs: Sequence[str]
) -> str | None:
    for d in ([including_dir] if including_dir else []) + list(search_dirs):
        candidate = os.path.join(d, name)
        if os.path.isfile(candidate):
            return os.path.realpath(candidate)
    return None


def _include_map(source: str, search_dirs: Sequence[str]) -> dict[str, int]:
    """Map every file reachable from the user's ``#include`` lines to the line that pulls it in."""
    result: dict[str, int] = {}
    for m in _INCLUDE_RE.finditer(source):
        user_line = len(_NEWLINE_RE.findall(source, 0, m.start())) + 1
        first = _resolve_include(m.group(1), None, search_dirs)
        stack = [first] if first else []
        seen: set[str] = set()
        while stack and len(seen) < 256:
            path = stack.pop()
            if path in seen:
                continue
            seen.add(path)
            result.setdefault(path, user_line)
            try:
                text = pathlib.Path(path).read_text(errors="replace")
            except OSError:
                continue
            for sub in _INCLUDE_RE.finditer(text):
                found = _resolve_include(sub.group(1), os.path.dirname(path), search_dirs)
                if found:
                    stack.append(found)
    return result


def _split_lines(source: str) -> list[str]:
    return _NEWLINE_RE.split(source)


def format_diagnostics(source: str, diagnostics: Sequence[Diagnostic], context: int = 2) -> str:
    """Render a numbered listing of ``source`` around each diagnostic.

    Lines with a diagnostic are marked ``>>``; below each, a caret points at the column (or at
    the first non-blank character when the column is unknown) followed by the message.
    Diagnostics without a usable line are listed after the source excerpt.

    Parameters
    ----------
    source : str
        The source as the user wrote it.
    diagnostics : sequence of (line, column, severity, message)
        1-based lines and columns; 0 means unknown.
    context : int
        Lines shown before and after each marked line.

    Example
    -------
    >>> src = "void main() {\\n    x = 1;\\n}"
    >>> print(format_diagnostics(src, [(2, 5, "error", "'x' : undeclared")]))
      1 | void main() {
    >>2 |     x = 1;
        |     ^ error: 'x' : undeclared
      3 | }
    """
    lines = _split_lines(source)
    if lines and lines[-1] == "" and len(lines) > 1:
        lines.pop()  # the empty "line" after a trailing newline
    by_line: dict[int, list[Diagnostic]] = {}
    loose: list[Diagnostic] = []
    for d in diagnostics:
        if 1 <= d[0] <= len(lines):
            by_line.setdefault(d[0], []).append(d)
        else:
            loose.append(d)

    shown: set[int] = set()
    for n in by_line:
        shown.update(range(max(1, n - context), min(len(lines), n + context) + 1))
    width = len(str(max(shown))) if shown else 1
    out: list[str] = []
    previous = 0
    for n in sorted(shown):
        if previous and n != previous + 1:
            out.append(" " * (width + 2) + " ...")
        previous = n
        text = lines[n - 1].rstrip()
        marker = ">>" if n in by_line else "  "
        out.append(f"{marker}{n:>{width}} | {text}".rstrip())
        for _line, col, sev, msg in by_line.get(n, ()):
            if col <= 0:
                col = len(text) - len(text.lstrip()) + 1
            # Keep tabs so the caret lines up under a tab-indented line.
            pad = "".join(c if c == "\t" else " " for c in text[: col - 1])
            pad += " " * max(0, col - 1 - len(text))
            out.append(f"{' ' * (width + 2)} | {pad}^ {sev}: {msg}")
    for line, _col, sev, msg in loose:
        where = f"line {line}: " if line else ""
        out.append(f"{where}{sev}: {msg}")
    return "\n".join(out)


def _warn(warning: Warning) -> None:
    """Warn, attributed to the first caller outside vknb (a notebook cell, a script)."""
    package_dir = os.path.dirname(os.path.abspath(__file__))
    level = 1
    frame: types.FrameType | None = sys._getframe(0)
    while (
        frame is not None
        and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == package_dir
    ):
        frame = frame.f_back
        level += 1
    warnings.warn(warning, stacklevel=level)


def _issue_warnings(name: str, diags: Sequence[Diagnostic]) -> None:
    for line, col, _sev, msg in diags:
        _warn(ShaderWarning(f"{name}:{line}: {msg}", name=name, line=line, column=col, text=msg))


def _error_message(
    name: str,
    diags: Sequence[Diagnostic],
    source: str,
    command: list[str],
    compiler: str,
    output: str,
) -> str:
    errors = [d for d in diags if d[2] == "error"]
    if errors:
        line, _col, _sev, msg = errors[0]
        head = f"GLSL kernel {name!r} failed to compile: " + (
            f"line {line}: {msg}" if line else msg
        )
        more = len(errors) - 1
        if more:
            head += f" (and {more} more error{'s' if more > 1 else ''})"
        body = format_diagnostics(source, diags)
    else:
        head = f"GLSL kernel {name!r} failed to compile; the compiler said:"
        tail = output.strip().splitlines()[-40:]  # a glslc crash can print thousands of lines
        body = "\n".join(tail) or "(no output)"
    return (
        f"{head}\n{body}\ncompiler: {compiler}\n"
        f"command (run in a temporary directory): {shlex.join(command)}"
    )


# --------------------------------------------------------------------------------------------
# Compiling
# --------------------------------------------------------------------------------------------


def _parse_depfile(text: str, cwd: str, main_file: str, mirror: str | None = None) -> list[str]:
    text = text.replace("\\\r\n", " ").replace("\\\n", " ")
    _, sep, deps = text.partition(": ")
    if not sep:
        return []
    paths: list[str] = []
    for tok in re.findall(r"(?:\\.|[^\s\\])+", deps):
        tok = re.sub(r"\\(.)", r"\1", tok)
        if tok in (main_file, "<stdin>"):
            continue
        path = os.path.realpath(os.path.join(cwd, tok))
        if mirror:
            path = os.path.realpath(_unmirror(mirror, path))
        if path not in paths:
            paths.append(path)
    return paths


def _build_command(
    info: CompilerInfo,
    *,
    target_env: str,
    optimize: bool,
    define_args: list[str],
    include_dirs: list[str],
    flags: list[str],
    src: str,
    out: str,
    dep: str,
) -> list[str]:
    inc = [f"-I{d}" for d in include_dirs]
    if info.kind == "glslc":
        return [
            info.path,
            "-fshader-stage=compute",
            f"--target-env={target_env}",
            "-O" if optimize else "-O0",
            *define_args,
            *inc,
            *flags,
            "-MD",
            "-MF",
            dep,
            "-o",
            out,
            src,
        ]
    return [
        info.path,
        "-V",
        "--target-env",
        target_env,
        "-S",
        "comp",
        "-Os" if optimize else "-Od",
        *define_args,
        *inc,
        *flags,
        "--depfile",
        dep,
        "-o",
        out,
        src,
    ]


_MODEL_GL_COMPUTE = 5
_MODEL_NAMES = {0: "Vertex", 1: "TessellationControl", 2: "TessellationEvaluation"}
_MODEL_NAMES.update({3: "Geometry", 4: "Fragment", 5: "GLCompute", 6: "Kernel"})
_MODEL_NAMES.update({5267: "TaskNV", 5268: "MeshNV", 5364: "TaskEXT", 5365: "MeshEXT"})
_MODEL_NAMES.update({5313: "RayGeneration", 5314: "Intersection", 5315: "AnyHit"})
_MODEL_NAMES.update({5316: "ClosestHit", 5317: "Miss", 5318: "Callable"})


def _entry_point_models(spirv: bytes) -> list[int]:
    """The execution models of a (little-endian, well-formed) module's entry points."""
    words = struct.unpack(f"<{len(spirv) // 4}I", spirv)
    models = []
    i = 5
    while i < len(words):
        count, op = words[i] >> 16, words[i] & 0xFFFF
        if count == 0 or op == 54:  # OpFunction: no entry points after it
            break
        if op == 15 and count > 2:  # OpEntryPoint
            models.append(words[i + 1])
        i += count
    return models


def _limit_address_space(pid: int) -> None:
    """Cap the compiler's address space where the platform allows (Linux: prlimit).

    Set on the running process rather than in a ``preexec_fn``: Python code between fork and
    exec can deadlock in a threaded process (a notebook kernel is one), and ``preexec_fn``
    rules out the fast vfork path.  The gap after exec is microseconds; a runaway compile
    takes far longer to grow.
    """
    try:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = _COMPILER_ADDRESS_SPACE
        if hard != resource.RLIM_INFINITY and hard < limit:
            limit = hard
        resource.prlimit(pid, resource.RLIMIT_AS, (limit, hard))
    except (ImportError, AttributeError, OSError, ValueError):
        pass


def _run_compiler(
    command: list[str], cwd: str, timeout: float, name: str, source: str, info: CompilerInfo
) -> tuple[int, str]:
    """Run the compiler with a time limit and a memory cap; return (exit status, output)."""
    try:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        if exc.errno == errno.E2BIG:
            size = sum(len(os.fsencode(a)) + 1 for a in command)
            raise ValueError(
                f"the compiler's command line is too long ({size} bytes of defines, flags and "
                "include directories): pass fewer or shorter defines, or put large data in "
                "an #include file or a buffer"
            ) from None
        raise NotAvailable(f"Could not run {info.path}: {exc}. {_INSTALL_HINT}.") from exc
    with proc:
        _limit_address_space(proc.pid)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=10)
            what = (
                f"the compiler ran out of time: {info.description} did not finish within "
                f"{timeout:g} s and was stopped (VKNB_COMPILE_TIMEOUT_S={timeout:g}; raise it "
                "for a shader that needs longer). A compile that runs away usually comes from "
                "a macro that expands without bound."
            )
            err_ = _refuse(name, source, [(0, 0, "error", what)], what)
            err_.command = list(command)
            raise err_ from None
        except BaseException:
            proc.kill()
            raise
    return proc.returncode, out + err


def _crash_note(returncode: int) -> str:
    """What to say when the compiler failed without a diagnostic (killed, or out of memory:
    glslang then exits 1 in silence)."""
    if returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    else:
        how = f"exited with status {returncode} without a diagnostic"
    return (
        f"(the compiler {how}; a compile that runs out of memory ends this way: vknb caps "
        f"the compiler's address space at {_COMPILER_ADDRESS_SPACE >> 20} MiB)"
    )


def compile_glsl_info(
    source: str,
    *,
    defines: Mapping[str, object] | None = None,
    name: str = "kernel",
    include_dirs: Sequence[str | os.PathLike[str]] = (),
    optimize: bool = False,
    target_env: str = "vulkan1.1",
    flags: Sequence[str] = (),
) -> CompileResult:
    """Compile a GLSL compute shader and report how it went (cache, time, warnings).

    Takes the same arguments as :func:`compile_glsl`.

    Returns
    -------
    CompileResult

    Example
    -------
    >>> src = "layout(local_size_x = 1) in; void main() {}"
    >>> info = compile_glsl_info(src, name="noop")
    >>> compile_glsl_info(src, name="noop").cache_hit
    True
    """
    global _compiler_runs
    start = time.perf_counter()
    if not isinstance(source, str):
        raise TypeError(f"source must be a str of GLSL, not {type(source).__name__}")
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    if isinstance(flags, str):
        raise TypeError("flags must be a sequence of strings, e.g. ['-g'], not one string")
    if isinstance(include_dirs, (str, bytes, os.PathLike)):
        raise TypeError(
            "include_dirs must be a sequence of directories, e.g. ['shaders/'], not one path"
        )
    if not isinstance(target_env, str) or not _TARGET_RE.match(target_env):
        raise ValueError(f"target_env must look like 'vulkan1.1', not {target_env!r}")
    define_args = _define_args(defines)
    flag_list = [str(f) for f in flags]
    for flag in flag_list:
        if "\x00" in flag:
            raise ValueError(f"flag {flag!r} has a NUL character")
    dirs = [os.path.abspath(os.fspath(d)) for d in include_dirs]
    shaders = config.shader_dir()
    if shaders.is_dir():
        dirs.append(str(shaders))  # after the user's dirs, so theirs can override ours

    info = find_compiler()
    prepared = _prepare_source(source, info.kind)
    key = hashlib.sha256(
        json.dumps(
            {
                "source": prepared,
                "defines": define_args,
                "target_env": target_env,
                "optimize": bool(optimize),
                "flags": flag_list,
                "compiler": info.path,
                "compiler_version": info.version_text,
                "include_dirs": dirs,
                "format": _FORMAT,
            }
        ).encode()
    ).hexdigest()

    def hit(entry: _Entry) -> CompileResult:
        _issue_warnings(name, entry.warnings)
        return CompileResult(
            entry.spirv,
            True,
            (time.perf_counter() - start) * 1e3,
            list(entry.warnings),
            list(entry.command),
            entry.compiler,
            key,
            [i.path for i in entry.includes],
        )

    with _lock:
        entry = _memory.get(key)
    if entry is not None and _includes_unchanged(entry.includes):
        return hit(entry)
    entry = _disk_load(key)
    if entry is not None and _includes_unchanged(entry.includes):
        with _lock:
            _memory[key] = entry
        return hit(entry)

    # Before the compiler runs: what it would mishandle, and #include cycles or runaway
    # nesting, with which it would never end.
    _check_source(source, name)
    files = _check_includes(name, source, dirs)
    timeout = config.get("VKNB_COMPILE_TIMEOUT_S")

    # The source file's name is short whatever the kernel's name, and cannot be what the
    # source includes (glslc looks next to the source first).
    stem = _file_stem(name) + ".vknb"
    src_name, out_name, dep_name = f"{stem}.comp", f"{stem}.spv", f"{stem}.d"
    build = functools.partial(
        _build_command,
        info,
        target_env=target_env,
        optimize=optimize,
        define_args=define_args,
        flags=flag_list,
        src=src_name,
        out=out_name,
        dep=dep_name,
    )
    command = build(include_dirs=dirs)
    tmp = tempfile.mkdtemp(prefix="vknb-glsl-")
    try:
        mirror = None
        run_command = command
        if any(f.pragma_once for f in files.values()):
            # glslang does not implement `#pragma once`: the compiler reads copies of the
            # include files in which those files have an include guard instead.
            mirror = os.path.join(os.path.realpath(tmp), "inc")
            _mirror_includes(files, mirror)
            run_command = build(include_dirs=[_mirrored(mirror, d) for d in dirs])
        with open(os.path.join(tmp, src_name), "w", encoding="utf-8", newline="") as f:
            f.write(prepared)
        with _lock:
            _compiler_runs += 1
        returncode, output = _run_compiler(run_command, tmp, timeout, name, source, info)
        diags = _parse_output(output, info.kind, src_name, source, dirs, tmp, mirror)
        spirv = b""
        out_path = os.path.join(tmp, out_name)
        if returncode == 0 and os.path.exists(out_path):
            spirv = pathlib.Path(out_path).read_bytes()
        if returncode != 0 or not _is_spirv(spirv) or any(d[2] == "error" for d in diags):
            if returncode != 0 and not any(d[2] == "error" for d in diags):
                output = f"{output.rstrip()}\n{_crash_note(returncode)}".lstrip()
            err = ShaderCompileError(
                _error_message(name, diags, source, command, info.description, output),
                diagnostics=diags,
                source=source,
                command=command,
                name=name,
            )
            err.output = output  # type: ignore[attr-defined]
            raise err
        models = _entry_point_models(spirv)
        if _MODEL_GL_COMPUTE not in models:
            stages = ", ".join(_MODEL_NAMES.get(m, str(m)) for m in models) or "none"
            what = (
                f"the module is not a compute shader (its entry points: {stages}); vknb "
                "compiles compute shaders only: check `#pragma shader_stage` and the flags"
            )
            raise _refuse(name, source, [(0, 0, "error", what)], what)
        try:
            dep_text = pathlib.Path(tmp, dep_name).read_text(errors="replace")
        except OSError:
            dep_text = ""
        include_paths = _parse_depfile(dep_text, tmp, src_name, mirror)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    includes = []
    for path in include_paths:
        st = _stat(path)
        includes.append(_Include(path, _sha256_file(path) or "", st))
    warns = [d for d in diags if d[2] == "warning"]
    entry = _Entry(spirv, includes, warns, command, info.description)
    with _lock:
        _memory[key] = entry
    _disk_store(key, entry)
    _issue_warnings(name, warns)
    return CompileResult(
        spirv,
        False,
        (time.perf_counter() - start) * 1e3,
        list(warns),
        list(command),
        info.description,
        key,
        [i.path for i in includes],
    )


def compile_glsl(
    source: str,
    *,
    defines: Mapping[str, object] | None = None,
    name: str = "kernel",
    include_dirs: Sequence[str | os.PathLike[str]] = (),
    optimize: bool = False,
    target_env: str = "vulkan1.1",
    flags: Sequence[str] = (),
) -> bytes:
    """Compile a GLSL compute shader to SPIR-V (cached).

    Parameters
    ----------
    source : str
        GLSL.  Without a ``#version`` line, ``#version 450`` is assumed.
    defines : mapping, optional
        Preprocessor macros: ``{"N": 4}`` -> ``-DN=4``; ``True``/``False`` -> 1/0; ``None``
        defines the name without a value.
    name : str
        The kernel's name, used in messages and warnings.
    include_dirs : sequence of paths
        Searched for ``#include "..."`` before the shader library
        (:func:`vknb.config.shader_dir`, always searched).  An #include cycle through files
        without an include guard, or nesting deeper than 32 files, is refused before the
        compiler runs; ``#pragma once`` works (glslang alone does not implement it).
    optimize : bool
        Run spirv-opt (``-O``; default off: drivers optimize anyway, and ``-O`` strips the
        names that :func:`vknb.reflect` reports).
    target_env : str
        ``'vulkan1.0'`` ... ``'vulkan1.3'``.
    flags : sequence of str
        Extra command-line options for the compiler, passed as they are.

    Returns
    -------
    bytes
        The SPIR-V module.

    Raises
    ------
    ShaderCompileError
        The shader has errors; ``.diagnostics`` holds them in the user's line numbers.  Also
        for an unguarded ``#include`` cycle (the message names the chain, ``a.glsl ->
        b.glsl -> a.glsl``), includes nested deeper than 32, a character that cannot be
        encoded as UTF-8 or a NUL, an empty source, a non-compute stage, and a compiler that
        ran out of time (``VKNB_COMPILE_TIMEOUT_S``) or memory.
    NotAvailable
        No compiler is installed.
    ValueError
        A define's name is not an identifier, its value spans lines, holds a NUL or is too
        long for a command line; ``target_env`` is malformed.
    TypeError
        ``source`` is not a str, ``name`` is not a str, ``defines`` is not a mapping,
        ``flags`` or ``include_dirs`` is a single string.

    Example
    -------
    >>> spirv = compile_glsl('''
    ... layout(local_size_x = 64) in;
    ... layout(binding = 0) buffer X { float x[]; };
    ... void main() { x[gl_GlobalInvocationID.x] += float(N); }
    ... ''', defines={"N": 3}, name="add_n")
    >>> len(spirv) % 4
    0
    """
    return compile_glsl_info(
        source,
        defines=defines,
        name=name,
        include_dirs=include_dirs,
        optimize=optimize,
        target_env=target_env,
        flags=flags,
    ).spirv


# --- SPIR-V validation ---------------------------------------------------------------------

_validated: set[str] = set()
_validator_warned = False

# SPIR-V version -> the oldest Vulkan environment that takes it (spirv-val --target-env).
_VULKAN_ENVS = {
    (1, 0): "vulkan1.0",
    (1, 1): "vulkan1.1",
    (1, 2): "vulkan1.1",
    (1, 3): "vulkan1.1",
    (1, 4): "vulkan1.1spv1.4",
    (1, 5): "vulkan1.2",
    (1, 6): "vulkan1.3",
}
# Block layouts from strict to permissive: what spirv-val checks uniform, storage and push
# constant blocks against (each a Vulkan feature: VK_KHR_relaxed_block_layout, core in 1.1;
# uniformBufferStandardLayout; scalarBlockLayout).
_LAYOUTS: tuple[tuple[str, ...], ...] = (
    (),
    ("--relax-block-layout",),
    ("--relax-block-layout", "--uniform-buffer-standard-layout"),
    ("--scalar-block-layout",),
)
_LAYOUT_ERROR = re.compile(r"must follow [\w ]*layout rules")


@dataclasses.dataclass(frozen=True)
class _ModuleFacts:
    version: tuple[int, int]
    extensions: tuple[str, ...]  # OpExtension and OpSourceExtension strings
    local_size_id: bool  # OpExecutionModeId LocalSizeId
    uconvert_spec_ops: tuple[int, ...]  # word index of each OpSpecConstantOp's UConvert


def _module_facts(spirv: bytes) -> tuple[_ModuleFacts, list[int]]:
    """What the validator's options depend on, read from the module's words (which come back
    in host order); a malformed module is left for spirv-val to describe."""
    n = len(spirv) // 4
    words = list(struct.unpack(f"<{n}I", spirv[: 4 * n]))
    if words and words[0] == 0x03022307:  # big-endian
        words = list(struct.unpack(f">{n}I", spirv[: 4 * n]))
    version = ((words[1] >> 16) & 0xFF, (words[1] >> 8) & 0xFF) if len(words) > 1 else (1, 0)
    extensions: list[str] = []
    local_size_id = False
    uconverts: list[int] = []
    i = 5
    while i < n:
        count, op = words[i] >> 16, words[i] & 0xFFFF
        if count == 0 or i + count > n or op == 54:  # malformed, or OpFunction: done
            break
        if op in (4, 10) and count > 1:  # OpSourceExtension, OpExtension
            raw = struct.pack(f"<{count - 1}I", *words[i + 1 : i + count])
            extensions.append(raw.split(b"\0", 1)[0].decode("utf-8", "replace"))
        elif op == 331 and count > 2 and words[i + 2] == 38:  # OpExecutionModeId LocalSizeId
            local_size_id = True
        elif op == 52 and count > 3 and words[i + 3] == 113:  # OpSpecConstantOp UConvert
            uconverts.append(i + 3)
        i += count
    facts = _ModuleFacts(version, tuple(extensions), local_size_id, tuple(uconverts))
    return facts, words


def validator_options(spirv: bytes, target_env: str | None = None) -> list[str]:
    """The ``spirv-val`` options that match a module: what :func:`validate_spirv` starts with.

    * ``--target-env``: ``target_env`` if given, else the Vulkan version that introduced the
      module's SPIR-V version (1.0 -> ``vulkan1.0``, 1.1 to 1.3 -> ``vulkan1.1``, 1.4 ->
      ``vulkan1.1spv1.4``, 1.5 -> ``vulkan1.2``, 1.6 -> ``vulkan1.3``);
    * ``--scalar-block-layout`` for a module that declares scalar block layout
      (``GL_EXT_scalar_block_layout`` / ``SPV_EXT_scalar_block_layout``: ``layout(scalar)``, and
      ``std430`` uniform blocks), ``--uniform-buffer-standard-layout`` and
      ``--relax-block-layout`` for the corresponding extensions;
    * ``--allow-localsizeid`` for ``LocalSizeId`` before Vulkan 1.3 (``maintenance4``).

    Example
    -------
    >>> validator_options(compile_glsl("layout(local_size_x=1) in; void main() {}"))
    ['--target-env', 'vulkan1.1']
    """
    facts, _ = _module_facts(spirv)
    return _base_options(facts, target_env) + list(_LAYOUTS[_declared_layout(facts)])


def _base_options(facts: _ModuleFacts, target_env: str | None) -> list[str]:
    env = target_env or _VULKAN_ENVS.get(facts.version, "vulkan1.3")
    opts = ["--target-env", env]
    if facts.local_size_id and env in ("vulkan1.0", "vulkan1.1", "vulkan1.1spv1.4", "vulkan1.2"):
        opts.append("--allow-localsizeid")
    return opts


def _declared_layout(facts: _ModuleFacts) -> int:
    """Index in _LAYOUTS of the most permissive block layout the module declares using."""
    text = " ".join(facts.extensions).lower()
    if "scalar_block_layout" in text:
        return 3
    if "uniform_buffer_standard_layout" in text:
        return 2
    if "relaxed_block_layout" in text:
        return 1
    return 0


def validate_spirv(spirv: bytes, *, target_env: str | None = None) -> bool:
    """Check SPIR-V from outside vknb's compiler with ``spirv-val`` before a driver sees it.

    Drivers may crash on invalid modules instead of failing, so ``vknb.compile(spirv_bytes)``
    runs this first.  Returns True when validated, False (with a one-time warning) when
    ``spirv-val`` is not installed (Debian: ``apt-get install spirv-tools``).

    The options match the module (:func:`validator_options`): its target environment from its
    SPIR-V version, and the block layout it declares.  Block layouts are device features that
    the module cannot always declare (a stripped module, another front end), so a module that
    breaks only the layout rules is checked again with the next more permissive layout (relaxed,
    uniform buffer standard layout, scalar): it is refused only when not even scalar block
    layout allows its offsets and strides, or for any other fault.  glslang (up to 14) emits
    ``OpSpecConstantOp UConvert`` in modules before SPIR-V 1.4, which that version does not
    allow; drivers take it, so it is validated as the ``SConvert`` glslang now emits instead
    (the module itself is not changed).

    Parameters
    ----------
    spirv : bytes
    target_env : str, optional
        spirv-val's ``--target-env`` (``'vulkan1.3'``...); from the module's version by default.

    Raises
    ------
    SpirvError
        With spirv-val's message and the options it ran with.

    Example
    -------
    >>> validate_spirv(compile_glsl("layout(local_size_x=1) in; void main() {}"))
    True
    """
    from ..errors import SpirvError

    global _validator_warned
    key = hashlib.sha256(spirv).hexdigest() + str(target_env)
    if key in _validated:
        return True
    tool = shutil.which("spirv-val")
    if tool is None:
        if not _validator_warned:
            _validator_warned = True
            warnings.warn(
                "spirv-val not found: SPIR-V given to vknb.compile is passed to the driver "
                "unvalidated (apt-get install spirv-tools)",
                ShaderWarning,
                stacklevel=3,
            )
        return False
    facts, words = _module_facts(spirv)
    if facts.uconvert_spec_ops and facts.version < (1, 4):
        for at in facts.uconvert_spec_ops:
            words[at] = 114  # SConvert: what glslang emits for these since its fix
    # Little-endian words whatever the module's byte order (spirv-val misreads the strings
    # of a big-endian module).
    data = struct.pack(f"<{len(words)}I", *words) + spirv[4 * len(words) :]
    base = _base_options(facts, target_env)
    with tempfile.TemporaryDirectory(prefix="vknb-val-") as d:
        path = os.path.join(d, "module.spv")
        with open(path, "wb") as f:
            f.write(data)
        rung = _declared_layout(facts)
        while True:
            opts = base + list(_LAYOUTS[rung])
            try:
                p = subprocess.run(
                    [tool, *opts, path],
                    capture_output=True,
                    text=True,
                    errors="replace",
                    timeout=60,
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired:
                raise SpirvError(
                    f"spirv-val did not finish within 60 s on a {len(spirv)}-byte module"
                ) from None
            msg = (p.stderr or p.stdout).strip().replace(path, "<module>")
            if p.returncode == 0 or rung == len(_LAYOUTS) - 1 or not _LAYOUT_ERROR.search(msg):
                break
            rung += 1
            if _LAYOUTS[rung] == ("--relax-block-layout",) and base[1] != "vulkan1.0":
                rung += 1  # relaxed block layout is the default from Vulkan 1.1 on
    if p.returncode != 0:
        raise SpirvError(f"invalid SPIR-V (spirv-val {' '.join(opts)}): {msg}")
    _validated.add(key)
    return True
