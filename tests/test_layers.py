"""The package's layers, enforced on its source (``ast``; nothing is imported).

Layers, low to high; a module imports only from its own layer (modules before it in the
layer's order) and from the layers its layer is allowed to see, never upward: not lazily
inside a function, not under ``if TYPE_CHECKING:``.  docs/architecture.md draws the arrows.

=========  ===============================================  ==================================
layer      modules, in order                                may import
=========  ===============================================  ==================================
base       errors, config                                   (nothing of vknb)
vk         _vk.constants, _vk (the binding)                 base
shader     shader.spirv, shader.compiler                    base (no Vulkan in the shader layer)
core       core.instance ... core.pipeline                  base, vk (not shader)
compute    compute.timing ... compute.kernel                base, vk, shader, core
library    library                                          everything below it
dask       dask.blocks ... dask.cluster                     everything below it
ui         ui.splice ... ui.cli                             everything below it
top        vknb/__init__.py, vknb/__main__.py               anything
=========  ===============================================  ==================================

:data:`ARROWS` are the diagram's arrows; a layer may import the layers it reaches along them.

A new module must be placed in :data:`LAYERS` (the test says so).  Nothing below ``top`` may
import ``vknb`` itself (``import vknb``, ``from vknb import Kernel``): that is an arrow to the
top.  The short public aliases (``vknb.display``, ``vknb.compiler``; see ``_PUBLIC_MODULES`` in
vknb/__init__.py) resolve to the modules they name.

Also here: no module reads another module's private state, and ``import vknb`` stays cheap.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PKG = REPO / "vknb"

# layer -> its modules, in the order in which they may import each other (a module imports only
# modules listed before it).  A layer that is a package ends with the package itself (its
# __init__), which may import the whole layer.  Listed modules need not exist yet.
LAYERS: dict[str, list[str]] = {
    "base": ["vknb.errors", "vknb.config"],
    "vk": ["vknb._vk.constants", "vknb._vk.interrupts", "vknb._vk.finalizer", "vknb._vk"],
    "shader": ["vknb.shader.spirv", "vknb.shader.compiler", "vknb.shader"],
    "core": [
        "vknb.core.instance",
        "vknb.core.memory",
        "vknb.core.device",
        "vknb.core.session",
        "vknb.core.hostimport",
        "vknb.core.buffer",
        "vknb.core.array",
        "vknb.core.image",
        "vknb.core.commands",
        "vknb.core.pipeline",
        "vknb.core",
    ],
    "compute": [
        "vknb.compute.timing",
        "vknb.compute.args",
        "vknb.compute.bind",
        "vknb.compute.batch",
        "vknb.compute.kernel",
        "vknb.compute",
    ],
    "library": ["vknb.library._radix", "vknb.library._scan_reduce", "vknb.library"],
    "dask": ["vknb.dask.blocks", "vknb.dask.workers", "vknb.dask.cluster", "vknb.dask"],
    "ui": [
        "vknb.ui.splice",
        "vknb.ui.plots",
        "vknb.ui.display",
        "vknb.ui.widgets",
        "vknb.ui.magics",
        "vknb.ui.cli",
        "vknb.ui",
    ],
    "top": ["vknb", "vknb.__main__"],
}
# The arrows of the diagram in docs/architecture.md (checked against it below).
ARROWS = {
    ("top", "ui"),
    ("ui", "dask"),
    ("ui", "library"),
    ("dask", "library"),
    ("library", "compute"),
    ("compute", "core"),
    ("compute", "shader"),
    ("core", "vk"),
    ("core", "base"),
    ("shader", "base"),
    ("vk", "base"),
}


def _reach(layer: str) -> set[str]:
    seen: set[str] = set()
    todo = [b for a, b in ARROWS if a == layer]
    while todo:
        nxt = todo.pop()
        if nxt not in seen:
            seen.add(nxt)
            todo.extend(b for a, b in ARROWS if a == nxt)
    return seen


MAY_IMPORT: dict[str, set[str]] = {layer: _reach(layer) for layer in LAYERS}
LAYER_OF = {m: layer for layer, mods in LAYERS.items() for m in mods}


# Each layer's package: a module found under one that LAYERS does not list yet is in its layer.
PACKAGE_LAYER = {
    "vknb._vk": "vk",
    "vknb.shader": "shader",
    "vknb.core": "core",
    "vknb.compute": "compute",
    "vknb.library": "library",
    "vknb.dask": "dask",
    "vknb.ui": "ui",
}


def layer_of(name: str) -> str | None:
    """Where LAYERS lists the module, else its package's layer (None: no layer)."""
    if name in LAYER_OF:
        return LAYER_OF[name]
    parent = name.rpartition(".")[0]
    while parent and parent != "vknb":
        if parent in PACKAGE_LAYER:
            return PACKAGE_LAYER[parent]
        parent = parent.rpartition(".")[0]
    return None


# --- reading the package --------------------------------------------------------------------


@dataclass(frozen=True)
class Module:
    name: str  # dotted
    path: Path
    is_package: bool
    tree: ast.Module

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]


def _modules() -> dict[str, Module]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        out[name] = Module(name, path, is_package, tree)
    return out


MODULES = _modules()


def _aliases() -> dict[str, str]:
    """``vknb.<alias>`` -> the module it names, from the dicts of that name in vknb/__init__.py."""
    out: dict[str, str] = {}
    for node in MODULES["vknb"].tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in ("_PUBLIC_MODULES", "_DEPRECATED_MODULES")
        ):
            for alias, target in ast.literal_eval(node.value).items():
                if alias != target:
                    out[f"vknb.{alias}"] = f"vknb.{target}"
    return out


ALIASES = _aliases()
KNOWN = set(MODULES) | set(LAYER_OF)


def _canonical(name: str) -> str:
    for alias, target in ALIASES.items():
        if name == alias or name.startswith(alias + "."):
            return target + name[len(alias) :]
    return name


def _is_module(name: str) -> bool:
    return _canonical(name) in KNOWN


@dataclass(frozen=True)
class Arrow:
    src: str
    dst: str
    line: int
    names: tuple[str, ...]  # for ``from X import a, b``: what was imported from a module X
    context: str  # "", "lazy" (inside a function) or "TYPE_CHECKING"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_with_context(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    """Every node, with "TYPE_CHECKING" / "lazy" / "" for where it sits."""
    out: list[tuple[ast.AST, str]] = []

    def visit(node: ast.AST, ctx: str) -> None:
        out.append((node, ctx))
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            visit(node.test, ctx)
            for child in node.body:
                visit(child, "TYPE_CHECKING")
            for child in node.orelse:
                visit(child, ctx)
            return
        inner = "lazy" if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else ctx
        if ctx == "TYPE_CHECKING":
            inner = ctx
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, "")
    return out


def _resolve_from(mod: Module, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.package.split(".")
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def arrows(mod: Module) -> list[Arrow]:
    """Every import of a vknb module that ``mod`` makes, anywhere in the file."""
    out = []
    for node, ctx in _walk_with_context(mod.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "vknb":
                    out.append(Arrow(mod.name, _canonical(alias.name), node.lineno, (), ctx))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(mod, node)
            if base.split(".")[0] != "vknb":
                continue
            plain = []
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if alias.name != "*" and _is_module(sub):
                    out.append(Arrow(mod.name, _canonical(sub), node.lineno, (), ctx))
                else:
                    plain.append(alias.name)
            if plain:
                out.append(Arrow(mod.name, _canonical(base), node.lineno, tuple(plain), ctx))
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (
                    isinstance(node.func, ast.Name)
                    and node.func.id in ("import_module", "__import__")
                )
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and node.args[0].value.split(".")[0] == "vknb"
        ):
            out.append(Arrow(mod.name, _canonical(node.args[0].value), node.lineno, (), ctx))
    return out


# --- 1. the layers --------------------------------------------------------------------------


def _short(name: str) -> str:
    return name.rpartition(".")[2] if name.count(".") > 1 else name


def layer_violations() -> list[str]:
    problems = []
    for name in sorted(MODULES):
        if name in LAYER_OF:
            continue
        where = f"{name} ({MODULES[name].path.relative_to(REPO)})"
        layer = layer_of(name)
        if layer:
            problems.append(
                f"{where} is new in layer {layer}: place it in LAYERS[{layer!r}] in "
                "tests/test_layers.py, in the order its imports allow (and in "
                "docs/architecture.md)"
            )
        else:
            problems.append(
                f"{where} is in no layer: add it to LAYERS in tests/test_layers.py (and to "
                "docs/architecture.md)"
            )
    for name in sorted(MODULES):
        src_layer = layer_of(name)
        if src_layer is None or src_layer == "top":
            continue
        for a in sorted(arrows(MODULES[name]), key=lambda a: (a.line, a.dst)):
            if a.dst == a.src:
                continue
            where = f"line {a.line}" + (f", {a.context}" if a.context else "")
            arrow = f"{a.src} -> {a.dst} ({where})"
            if a.names and a.dst == "vknb":
                arrow += f" importing {', '.join(a.names)}"
            dst_layer = layer_of(a.dst)
            if dst_layer is None:
                if a.dst not in MODULES:
                    problems.append(f"{arrow}: no such module")
            elif dst_layer == src_layer:
                order = LAYERS[src_layer]
                if a.src in order and a.dst in order and order.index(a.dst) > order.index(a.src):
                    problems.append(
                        f"{arrow}: in layer {src_layer}, {_short(a.src)} comes before "
                        f"{_short(a.dst)} ({' < '.join(_short(m) for m in order)})"
                    )
            elif dst_layer not in MAY_IMPORT[src_layer]:
                allowed = ", ".join(sorted(MAY_IMPORT[src_layer])) or "nothing of vknb"
                problems.append(
                    f"{arrow}: layer {src_layer} may not import layer {dst_layer} "
                    f"(it may import: {allowed})"
                )
    return problems


def test_every_import_follows_the_layers() -> None:
    problems = layer_violations()
    assert not problems, (
        f"{len(problems)} import(s) break the layers (see tests/test_layers.py and "
        "docs/architecture.md):\n  " + "\n  ".join(problems)
    )


def test_the_layer_table_is_consistent() -> None:
    """Every layer's package exists; the listed order names each module once."""
    listed = [m for mods in LAYERS.values() for m in mods]
    assert len(listed) == len(set(listed))
    for pkg, layer in PACKAGE_LAYER.items():
        assert pkg in MODULES and MODULES[pkg].is_package, pkg
        assert LAYERS[layer][-1] == pkg, f"{pkg} must come last in its layer's order"
    for layer, allowed in MAY_IMPORT.items():
        assert layer not in allowed and allowed <= set(LAYERS), layer
    assert MAY_IMPORT["top"] == set(LAYERS) - {"top"}
    assert MAY_IMPORT["shader"] == {"base"} and MAY_IMPORT["core"] == {"base", "vk"}


def test_the_architecture_page_draws_these_arrows() -> None:
    """docs/architecture.md's mermaid diagram has exactly :data:`ARROWS`."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = text.split("```mermaid", 1)[1].split("```", 1)[0]
    drawn = set(re.findall(r"^\s*(\w+)\s*-->\s*(\w+)\s*$", block, re.MULTILINE))
    assert drawn == ARROWS, (
        f"the diagram in docs/architecture.md and ARROWS in tests/test_layers.py differ: "
        f"only drawn {sorted(drawn - ARROWS)}, only in the test {sorted(ARROWS - drawn)}"
    )


# --- 2. no module reads another module's private state ------------------------------------


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


# Private-looking names that are public APIs of Python or of a library vknb uses, wherever they
# are read (the receiver is rarely resolvable statically).  Each with why.
ALLOWED_ATTRS = {
    # Python
    "_getframe": "sys._getframe: documented CPython API",
    "_exit": "os._exit: documented API (exit without cleanup, e.g. in a forked child)",
    "_current_frames": "sys._current_frames: documented CPython API",
    "_asdict": "namedtuple API (the underscore avoids clashes with field names)",
    "_replace": "namedtuple API",
    "_fields": "namedtuple API",
    "_make": "namedtuple API",
    "_field_defaults": "namedtuple API",
    "_name_": "enum API (Enum._name_)",
    "_value_": "enum API (Enum._value_)",
    "_member_names_": "enum API",
    "_member_map_": "enum API",
    # IPython / Jupyter display protocol: methods IPython calls on any object
    "_repr_html_": "IPython display protocol",
    "_repr_png_": "IPython display protocol",
    "_repr_svg_": "IPython display protocol",
    "_repr_jpeg_": "IPython display protocol",
    "_repr_markdown_": "IPython display protocol",
    "_repr_latex_": "IPython display protocol",
    "_repr_json_": "IPython display protocol",
    "_repr_pretty_": "IPython pretty-printer protocol",
    "_repr_mimebundle_": "IPython display protocol",
    "_ipython_display_": "IPython display protocol",
    "_ipython_key_completions_": "IPython completion protocol",
}
# Private names read from a module of a library, by the library's own (documented) API.
ALLOWED_MODULES = {
    "numpy": "numpy's underscore names (np._NoValue, np.core._...) are its public escape hatches",
    "cffi": "cffi's documented API has underscores (ffi._backend...)",
    "_cffi_backend": "cffi's backend module",
    "sys": "sys._getframe & co. are documented",
    "os": "os._exit is documented",
}


def _imported_names(mod: Module) -> dict[str, str]:
    """Local name -> the non-vknb module it is bound to (``np`` -> ``numpy``)."""
    out = {}
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] != "vknb":
                    out[a.asname or a.name.split(".")[0]] = (
                        a.name if a.asname else a.name.split(".")[0]
                    )
    return out


def _defined_names(mod: Module) -> set[str]:
    """Names ``mod`` itself defines: attributes it assigns, class-body names, ``__slots__``
    entries, module-level names (and names declared ``global``)."""
    names: set[str] = set()
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.attr)
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                names |= _bound_by(stmt)
                if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                    if any(isinstance(t, ast.Name) and t.id == "__slots__" for t in targets):
                        for c in ast.walk(stmt.value) if stmt.value else ():
                            if isinstance(c, ast.Constant) and isinstance(c.value, str):
                                names.add(c.value)
        elif isinstance(node, ast.Global):
            names.update(node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "setattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            names.add(node.args[1].value)
    # module level, including inside if/try/with/for blocks but not inside defs or classes
    stack: list[ast.AST] = list(mod.tree.body)
    while stack:
        stmt = stack.pop()
        names |= _bound_by(stmt)
        if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stack.extend(c for c in ast.iter_child_nodes(stmt) if isinstance(c, ast.stmt))
    return names


def _bound_by(stmt: ast.AST) -> set[str]:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in stmt.names}
    targets: list[ast.AST] = []
    if isinstance(stmt, ast.Assign):
        targets = list(stmt.targets)
    elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
        targets = [stmt.target]
    elif isinstance(stmt, (ast.With, ast.AsyncWith)):
        targets = [i.optional_vars for i in stmt.items if i.optional_vars is not None]
    out = set()
    for t in targets:
        for n in ast.walk(t):
            if isinstance(n, ast.Name):
                out.add(n.id)
    return out


def _root_name(expr: ast.expr) -> str | None:
    while isinstance(expr, ast.Attribute):
        expr = expr.value
    return expr.id if isinstance(expr, ast.Name) else None


def private_state_violations() -> list[str]:
    problems: list[tuple[str, int, str]] = []
    for name in sorted(MODULES):
        mod = MODULES[name]
        own = _defined_names(mod)
        libs = _imported_names(mod)
        rel = mod.path.relative_to(REPO)
        for node in ast.walk(mod.tree):
            # (a) from <another vknb module> import _private
            if isinstance(node, ast.ImportFrom):
                base = _canonical(_resolve_from(mod, node))
                if base.split(".")[0] != "vknb" or base == name:
                    continue
                for a in node.names:
                    if _private(a.name) and not _is_module(f"{base}.{a.name}"):
                        problems.append(
                            (
                                name,
                                node.lineno,
                                f"{name} imports private {base}.{a.name} ({rel}:{node.lineno})",
                            )
                        )
                continue
            # (b) obj._attr, where _attr is not this module's own
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                attr, recv = node.attr, node.value
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
            ):
                attr, recv = node.args[1].value, node.args[0]
            else:
                continue
            if not _private(attr) or attr in own or attr in ALLOWED_ATTRS:
                continue
            if isinstance(recv, ast.Name) and recv.id in ("self", "cls"):
                continue
            root = _root_name(recv)
            if root in libs and libs[root].split(".")[0] in ALLOWED_MODULES:
                continue
            problems.append(
                (
                    name,
                    node.lineno,
                    f"{name} reads {ast.unparse(recv)}.{attr} ({rel}:{node.lineno}): "
                    f"{attr} is not defined in {name}",
                )
            )
    return [text for _, _, text in sorted(set(problems))]


def test_no_module_reads_another_modules_private_state() -> None:
    problems = private_state_violations()
    assert not problems, (
        f"{len(problems)} read(s) of another module's private names (make the name public, "
        "or give its owner a method that does the job):\n  " + "\n  ".join(problems)
    )


# --- 3. import vknb is cheap ----------------------------------------------------------------

# Nothing heavy, and nothing that loads the Vulkan loader, may be imported by ``import vknb``.
HEAVY = ("vulkan", "cffi", "_cffi_backend", "IPython", "ipywidgets", "matplotlib", "traitlets")


def test_import_vknb_is_cheap() -> None:
    code = (
        "import json, sys; before = set(sys.modules); import vknb; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert p.returncode == 0, p.stderr
    loaded = json.loads(p.stdout.strip().splitlines()[-1])
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, f"`import vknb` imports {heavy}: import them where they are first needed"
    ours = sorted(m for m in loaded if m.split(".")[0] == "vknb")
    base = {"vknb", *LAYERS["base"]}
    assert set(ours) <= base, (
        f"`import vknb` imports {sorted(set(ours) - base)}: only the base layer "
        f"({', '.join(LAYERS['base'])}) may load with the package; the rest loads lazily"
    )
