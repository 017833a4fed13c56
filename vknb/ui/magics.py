"""The IPython extension: ``%%glsl`` and ``%vknb``.

``%load_ext vknb`` registers the two magics and vknb's display formatters
(:func:`vknb.display.register_formatters`), and does nothing else: no device is created, nothing
is printed, nothing is installed.  This module imports IPython; ``import vknb`` does not import
it (``vknb.load_ipython_extension`` imports this module when the extension is loaded).  The
plain-Python parts live elsewhere and are re-exported here: :func:`splice` (``vknb.ui.splice``)
and :func:`environment_info` (``vknb.display``).  Every magic is a thin parser over the public
API; what it does, a script can do with ``vknb.compile``, ``vknb.devices``,
``vknb.device().memory_stats()``, ``vknb.timings()``...

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
    ``devices`` (the device explorer), ``use N`` (index or name substring; ``vknb.use``),
    ``memory`` (the session device's heaps and vknb's blocks), ``timings [--last K] [--kernel
    NAME] [--plot]`` (per-kernel-version summary and the last K dispatch records, default 20;
    ``--plot`` draws :func:`vknb.ui.plots.plot_timings` of them), ``info`` (versions of vknb,
    the binding, the loader, the driver, the compiler; the cache directory), ``clear-cache``
    (``vknb.clear_cache()``).  ``devices``, ``memory`` and ``timings`` show the live HTML views
    of :mod:`vknb.widgets` (kept up to date while the kernel runs, readable in a saved
    notebook); ``--interactive`` shows their ipywidgets controls instead
    (``vknb.magics.use_widgets = True`` makes that the default).  ``--text`` prints the
    plain-text form (stable output for nbval).  ``%vknb`` alone, or ``%vknb help``, shows this
    help.

Usage errors
    With the extension loaded, the traceback of a usage error that vknb raises (a wrong
    argument: ``TypeError``, ``ValueError``, a ``VulkanError``) ends at your own frame, the
    call you wrote; an exception vknb did not mean to raise (a bug) keeps all its frames.
    ``%xmode --show`` shows every frame again (``%xmode --hide`` goes back), ``%debug`` always
    sees them, and ``vknb.magics.hide_internal_frames = False`` turns the cut off.

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
import dis
import keyword
import re
import sys
import types
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, kwds, magic_arguments, parse_argstring
from IPython.display import display as _show

from ..errors import ShaderCompileError, VulkanError
from . import display
from .display import environment_info
from .splice import Spliced, splice, splice_value

if TYPE_CHECKING:  # pragma: no cover
    from ..compute.kernel import Kernel
    from ..core.device import Device

__all__ = [
    "Spliced",
    "environment_info",
    "hide_internal_frames",
    "load_ipython_extension",
    "splice",
    "splice_value",
    "unload_ipython_extension",
    "use_widgets",
]

#: ``True``: ``%vknb devices|memory|timings`` show the ipywidgets controls (as ``--interactive``
#: does); ``None`` or ``False``: the live HTML views (``--text`` always means text).
use_widgets: bool | None = None

#: Cut the traceback of a vknb usage error (a ``TypeError``, ``ValueError`` or ``VulkanError``
#: that vknb raised on purpose) to the caller's own frames; ``%xmode --show`` shows them all.
hide_internal_frames: bool = True

# Devices built for ``%%glsl --device N`` when N is not the session device: one per index, kept
# for the session so that re-running such a cell does not create a logical device every time.
_extra_devices: dict[int, Device] = {}

_VERSION_LINE = re.compile(r"^[ \t]*#[ \t]*version\b", re.M)

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

  %vknb devices [--text|-i]     devices, their scores; the session device is marked
  %vknb use N                   make device N (index or name substring) the session device
  %vknb memory [--text|-i]      heaps of the session device and what vknb holds in them
  %vknb timings [--last K] [--kernel NAME] [--plot] [--text|-i]
                                per-kernel-version summary and the last K dispatches
                                (default 20); --plot: a timeline, GPU ms per dispatch, a
                                histogram per kernel, GPU time against host overhead
  %vknb info [--text]           versions (vknb, vulkan binding, loader, driver, compiler),
                                the cache directory
  %vknb clear-cache             delete the cached SPIR-V (vknb.clear_cache())
  %vknb [help]                  this help

devices, memory and timings are live HTML views: updated in place while the kernel runs,
and readable as they last were in a saved notebook.  --text prints plain text instead;
-i / --interactive shows ipywidgets controls (which do not survive a reopened notebook).
Everything here is plain Python too: vknb.devices(), vknb.use(n),
vknb.device().memory_stats(), vknb.timings(), vknb.widgets.MemoryMonitor(), vknb.clear_cache().
"""


# --- %%glsl helpers ---------------------------------------------------------------------------


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
        raise UsageError(f"{what}: cannot evaluate {text!r}: {type(e).__name__}: {e}") from None


def _unquote(s: str) -> str:
    """IPython splits magic lines without POSIX rules: ``"a b"`` keeps its quotes."""
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    return s


def _device_for(index: int) -> Device:
    """The session device if it is (or would be) physical device ``index``, else a kept one."""
    from ..core.device import Device
    from ..core.instance import devices, select_device_index
    from ..core.session import current_device, device

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


def _compile_options(args: Any, ns: dict[str, Any]) -> dict[str, Any]:
    """``vknb.compile``'s keyword arguments from the parsed ``%%glsl`` line."""
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
    return {
        "defines": defines,
        "constants": constants,
        "local_size": local_size,
        "device": None if args.device is None else _device_for(args.device),
        "include_dirs": tuple(_unquote(d) for d in args.include_dirs),
        "optimize": args.optimize,
    }


def _save(path: Path, source: str) -> None:
    text = source if _VERSION_LINE.search(source) else "#version 450\n" + source
    if not text.endswith("\n"):
        text += "\n"
    if path.is_dir():
        raise UsageError(
            f"--save {path}: that is a directory; give a file name (e.g. {path}/kernel.comp)"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as e:
        raise UsageError(
            f"--save {path}: cannot write the cell there ({e.strerror or e})"
        ) from None


def _cell_error(
    err: ShaderCompileError, spliced: Spliced, line: str, cell: str
) -> ShaderCompileError:
    """Rebuild a ShaderCompileError in the cell's own line numbers (line 1 = the magic line)."""
    from ..shader.compiler import format_diagnostics

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
    return ShaderCompileError(
        message, diagnostics=diags, source=source, command=err.command, name=err.name
    )


def _reissue_warnings(caught: list[warnings.WarningMessage], spliced: Spliced, name: str) -> None:
    """Warn again what the compiler warned, in the cell's own line numbers."""
    from ..shader.compiler import ShaderWarning

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
                stacklevel=4,
            )
        else:
            warnings.warn_explicit(msg, w.category, w.filename, w.lineno, source=w.source)


def _compile_cell(
    name: str, spliced: Spliced, line: str, cell: str, ns: dict[str, Any], options: dict[str, Any]
) -> Kernel:
    """``vknb.compile`` the spliced cell; on a compile error, show the cell's listing and raise
    the error in the cell's lines, with a one-line traceback (the listing is on screen)."""
    from ..compute.kernel import Kernel
    from ..compute.kernel import compile as compile_kernel

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            kernel = compile_kernel(spliced.text, name=name, **options)
    except ShaderCompileError as err:
        _reissue_warnings(caught, spliced, name)
        new = _cell_error(err, spliced, line, cell)
        # No local may refer to the previous kernel: the traceback (sys.last_traceback) keeps
        # this frame alive, and with it anything its locals refer to.
        kept = (
            f"`{name}` still holds the previous kernel"
            if isinstance(ns.get(name), Kernel)
            else f"`{name}` is not defined"
        )
        first = str(new).splitlines()[0]
        _show(
            display.Rendered(
                display.compile_error_html(new) + f"<div style='{display.MUTED}'>{kept}</div>",
                f"ShaderCompileError: {first}\n{display.compile_error_text(new)}\n({kept})",
            )
        )
        short = [f"ShaderCompileError: {first} ({kept}; the listing is above)"]
        new._render_traceback_ = lambda: short  # type: ignore[attr-defined]
        raise new from None
    _reissue_warnings(caught, spliced, name)
    return kernel


# --- %vknb helpers ----------------------------------------------------------------------------


def _emit(html: str, text: str, as_text: bool) -> None:
    if as_text:
        print(text)
    else:
        _show(display.Rendered(html, text))


# --- tracebacks of usage errors ------------------------------------------------------------------

_USAGE_ERRORS = (TypeError, ValueError, VulkanError)
_RAISE = dis.opmap["RAISE_VARARGS"]


def _is_vknb(frame: types.FrameType) -> bool:
    name = frame.f_globals.get("__name__", "")
    return isinstance(name, str) and (name == "vknb" or name.startswith("vknb."))


def usage_error_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """The traceback ``tb`` without the vknb frames at its end, where the exception is a usage
    error: vknb raised it on purpose (a ``raise`` statement in a vknb module, called from
    someone else's code).  None where it is not (an error vknb did not mean to raise: a bug,
    whose frames must show).  The traceback given is not changed.

    Example
    -------
    >>> try:
    ...     k(x)                                                 # doctest: +SKIP
    ... except TypeError as e:
    ...     short = usage_error_frames(e.__traceback__)          # doctest: +SKIP
    """
    entries = []
    t = tb
    while t is not None:
        entries.append(t)
        t = t.tb_next
    keep = len(entries)
    while keep > 0 and _is_vknb(entries[keep - 1].tb_frame):
        keep -= 1
    if keep == len(entries) or keep == 0:
        return None
    last = entries[-1]
    code = last.tb_frame.f_code.co_code
    if not 0 <= last.tb_lasti < len(code) or code[last.tb_lasti] != _RAISE:
        return None
    out: types.TracebackType | None = None
    for e in reversed(entries[:keep]):
        out = types.TracebackType(out, e.tb_frame, e.tb_lasti, e.tb_lineno)
    return out


def _show_usage_error(
    shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None
) -> None:
    """IPython's custom exception handler for :data:`_USAGE_ERRORS` (``%load_ext vknb``):
    the traceback ends at the caller's frame for a usage error, in full otherwise.

    IPython hides frames whose locals set ``__tracebackhide__``, but never the last one (where
    the exception was raised), so vknb cuts the tail instead.  ``%xmode --show`` (IPython's
    switch for hidden frames) shows every frame, and ``%debug`` always sees them all."""
    short = None
    if hide_internal_frames and getattr(shell.InteractiveTB, "skip_hidden", True):
        short = usage_error_frames(tb)
    shell.showtraceback((etype, value, short or tb), tb_offset=tb_offset)
    if short is not None:
        sys.last_traceback = tb  # %debug walks the whole stack


# --- the magics -------------------------------------------------------------------------------


@magics_class
class VknbMagics(Magics):
    """``%%glsl`` and ``%vknb`` (see :mod:`vknb.magics`)."""

    @no_var_expand
    @magic_arguments()
    @kwds(description=_GLSL_DOC)
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
        help='dispatch at once: NAME(ARGS) in the user namespace, e.g. --run "x, y, a=2.0, grid=n"',
    )
    @argument("--save", metavar="PATH", help="write the (spliced) cell to PATH (.comp)")
    @argument("--no-splice", action="store_true", help="no $NAME splicing in the cell")
    @argument("-h", "--help", action="store_true", help="show this help")
    @line_cell_magic
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
        spliced = Spliced.unchanged(cell) if args.no_splice else splice(cell, ns)
        for var, tname in {**line_sp.skipped, **spliced.skipped}.items():
            warnings.warn(
                f"%%glsl {name}: ${var} is a {tname}, not spliced (only str, int, "
                "float and bool values are; write $$ for a literal $)",
                UserWarning,
                stacklevel=2,
            )
        options = _compile_options(args, ns)
        if args.save:
            _save(Path(_unquote(args.save)).expanduser(), spliced.text)
        kernel = _compile_cell(name, spliced, line, cell, ns, options)
        ns[name] = kernel
        if not args.quiet:
            _show(display.Rendered(display.kernel_html(kernel), display.kernel_text(kernel)))
        if args.run:
            code = compile(
                f"__vknb_kernel__({_unquote(args.run)})", f"<%%glsl {name} --run>", "eval"
            )
            rec = eval(code, ns, {"__vknb_kernel__": kernel})
            if not args.quiet:
                _show(display.Rendered(display.dispatch_html(rec), display.dispatch_text(rec)))

    @magic_arguments()
    @kwds(description=_VKNB_DOC)
    @argument("command", nargs="?", help="one of: " + ", ".join(_VKNB_COMMANDS))
    @argument("value", nargs="?", help="the device for `use`")
    @argument("--last", type=int, metavar="K", help="timings: the last K dispatches")
    @argument("--kernel", metavar="NAME", help="timings: only this kernel's dispatches")
    @argument("--plot", action="store_true", help="timings: plot instead of a table")
    @argument("--text", action="store_true", help="plain text (no HTML)")
    @argument(
        "-i",
        "--interactive",
        action="store_true",
        help="devices, memory, timings: the ipywidgets controls instead of the live HTML view",
    )
    @argument("-h", "--help", action="store_true", help="show this help")
    @line_magic
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
        if args.interactive and cmd not in ("devices", "memory", "timings"):
            raise UsageError("--interactive applies to `%vknb devices|memory|timings` only")
        interactive = args.interactive or bool(use_widgets)
        getattr(self, "_cmd_" + cmd.replace("-", "_"))(args, interactive and not args.text)

    # One method per %vknb command: (parsed arguments, whether to show the ipywidgets).

    def _cmd_devices(self, args: Any, interactive: bool) -> None:
        if not args.text:
            from .widgets import DeviceExplorer

            _show(DeviceExplorer(interactive=interactive))
            return
        print(display.devices_text() + "\n" + display.session_text())

    def _cmd_use(self, args: Any, interactive: bool) -> None:
        if args.value is None:
            raise UsageError(
                "%vknb use N: give a device index or a name substring (see %vknb devices)"
            )
        from ..core.session import use

        v = args.value
        dev = use(int(v) if v.isdigit() else v)
        print(
            f"using device {dev.index}: {dev.info.name} ({dev.info.type}, score "
            f"{dev.info.score}); kernels move to it on their next call (except those "
            "built with --device N)"
        )

    def _cmd_memory(self, args: Any, interactive: bool) -> None:
        if not args.text:
            from .widgets import MemoryMonitor

            _show(MemoryMonitor(interactive=interactive))
            return
        from ..core.session import device

        print(display.memory_text(device()))

    def _cmd_timings(self, args: Any, interactive: bool) -> None:
        from ..compute.timing import timings

        last = 20 if args.last is None else args.last
        if last < 0:
            raise UsageError(f"--last takes K >= 0, got {last}")
        if args.plot:
            from .plots import plot_timings

            _show(plot_timings(kind="all", kernel=args.kernel, last=args.last))
        elif not args.text and last > 0:
            from .widgets import TimingsView

            _show(TimingsView(args.kernel, last=last, interactive=interactive))
        else:
            everything = timings(kernel=args.kernel)
            records = everything[-last:] if last else []
            print(display.timings_report_text(records, len(everything)))

    def _cmd_info(self, args: Any, interactive: bool) -> None:
        info = environment_info()
        _emit(display.info_html(info), display.info_text(info), args.text)

    def _cmd_clear_cache(self, args: Any, interactive: bool) -> None:
        from ..shader.compiler import cache_dir, clear_cache

        n = clear_cache()
        where = cache_dir() / "spirv"
        print(f"removed {n} cached SPIR-V entr{'y' if n == 1 else 'ies'} from {where}")


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%%glsl``, ``%vknb`` and vknb's display formatters (``%load_ext vknb``);
    nothing else happens.

    Example
    -------
    >>> get_ipython().run_line_magic("load_ext", "vknb")     # doctest: +SKIP
    """
    ipython.register_magics(VknbMagics)
    display.register_formatters(ipython)
    # Usage errors end at the caller's frame; another handler already installed is kept.
    if not getattr(ipython, "custom_exceptions", None) and hasattr(ipython, "set_custom_exc"):
        ipython.set_custom_exc(_USAGE_ERRORS, _show_usage_error)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove ``%%glsl``, ``%vknb`` and the formatters (``%unload_ext vknb``); kernels already
    bound stay.

    Example
    -------
    >>> get_ipython().run_line_magic("unload_ext", "vknb")   # doctest: +SKIP
    """
    table = ipython.magics_manager.magics
    for kind, name in (("cell", "glsl"), ("line", "vknb")):
        fn = table[kind].get(name)
        if isinstance(getattr(fn, "__self__", None), VknbMagics):
            del table[kind][name]
    ipython.magics_manager.registry.pop(VknbMagics.__name__, None)
    display.unregister_formatters(ipython)
    if getattr(ipython, "custom_exceptions", None) == _USAGE_ERRORS:
        ipython.set_custom_exc((), None)
