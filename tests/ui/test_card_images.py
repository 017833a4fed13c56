"""The kernel card of images, samplers and texel buffers, and of bindings no call can fill.

Every image kind of ``tests/shader/spirv_corpus/images.comp`` shows its kind in words, its
dimensionality and layers, its format and the numpy shape and dtype it takes, in the text and the
HTML card alike; a binding that no kernel call can fill (an acceleration structure, a
multisampled image, a packed format) adds a "cannot be called" line.  Cards of kernels with
buffers only are unchanged (the notebooks compare them too).  The memory views count live images.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pytest

import vknb
from vknb import display

CORPUS = Path(__file__).resolve().parent.parent / "shader" / "spirv_corpus"

SAMPLED_FLOAT = "float32/float16/uint8/uint16/int8/int16"

# images.comp: name -> (kind in words, access, element cell)
IMAGES = {
    "src_img": ("storage image", "readonly", "2D rgba8 → (H, W, 4) uint8"),
    "dst_img": ("storage image", "writeonly", "2D rgba16f → (H, W, 4) float16"),
    "volume": ("storage image", "read/write", "3D r32ui → (D, H, W) uint32"),
    "combined": ("sampled image + sampler", "readonly", f"2D → (H, W[, C]) {SAMPLED_FLOAT}"),
    "separate_tex": ("sampled image", "readonly", f"2D → (H, W[, C]) {SAMPLED_FLOAT}"),
    "separate_smp": ("sampler", "readonly", "vknb.Sampler"),
    "uniform_texels": ("uniform texel buffer", "readonly", f"(N[, C]) {SAMPLED_FLOAT}"),
    "storage_texels": ("storage texel buffer", "read/write", "r32f → (N,) float32"),
    "plain_texels": ("uniform texel buffer", "readonly", f"(N[, C]) {SAMPLED_FLOAT}"),
    "layers": ("storage image", "read/write", "2D array r32i → (L, H, W) int32"),
}

# The theme-safe colours display.py uses: the card may use these and no others (muted text is
# the theme's own colour at a lower opacity).
KNOWN_COLORS = {display.ERROR_COLOR, display.WARNING_COLOR, display.OK_COLOR}


def _compile(src: str, name: str) -> vknb.Kernel:
    return vknb.compile(src, name=name)


def _cells(row: list[str]) -> str:
    return "".join(
        f"<td style='text-align:left;white-space:nowrap'>{html.escape(c)}</td>" for c in row
    )


def _row_of(text: str, name: str) -> str:
    lines = [ln for ln in text.splitlines() if re.match(rf"^0\s+\d+\s+{re.escape(name)}\s", ln)]
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture(scope="module")
def images(dev: vknb.Device) -> vknb.Kernel:
    return _compile((CORPUS / "images.comp").read_text(), "images")


def test_every_image_kind_on_the_card(images: vknb.Kernel) -> None:
    text = display.kernel_text(images)
    page = display.kernel_html(images)
    s = display.kernel_summary(images)
    assert len(s["bindings"]) == len(IMAGES) == len(s["resources"])
    assert s["cannot_call"] == [] and "cannot be called" not in text + page
    for b in images.reflection.bindings:
        kind, access, element = IMAGES[b.name]
        row = [str(b.set), str(b.binding), b.name, kind, access, element]
        assert row in s["bindings"]
        assert re.split(r"\s{2,}", _row_of(text, b.name)) == row
        assert f"<tr>{_cells(row)}</tr>" in page


def test_resources_as_plain_data(images: vknb.Kernel) -> None:
    by_name = {r["names"][0]: r for r in display.kernel_summary(images)["resources"]}
    src = by_name["src_img"]
    assert (src["kind"], src["dims"], src["format"], src["shape"], src["dtype"]) == (
        "storage_image",
        "2D",
        "rgba8",
        "(H, W, 4)",
        "uint8",
    )
    layers = by_name["layers"]
    assert (layers["dims"], layers["format"], layers["shape"], layers["dtype"]) == (
        "2D array",
        "r32i",
        "(L, H, W)",
        "int32",
    )
    assert by_name["combined"]["format"] is None  # sampled images take the array's format
    assert by_name["storage_texels"]["shape"] == "(N,)"
    assert by_name["separate_smp"]["dtype"] == "vknb.Sampler"
    assert all(r["cannot"] is None and r["count"] == 1 for r in by_name.values())


def test_notes_default_sampler_and_normalized_formats(images: vknb.Kernel) -> None:
    text = display.kernel_text(images)
    page = display.kernel_html(images)
    sampler = "combined: default sampler: linear, clamp to edge"
    unorm = "src_img: rgba8 holds uint8, which the shader reads as floats in [0, 1]"
    for line in (sampler, unorm):
        assert line in text
        assert html.escape(line) in page
    assert "separate_tex: default sampler" not in text  # no sampler of its own


def test_arrays_aliases_dims_and_integer_samplers(dev: vknb.Device) -> None:
    k = _compile(
        """#version 450
layout(local_size_x = 1) in;
layout(binding = 0, rgba32f) uniform image2D imgs[4];
layout(binding = 1) uniform isampler2DArray ci;
layout(binding = 2) uniform samplerCube cube;
layout(binding = 3) uniform texture2D a;
layout(binding = 3) uniform texture2D b;
layout(binding = 4) uniform sampler s;
layout(binding = 5, rg16) uniform readonly image1D one;
layout(binding = 6) writeonly uniform image2D nofmt;
layout(binding = 7) uniform usampler3D vol;
void main() {
    vec4 v = imageLoad(imgs[0], ivec2(0)) + texture(ci, vec3(0)) + texture(cube, vec3(1))
        + texture(sampler2D(a, s), vec2(0)) + texture(sampler2D(b, s), vec2(0))
        + imageLoad(one, 0) + texture(vol, vec3(0));
    imageStore(imgs[1], ivec2(0), v);
    imageStore(nofmt, ivec2(0), v);
}""",
        "mixed",
    )
    text = display.kernel_text(k)
    rows = {r[2]: r[3:] for r in display.kernel_summary(k)["bindings"]}
    assert rows["imgs[4]"] == ["storage image", "read/write", "2D rgba32f → (H, W, 4) float32"]
    assert rows["ci"] == [
        "sampled image + sampler",
        "readonly",
        "2D array → (L, H, W[, C]) int8/int16/int32",
    ]
    assert rows["cube"][2] == f"cube → (6, H, W[, C]) {SAMPLED_FLOAT}"
    assert rows["a / b"] == ["sampled image", "readonly", f"2D → (H, W[, C]) {SAMPLED_FLOAT}"]
    assert rows["one"] == ["storage image", "readonly", "1D rg16 → (W, 2) uint16"]
    assert rows["nofmt"] == [
        "storage image",
        "writeonly",
        "2D, format from the array → (H, W[, C]) float32/float16",
    ]
    assert rows["vol"][2] == "3D → (D, H, W[, C]) uint8/uint16/uint32"
    assert "ci: default sampler: linear, clamp to edge" in text
    assert "integer formats need filter='nearest'" in text
    assert "one: rg16 holds uint16, which the shader reads as floats in [0, 1]" in text
    assert "cannot be called" not in text


def _assert_marked(k: vknb.Kernel, name: str, what: str) -> None:
    line = (
        f"cannot be called: binding {name!r} (set=0, binding=0) is {what}, which a kernel call "
        "cannot fill"
    )
    text = display.kernel_text(k)
    page = display.kernel_html(k)
    assert line in text, text
    assert (
        f"<b style='color:{display.ERROR_COLOR}'>cannot be called</b>: "
        + html.escape(line.split(": ", 1)[1])
        in page
    )
    assert "(cannot be filled)" in _row_of(text, name)
    assert [r["cannot"] for r in display.kernel_summary(k)["resources"] if name in r["names"]] == [
        what
    ]


def test_acceleration_structure_is_refused_before_the_driver(dev: vknb.Device) -> None:
    """vknb creates no device with VK_KHR_acceleration_structure: a kernel with a ray-query
    binding is refused by name before any invalid layout reaches the driver (validation on)."""
    assert "VK_KHR_acceleration_structure" not in dev.extensions
    with pytest.raises(vknb.PipelineCreationFailed, match=r"binding 0 \(set 0\) is an accel"):
        _compile((CORPUS / "ray_query.comp").read_text(), "rq")
    k = _compile("layout(local_size_x = 1) in; void main() {}", "after_rq")  # still usable
    k(grid=1)


def test_multisampled_image_and_packed_format_are_marked(dev: vknb.Device) -> None:
    ms = _compile(
        """#version 450
layout(local_size_x = 1) in;
layout(binding = 0) uniform texture2DMS t;
layout(binding = 1) uniform sampler s;
layout(binding = 2) buffer O { vec4 o[]; };
void main() { o[0] = texelFetch(sampler2DMS(t, s), ivec2(0), 0); }""",
        "ms",
    )
    _assert_marked(ms, "t", "a multisampled 2D sampled image")
    packed = _compile(
        """#version 450
layout(local_size_x = 1) in;
layout(binding = 0, r11f_g11f_b10f) uniform writeonly image2D t;
void main() { imageStore(t, ivec2(0), vec4(1)); }""",
        "packed",
    )
    _assert_marked(packed, "t", "a storage image of format r11f_g11f_b10f")


def test_buffer_cards(dev: vknb.Device) -> None:
    """A buffer kernel's card: the call signature, the names each binding answers to, every
    block's members with offsets and types (the uniform block's too, not just its size)."""
    k = _compile(
        """#version 450
layout(local_size_x = 64) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) buffer Y { float y[]; };
layout(binding = 2) uniform U { vec4 c; float s[3]; } u;
layout(push_constant) uniform P { float a; uint n; };
void main() { uint i = gl_GlobalInvocationID.x; y[i] += a * x[i] + u.c.x + u.s[n % 3]; }""",
        "saxpy_card",
    )
    text = display.kernel_text(k)
    assert text.splitlines()[:16] == [
        "<vknb.Kernel 'saxpy_card' local_size=(64, 1, 1)>",
        "call: saxpy_card(X, Y, u, *, a: float32, n: uint32, grid=|groups=)",
        "set  binding  name   kind     access      element",
        "0    0        X / x  storage  readonly    float[] → float32",
        "0    1        Y / y  storage  read/write  float[] → float32",
        "0    2        u / U  uniform  readonly    U (64 B)",
        "storage block X — binding 0 (set 0), readonly, then x[] of 4 B each: x float[] @0 "
        "(stride 4 B)",
        "storage block Y — binding 1 (set 0), read/write, then y[] of 4 B each: y float[] @0 "
        "(stride 4 B)",
        "uniform block U as u — binding 2 (set 0), readonly, 64 B:",
        "  offset  name  type      size",
        "  0       c     vec4      16 B",
        "  16      s     float[3]  3 × 16 B",
        "push constants P — 8 B:",
        "  offset  name  type   size",
        "  0       a     float  4 B",
        "  4       n     uint   4 B",
    ]
    # The names each slot answers to are the kernel's own.
    assert [list(s.names) for s in k.slots] == [["X", "x"], ["Y", "y"], ["u", "U"]]
    s = display.kernel_summary(k)
    assert s["signature"] == display.signature(k)
    assert s["resources"] == s["notes"] == s["cannot_call"] == []
    (u,) = [b for b in s["blocks"] if b["name"] == "u"]
    members = {m.name: m for m in k.reflection.binding("u").block.members}
    assert [r[:3] for r in u["members"]] == [
        [str(members["c"].offset), "c", "vec4"],
        [str(members["s"].offset), "s", "float[3]"],
    ]
    page = display.kernel_html(k)
    assert "<div class='vknb-kernel'><b>vknb kernel <code>saxpy_card</code></b> &nbsp; " in page
    assert "<code>saxpy_card(X, Y, u, *, a: float32, n: uint32, grid=|groups=)</code>" in page
    assert "vknb-note" not in page and "vknb-cannot-call" not in page
    # Blocks with a fixed part are open; a block that is one runtime array is folded.
    assert page.count("<details class='vknb-block' open>") == 2
    assert page.count("<details class='vknb-block'>") == 2
    assert f"<tr>{_cells(['16', 's', 'float[3]', '3 × 16 B'])}</tr>" in page


def test_struct_members_offsets_and_folding(dev: vknb.Device) -> None:
    k = _compile(
        """#version 450
layout(local_size_x = 64) in;
struct Particle { vec3 pos; float mass; vec2 vel; };
layout(binding = 0) buffer Ps { float dt; Particle p[]; };
layout(binding = 1) uniform Big { float a, b, c, d, e, f, g, h, i; } big;
void main() { uint i = gl_GlobalInvocationID.x; p[i].pos += big.a * dt * p[i].mass; }""",
        "structs_card",
    )
    s = display.kernel_summary(k)
    ps = next(b for b in s["blocks"] if b["name"] == "Ps")
    block = k.reflection.binding("Ps").block
    p = next(m for m in block.members if m.name == "p")
    mass = next(m for m in p.members if m.name == "mass")
    assert [p.offset, p.array_stride] == [16, 32]
    assert [f"{p.offset + mass.offset} + {p.array_stride}·i", "p[i].mass", "float", "4 B"] in ps[
        "members"
    ]
    assert "Particle[] → struct {pos, mass, vel} (32 B)" in display.kernel_text(k)
    assert display.signature(k) == "structs_card(Ps, big, *, grid=|groups=)"
    page = display.kernel_html(k)
    # Nine members: folded, with the count in the summary line.
    assert "<details class='vknb-block'><summary>uniform block Big as big" in page
    assert "(9 members)" in page


def test_no_new_colors_and_no_backgrounds(dev: vknb.Device, images: vknb.Kernel) -> None:
    """Dark themes: the card sets no backgrounds and only the colours display.py used before."""
    ms = _compile(
        """#version 450
layout(local_size_x = 1) in;
layout(binding = 0) uniform texture2DMS t;
layout(binding = 1) uniform sampler s;
layout(binding = 2) buffer O { vec4 o[]; };
void main() { o[0] = texelFetch(sampler2DMS(t, s), ivec2(0), 0); }""",
        "ms_colors",
    )
    for k in (images, ms):
        page = display.kernel_html(k)
        assert set(re.findall(r"#[0-9a-fA-F]{3,8}\b", page)) <= KNOWN_COLORS
        assert "background" not in page
        assert not re.search(r"\b(rgb|hsl)a?\(", page)
        assert page.count("<div") == page.count("</div>")


def test_memory_views_count_images(dev: vknb.Device) -> None:
    from vknb import widgets

    before = dev.memory_stats().images
    img = vknb.asimage(np.zeros((4, 4, 4), np.float32), device=dev)
    try:
        now = dev.memory_stats()
        assert now.images == before + 1
        images = f"and {now.images} live image" + ("s" if now.images != 1 else "")
        buffers = f"{now.buffers} live buffer" + ("s" if now.buffers != 1 else "")
        assert f"used by {buffers} {images}" in display.memory_text(dev)
        assert images in display.memory_stats_html(now)
        mon = widgets.MemoryMonitor(dev)
        try:
            assert images in mon.html() and images in mon.text()
        finally:
            mon.close()
    finally:
        img.close()
    assert f"and {_plural(before, 'live image')}" in display.memory_text(dev)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
