"""The shader library's image kernels against numpy references, on the session device.

``filter3x3.comp`` (emboss, edge detect, sharpen: rgba8 storage images), ``resample.comp``
(resize, warp_affine, rotate through a sampler2D) and ``blur_image.comp`` (a Gaussian through a
linear sampler, half the taps).  Random images at several sizes, among them 1 x 1 and sizes that
are not multiples of the 16 x 16 workgroup.

The references compute Vulkan's sampling exactly, in float64: texel ``i`` has its centre at
``i + 0.5``; nearest takes texel ``floor(s)``, linear blends texels ``floor(s - 0.5)`` and the
next one with the fraction of ``s - 0.5``; each texel index goes through the address mode on its
own (clamp to edge, repeat, mirrored repeat as the spec writes it, clamp to border -> the border
colour).  Tolerances, and why:

* linear filtering: the spec lets the sampler round the interpolation fraction to
  ``subTexelPrecisionBits`` bits (8 on lavapipe for unorm8 and on the usual GPUs; lavapipe keeps
  float32 fractions for float formats).  A fraction off by up to ``2**-bits`` moves a lerp by that
  much of the difference of its two texels, and a bilinear read has two lerps in sequence:
  ``2 * 2**-bits * range`` (``range``: max - min of the image).  A blur pass is a sum of reads
  whose weights add up to one: ``2**-bits * range`` per pass;
* coordinates are float32 on the device: a few ulps of ``max(H, W)`` texels (``COORD``);
* uint8 results are rounded by the store's float -> unorm conversion: one step (the spec allows
  round to nearest or toward zero), on top of the above in units of 1/255;
* nearest filtering and bicubic (texel fetches, float32 weights) are exact up to float32
  rounding, except where a coordinate falls within ``COORD`` of a texel edge (nearest picks
  either texel there: such pixels are left out, and they are few).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import vknb
from vknb import _vk, library

EPS32 = float(np.finfo(np.float32).eps)
SIZES = [(1, 1), (5, 7), (17, 33), (40, 23)]
BORDERS = ["transparent_black", "opaque_white", "clamp_to_edge", "repeat", "mirrored_repeat"]


@pytest.fixture(scope="module", autouse=True)
def _release_library_kernels():
    yield
    library.clear_kernel_cache()


@pytest.fixture(scope="module")
def subtexel_bits() -> int:
    """``VkPhysicalDeviceLimits::subTexelPrecisionBits`` of the session device."""
    props = _vk.ffi.new("VkPhysicalDeviceProperties*")
    _vk.lib.vkGetPhysicalDeviceProperties(vknb.device().info.handle, props)
    bits = int(props.limits.subTexelPrecisionBits)
    assert bits >= 4  # the spec's minimum
    return bits


def _coord_err(*shape: int) -> float:
    """Float32 error of a texel coordinate on the device, in texels."""
    return 8 * EPS32 * max(shape)


# --- numpy references --------------------------------------------------------------------------


def _wrap(i: np.ndarray, n: int, address: str) -> tuple[np.ndarray, np.ndarray]:
    """(texel index, outside-the-image mask) after an address mode (Vulkan's formulas)."""
    if address == "repeat":
        return np.mod(i, n), np.zeros(i.shape, bool)
    if address == "mirrored_repeat":
        r = np.mod(i, 2 * n) - n
        mirror = np.where(r >= 0, r, -(1 + r))
        return (n - 1) - mirror, np.zeros(i.shape, bool)
    outside = (i < 0) | (i >= n)
    if address == "clamp_to_border":
        return np.clip(i, 0, n - 1), outside
    return np.clip(i, 0, n - 1), np.zeros(i.shape, bool)


def _fetch(img: np.ndarray, ix: np.ndarray, iy: np.ndarray, address: str, border) -> np.ndarray:
    H, W, _ = img.shape
    x, ox = _wrap(ix, W, address)
    y, oy = _wrap(iy, H, address)
    v = img[y, x]
    out = ox | oy
    if out.any():
        v[out] = np.asarray(border, np.float64)[: img.shape[2]]
    return v


def _keys(t: np.ndarray) -> list[np.ndarray]:
    a = -0.5
    return [
        a * t**3 - 2 * a * t**2 + a * t,
        (a + 2) * t**3 - (a + 3) * t**2 + 1,
        -(a + 2) * t**3 + (2 * a + 3) * t**2 - a * t,
        -a * t**3 + a * t**2,
    ]


def sample_ref(img, s, method="bilinear", address="clamp_to_edge", border=(0, 0, 0, 0)):
    """Vulkan's sampling of ``img`` (H, W, C) at texel coordinates ``s`` (..., 2) = (x, y)."""
    img = np.asarray(img, np.float64)
    sx, sy = s[..., 0], s[..., 1]
    if method == "nearest":
        return _fetch(img, np.floor(sx).astype(int), np.floor(sy).astype(int), address, border)
    tx, ty = sx - 0.5, sy - 0.5
    x0, y0 = np.floor(tx).astype(int), np.floor(ty).astype(int)
    fx, fy = (tx - x0)[..., None], (ty - y0)[..., None]
    if method == "bilinear":

        def f(dx: int, dy: int) -> np.ndarray:
            return _fetch(img, x0 + dx, y0 + dy, address, border)

        top = (1 - fx) * f(0, 0) + fx * f(1, 0)
        bottom = (1 - fx) * f(0, 1) + fx * f(1, 1)
        return (1 - fy) * top + fy * bottom
    wx, wy = _keys(fx), _keys(fy)
    out = 0.0
    for j in range(4):
        row = sum(wx[i] * _fetch(img, x0 + i - 1, y0 + j - 1, address, border) for i in range(4))
        out = out + wy[j] * row
    return out


def texel_map(fwd: np.ndarray) -> np.ndarray:
    """resample.comp's map for a forward map in pixel-centre coordinates: output texel
    coordinate p (centre of pixel i at i + 0.5) -> source texel coordinate."""
    inv = np.linalg.inv(np.asarray(fwd, np.float64))
    to_centre = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])  # texel -> pixel centre
    from_centre = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    return (from_centre @ inv @ to_centre)[:2].reshape(6)


def _out_centres(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([xx + 0.5, yy + 0.5], axis=-1)


def _apply(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float32).astype(np.float64).reshape(2, 3)  # what the shader gets
    return p @ m[:, :2].T + m[:, 2]


def _near_edge(s: np.ndarray, tol: float) -> np.ndarray:
    """Pixels whose coordinate lies within ``tol`` of a texel edge (nearest is ambiguous)."""
    f = s - np.floor(s)
    return (np.minimum(f, 1 - f) < tol).any(axis=-1)


def _as_hwc(a: np.ndarray) -> np.ndarray:
    return a[..., None] if a.ndim == 2 else a


def _unit(a: np.ndarray) -> np.ndarray:
    """Values as the device reads them: uint8 / 255, floats as they are; always (H, W, C)."""
    a = _as_hwc(a)
    return a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)


def _random_image(rng, shape, dtype, channels):
    full = shape if channels is None else (*shape, channels)
    if dtype == np.uint8:
        return rng.integers(0, 256, full, dtype=np.uint8)
    return rng.random(full, dtype=np.float32)


def _check(got, ref, dtype, atol, skip=None, what=""):
    """``got`` (the helper's result) against a float64 reference in [0, 1] units."""
    g = _unit(got)
    r = _as_hwc(ref)
    if dtype == np.uint8:
        r = np.clip(r, 0, 1)
        atol = atol + 1 / 255  # the store's rounding
    err = np.abs(g - r)
    if skip is not None:
        err = err[~skip]
    worst = float(err.max()) if err.size else 0.0
    assert worst <= atol, f"{what}: max error {worst:.3g} > {atol:.3g}"
    return worst


# --- filter3x3: the Vulkan sample's filters on storage images ----------------------------------


def filter3x3_ref(img, kernel, scale=1.0, offset=0.0, gray=False):
    """float64 reference of filter3x3.comp: correlation, clamp to edge, [0, 1] units."""
    f = img[..., :3].astype(np.float64) / 255.0
    if gray:
        f = np.repeat(f.mean(axis=-1, keepdims=True), 3, axis=-1)
    H, W = f.shape[:2]
    p = np.pad(f, ((1, 1), (1, 1), (0, 0)), mode="edge")
    k = np.asarray(kernel, np.float64).reshape(3, 3)
    acc = sum(k[i, j] * p[i : i + H, j : j + W] for i in range(3) for j in range(3))
    return np.clip(acc * scale + offset, 0.0, 1.0)


@pytest.mark.parametrize("shape", SIZES)
@pytest.mark.parametrize("name", ["emboss", "edge_detect", "sharpen"])
def test_sample_filters(rng, shape, name):
    img = rng.integers(0, 256, (*shape, 4), dtype=np.uint8)
    out = getattr(library, name)(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    w, scale, offset, gray = library.SAMPLE_FILTERS[name]
    ref = filter3x3_ref(img, w, scale, offset, gray)
    # one step of rounding, plus float32 sums of nine terms (tiny next to 1/255)
    err = np.abs(out[..., :3].astype(np.float64) - ref * 255)
    assert err.max() <= 1.0 + 1e-3, f"{name}: max error {err.max():.3f} steps"
    assert np.array_equal(out[..., 3], img[..., 3])  # alpha kept
    if gray:
        assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_sample_filter_weights_are_the_samples():
    """The Vulkan sample indexes its kernels [x][y]; ours are [y][x]: all three are symmetric,
    so they are the same filters."""
    for w, *_ in library.SAMPLE_FILTERS.values():
        k = np.array(w).reshape(3, 3)
        assert np.array_equal(k, k.T)
    assert library.SAMPLE_FILTERS["edge_detect"][1] == pytest.approx(1 / 0.1)


def test_filter3x3_general_rgb_and_device_images(rng):
    img = rng.integers(0, 256, (19, 21, 3), dtype=np.uint8)
    k = rng.normal(0, 0.5, (3, 3)).astype(np.float32)  # asymmetric: the orientation matters
    out = library.filter3x3(img, k, scale=0.7, offset=0.2)
    assert out.shape == (19, 21, 3)
    ref = filter3x3_ref(img, k, 0.7, 0.2)
    assert np.abs(out.astype(np.float64) - ref * 255).max() <= 1.0 + 1e-3
    # an rgba8 vknb.Image in: the same result, 4 channels out
    rgba = np.concatenate([img, np.full((19, 21, 1), 255, np.uint8)], axis=-1)
    with vknb.asimage(rgba) as dimg:
        out_dev = library.filter3x3(dimg, k, scale=0.7, offset=0.2)
    assert np.array_equal(out_dev[..., :3], out) and (out_dev[..., 3] == 255).all()


def test_filter3x3_edges_clamp():
    """A bright left column: the filter reads the edge again beyond it, never zeros."""
    img = np.zeros((6, 5, 4), np.uint8)
    img[:, 0] = 255
    shift_left = np.zeros((3, 3), np.float32)
    shift_left[1, 0] = 1.0  # out[y, x] = in[y, x - 1]
    out = library.filter3x3(img, shift_left)
    assert (out[:, 0, :3] == 255).all() and (out[:, 1, :3] == 255).all()
    assert (out[:, 2:, :3] == 0).all()


def test_filter3x3_rejects_bad_input():
    with pytest.raises(TypeError, match="uint8"):
        library.emboss(np.zeros((4, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) or \(H, W, 4\)"):
        library.sharpen(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="3 x 3"):
        library.filter3x3(np.zeros((4, 4, 4), np.uint8), np.ones(4))
    with vknb.asimage(np.zeros((4, 4), np.float32)) as f32:
        with pytest.raises(TypeError, match="rgba8"):
            library.edge_detect(f32)


# --- resize --------------------------------------------------------------------------------------


def resize_ref(img, shape, method):
    h, w = shape
    src = _unit(img)
    H, W = src.shape[:2]
    m = np.array([W / w, 0, 0, 0, H / h, 0])
    s = _apply(m, _out_centres(h, w))
    return sample_ref(src, s, method), s


def _tolerance(method, bits, dtype, *shape):
    coord = _coord_err(*shape)
    if method == "bilinear":
        return 2 * 2.0**-bits + 2 * coord + 1e-6
    if method == "bicubic":
        return 1.5 * 2 * coord + 1e-5  # Keys weights: slope at most ~1.5 per texel
    return 1e-6


@pytest.mark.parametrize("method", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
@pytest.mark.parametrize("channels", [None, 1, 2, 3, 4])
def test_resize(rng, method, dtype, channels, subtexel_bits):
    for shape, out_shape in [((5, 7), (13, 3)), ((17, 33), (40, 23)), ((1, 1), (3, 2))]:
        img = _random_image(rng, shape, dtype, channels)
        got = library.resize(img, out_shape, method=method)
        want_shape = out_shape if channels is None else (*out_shape, channels)
        assert got.shape == want_shape and got.dtype == dtype
        ref, s = resize_ref(img, out_shape, method)
        c = img.shape[-1] if channels else 1
        skip = None
        if method == "nearest":
            skip = np.repeat(_near_edge(s, _coord_err(*shape, *out_shape))[..., None], c, -1)
        atol = _tolerance(method, subtexel_bits, dtype, *shape, *out_shape)
        _check(got, ref[..., :c], dtype, atol, skip, f"resize {shape}->{out_shape} {method}")


def test_resize_identity_and_exact_cases(rng):
    img = rng.random((9, 20, 4), dtype=np.float32)
    for method in ("bilinear", "nearest", "bicubic"):  # centres on centres: the texels themselves
        np.testing.assert_allclose(library.resize(img, (9, 20), method), img, atol=1e-6)
    two = np.array([[0, 1]], np.float32)  # the docstring's upscale, in exact binary fractions
    assert library.resize(two, (1, 4)).tolist() == [[0.0, 0.25, 0.75, 1.0]]
    up = library.resize(np.arange(4, dtype=np.uint8).reshape(2, 2) * 80, (4, 4), "nearest")
    assert np.array_equal(up, np.repeat(np.repeat([[0, 80], [160, 240]], 2, 0), 2, 1))


def test_resize_device_image_and_float64(rng, subtexel_bits):
    img = rng.random((12, 10, 4))  # float64: computed in float32
    got = library.resize(img, (7, 15))
    assert got.dtype == np.float32
    ref, _ = resize_ref(img.astype(np.float32), (7, 15), "bilinear")
    _check(got, ref, np.float32, _tolerance("bilinear", subtexel_bits, np.float32, 15), None)
    with vknb.asimage(img.astype(np.float32)) as dimg:
        assert np.array_equal(library.resize(dimg, (7, 15)), got)


def test_resize_rejects_bad_input():
    with pytest.raises(TypeError, match="float32 or uint8"):
        library.resize(np.zeros((4, 4), np.int32), (2, 2))
    with pytest.raises(ValueError, match="C <= 4"):
        library.resize(np.zeros((4, 4, 5), np.float32), (2, 2))
    with pytest.raises(ValueError, match="method"):
        library.resize(np.zeros((4, 4), np.float32), (2, 2), method="lanczos")
    with pytest.raises(ValueError, match="positive"):
        library.resize(np.zeros((4, 4), np.float32), (0, 2))


# --- warp_affine and rotate ----------------------------------------------------------------------


def _warp_ref(img, m, out_shape, method, border):
    address, colour = (
        ("clamp_to_border", border) if border in library.BORDER_COLORS else (border, None)
    )
    colour = library.BORDER_COLORS.get(colour or "transparent_black")
    s = _apply(m, _out_centres(*out_shape))
    return sample_ref(_unit(img), s, method, address, colour), s


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("method", ["bilinear", "nearest", "bicubic"])
def test_warp_affine(rng, border, method, subtexel_bits):
    img = rng.random((17, 22, 3), dtype=np.float32)
    fwd = np.array([[0.8, 0.3, 4.0], [-0.25, 1.1, -3.0]])  # shear, scale, shift: borders show
    out_shape = (20, 19)
    got = library.warp_affine(img, fwd, out_shape, method=method, border=border)
    assert got.shape == (*out_shape, 3)
    m = texel_map(np.vstack([fwd, [0, 0, 1]]))
    ref, s = _warp_ref(img, m, out_shape, method, border)
    skip = None
    if method == "nearest":
        skip = np.repeat(_near_edge(s, _coord_err(40))[..., None], 3, -1)
    atol = _tolerance(method, subtexel_bits, np.float32, 40)
    _check(got, ref[..., :3], np.float32, atol, skip, f"warp {method} {border}")


def test_warp_affine_pixel_centre_convention(rng):
    """Forward maps are in pixel-centre coordinates (cv2.warpAffine's): a shift by whole pixels
    moves the data by whole pixels (every read at a texel centre: exact, even bilinear), and a
    scaling by 2 about pixel (0, 0) puts source pixel (x, y) at output pixel (2x, 2y)."""
    img = rng.random((7, 9), dtype=np.float32)
    got = library.warp_affine(img, [[1, 0, 2], [0, 1, -1]], border="transparent_black")
    want = np.zeros_like(img)
    want[:-1, 2:] = img[1:, :-2]
    np.testing.assert_allclose(got, want, atol=1e-6)
    big = library.warp_affine(img, [[2, 0, 0], [0, 2, 0]], (13, 17))
    np.testing.assert_allclose(big[::2, ::2], img, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_rotate(rng, dtype, subtexel_bits):
    img = _random_image(rng, (15, 24), dtype, 4)
    for degrees, expand in [(90, True), (30, False), (-47.5, True), (180, False)]:
        got = library.rotate(img, degrees, expand=expand, border="opaque_black")
        H, W = img.shape[:2]
        if expand and degrees == 90:
            assert got.shape[:2] == (W, H)
        fwd = _rotation_fwd(degrees, W, H, got.shape[:2])
        m = texel_map(np.vstack([fwd, [0, 0, 1]]))
        ref, _ = _warp_ref(img, m, got.shape[:2], "bilinear", "opaque_black")
        atol = _tolerance("bilinear", subtexel_bits, dtype, 40)
        _check(got, ref, dtype, atol, None, f"rotate {degrees}")


def _rotation_fwd(degrees, W, H, out_shape):
    """cv2.getRotationMatrix2D about the centre, moved to the output's centre (numpy only)."""
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    cx, cy = (W - 1) / 2, (H - 1) / 2
    ox, oy = (out_shape[1] - 1) / 2, (out_shape[0] - 1) / 2
    return np.array([[c, s, ox - c * cx - s * cy], [-s, c, oy + s * cx - c * cy]])


def test_rotate_quarter_turns_are_exact(rng):
    img = rng.random((6, 9), dtype=np.float32)
    np.testing.assert_allclose(library.rotate(img, 90, expand=True), np.rot90(img), atol=1e-6)
    np.testing.assert_allclose(library.rotate(img, 180), np.rot90(img, 2), atol=1e-6)
    np.testing.assert_allclose(
        library.rotate(img, -90, expand=True, method="nearest"), np.rot90(img, -1), atol=0
    )


def test_warp_rejects_bad_input():
    img = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="invertible"):
        library.warp_affine(img, [[0, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="2 x 3"):
        library.warp_affine(img, np.eye(2))
    with pytest.raises(ValueError, match="border"):
        library.warp_affine(img, np.eye(3), border="wrap")


# --- blur_image: Gaussian through a linear sampler -------------------------------------------


def test_gaussian_taps_half_the_reads():
    for sigma in (0.5, 1.0, 2.0, 3.3):
        taps = library.gaussian_taps(sigma)
        r = math.ceil(3 * sigma)
        assert taps.shape == (r + 1, 2)  # 2R + 1 weights, R + 1 reads
        assert taps[:, 1].sum() == pytest.approx(1.0, abs=1e-6)
        # Exact bilinear reads at the taps' offsets give back the full filter.
        t = np.arange(-r, r + 1)
        g = np.exp(-0.5 * (t / sigma) ** 2)
        g /= g.sum()
        rebuilt = np.zeros(2 * r + 2)
        for off, w in taps.astype(np.float64):
            i = math.floor(off)
            rebuilt[i + r] += w * (1 - (off - i))
            rebuilt[i + r + 1] += w * (off - i)
        np.testing.assert_allclose(rebuilt[:-1], g, atol=1e-6)


def blur_ref(img, sigma, truncate=3.0):
    """Separable Gaussian with clamp to edge, float64, [0, 1] units, (H, W, C)."""
    a = _unit(img)
    r = max(1, math.ceil(truncate * sigma))
    t = np.arange(-r, r + 1)
    g = np.exp(-0.5 * (t / sigma) ** 2)
    g /= g.sum()
    H, W = a.shape[:2]
    p = np.pad(a, ((0, 0), (r, r), (0, 0)), mode="edge")
    h = sum(g[j] * p[:, j : j + W] for j in range(g.size))
    p = np.pad(h, ((r, r), (0, 0), (0, 0)), mode="edge")
    return sum(g[i] * p[i : i + H] for i in range(g.size))


@pytest.mark.parametrize("shape", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
@pytest.mark.parametrize("channels", [None, 3, 4])
def test_blur_image(rng, shape, dtype, channels, subtexel_bits):
    img = _random_image(rng, shape, dtype, channels)
    for sigma in (0.8, 2.5):
        got = library.blur_image(img, sigma)
        assert got.shape == img.shape and got.dtype == dtype
        frac = 2.0**-subtexel_bits
        atol = 2 * frac + 4 * _coord_err(*shape) + 1e-6  # two passes of reads weighing 1 in all
        _check(got, blur_ref(img, sigma), dtype, atol, None, f"blur_image σ={sigma}")


def test_blur_image_matches_the_buffer_blur(rng, subtexel_bits):
    img = rng.random((30, 41), dtype=np.float32)
    a, b = library.blur_image(img, 1.7), library.blur(img, 1.7)
    assert np.abs(a - b).max() <= 2 * 2.0**-subtexel_bits + 1e-5


def test_blur_image_rejects_bad_sigma():
    with pytest.raises(ValueError, match="sigma"):
        library.blur_image(np.zeros((4, 4), np.float32), 0.0)
