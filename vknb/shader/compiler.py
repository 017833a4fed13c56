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
import hashlib
import json
import os
import pathlib
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import types
import warnings
from collections.abc import Mapping, Sequence

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
        ``<name>.comp``).
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
    args = []
    for dname, value in sorted((defines or {}).items()):
        if not isinstance(dname, str) or not _IDENT_RE.match(dname):
            raise ValueError(f"define {dname!r} is not a valid GLSL identifier")
        if value is None:
            args.append(f"-D{dname}")
            continue
        text = "1" if value is True else "0" if value is False else str(value)
        if "\n" in text or "\r" in text:
            raise ValueError(f"define {dname!r} has a value spanning several lines")
        args.append(f"-D{dname}={text}")
    return args


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".") or "kernel"


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
    text: str, kind: str, main_file: str, source: str, search_dirs: Sequence[str], cwd: str
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


def _parse_depfile(text: str, cwd: str, main_file: str) -> list[str]:
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
    if isinstance(flags, str):
        raise TypeError("flags must be a sequence of strings, e.g. ['-g'], not one string")
    if not _TARGET_RE.match(target_env):
        raise ValueError(f"target_env must look like 'vulkan1.1', not {target_env!r}")
    define_args = _define_args(defines)
    flag_list = [str(f) for f in flags]
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

    stem = _file_stem(name)
    src_name, out_name, dep_name = f"{stem}.comp", f"{stem}.spv", f"{stem}.d"
    command = _build_command(
        info,
        target_env=target_env,
        optimize=optimize,
        define_args=define_args,
        include_dirs=dirs,
        flags=flag_list,
        src=src_name,
        out=out_name,
        dep=dep_name,
    )
    tmp = tempfile.mkdtemp(prefix="vknb-glsl-")
    try:
        with open(os.path.join(tmp, src_name), "w", encoding="utf-8", newline="") as f:
            f.write(prepared)
        with _lock:
            _compiler_runs += 1
        try:
            proc = subprocess.run(
                command,
                cwd=tmp,
                capture_output=True,
                text=True,
                errors="replace",
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            raise NotAvailable(f"Could not run {info.path}: {exc}. {_INSTALL_HINT}.") from exc
        output = proc.stdout + proc.stderr
        diags = _parse_output(output, info.kind, src_name, source, dirs, tmp)
        spirv = b""
        out_path = os.path.join(tmp, out_name)
        if proc.returncode == 0 and os.path.exists(out_path):
            spirv = pathlib.Path(out_path).read_bytes()
        if proc.returncode != 0 or not _is_spirv(spirv) or any(d[2] == "error" for d in diags):
            err = ShaderCompileError(
                _error_message(name, diags, source, command, info.description, output),
                diagnostics=diags,
                source=source,
                command=command,
                name=name,
            )
            err.output = output  # type: ignore[attr-defined]
            raise err
        try:
            dep_text = pathlib.Path(tmp, dep_name).read_text(errors="replace")
        except OSError:
            dep_text = ""
        include_paths = _parse_depfile(dep_text, tmp, src_name)
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
        Searched for ``#include "..."`` before the shader library (:func:`vknb.config.shader_dir`, always searched).
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
        The shader has errors; ``.diagnostics`` holds them in the user's line numbers.
    NotAvailable
        No compiler is installed.
    ValueError
        A define's name is not an identifier, or ``target_env`` is malformed.

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


def validate_spirv(spirv: bytes, *, target_env: str = "vulkan1.3") -> bool:
    """Check SPIR-V from outside vknb's compiler with ``spirv-val`` before a driver sees it.

    Drivers may crash on invalid modules instead of failing, so ``vknb.compile(spirv_bytes)``
    runs this first.  Returns True when validated, False (with a one-time warning) when
    ``spirv-val`` is not installed (Debian: ``apt-get install spirv-tools``).

    Raises
    ------
    SpirvError
        With spirv-val's message.

    Example
    -------
    >>> validate_spirv(compile_glsl("layout(local_size_x=1) in; void main() {}"))
    True
    """
    from ..errors import SpirvError

    global _validator_warned
    key = hashlib.sha256(spirv).hexdigest() + target_env
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
    with tempfile.TemporaryDirectory(prefix="vknb-val-") as d:
        path = os.path.join(d, "module.spv")
        with open(path, "wb") as f:
            f.write(spirv)
        p = subprocess.run(
            [tool, "--target-env", target_env, path],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=60,
        )
    if p.returncode != 0:
        msg = (p.stderr or p.stdout).strip().replace(path, "<module>")
        raise SpirvError(f"invalid SPIR-V (spirv-val --target-env {target_env}): {msg}")
    _validated.add(key)
    return True
