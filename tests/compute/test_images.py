"""Kernel calls with images, samplers and texel buffers: every binding kind, fitting and not."""

from __future__ import annotations

import numpy as np
import pytest

import vknb

INVERT = """
layout(local_size_x = 8, local_size_y = 8) in;
layout(binding = 0, rgba8) uniform readonly image2D src;
layout(binding = 1, rgba8) uniform writeonly image2D dst;
void main() {
    ivec2 p = ivec2(gl_GlobalInvocationID.xy);
    if (any(greaterThanEqual(p, imageSize(src)))) return;
    imageStore(dst, p, vec4(1.0) - imageLoad(src, p));
}
"""

AFFINE = """
layout(local_size_x = 8, local_size_y = 8) in;
layout(binding = 0, r32f) uniform image2D img;
layout(push_constant) uniform P { float a; float b; };
void main() {
    ivec2 p = ivec2(gl_GlobalInvocationID.xy);
    if (any(greaterThanEqual(p, imageSize(img)))) return;
    imageStore(img, p, imageLoad(img, p) * a + b);
}
"""

SAMPLE = """
layout(local_size_x = 8, local_size_y = 8) in;
layout(binding = 0) uniform sampler2D tex;
layout(binding = 1) buffer O { vec4 o[]; };
layout(push_constant) uniform P { int w; int h; float scale; };
void main() {
    ivec2 p = ivec2(gl_GlobalInvocationID.xy);
    if (p.x >= w || p.y >= h) return;
    o[p.y * w + p.x] = texture(tex, (vec2(p) + 0.5) / vec2(w, h) * scale);
}
"""


def bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray, address: str) -> np.ndarray:
    """Vulkan's linear filtering of a (H, W, C) image at normalized coordinates (u, v)."""
    h, w = img.shape[:2]
    x, y = u * w - 0.5, v * h - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]

    def tex(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        if address == "repeat":
            i, j = np.mod(i, w), np.mod(j, h)
        else:
            i, j = np.clip(i, 0, w - 1), np.clip(j, 0, h - 1)
        return img[j, i]

    return (
        tex(x0, y0) * (1 - fx) * (1 - fy)
        + tex(x0 + 1, y0) * fx * (1 - fy)
        + tex(x0, y0 + 1) * (1 - fx) * fy
        + tex(x0 + 1, y0 + 1) * fx * fy
    )


def test_storage_images_numpy_in_and_out(rng) -> None:
    k = vknb.compile(INVERT, name="invert")
    for h, w in ((8, 8), (13, 21), (1, 50)):
        a = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        out = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        rec = k(a, out, grid=(w, h))
        np.testing.assert_array_equal(out, 255 - a)
        assert rec.bytes_in == a.nbytes  # the writeonly output was not uploaded
        assert rec.bytes_out == out.nbytes  # the readonly input was not downloaded


def test_storage_image_written_in_place_and_chained_on_the_device(rng) -> None:
    k = vknb.compile(AFFINE, name="affine")
    a = rng.random((11, 17), dtype=np.float32)
    x = a.copy()
    k(x, a=2.0, b=1.0, grid=(17, 11))
    np.testing.assert_allclose(x, a * 2 + 1, rtol=1e-6)
    img = vknb.asimage(a)
    for _ in range(3):
        rec = k(img, a=0.5, b=0.25, grid=(17, 11))
        assert rec.bytes_in == rec.bytes_out == 0  # a device Image moves no bytes
    want = a
    for _ in range(3):
        want = want * 0.5 + 0.25
    np.testing.assert_allclose(img.numpy(), want, rtol=1e-6)


def test_writeonly_image_parts_not_written_are_zero(rng) -> None:
    k = vknb.compile(
        """
        layout(local_size_x = 8, local_size_y = 8) in;
        layout(binding = 0, r32f) uniform writeonly image2D img;
        void main() {
            ivec2 p = ivec2(gl_GlobalInvocationID.xy);
            if (p.x % 2 == 0 && all(lessThan(p, imageSize(img)))) imageStore(img, p, vec4(7.0));
        }
        """,
        name="half",
    )
    out = rng.random((6, 9), dtype=np.float32) + 1.0
    k(out, grid=(9, 6))
    want = np.zeros((6, 9), np.float32)
    want[:, ::2] = 7.0
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("address", ["clamp_to_edge", "repeat"])
def test_combined_image_sampler_matches_bilinear_filtering(address, rng) -> None:
    k = vknb.compile(SAMPLE, name="sample")
    img = rng.random((12, 10, 4), dtype=np.float32)
    w, h, scale = 23, 17, 1.7
    o = np.zeros((h * w, 4), np.float32)
    k((img, vknb.Sampler(address=address)), o, w=w, h=h, scale=scale, grid=(w, h))
    jj, ii = np.mgrid[0:h, 0:w]
    want = bilinear(img, (ii + 0.5) / w * scale, (jj + 0.5) / h * scale, address)
    np.testing.assert_allclose(o.reshape(h, w, 4), want, atol=2e-2)


def test_default_sampler_and_nearest_filtering(rng) -> None:
    k = vknb.compile(SAMPLE, name="sample")
    img = rng.random((8, 8), dtype=np.float32)
    o = np.zeros((64, 4), np.float32)
    k(img, o, w=8, h=8, scale=1.0, grid=(8, 8))  # texel centers: exact for any filter
    np.testing.assert_allclose(o[:, 0].reshape(8, 8), img, rtol=1e-6)
    o4 = np.zeros((16, 4), np.float32)
    k((img, vknb.Sampler(filter="nearest")), o4, w=4, h=4, scale=1.0, grid=(4, 4))
    np.testing.assert_allclose(o4[:, 0].reshape(4, 4), img[1::2, 1::2], rtol=1e-6)


def test_uint8_images_sample_normalized(rng) -> None:
    k = vknb.compile(SAMPLE, name="sample")
    img = rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)  # widened to rgba8
    o = np.zeros((25, 4), np.float32)
    k(img, o, w=5, h=5, scale=1.0, grid=(5, 5))
    np.testing.assert_allclose(o.reshape(5, 5, 4)[..., :3], img / 255.0, atol=1e-6)
    np.testing.assert_allclose(o[:, 3], 1.0)


def test_separate_texture_and_sampler(rng) -> None:
    k = vknb.compile(
        """
        layout(local_size_x = 64) in;
        layout(binding = 0) uniform texture2D tex;
        layout(binding = 1) uniform sampler smp;
        layout(binding = 2) buffer O { float o[]; };
        void main() {
            uint i = gl_GlobalInvocationID.x;
            if (i < 16u) o[i] = texture(sampler2D(tex, smp), vec2((float(i) + 0.5) / 16.0, 0.5)).r;
        }
        """,
        name="separate",
    )
    row = rng.random((1, 16), dtype=np.float32)
    o = np.zeros(16, np.float32)
    k(row, vknb.Sampler(filter="nearest"), o, grid=16)
    np.testing.assert_allclose(o, row[0], rtol=1e-6)
    with pytest.raises(TypeError, match=r"'smp'.*vknb.Sampler"):
        k(row, "linear", o, grid=16)
    with pytest.raises(TypeError, match="takes no sampler"):
        k((row, vknb.Sampler()), vknb.Sampler(), o, grid=16)


def test_texel_buffers(rng) -> None:
    k = vknb.compile(
        """
        layout(local_size_x = 64) in;
        layout(binding = 0) uniform samplerBuffer src;
        layout(binding = 1, r32f) uniform imageBuffer dst;
        void main() {
            int i = int(gl_GlobalInvocationID.x);
            if (i < textureSize(src)) imageStore(dst, i, vec4(texelFetch(src, i).r * 3.0));
        }
        """,
        name="texels",
    )
    src = rng.random(100, dtype=np.float32)
    dst = np.zeros(100, np.float32)
    k(src, dst, grid=100)
    np.testing.assert_allclose(dst, src * 3, rtol=1e-6)
    dev_src = vknb.asarray(src)
    dst2 = np.zeros(100, np.float32)
    k(dev_src, dst2, grid=100)
    np.testing.assert_allclose(dst2, src * 3, rtol=1e-6)
    with pytest.raises(TypeError, match=r"'dst'.*r32f"):
        k(src, np.zeros(100, np.int32), grid=100)


def test_image_arrays_and_3d(rng) -> None:
    k = vknb.compile(
        """
        layout(local_size_x = 4, local_size_y = 4, local_size_z = 4) in;
        layout(binding = 0, r32f) uniform image3D vol;
        layout(binding = 1, r32f) uniform image2DArray layers;
        void main() {
            ivec3 p = ivec3(gl_GlobalInvocationID);
            if (any(greaterThanEqual(p, imageSize(vol)))) return;
            imageStore(layers, p, imageLoad(vol, p) + float(p.z));
        }
        """,
        name="vol",
    )
    vol = rng.random((3, 5, 6), dtype=np.float32)  # (D, H, W)
    layers = np.zeros((3, 5, 6), np.float32)  # (L, H, W)
    k(vol, layers, grid=(6, 5, 3))
    np.testing.assert_allclose(layers, vol + np.arange(3, dtype=np.float32)[:, None, None])


def test_descriptor_array_of_sampled_images(rng) -> None:
    k = vknb.compile(
        """
        layout(local_size_x = 4) in;
        layout(binding = 0) uniform sampler2D texs[3];
        layout(binding = 1) buffer O { float o[]; };
        void main() {
            uint i = gl_GlobalInvocationID.x;
            if (i < 3u) o[i] = texture(texs[i], vec2(0.5)).r;
        }
        """,
        name="texs",
    )
    imgs = [np.full((2, 2), float(v), np.float32) for v in (1.5, 2.5, 3.5)]
    o = np.zeros(3, np.float32)
    k(imgs, o, grid=3)
    np.testing.assert_allclose(o, [1.5, 2.5, 3.5])
    with pytest.raises(ValueError, match="array of 3"):
        k(imgs[:2], o, grid=3)


@pytest.mark.parametrize(
    ("call", "exc", "words"),
    [
        (lambda k, a: k(a.astype(np.float32), a, grid=(8, 8)), TypeError, r"'src'.*rgba8"),
        (lambda k, a: k(a[..., :3].copy(), a, grid=(8, 8)), ValueError, r"'src'.*\(H, W, 4\)"),
        (lambda k, a: k(a[0], a, grid=(8, 8)), ValueError, r"'src'.*\(H, W, 4\)"),
        (
            lambda k, a: k(vknb.asimage(a, "rgba8ui", normalized=False), a, grid=(8, 8)),
            TypeError,
            r"'src'.*rgba8",
        ),
        (
            lambda k, a: k(vknb.asimage(a[0, :, 0].copy(), dim="1d"), a, grid=(8, 8)),
            TypeError,
            r"'src' is a 2D image",
        ),
        (lambda k, a: k([a], a, grid=(8, 8)), TypeError, r"'src'.*numpy array or a vknb.Image"),
    ],
)
def test_image_mistakes_are_clear_errors_and_the_kernel_still_works(call, exc, words, rng):
    k = vknb.compile(INVERT, name="invert")
    a = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    with pytest.raises(exc, match=words):
        call(k, a)
    out = np.zeros_like(a)
    k(a, out, grid=(8, 8))
    np.testing.assert_array_equal(out, 255 - a)


def test_linear_filtering_of_integer_images_is_refused(rng) -> None:
    k = vknb.compile(
        """
        layout(local_size_x = 1) in;
        layout(binding = 0) uniform usampler2D tex;
        layout(binding = 1) buffer O { uint o[]; };
        void main() { o[0] = texture(tex, vec2(0.5)).r; }
        """,
        name="usamp",
    )
    img = rng.integers(0, 1000, (4, 4), dtype=np.uint32)
    o = np.zeros(1, np.uint32)
    with pytest.raises(ValueError, match="filter='nearest'"):
        k(img, o, groups=1)
    k((img, vknb.Sampler(filter="nearest")), o, groups=1)
    assert o[0] == img[2, 2]


def test_images_in_batches_with_barriers_and_replay(rng) -> None:
    k = vknb.compile(AFFINE, name="affine")
    a = rng.random((9, 14), dtype=np.float32)
    img = vknb.asimage(a)
    with vknb.batch() as b:
        for _ in range(4):
            k(img, a=2.0, b=-1.0, grid=(14, 9))
    assert b.barriers == 3  # each call reads what the previous wrote
    want = a
    for _ in range(4):
        want = want * 2 - 1
    np.testing.assert_allclose(img.numpy(), want, rtol=1e-5)
    b.replay()
    for _ in range(4):
        want = want * 2 - 1
    np.testing.assert_allclose(img.numpy(), want, rtol=1e-4)
    img.close()
    with pytest.raises(vknb.ObjectClosed, match=img.label):
        b.replay()


def test_image_calls_leave_no_leaks(dev, rng, no_leaks) -> None:
    k = vknb.compile(INVERT, name="invert")
    s = vknb.compile(SAMPLE, name="sample")
    for n in (8, 13, 8):
        a = rng.integers(0, 256, (n, n, 4), dtype=np.uint8)
        out = np.zeros_like(a)
        k(a, out, grid=(n, n))
        img = vknb.asimage(a)
        o = np.zeros((n * n, 4), np.float32)
        s((img, vknb.Sampler(filter="nearest")), o, w=n, h=n, scale=1.0, grid=(n, n))
        img.close()
    k.close()
    s.close()


@pytest.mark.parametrize(
    ("decl", "use", "words"),
    [
        ("uniform texture2DMS t;", "texelFetch(sampler2DMS(t, s), ivec2(0), 0).r", "multisampled"),
        ("uniform sampler2DShadow t;", "texture(t, vec3(0.5))", "depth"),
        (
            "layout(r11f_g11f_b10f) uniform readonly image2D t;",
            "imageLoad(t, ivec2(0)).r",
            "r11f_g11f_b10f",
        ),
    ],
)
def test_images_no_call_can_fill_are_refused_by_name(decl, use, words) -> None:
    k = vknb.compile(
        "layout(local_size_x = 1) in;\n"
        f"layout(binding = 0) {decl}\n"
        "layout(binding = 1) uniform sampler s;\n"
        "layout(binding = 2) buffer O { float o[]; };\n"
        f"void main() {{ o[0] = {use}; }}\n",
        name="unfillable",
    )
    with pytest.raises(TypeError, match=rf"'t' is .*{words}.*cannot fill"):
        k(np.zeros((2, 2), np.float32), vknb.Sampler(), np.zeros(1, np.float32), groups=1)
