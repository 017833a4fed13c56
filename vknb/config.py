"""Configuration: every ``VKNB_*`` environment variable, typed, checked and read when used.

Each variable is declared once in :data:`VARIABLES` with its type, default, when vknb reads it and
what it does; :func:`get` parses it at the moment it is needed (so setting a variable in a
notebook before the first call that reads it takes effect) and raises a :class:`ValueError`
naming the variable for a value that does not parse.  The table in the README and
``docs/getting-started.md`` is checked against this one by the tests.

Example
-------
>>> import os, vknb.config as config
>>> os.environ["VKNB_TIMEOUT_S"] = "5"
>>> config.get("VKNB_TIMEOUT_S")
5.0
>>> os.environ["VKNB_TIMEOUT_S"] = "soon"
>>> config.get("VKNB_TIMEOUT_S")
Traceback (most recent call last):
ValueError: VKNB_TIMEOUT_S='soon' is not valid: expected a number of seconds > 0 ...
>>> del os.environ["VKNB_TIMEOUT_S"]
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: vknb's version (``vknb.__version__``; here so that every layer can name it).
VERSION = "0.1.0"

__all__ = ["VARIABLES", "Variable", "cache_dir", "get", "shader_dir", "table"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise ValueError("expected 1/0 (or true/false, yes/no, on/off)")


def _number(minimum: float, *, inclusive: bool, unit: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        ok = math.isfinite(v) and (v >= minimum if inclusive else v > minimum)
        if not ok:
            raise ValueError(
                f"expected a number of {unit} {'>=' if inclusive else '>'} {minimum:g}"
            )
        return v

    return parse


def _whole(minimum: int, unit: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text.strip())
        except ValueError:
            v = minimum - 1
        if v < minimum:
            raise ValueError(f"expected a whole number of {unit} >= {minimum}")
        return v

    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        t = text.strip().lower()
        if t not in options:
            raise ValueError(f"expected one of {', '.join(repr(o) for o in options)}")
        return t

    return parse


def _text(text: str) -> str:
    return text.strip()


def _default_copy_threads() -> int:
    return max(2, min(16, os.cpu_count() or 2))


def _default_import_cache_mb() -> int:
    """The smaller of 4 GiB and a quarter of the host's RAM, in MiB."""
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        ram = 16 << 30
    return max(0, min(4096, (ram >> 20) // 4))


@dataclass(frozen=True)
class Variable:
    """One environment variable: how it parses, its default, when it is read, what it does."""

    name: str
    parse: Callable[[str], Any]
    default: Any  # a value, or a zero-argument callable computing it
    read: str  # when vknb reads it
    doc: str

    def value(self) -> Any:
        """The current value: parsed from the environment, else the default."""
        raw = os.environ.get(self.name)
        if raw is None or raw.strip() == "":
            return self.default() if callable(self.default) else self.default
        try:
            return self.parse(raw)
        except ValueError as e:
            raise ValueError(f"{self.name}={raw!r} is not valid: {e} ({self.doc})") from None


VARIABLES: dict[str, Variable] = {
    v.name: v
    for v in (
        Variable(
            "VKNB_DEVICE",
            _text,
            None,
            "when the session device is created",
            "the session device, by index or by a substring of its name",
        ),
        Variable(
            "VKNB_VALIDATION",
            _bool,
            False,
            "when the Vulkan instance is created",
            "1 enables the Khronos validation layer; a validation error raises at the call "
            "that caused it",
        ),
        Variable(
            "VKNB_TIMEOUT_S",
            _number(0, inclusive=False, unit="seconds"),
            60.0,
            "at each wait",
            "how long a wait for the GPU may take before the device is declared lost "
            "(a runaway kernel raises DeviceLost instead of hanging)",
        ),
        Variable(
            "VKNB_COMPILE_TIMEOUT_S",
            _number(0, inclusive=False, unit="seconds"),
            60.0,
            "at each compile",
            "how long the GLSL compiler may run",
        ),
        Variable(
            "VKNB_CACHE_DIR",
            _text,
            None,
            "at each compile and device creation",
            "where SPIR-V and pipeline caches live (default ~/.cache/vknb)",
        ),
        Variable(
            "VKNB_SHADERS",
            _text,
            None,
            "at each compile and library load",
            "a directory of GLSL to use instead of the shader library shipped in the package "
            "(its files are on every kernel's include path)",
        ),
        Variable(
            "VKNB_GLSLC",
            _text,
            None,
            "when the compiler is first looked for",
            "path to glslc or glslangValidator (default: found on PATH)",
        ),
        Variable(
            "VKNB_SPIN_US",
            _number(0, inclusive=True, unit="microseconds"),
            300.0,
            "when a device is created",
            "how long a wait polls the fence before blocking",
        ),
        Variable(
            "VKNB_TIMESTAMPS",
            _bool,
            True,
            "when a kernel's pipeline or a batch is built",
            "0: no per-dispatch timestamp queries (gpu_ms is None), for the lowest latency",
        ),
        Variable(
            "VKNB_TS_READOUT",
            _choice("host", "copy"),
            None,
            "when a kernel's pipeline or a batch is built",
            "how timestamps reach the host: 'host' (query results) or 'copy' (into mapped "
            "memory); default: chosen per device (for measurements)",
        ),
        Variable(
            "VKNB_STAGING_MB",
            _whole(1, "MiB"),
            64,
            "when a device first transfers through staging",
            "size of each of the two staging buffers per direction",
        ),
        Variable(
            "VKNB_COPY_THREADS",
            _whole(1, "threads"),
            _default_copy_threads,
            "when the first large host copy runs",
            "host threads that copy large arrays in and out",
        ),
        Variable(
            "VKNB_BAR",
            _choice("auto", "0", "1"),
            "auto",
            "at each new Array",
            "where Arrays live: 'auto' puts them in device-local host-visible memory on a "
            "discrete GPU whose whole memory the host maps (resizable BAR), written directly "
            "by host threads; 0 never, 1 wherever such memory exists",
        ),
        Variable(
            "VKNB_RECYCLE_MB",
            _whole(0, "MiB"),
            None,
            "when a device is created",
            "freed large allocations and emptied blocks kept for reuse (default: the smaller "
            "of 1 GiB and an eighth of the largest heap; Device.trim() frees them; 0 turns it "
            "off)",
        ),
        Variable(
            "VKNB_ROBUST",
            _bool,
            False,
            "when a device is created",
            "1 enables robust buffer access (robustness2 where the device has it): an "
            "out-of-bounds access in a kernel cannot touch another Array, at some speed cost",
        ),
        Variable(
            "VKNB_FORCE_STAGING",
            _bool,
            False,
            "at each transfer",
            "1 sends every transfer through staging buffers even where memory is "
            "host-visible (tests use it to drive the discrete-GPU path on CPU drivers)",
        ),
        Variable(
            "VKNB_HOST_IMPORT",
            _choice("auto", "0", "1"),
            "auto",
            "at each transfer of 8 MiB or more",
            "whether large numpy transfers import the array's own pages "
            "(VK_EXT_external_memory_host) so that the copy engine reads or writes them "
            "directly: 'auto' on discrete GPUs, for numpy memory moved more than once (kept "
            "imported between transfers); 1 for every contiguous array, on any device with the "
            "extension; 0 never (staging buffers or mapped memory)",
        ),
        Variable(
            "VKNB_HOST_IMPORT_CACHE_MB",
            _whole(0, "MiB"),
            _default_import_cache_mb,
            "at each import",
            "numpy memory kept imported (pinned) between transfers (default: the smaller of "
            "4 GiB and a quarter of the host's RAM); released when its array is freed or by "
            "Device.trim(); 0 keeps nothing (then 'auto' imports nothing)",
        ),
    )
}


def get(name: str) -> Any:
    """The value of the variable ``name`` now (see :data:`VARIABLES`).

    Raises ValueError naming the variable when its value does not parse.

    Example
    -------
    >>> get("VKNB_STAGING_MB")
    64
    """
    return VARIABLES[name].value()


def cache_dir() -> pathlib.Path:
    """The directory of vknb's caches: ``VKNB_CACHE_DIR``, else ``$XDG_CACHE_HOME/vknb``,
    else ``~/.cache/vknb`` (not created here).

    Example
    -------
    >>> cache_dir().name                                     # doctest: +SKIP
    'vknb'
    """
    env = get("VKNB_CACHE_DIR")
    if env:
        return pathlib.Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = pathlib.Path(xdg) if xdg else pathlib.Path.home() / ".cache"
    return base / "vknb"


def shader_dir() -> pathlib.Path:
    """The shader library's directory: ``VKNB_SHADERS``, else the ``library/shaders`` folder
    shipped inside the package.  Its files are on every kernel's include path
    (``#include "random.glsl"``).

    Example
    -------
    >>> (shader_dir() / "saxpy.comp").is_file()
    True
    """
    env = get("VKNB_SHADERS")
    if env:
        return pathlib.Path(env).expanduser().resolve()
    return pathlib.Path(__file__).resolve().parent / "library" / "shaders"


def table() -> list[tuple[str, str, str]]:
    """``(name, when read, what it does)`` for every variable, for documentation.

    Example
    -------
    >>> table()[0][0]
    'VKNB_DEVICE'
    """
    return [(v.name, v.read, v.doc) for v in VARIABLES.values()]
