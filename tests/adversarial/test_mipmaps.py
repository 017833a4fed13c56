"""Mip levels of device images under threads, Ctrl-C and early close, on both ways of making
them: linear blits (where the compute queue can blit, as on lavapipe) and the host (where it
cannot, as on NVIDIA's compute-only queue family, which runs the host path in both modes).
The host path is forced here through ``vknb.core.image._BLIT_MIPMAPS``, the one private name
these scenarios use: on lavapipe it is the only way to run it."""

from __future__ import annotations

import pytest

from .conftest import run_interrupt_scenario, run_scenario

# levels(img) reads every mip level of a 2-D rgba image with texelFetch; want(a) is what the
# levels of data a must be (the host path's own filter, checked against blits in
# tests/core/test_image.py); same(img, a) checks img holds a with its own levels.
HELPERS = """
from vknb.core import image as image_mod
image_mod._BLIT_MIPMAPS = {blit}
LEVELS = '''
layout(local_size_x = 8, local_size_y = 8) in;
layout(binding = 0) uniform sampler2D tex;
layout(binding = 1) buffer O { vec4 o[]; };
layout(push_constant) uniform P { int lod; int w; int h; };
void main() {
    ivec2 p = ivec2(gl_GlobalInvocationID.xy);
    if (p.x < w && p.y < h) o[p.y * w + p.x] = texelFetch(tex, p, lod);
}
'''
k_levels = vknb.compile(LEVELS, name="levels")

def levels(img):
    h, w = img.shape[:2]
    out = []
    for lod in range(img.mip_levels):
        lw, lh = max(1, w >> lod), max(1, h >> lod)
        o = np.zeros((lh, lw, 4), np.float32)
        k_levels(img, o, lod=lod, w=lw, h=lh, grid=(lw, lh))
        out.append(o)
    return out

def want(a):
    x = a.reshape(1, 1, *a.shape)
    out = [a]
    for _ in range(max(a.shape[:2]).bit_length() - 1):
        x = image_mod._half_level(x, "float", np.dtype(np.float32))
        out.append(x[0, 0])
    return out

def same(img, a, what):
    for lod, (x, y) in enumerate(zip(levels(img), want(a), strict=True)):
        check(np.allclose(x, y, atol=1e-5), f"{what}: level {lod} is not the data's")

def images():
    return vknb.device().memory_stats().images

def baseline():
    # memory after a first image round trip (the staging ring of the device is made lazily)
    warm = vknb.asimage(rng.random((8, 8, 4), dtype=np.float32), mipmaps=True)
    warm.numpy()
    warm.close()
    return settle(), images()
"""

MODES = pytest.mark.parametrize("blit", [True, False], ids=["blits", "host"])


@MODES
def test_threads_updating_images_keep_each_level_with_its_data(blit: bool) -> None:
    """Four threads each update their own image and make its levels again; two more update one
    shared image: it ends holding one thread's data with that data's levels, never level 0 of
    one and the levels of the other."""
    run_scenario(
        HELPERS.replace("{blit}", str(blit))
        + """
datas = [rng.random((48, 40, 4), dtype=np.float32) for _ in range(4)]
datas += [rng.random((256, 192, 4), dtype=np.float32) for _ in range(2)]
own = [vknb.asimage(datas[i], mipmaps=True) for i in range(4)]
shared = vknb.asimage(datas[4], mipmaps=True)
errors = []
ROUNDS = 12
gate = threading.Barrier(3, timeout=60)

def mine(i):
    try:
        for r in range(15):
            a = datas[(i + r) % 4]
            own[i].update(a)
            if r % 3 == 0:
                own[i].generate_mipmaps()
            check(np.array_equal(own[i].numpy(), a), f"thread {i}: level 0 wrong")
    except BaseException as e:
        errors.append(e)

def both(j):
    try:
        for _ in range(ROUNDS):
            gate.wait()  # both update the shared image at once
            shared.update(datas[4 + j])
            gate.wait()  # the main thread checks it
    except BaseException as e:
        errors.append(e)
        gate.abort()

threads = [threading.Thread(target=mine, args=(i,)) for i in range(4)]
threads += [threading.Thread(target=both, args=(j,)) for j in range(2)]
for t in threads:
    t.start()
for r in range(ROUNDS):
    gate.wait()
    gate.wait()
    last = shared.numpy()
    check(any(np.array_equal(last, d) for d in datas[4:]), f"round {r}: neither update")
    same(shared, last, f"shared image, round {r}")
for t in threads:
    t.join(60)
check(not errors, f"errors in threads: {errors[:2]}")
for i in range(4):
    same(own[i], own[i].numpy(), f"image {i}")
print("OK")
""",
        validation=True,
        timeout=120,
    )


@MODES
def test_ctrl_c_while_levels_are_made_then_the_image_still_works(blit: bool) -> None:
    """Ctrl-C in a loop of updates of a 1024² mipmapped image: prompt, the image and the session
    still work, an update makes right levels, and memory goes back to its baseline."""
    run_interrupt_scenario(
        HELPERS.replace("{blit}", str(blit))
        + """
base = baseline()
a = rng.random((1024, 1024, 4), dtype=np.float32)
b = rng.random((1024, 1024, 4), dtype=np.float32)
img = vknb.asimage(a, mipmaps=True)
ready()
t0 = time.monotonic()
try:
    while time.monotonic() - t0 < 8:
        img.update(b)
        img.update(a)
    no_interrupt("8 s of Image.update with mip levels")
except KeyboardInterrupt:
    lat = sigint_latency()
print(f"KeyboardInterrupt {lat * 1000:.0f} ms after SIGINT")
check(lat < 1.0, f"KeyboardInterrupt came {lat:.2f} s after SIGINT (limit 1 s)")
img.update(b)
check(np.array_equal(img.numpy(), b), "level 0 wrong after the interrupt")
del img
# (before kernels with numpy arguments run: they keep scratch buffers for the next call)
check((settle(), images()) == base, f"not back at baseline: {base} -> {(settle(), images())}")
img = vknb.asimage(b, mipmaps=True)
same(img, b, "an image made after the interrupt")
img.update(a)
same(img, a, "an image updated after the interrupt")
check_usable()
print("OK")
""",
        delay=0.5,
        timeout=90,
    )


@MODES
def test_image_closed_early_or_while_another_thread_updates_it(blit: bool) -> None:
    """A closed image refuses generate_mipmaps and update with ObjectClosed; closing an image
    while another thread updates it ends that thread's update or raises ObjectClosed, never a
    crash or a validation error; memory goes back to its baseline."""
    run_scenario(
        HELPERS.replace("{blit}", str(blit))
        + """
base = baseline()
a = rng.random((96, 80, 4), dtype=np.float32)
img = vknb.asimage(a, mipmaps=True, label="early")
img.close()
with raises(vknb.ObjectClosed, "early"):
    img.generate_mipmaps()
with raises(vknb.ObjectClosed, "early"):
    img.update(a)
for round in range(10):
    victim = vknb.asimage(a, mipmaps=True, label=f"victim{round}")
    outcome = []

    def updater():
        try:
            for _ in range(50):
                victim.update(a)
            outcome.append("done")
        except vknb.ObjectClosed:
            outcome.append("closed")
        except BaseException as e:
            outcome.append(e)

    t = threading.Thread(target=updater)
    t.start()
    time.sleep(0.002 * round)
    victim.close()
    t.join(30)
    check(outcome and outcome[0] in ("done", "closed"), f"round {round}: {outcome}")
del img, victim
check((settle(), images()) == base, f"not back at baseline: {base} -> {(settle(), images())}")
check_usable()
print("OK")
""",
        validation=True,
        timeout=120,
    )
