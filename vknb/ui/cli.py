"""Command line: ``vknb devices``, ``vknb info``, ``vknb compile``, ``vknb reflect``.

Also ``python -m vknb ...``.  ``vknb info`` prints :func:`vknb.display.environment_info`, the
table ``%vknb info`` shows.

Example
-------
$ vknb devices
idx  name                   type      vendor  driver  api      device-local  score (type+mem)
*0   NVIDIA H100 80GB HBM3  discrete  NVIDIA  NVIDIA  1.4.312  79.6 GiB      1079 (1000+79)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import ShaderCompileError, VulkanError


def _devices(args: argparse.Namespace) -> int:
    from ..core.instance import devices, select_device_index
    from .display import devices_text

    infos = devices()
    if args.json:
        print(json.dumps([d.to_dict() for d in infos], indent=2, default=str))
        return 0
    index, reason = select_device_index(infos)
    print(devices_text(infos, current=index))
    print(f"\nsession device: {index} ({infos[index].name}): {reason}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from .display import environment_info, info_text

    print(info_text(environment_info()))
    return 0


def _compile(args: argparse.Namespace) -> int:
    from ..shader.compiler import compile_glsl

    src = Path(args.source).read_text()
    defines = dict(d.split("=", 1) if "=" in d else (d, None) for d in args.define or [])
    try:
        spv = compile_glsl(
            src, defines=defines, name=Path(args.source).stem, optimize=args.optimize
        )
    except ShaderCompileError as e:
        print(e, file=sys.stderr)
        return 1
    out = Path(args.output or Path(args.source).with_suffix(".spv"))
    out.write_bytes(spv)
    print(f"wrote {out} ({len(spv)} bytes)")
    return 0


def _reflect(args: argparse.Namespace) -> int:
    from ..shader.compiler import compile_glsl
    from ..shader.spirv import reflect

    path = Path(args.file)
    data = path.read_bytes()
    if not data.startswith(b"\x03\x02\x23\x07") and not data.startswith(b"\x07\x23\x02\x03"):
        data = compile_glsl(data.decode(), name=path.stem, optimize=False)
    print(json.dumps(reflect(data).to_dict(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vknb`` command.

    Example
    -------
    >>> main(["devices"])                                    # doctest: +SKIP
    """
    p = argparse.ArgumentParser(prog="vknb", description="Vulkan compute from Python and Jupyter")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("devices", help="list Vulkan devices with their scores")
    d.add_argument("--json", action="store_true", help="everything vknb knows, as JSON")
    d.set_defaults(fn=_devices)
    i = sub.add_parser("info", help="versions, compiler, cache directory, drivers")
    i.set_defaults(fn=_info)
    c = sub.add_parser("compile", help="compile a GLSL compute shader to SPIR-V")
    c.add_argument("source")
    c.add_argument("-o", "--output")
    c.add_argument("-D", "--define", action="append", help="NAME[=VALUE]")
    c.add_argument(
        "-O",
        "--optimize",
        action="store_true",
        help="run spirv-opt (strips the names that reflection shows)",
    )
    c.set_defaults(fn=_compile)
    r = sub.add_parser("reflect", help="print the reflected interface of a .comp or .spv file")
    r.add_argument("file")
    r.set_defaults(fn=_reflect)
    args = p.parse_args(argv)
    try:
        return int(args.fn(args))
    except Exception as e:  # a terminal user gets the message, not a traceback
        if isinstance(e, (VulkanError, OSError)):
            print(f"vknb: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
