"""Device images (vknb.Image, asimage, zeros_image) and samplers, on the real driver."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import vknb
from vknb.core.image import FORMATS, format_for

# Formats every conformant driver stores and samples (Vulkan's required format support).
PORTABLE = ["rgba32f", "r32f", "rg32f", "rgba16f", "r16f", "rgba8", "r8", "rgba8_snorm", "rgba32ui",
            "r32ui", "rgba32i", "r32i", "rgba8ui", "rgba16ui", "rgba16i", "rgba8i"]  # fmt: skip


def _random(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "f":
        return rng.random(shape, dtype=np.float32).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("fmt", PORTABLE)
def test_round_trip_of_every_portable_format(fmt: str, rng: np.random.Generator) -> None:
    _, dtype, channels, _ = FORMATS[fmt]
    shape = (7, 13, channels) if channels > 1 else (7, 13)
    a = _random(rng, shape, np.dtype(dtype))
    img = vknb.asimage(a, fmt)
    assert (img.format, img.shape, img.dtype) == (fmt, shape, np.dtype(dtype))
    np.testing.assert_array_equal(img.numpy(), a)
    b = _random(rng, shape, np.dtype(dtype))
    np.testing.assert_array_equal(img.update(b).numpy(), b)
    img.close()


@pytest.mark.parametrize(
    ("dim", "arrayed", "shape"),
    [
        ("1d", False, (37, 4)),
        ("1d", True, (3, 37, 4)),
        ("2d", True, (5, 9, 11, 4)),
        ("3d", False, (4, 9, 11, 4)),
        ("cube", False, (6, 8, 8, 4)),
        ("cube", True, (12, 8, 8, 4)),
    ],
)
def test_dimensions_and_layers(dim: str, arrayed: bool, shape: tuple[int, ...], rng) -> None:
    a = rng.random(shape, dtype=np.float32)
    img = vknb.asimage(a, dim=dim, arrayed=arrayed)
    assert img.dim == dim and img.arrayed == arrayed
    np.testing.assert_array_equal(img.numpy(), a)
    img.close()


def test_three_channels_are_widened_to_four(rng) -> None:
    rgb = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    img = vknb.asimage(rgb)
    assert img.format == "rgba8" and img.shape == (5, 6, 4)
    out = img.numpy()
    np.testing.assert_array_equal(out[..., :3], rgb)
    assert (out[..., 3] == 255).all()
    f = vknb.asimage(rng.random((4, 4, 3), dtype=np.float32)).numpy()
    assert (f[..., 3] == 1.0).all()


def test_format_follows_dtype_and_sampled_type() -> None:
    assert format_for(np.float32, 4) == "rgba32f"
    assert format_for(np.float16, 2) == "rg16f"
    assert format_for(np.uint8, 1) == "r8"
    assert format_for(np.int8, 4) == "rgba8_snorm"
    assert format_for(np.uint8, 4, "uint") == "rgba8ui"
    assert format_for(np.uint8, 4, "float", normalized=False) == "rgba8ui"
    assert format_for(np.int32, 1, "int") == "r32i"
    with pytest.raises(ValueError, match="float64"):
        format_for(np.float64, 4)
    with pytest.raises(ValueError, match="3"):
        format_for(np.float32, 3)


def test_zeros_and_clear(rng) -> None:
    z = vknb.zeros_image((9, 10, 4), "rgba16f")
    assert not z.numpy().any()
    z.update(rng.random((9, 10, 4), dtype=np.float32).astype(np.float16))
    assert z.numpy().any()
    z.clear()
    assert not z.numpy().any()


def test_mipmaps_average_down_the_chain(rng) -> None:
    a = rng.random((16, 16, 4), dtype=np.float32)
    img = vknb.asimage(a, mipmaps=True)
    assert img.mip_levels == 5
    np.testing.assert_array_equal(img.numpy(), a)  # level 0 is the data
    k = vknb.compile(
        """
        layout(local_size_x = 1) in;
        layout(binding = 0) uniform sampler2D tex;
        layout(binding = 1) buffer O { vec4 o[]; };
        void main() {
            o[0] = textureLod(tex, vec2(0.5), 4.0);
            o[1] = textureLod(tex, vec2(0.5), 1.0);
        }
        """,
        name="lod",
    )
    o = np.zeros((2, 4), np.float32)
    k(img, o, groups=1)
    np.testing.assert_allclose(o[0], a.mean(axis=(0, 1)), rtol=2e-3, atol=2e-3)
    half = a.reshape(8, 2, 8, 2, 4).mean(axis=(1, 3))  # level 1: 2x2 box
    np.testing.assert_allclose(o[1], half[3:5, 3:5].mean(axis=(0, 1)), rtol=2e-3, atol=2e-3)


_LEVELS = """
layout(local_size_x = 8, local_size_y = 8) in;
layout(binding = 0) uniform sampler2D tex;
layout(binding = 1) buffer O { vec4 o[]; };
layout(push_constant) uniform P { int lod; int w; int h; };
void main() {
    ivec2 p = ivec2(gl_GlobalInvocationID.xy);
    if (p.x < w && p.y < h) {
        o[p.y * w + p.x] = texelFetch(tex, p, lod);
    }
}
"""


def _levels(img: vknb.Image) -> list[np.ndarray]:
    """Every mip level of a 2-D image, read by a kernel (texelFetch at each level)."""
    k = vknb.compile(_LEVELS, name="levels")
    h, w = img.shape[:2]
    out = []
    for lod in range(img.mip_levels):
        lw, lh = max(1, w >> lod), max(1, h >> lod)
        o = np.zeros((lh, lw, 4), np.float32)
        k(img, o, lod=lod, w=lw, h=lh, grid=(lw, lh))
        out.append(o)
    return out


@pytest.mark.parametrize(("fmt", "shape"), [("rgba32f", (16, 16)), ("rgba32f", (33, 17)),
                                            ("rgba8", (20, 31)), ("rgba16f", (9, 64))])  # fmt: skip
def test_mipmaps_made_on_the_host_match_the_blits(rng, monkeypatch, fmt, shape) -> None:
    """Where the compute queue cannot blit (NVIDIA's compute-only family), the levels are made
    on the host; they match the blits' levels (lavapipe can blit), odd sizes included.  Where
    it cannot, asking for blits gives the host's levels (a blit there would lose the device)."""
    from vknb.core import image as image_mod

    _, dtype, channels, _ = FORMATS[fmt]
    a = _random(rng, (*shape, channels), np.dtype(dtype))
    monkeypatch.setattr(image_mod, "_BLIT_MIPMAPS", True)
    blitted = _levels(vknb.asimage(a, fmt, mipmaps=True))
    monkeypatch.setattr(image_mod, "_BLIT_MIPMAPS", False)
    img = vknb.asimage(a, fmt, mipmaps=True)
    hosted = _levels(img)
    assert len(hosted) == len(blitted) == max(shape).bit_length()
    # 8-bit levels are rounded, each from the rounded level above: the driver's rounding may
    # differ from the host's by one step per level.
    tol = 1.01 / 255 if fmt == "rgba8" else 2e-3 if fmt == "rgba16f" else 1e-5
    for lod, (x, y) in enumerate(zip(hosted, blitted, strict=True)):
        step = tol * (lod + 1) if fmt == "rgba8" else tol
        np.testing.assert_allclose(x, y, atol=step, err_msg=f"level {lod}")
    img.update(a[::-1].copy())  # an update remakes the levels the same way
    np.testing.assert_allclose(_levels(img)[1], _levels(vknb.asimage(a[::-1].copy(), fmt,
                               mipmaps=True))[1], atol=tol)  # fmt: skip
    before = _levels(img)
    img.generate_mipmaps()  # from level 0 read back from the device: the same levels
    for lod, (x, y) in enumerate(zip(_levels(img), before, strict=True)):
        np.testing.assert_array_equal(x, y, err_msg=f"level {lod}")


@pytest.mark.parametrize(
    ("args", "exc", "words"),
    [
        (((4, 4, 4), "rgb8"), ValueError, "unknown image format"),
        (((4, 4, 3), "rgba8"), ValueError, "(H, W, 4)"),
        (((4, 4), "rgba8"), ValueError, "(H, W, 4)"),
        (((5, 4, 4, 4), "rgba8"), ValueError, "(H, W, 4)"),
        (((0, 4), "r32f"), ValueError, "positive"),
        (((6, 4, 5, 4), "rgba8", "cube"), ValueError, "6 square faces"),
        (((10**6, 4), "r32f"), ValueError, "max_image_dimension_2d"),
    ],
)
def test_bad_images_are_refused_naming_what_fits(args, exc, words) -> None:
    shape, fmt, *dim = args
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)")):
        vknb.Image(shape, fmt, dim=dim[0] if dim else "2d")


def test_update_checks_dtype_and_shape(rng) -> None:
    img = vknb.Image((4, 5), "r32f")
    with pytest.raises(TypeError, match="float32"):
        img.update(np.zeros((4, 5), np.float64))
    with pytest.raises(ValueError, match=r"\(4, 5\)"):
        img.update(np.zeros((5, 4), np.float32))


def test_closed_image_and_leaks(dev, rng, no_leaks) -> None:
    for fmt in ("rgba8", "r32f", "rgba32f"):
        _, dtype, channels, _ = FORMATS[fmt]
        imgs = [
            vknb.asimage(_random(rng, (33, 17, channels), np.dtype(dtype)), fmt, mipmaps=i == 0)
            for i in range(3)
        ]
        assert dev.memory_stats().images >= 3
        for img in imgs:
            img.close()
            img.close()  # idempotent
        with pytest.raises(vknb.ObjectClosed, match=imgs[0].label):
            imgs[0].numpy()
    del imgs
    gc.collect()


def test_sampler_settings_are_checked() -> None:
    assert vknb.Sampler() == vknb.Sampler(filter="linear", address="clamp_to_edge")
    with pytest.raises(ValueError, match="filter"):
        vknb.Sampler(filter="cubic")
    with pytest.raises(ValueError, match="address"):
        vknb.Sampler(address="wrap")
    with pytest.raises(ValueError, match="normalized=False"):
        vknb.Sampler(normalized=False, address="repeat")
    s = vknb.Sampler(filter="nearest")
    assert s.handle(vknb.device()) == s.handle(vknb.device())  # one VkSampler per device


def test_image_of_a_closed_device(rng) -> None:
    d = vknb.Device(0)
    img = vknb.asimage(rng.random((4, 4), dtype=np.float32), device=d)
    d.close()
    assert img.closed
    with pytest.raises(vknb.ObjectClosed):
        img.numpy()
