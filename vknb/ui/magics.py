"""The IPython extension: ``%%glsl`` and ``%vknb``.

``%load_ext vknb`` registers the two magics and does nothing else: no device is created, nothing
is printed, nothing is installed.  IPython is imported only when the extension is loaded, so the
plain-Python helpers of this module (:func:`splice`, :func:`environment_info`) work without it.
Every magic is a thin parser over the public API; what it does, a script can do with
``vknb.compile``, ``vknb.devices``, ``vknb.device().memory_stats()``, ``vknb.timings()``...

``%%glsl NAME [options]``
    Compiles the cell with :func:`vknb.compile` (``name=NAME``), binds the Kernel to ``NAME`` in
    the user namespace and displays its reflection card (HTML in notebooks, text in terminals).
    Options: ``-D NAME[=VALUE]`` (repeatable), ``--constant NAME=VALUE`` (repeatable;
    specialization constants; VALUE is a Python literal or an expression evaluated in the user
    namespace), ``--local-size X[,Y[,Z]]``, ``--device N`` (build for physical device N; the
    kernel stays there), ``-I DIR`` (include directory), ``-O`` (spirv-opt), ``--quiet`` (show
    nothing on success), ``--run ARGS`` (dispatch at once: ``NAME(ARGS)`` evaluated in the user
    namespace, e.g. ``--run "x, y, a=2.0, grid=n"``; shows the dispatch record), ``--save PATH``
    (write the spliced cell as a ``.comp`` file, before compiling, so a failing shader can be
    tried in a terminal), ``--no-splice``, ``--help``.  ``%glsl --help`` (one ``%``: IPython
    refuses a cell magic with an empty body) and ``%glsl?`` show the help.

    Compile errors: the cell's source is shown with the offending lines highlighted (HTML, and a
    numbered listing with ``>>`` markers in text), in the cell's own line numbers, where line 1
    is the ``%%glsl`` line itself (as in Jupyter's line numbering).  Then the
    :class:`~vknb.ShaderCompileError` is raised (with a one-line traceback, since the listing is
    already shown), so the cell fails and "Run All" and nbval stop there; ``NAME`` keeps
    whatever it held before.  Its ``.diagnostics`` and ``.source`` are in cell lines too.

    Re-running a cell rebinds ``NAME`` to the new kernel; the old kernel's pipeline and scratch
    buffers are freed by reference counting once nothing refers to it (a kernel you kept under
    another name keeps working).

Splicing
    ``$NAME`` or ``${NAME}`` in the cell (and in the ``%%glsl`` line) is replaced by the value of
    the Python variable ``NAME``, so that sizes can come from Python::

        %%glsl blur --local-size $WG
        const uint TAPS = $TAPS;
        #define WEIGHT ${W}f

    ``$`` is used rather than ``{NAME}`` because GLSL is full of braces; GLSL has no ``$``.
    Only names present in the user namespace are replaced; any other ``$word`` is left as it
    is.  Values that are ``str`` (inserted verbatim, so a block of code works; its diagnostics
    point at the ``$NAME`` line), ``int``, ``float`` or ``bool`` (``true``/``false``), Python or
    numpy scalars, are spliced.  Any other value (an array, a function, a module) is ambiguous:
    it is left untouched and a warning says so.  ``$$`` gives a literal ``$``.  ``--no-splice``
    turns splicing off for the cell body.  IPython's own ``{expr}`` expansion of the magic line
    is off for ``%%glsl`` (the line gets the same ``$NAME`` splicing instead), so
    ``--run "x, P={'a': 1.0}"`` passes a dict.

``%vknb COMMAND``
    ``devices`` (device explorer widget in a notebook, a table elsewhere), ``use N`` (index or
    name substring; ``vknb.use``), ``memory`` (the session device's heaps and vknb's blocks),
    ``timings [--last K] [--kernel NAME] [--plot]`` (per-kernel summary and the last K dispatch
    records, default 20; ``--plot`` draws GPU ms per dispatch and a histogram per kernel),
    ``info`` (versions of vknb, the binding, the loader, the driver, the compiler; the cache
    directory), ``clear-cache`` (``vknb.clear_cache()``).  ``--text`` forces the plain-text form
    (stable output for nbval).  ``%vknb`` alone, or ``%vknb help``, shows this help.

    Widgets (``vknb.widgets``) are used only in a Jupyter kernel with ipywidgets installed; set
    ``vknb.magics.use_widgets = False`` (or ``True``) to override the detection.

Example
-------
>>> %load_ext vknb                                           # doctest: +SKIP
>>> %%glsl saxpy --run "x, y, a=2.0, grid=x.size"            # doctest: +SKIP
... layout(local_size_x = 64) in;
... layout(binding = 0) readonly buffer X { float x[]; };
... layout(binding = 1) buffer Y { float y[]; };
... layout(push_constant) uniform P { float a; };
... void main() { uint i = gl_GlobalInvocationID.x; if (i < x.length()) y[i] += a * x[i]; }
>>> %vknb timings --text                                     # doctest: +SKIP
"""

from __future__ import annotations

import ast
import importlib.metadata
import keyword
import numbers
import os
import platform
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Spliced",
    "environment_info",
    "load_ipython_extension",
    "splice",
    "splice_value",
    "unload_ipython_extension",
    "use_widgets",
]

#: ``None``: use widgets only inside a Jupyter kernel with ipywidgets installed; True / False:
#: always / never (``--text`` always means text).
use_widgets: bool | None = None

# Devices built for ``%%glsl --device N`` when N is not the session device: one per index, kept
# for the session so that re-running such a cell does not create a logical device every time.
_extra_devices: dict[int, Any] = {}

_MAGICS_CLASS: Any = None


# --- splicing ---------------------------------------------------------------------------------

_SPLICE_RE = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def splice_value(value: Any) -> str | None:
    """The GLSL text for a Python value, or None when the value is ambiguous (not spliced).

    ``str`` is inserted verbatim; ``bool`` becomes ``true``/``false``; integers and floats
    (Python or numpy scalars) their ``str``.

    Example
    -------
    >>> splice_value(256), splice_value(0.5), splice_value(True), splice_value([1])
    ('256', '0.5', 'true', None)
    """
    if isinstance(value, str):
        return value
    t = type(value)
    if isinstance(value, bool) or (t.__module__ == "numpy" and t.__name__ in ("bool_", "bool")):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return str(value)
    return None


@dataclass
class Spliced:
    """What :func:`splice` did.

    Attributes
    ----------
    text : str
        The source after splicing.
    values : dict
        ``NAME -> inserted text`` for every name that was replaced.
    skipped : dict
        ``NAME -> type name`` for names found in the namespace but left untouched (ambiguous).
    lines : list of (source line, multi-line NAME or None, line inside it, first splice column)
        For each line of ``text``: where it came from in the original source (1-based).
    """

    text: str
    values: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    lines: list[tuple[int, str | None, int, int | None]] = field(default_factory=list)

    def map_diagnostics(
        self, diagnostics: list[tuple[int, int, str, str]], offset: int = 0
    ) -> list[tuple[int, int, str, str]]:
        """Diagnostics of the spliced text -> the original source's lines (+ ``offset``).

        A diagnostic inside a multi-line spliced value points at the ``$NAME`` line and says
        which line of the value it is; a column behind a splice on the same line becomes 0
        (unknown).

        Example
        -------
        >>> s = splice("a\\n$B\\nc", {"B": "x\\ny"})
        >>> s.map_diagnostics([(4, 0, "error", "oops")])
        [(3, 0, 'error', 'oops')]
        """
        out = []
        for line, col, sev, msg in diagnostics:
            if 1 <= line <= len(self.lines):
                src, name, j, first = self.lines[line - 1]
                if name is not None:
                    msg = f"{msg} (line {j + 1} of the text spliced from ${name})"
                    col = 0
                elif first is not None and col > first:
                    col = 0
                line = src + offset
            elif line > 0:
                line += offset
            out.append((line, col, sev, msg))
        return out


def splice(source: str, namespace: dict[str, Any]) -> Spliced:
    """Replace ``$NAME`` / ``${NAME}`` by the values of ``namespace``; ``$$`` -> ``$``.

    Names absent from ``namespace`` are left untouched, and so are values that
    :func:`splice_value` calls ambiguous (recorded in ``Spliced.skipped``).

    Example
    -------
    >>> splice("layout(local_size_x = $N) in; // $$N, $other", {"N": 64}).text
    'layout(local_size_x = 64) in; // $N, $other'
    """
    result = Spliced("")
    out: list[str] = []
    for lineno, src_line in enumerate(source.split("\n"), start=1):
        pieces: list[str] = []
        pos = 0
        first: int | None = None
        multi: str | None = None
        for m in _SPLICE_RE.finditer(src_line):
            pieces.append(src_line[pos : m.start()])
            pos = m.end()
            if m.group(1):
                text = "$"
            else:
                name = m.group(2) or m.group(3)
                text = m.group(0)
                if name in namespace:
                    v = splice_value(namespace[name])
                    if v is None:
                        result.skipped[name] = type(namespace[name]).__name__
                    else:
                        text = v
                        result.values[name] = v
                        if "\n" in v and multi is None:
                            multi = name
            if text != m.group(0) and first is None:
                first = m.start() + 1  # 1-based column of the first change on this line
            pieces.append(text)
        pieces.append(src_line[pos:])
        joined = "".join(pieces)
        n = joined.count("\n") + 1
        for j in range(n):
            result.lines.append((lineno, multi if n > 1 else None, j, first))
        out.append(joined)
    result.text = "\n".join(out)
    return result


# --- plain-data helpers -----------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment_info() -> dict[str, str]:
    """Versions and paths that matter for a bug report (what ``%vknb info`` shows).

    Creates the Vulkan instance if needed, but no device: where no session device exists yet,
    the one that would be chosen is described.

    Example
    -------
    >>> info = environment_info()
    >>> info["vknb"] == vknb.__version__
    True
    """
    import vknb
    from vknb import _vk
    from vknb.core.session import current_device
    from vknb.shader.compiler import cache_dir, find_compiler
    from vknb.core.instance import devices

    info: dict[str, str] = {
        "vknb": vknb.__version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "vulkan (Python binding)": _version("vulkan"),
        "numpy": _version("numpy"),
        "IPython": _version("ipython"),
        "ipywidgets": _version("ipywidgets"),
    }
    try:
        from vknb.core.instance import get_instance, select_device_index

        inst = get_instance()
        info["Vulkan loader"] = _vk.version_str(inst.loader_version)
        info["Vulkan instance API"] = _vk.version_str(inst.api_version)
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
    except vknb.VulkanError as e:
        info["Vulkan"] = f"unavailable: {e}"
    try:
        c = find_compiler()
        info["compiler"] = f"{c.description} ({c.path})"
    except vknb.VulkanError as e:
        info["compiler"] = f"unavailable: {e}"
    cdir = cache_dir()
    spirv = cdir / "spirv"
    try:
        n = sum(1 for p in spirv.iterdir() if p.suffix == ".vkspv")
    except OSError:
        n = 0
    info["cache directory"] = f"{cdir} ({n} SPIR-V entries)"
    env = {k: v for k, v in os.environ.items() if k.startswith("VKNB_")}
    info["environment"] = ", ".join(f"{k}={v}" for k, v in sorted(env.items())) or "(no VKNB_*)"
    return info


def _parse_value(text: str, namespace: dict[str, Any], what: str) -> Any:
    """A Python literal, ``true``/``false``, or an expression in the user namespace."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        return eval(text, namespace)  # the user's own namespace, as %%timeit and friends do
    except Exception as e:
        from IPython.core.error import UsageError

        raise UsageError(f"{what}: cannot evaluate {text!r}: {type(e).__name__}: {e}") from None


def _unquote(s: str) -> str:
    """IPython splits magic lines without POSIX rules: ``"a b"`` keeps its quotes."""
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    return s


def _device_for(index: int) -> Any:
    """The session device if it is (or would be) physical device ``index``, else a kept one."""
    from vknb.core.device import Device
    from vknb.core.instance import devices, select_device_index
    from vknb.core.session import current_device, device

    session = current_device()
    if session is not None:
        if session.index == index:
            return session
    else:
        infos = devices()
        if 0 <= index < len(infos) and select_device_index(infos)[0] == index:
            return device()
    dev = _extra_devices.get(index)
    if dev is None or dev.closed:
        dev = _extra_devices[index] = Device(index)
    return dev


def _show(obj: Any) -> None:
    from IPython.display import display

    display(obj)


def _cell_error(err: Any, spliced: Spliced, line: str, cell: str) -> Any:
    """Rebuild a ShaderCompileError in the cell's own line numbers (line 1 = the magic line)."""
    from vknb.shader.compiler import format_diagnostics
    from vknb.errors import ShaderCompileError

    source = f"%%glsl {line}".rstrip() + "\n" + cell
    diags = spliced.map_diagnostics(list(err.diagnostics), offset=1)
    old = str(err).splitlines()
    tail_at = next((i for i, s in enumerate(old) if s.startswith("compiler: ")), len(old))
    errors = [d for d in diags if d[2] == "error"]
    if errors:
        head = f"GLSL kernel {err.name!r} failed to compile: " + (
            f"line {errors[0][0]}: {errors[0][3]}" if errors[0][0] else errors[0][3]
        )
        if len(errors) > 1:
            head += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
        body = [format_diagnostics(source, diags)]
    else:
        head = old[0] if old else "GLSL compilation failed"
        body = old[1:tail_at]
    message = "\n".join([head, *body, *old[tail_at:]])
    new = ShaderCompileError(
        message, diagnostics=diags, source=source, command=err.command, name=err.name
    )
    return new


def _reissue_warnings(caught: list[warnings.WarningMessage], spliced: Spliced, name: str) -> None:
    from vknb.shader.compiler import ShaderWarning

    for w in caught:
        msg = w.message
        if isinstance(msg, ShaderWarning) and msg.line:
            ((line, col, _s, _t),) = spliced.map_diagnostics(
                [(msg.line, msg.column, "warning", msg.text)], offset=1
            )
            warnings.warn(
                ShaderWarning(
                    f"{name}:{line}: {msg.text}",
                    name=msg.name,
                    line=line,
                    column=col,
                    text=msg.text,
                ),
                stacklevel=3,
            )
        else:
            warnings.warn_explicit(msg, w.category, w.filename, w.lineno, source=w.source)


def _want_widgets(shell: Any, text: bool) -> bool:
    if text:
        return False
    if use_widgets is not None:
        return use_widgets
    if getattr(shell, "kernel", None) is None:  # a terminal or a plain InteractiveShell
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _widget(name: str) -> Any:
    """``vknb.widgets.<name>``, or None where the widgets module (or that name) is missing."""
    try:
        import vknb.ui.widgets as w
    except ImportError:
        return None
    return getattr(w, name, None)


_VKNB_COMMANDS = ("devices", "use", "memory", "timings", "info", "clear-cache", "help")

_GLSL_DOC = """Compile a GLSL compute shader cell and bind the Kernel to NAME.

The cell is compiled with vknb.compile(cell, name=NAME, defines=..., constants=...,
local_size=...); NAME is bound to the Kernel in the user namespace and its reflection card is
shown (bindings, push constants, specialization constants, compile time and cache hit, SPIR-V
size, device).  Call it like a function: NAME(x, y, a=2.0, grid=x.size).

A compile error shows the cell with the offending lines highlighted, in the cell's own line
numbers (line 1 is this %%glsl line), and raises ShaderCompileError: the cell fails and NAME
keeps its previous kernel.

Splicing: $NAME or ${NAME} in the cell and in this line is replaced by the value of the Python
variable NAME (str verbatim, int, float, bool as true/false); names not in the namespace are
left as they are, other value types are left with a warning; $$ is a literal $.  --no-splice
turns it off for the cell body.

Examples::

  %%glsl saxpy --run "x, y, a=2.0, grid=n"
  %%glsl blur -D TAPS=$TAPS --constant SIGMA=1.5 --local-size 16,16
"""

_VKNB_DOC = """vknb's session tools.

::

  %vknb devices [--text]        devices, their scores; the session device is marked
  %vknb use N                   make device N (index or name substring) the session device
  %vknb memory [--text]         heaps of the session device and what vknb holds in them
  %vknb timings [--last K] [--kernel NAME] [--plot] [--text]
                                per-kernel summary and the last K dispatches (default 20);
                                --plot: GPU ms per dispatch and a histogram per kernel
  %vknb info [--text]           versions (vknb, vulkan binding, loader, driver, compiler),
                                the cache directory
  %vknb clear-cache             delete the cached SPIR-V (vknb.clear_cache())
  %vknb [help]                  this help

--text prints plain text instead of a widget or an HTML table.  Everything here is plain
Python too: vknb.devices(), vknb.use(n), vknb.device().memory_stats(), vknb.timings(),
vknb.clear_cache().
"""


def _with_doc(doc: str) -> Any:
    def deco(f: Any) -> Any:
        f.__doc__ = doc
        return f

    return deco


def _magics_class() -> Any:
    """Build (once) the Magics subclass; IPython is imported here, not at module import."""
    global _MAGICS_CLASS
    if _MAGICS_CLASS is not None:
        return _MAGICS_CLASS

    from IPython.core.error import UsageError
    from IPython.core.magic import (
        Magics,
        line_cell_magic,
        line_magic,
        magics_class,
        no_var_expand,
    )
    from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

    @magics_class
    class VknbMagics(Magics):
        """``%%glsl`` and ``%vknb`` (see :mod:`vknb.magics`)."""

        # -- %%glsl ----------------------------------------------------------------------

        @no_var_expand
        @magic_arguments()
        @argument("name", nargs="?", help="the Python name to bind the kernel to")
        @argument(
            "-D",
            dest="defines",
            action="append",
            default=[],
            metavar="NAME[=VALUE]",
            help="preprocessor define (repeatable)",
        )
        @argument(
            "--constant",
            dest="constants",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="specialization constant (repeatable); VALUE is a "
            "Python literal or an expression in the user namespace",
        )
        @argument(
            "--local-size",
            metavar="X[,Y[,Z]]",
            help="workgroup size, for shaders that declare local_size_x_id etc.",
        )
        @argument(
            "--device",
            type=int,
            metavar="N",
            help="build for physical device N (default: the session device)",
        )
        @argument(
            "-I",
            dest="include_dirs",
            action="append",
            default=[],
            metavar="DIR",
            help="#include search directory (repeatable; shaders/ is always searched)",
        )
        @argument("-O", "--optimize", action="store_true", help="run spirv-opt on the SPIR-V")
        @argument(
            "-q",
            "--quiet",
            action="store_true",
            help="show nothing on success (no card, no dispatch record)",
        )
        @argument(
            "--run",
            metavar="ARGS",
            help="dispatch at once: NAME(ARGS) in the user namespace, e.g. "
            '--run "x, y, a=2.0, grid=n"',
        )
        @argument("--save", metavar="PATH", help="write the (spliced) cell to PATH (.comp)")
        @argument("--no-splice", action="store_true", help="no $NAME splicing in the cell")
        @argument("-h", "--help", action="store_true", help="show this help")
        @line_cell_magic
        @_with_doc(_GLSL_DOC)
        def glsl(self, line: str, cell: str | None = None) -> None:
            assert self.shell is not None
            ns = self.shell.user_ns
            line_sp = splice(line, ns)
            args = parse_argstring(self.glsl, line_sp.text)
            if args.help:
                print(self.glsl.__doc__)
                return
            name = args.name
            if not name or not name.isidentifier() or keyword.iskeyword(name):
                raise UsageError(
                    "%%glsl needs the Python name to bind the kernel to, e.g. `%%glsl saxpy`; "
                    f"got {name!r} (see %%glsl --help)"
                )
            if cell is None:
                raise UsageError(
                    f"%glsl {name}: the shader goes in the cell body: start the cell "
                    "with %%glsl (two %); `%glsl --help` shows the options"
                )
            spliced = Spliced(
                cell, lines=[(i, None, 0, None) for i in range(1, cell.count("\n") + 2)]
            )
            if not args.no_splice:
                spliced = splice(cell, ns)
            skipped = {**line_sp.skipped, **spliced.skipped}
            for var, tname in skipped.items():
                warnings.warn(
                    f"%%glsl {name}: ${var} is a {tname}, not spliced (only str, int, "
                    "float and bool values are; write $$ for a literal $)",
                    UserWarning,
                    stacklevel=2,
                )
            defines: dict[str, Any] = {}
            for d in args.defines:
                key, eq, value = d.partition("=")
                defines[key.strip()] = value if eq else None
            constants: dict[str | int, Any] = {}
            for c in args.constants:
                key, eq, value = c.partition("=")
                if not eq or not key.strip():
                    raise UsageError(f"--constant takes NAME=VALUE, got {c!r}")
                k = key.strip()
                constants[int(k) if k.isdigit() else k] = _parse_value(value, ns, f"--constant {k}")
            local_size = None
            if args.local_size:
                try:
                    local_size = tuple(int(v) for v in args.local_size.split(","))
                except ValueError:
                    raise UsageError(
                        f"--local-size takes X[,Y[,Z]] integers, got {args.local_size!r}"
                    ) from None
            device = _device_for(args.device) if args.device is not None else None
            if args.save:
                _save(Path(_unquote(args.save)).expanduser(), spliced.text)

            from vknb.errors import ShaderCompileError
            from vknb.compute.kernel import Kernel, _registry
            from vknb.compute.kernel import compile as vk_compile

            includes = tuple(_unquote(d) for d in args.include_dirs)

            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    kernel = vk_compile(
                        spliced.text,
                        name=name,
                        defines=defines,
                        constants=constants,
                        local_size=local_size,
                        device=device,
                        include_dirs=includes,
                        optimize=args.optimize,
                    )
            except ShaderCompileError as err:
                _reissue_warnings(caught, spliced, name)
                new = _cell_error(err, spliced, line, cell)
                # No local may refer to the previous kernel: the traceback (sys.last_traceback)
                # keeps this frame alive, and with it anything its locals refer to.
                kept = (
                    f"`{name}` still holds the previous kernel"
                    if isinstance(ns.get(name), Kernel)
                    else f"`{name}` is not defined"
                )
                from vknb.ui.display import Rendered, compile_error_html, compile_error_text

                first = str(new).splitlines()[0]
                _show(
                    Rendered(
                        compile_error_html(new) + f"<div style='color:#666'>{kept}</div>",
                        f"ShaderCompileError: {first}\n{compile_error_text(new)}\n({kept})",
                    )
                )
                short = [f"ShaderCompileError: {first} ({kept}; the listing is above)"]
                new._render_traceback_ = lambda: short
                raise new from None
            _reissue_warnings(caught, spliced, name)
            ns[name] = kernel
            _registry[name] = kernel
            if not args.quiet:
                _show(kernel)
            if args.run:
                call = f"__vknb_kernel__({_unquote(args.run)})"
                code = compile(call, f"<%%glsl {name} --run>", "eval")
                rec = eval(code, ns, {"__vknb_kernel__": kernel})
                if not args.quiet:
                    from vknb.ui.display import Rendered, dispatch_html, dispatch_text

                    _show(Rendered(dispatch_html(rec), dispatch_text(rec)))

        # -- %vknb -----------------------------------------------------------------------

        @magic_arguments()
        @argument("command", nargs="?", help="one of: " + ", ".join(_VKNB_COMMANDS))
        @argument("value", nargs="?", help="the device for `use`")
        @argument("--last", type=int, metavar="K", help="timings: the last K dispatches")
        @argument("--kernel", metavar="NAME", help="timings: only this kernel's dispatches")
        @argument("--plot", action="store_true", help="timings: plot instead of a table")
        @argument("--text", action="store_true", help="plain text (no widget, no HTML)")
        @argument("-h", "--help", action="store_true", help="show this help")
        @line_magic
        @_with_doc(_VKNB_DOC)
        def vknb(self, line: str) -> None:
            args = parse_argstring(self.vknb, line)
            cmd = args.command
            if args.help or cmd in (None, "help"):
                print(self.vknb.__doc__)
                return
            if cmd not in _VKNB_COMMANDS:
                raise UsageError(
                    f"%vknb: unknown command {cmd!r}; commands: "
                    f"{', '.join(_VKNB_COMMANDS)} (see %vknb help)"
                )
            if args.value is not None and cmd != "use":
                raise UsageError(f"%vknb {cmd} takes no argument (got {args.value!r})")
            if (args.last is not None or args.kernel or args.plot) and cmd != "timings":
                raise UsageError("--last, --kernel and --plot apply to `%vknb timings` only")
            widgets = _want_widgets(self.shell, args.text)
            getattr(self, "_cmd_" + cmd.replace("-", "_"))(args, widgets)

        def _emit(self, html: str, text: str, as_text: bool) -> None:
            from vknb.ui.display import Rendered

            if as_text:
                print(text)
            else:
                _show(Rendered(html, text))

        def _cmd_devices(self, args: Any, widgets: bool) -> None:
            from vknb import display

            cls = _widget("DeviceExplorer") if widgets else None
            if cls is not None:
                _show(cls())
                return
            from vknb.core.session import current_device

            s = current_device()
            note = (
                f"session device: {s.index}: {s.info.name} ({s.reason})"
                if s is not None
                else "no session device yet (vknb.device() creates the best-scored one)"
            )
            self._emit(
                display.devices_html() + f"<div style='color:#666'>{note}</div>",
                display.devices_text() + "\n" + note,
                args.text,
            )

        def _cmd_use(self, args: Any, widgets: bool) -> None:
            from vknb.core.session import use

            if args.value is None:
                raise UsageError(
                    "%vknb use N: give a device index or a name substring (see %vknb devices)"
                )
            v = args.value
            dev = use(int(v) if v.isdigit() else v)
            print(
                f"using device {dev.index}: {dev.info.name} ({dev.info.type}, score "
                f"{dev.info.score}); kernels move to it on their next call (except those "
                "built with --device N)"
            )

        def _cmd_memory(self, args: Any, widgets: bool) -> None:
            from vknb import display
            from vknb.core.session import device

            cls = _widget("MemoryMonitor") if widgets else None
            if cls is not None:
                _show(cls())
                return
            dev = device()
            self._emit(
                display.memory_html(dev), f"{dev.info.name}\n{display.memory_text(dev)}", args.text
            )

        def _cmd_timings(self, args: Any, widgets: bool) -> None:
            from vknb import display
            from vknb.compute.timing import timings

            everything = timings(kernel=args.kernel)
            last = 20 if args.last is None else args.last
            if last < 0:
                raise UsageError(f"--last takes K >= 0, got {last}")
            records = everything[-last:] if last else []
            if args.plot:
                recs = everything if args.last is None else records
                plot = _widget("plot_timings")
                fig = plot(recs) if plot is not None else display.timings_figure(recs)
                _show(fig if hasattr(fig, "_repr_png_") else _figure_image(fig))
                return
            cls = _widget("TimingsView") if widgets else None
            if cls is not None:
                _show(cls(args.kernel, last=max(1, last)))
                return
            self._emit(
                display.timings_html(records, len(everything)),
                display.timings_report_text(records, len(everything)),
                args.text,
            )

        def _cmd_info(self, args: Any, widgets: bool) -> None:
            from vknb import display

            info = environment_info()
            self._emit(display.info_html(info), display.info_text(info), args.text)

        def _cmd_clear_cache(self, args: Any, widgets: bool) -> None:
            from vknb.shader.compiler import cache_dir, clear_cache

            n = clear_cache()
            print(
                f"removed {n} cached SPIR-V entr{'y' if n == 1 else 'ies'} from "
                f"{cache_dir() / 'spirv'}"
            )

    _MAGICS_CLASS = VknbMagics
    return VknbMagics


def _save(path: Path, source: str) -> None:
    from vknb.shader.compiler import _VERSION_RE

    text = source if _VERSION_RE.search(source) else "#version 450\n" + source
    if not text.endswith("\n"):
        text += "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _figure_image(fig: Any) -> Any:
    """A static PNG of a matplotlib Figure (no pyplot state, no interactive backend)."""
    import io

    from IPython.display import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return Image(data=buf.getvalue(), format="png")


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%%glsl`` and ``%vknb`` (``%load_ext vknb``); nothing else happens.

    Example
    -------
    >>> get_ipython().run_line_magic("load_ext", "vknb")     # doctest: +SKIP
    """
    ipython.register_magics(_magics_class())


def unload_ipython_extension(ipython: Any) -> None:
    """Remove ``%%glsl`` and ``%vknb`` (``%unload_ext vknb``); kernels already bound stay.

    Example
    -------
    >>> get_ipython().run_line_magic("unload_ext", "vknb")   # doctest: +SKIP
    """
    cls = _MAGICS_CLASS
    table = ipython.magics_manager.magics
    for kind, name in (("cell", "glsl"), ("line", "vknb")):
        fn = table[kind].get(name)
        if cls is not None and isinstance(getattr(fn, "__self__", None), cls):
            del table[kind][name]
    registry = ipython.magics_manager.registry
    if cls is not None:
        registry.pop(cls.__name__, None)
