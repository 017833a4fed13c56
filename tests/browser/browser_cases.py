"""The notebooks of the browser tests, written into each server's temporary root."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness import write_notebook

ROOT = Path(__file__).resolve().parents[2]

SCALE = """%%glsl scale
layout(local_size_x = 64) in;
layout(binding = 0) buffer Y { float y[]; };
layout(push_constant) uniform P { float s; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < y.length()) y[i] *= s;
}"""

#: views.ipynb: the three views, then what Python says they should show.
VIEWS = [
    "%load_ext vknb\nimport json\nimport numpy as np\nimport vknb",
    SCALE,
    "y = np.ones(4096, np.float32)\nfor _ in range(7):\n    scale(y, s=0.5, grid=y.size)\n"
    "print(bool(np.allclose(y, 0.5**7)))",
    "%vknb devices",
    "%vknb memory",
    "%vknb timings",
    "counts = {}\nfor r in vknb.timings():\n    counts[r.kernel] = counts.get(r.kernel, 0) + 1\n"
    "print('PYVALUES=' + json.dumps({'timings': counts, "
    "'devices': [d.name for d in vknb.devices()], 'session': vknb.device().info.name}))",
]
VIEW_CELLS = {"devices": 3, "memory": 4, "timings": 5}
VALUES_CELL = 6

BROKEN_LINE = "    y[gl_GlobalInvocationID.x] = undeclared_scale * 2.0;"
#: compile_error.ipynb: the listing of a failing %%glsl cell; Run All stops there.
COMPILE_ERROR = [
    "%load_ext vknb",
    "%%glsl broken\nlayout(local_size_x = 64) in;\nlayout(binding = 0) buffer Y { float y[]; };\n"
    "void main() {\n" + BROKEN_LINE + "\n}",
    "print('not reached')",
]

#: highlight.ipynb: GLSL keywords in a %%glsl cell, the same words as Python names.
HIGHLIGHT = [
    SCALE,
    "# a Python cell: the same words are plain names here\nlayout = uniform = void = 1\n"
    "def f():\n    return layout + uniform + void",
]


#: interactive.ipynb: the opt-in ipywidgets controls, live in the page.
INTERACTIVE = [
    "%load_ext vknb\nimport numpy as np",
    SCALE,
    "y = np.ones(4096, np.float32)\nfor _ in range(3):\n    scale(y, s=0.5, grid=y.size)",
    "%vknb timings --interactive",
]


def make_workdir(base: Path) -> Path:
    """``base/notebooks`` with the quickstart and the purpose-made notebooks."""
    root = base / "notebooks"
    root.mkdir(parents=True)
    shutil.copy2(ROOT / "notebooks" / "01_quickstart.ipynb", root)
    write_notebook(root / "views.ipynb", VIEWS)
    write_notebook(root / "compile_error.ipynb", COMPILE_ERROR)
    write_notebook(root / "highlight.ipynb", HIGHLIGHT)
    write_notebook(root / "interactive.ipynb", INTERACTIVE)
    return root
