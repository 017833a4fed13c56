"""The main job: run the quickstart notebook headless on the session device.

Writes the executed notebook as HTML under build/, then prints the device table and the
dispatch timings that the notebook recorded.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "01_quickstart.ipynb"


def main() -> int:
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    import vknb
    from vknb import display

    print("vknb", vknb.__version__)
    print("\nDevices (* = session device):")
    dev = vknb.device()
    print(display.devices_text())
    print(f"session device: {dev.info.name} — {dev.reason}\n")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    t0 = time.perf_counter()
    print(f"executing {NOTEBOOK.relative_to(ROOT)} ...")
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    print(f"executed in {time.perf_counter() - t0:.1f} s")
    out_dir = ROOT / "build"
    out_dir.mkdir(exist_ok=True)
    body, _ = HTMLExporter().from_notebook_node(nb)
    html_path = out_dir / "01_quickstart.html"
    html_path.write_text(body, encoding="utf-8")
    print(f"wrote {html_path.relative_to(ROOT)}")

    # The notebook's `%vknb timings --text` cell holds this run's dispatch timings.
    shown = False
    for cell in nb.cells:
        if cell.cell_type == "code" and "%vknb timings" in cell.source:
            for out in cell.get("outputs", []):
                text = out.get("text") or out.get("data", {}).get("text/plain", "")
                if text:
                    print("\nDispatch timings recorded by the notebook:")
                    print(text if isinstance(text, str) else "".join(text))
                    shown = True
    if not shown:
        print("(the notebook printed no timings table)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
