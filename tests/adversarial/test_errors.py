"""Mistakes give clear errors (the right type, naming what is wrong), never a raw traceback from
deep inside, a crash or a silent default (contract scenarios 6, 10, 19, 21, 23-28)."""

from __future__ import annotations

import pytest

from .conftest import run_scenario


def test_mixed_descriptor_types_on_one_binding_are_refused() -> None:
    run_scenario(
        """
        src = '''
        layout(local_size_x = 1) in;
        layout(binding = 0) buffer Storage { float b[]; };
        layout(binding = 0) uniform Uniform { float u; };
        void main() { b[0] = u; }
        '''
        with raises(vknb.PipelineCreationFailed, "Storage", "Uniform"):
            vknb.compile(src, name="mixed")
        check_usable()
        print("OK")
        """,
        validation=True,
        timeout=30,
    )


INCLUDES = """
import resource, tempfile
inc = tempfile.mkdtemp(dir=TMP)
with open(os.path.join(inc, "self.glsl"), "w") as f:
    f.write('#include "self.glsl"\\nfloat from_self() { return 1.0; }\\n')
with open(os.path.join(inc, "guard.glsl"), "w") as f:
    f.write('#ifndef GUARD_GLSL\\n#define GUARD_GLSL\\n#include "guard.glsl"\\n'
            'float from_guard() { return 2.5; }\\n#endif\\n')
with open(os.path.join(inc, "ping.glsl"), "w") as f:
    f.write('#include "pong.glsl"\\n')
with open(os.path.join(inc, "pong.glsl"), "w") as f:
    f.write('#include "ping.glsl"\\n')

def main_src(name, fn):
    return f'''#extension GL_GOOGLE_include_directive : require
#include "{name}.glsl"
layout(local_size_x = 64) in;
layout(binding = 0) buffer D {{ float d[]; }};
void main() {{ uint i = gl_GlobalInvocationID.x; if (i < d.length()) d[i] += {fn}; }}
'''
"""


def test_self_including_glsl_fails_promptly_with_bounded_memory() -> None:
    run_scenario(
        INCLUDES
        + """
for name, fn in [("self", "from_self()"), ("ping", "1.0")]:
    with raises(vknb.ShaderCompileError, "include", within=10.0) as r:
        vknb.compile(main_src(name, fn), name=f"rec_{name}", include_dirs=[inc])
    msg = str(r.value).lower()
    check(any(w in msg for w in ("depth", "recurs", "cycle")),
          f"message names neither the include depth nor the recursion: {msg}")
rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"largest compiler process: {rss_kib / 1024:.0f} MiB")
check(rss_kib < 1024 * 1024, f"the compiler grew to {rss_kib / 1024:.0f} MiB")
check_usable()
print("OK")
""",
        timeout=15,
    )


def test_guarded_self_include_compiles_and_runs() -> None:
    run_scenario(
        INCLUDES
        + """
k = vknb.compile(main_src("guard", "from_guard()"), name="guarded", include_dirs=[inc])
d = rng.random(200, dtype=np.float32)
ref = d + np.float32(2.5)
k(d, grid=200)
check(np.allclose(d, ref), "guarded include: wrong result")
print("OK")
""",
        validation=True,
        timeout=30,
    )


def test_push_member_given_twice_keyword_and_block_dict() -> None:
    run_scenario(
        """
        k = vknb.compile(ADD, name="add")
        n = 100
        x = rng.random(n, dtype=np.float32)
        y = rng.random(n, dtype=np.float32)
        y0 = y.copy()
        with raises(TypeError, "'a'"):
            k(x, y, a=2.0, P={"a": 3.0, "n": n}, grid=n)
        with raises(TypeError, "'n'"):
            k(x, y, n=n, P={"a": 3.0, "n": n}, grid=n)
        check(np.array_equal(y, y0), "a refused call changed y")
        k(x, y, P={"a": 3.0, "n": n}, grid=n)
        check(np.allclose(y, y0 + 3 * x, rtol=1e-5), "push block from a dict: wrong result")
        print("OK")
        """,
        timeout=30,
    )


BAD_ENV = """
big = rng.random(3 << 20, dtype=np.float32)  # 12 MiB: large enough for the copy threads
with raises(ValueError, "{var}"):
    k = vknb.compile(ADD, name="add")
    x = rng.random(100, dtype=np.float32)
    y = rng.random(100, dtype=np.float32)
    k(x, y, a=1.0, n=100, grid=100)
    check(np.array_equal(vknb.asarray(big).numpy(), big), "round trip wrong")
    vknb.synchronize()
print("OK")
"""


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("VKNB_TIMEOUT_S", "abc"),
        ("VKNB_TIMEOUT_S", "-1"),
        ("VKNB_COPY_THREADS", "0"),
        ("VKNB_COPY_THREADS", "x"),
    ],
)
def test_bad_environment_variable_is_a_value_error_naming_it(var: str, value: str) -> None:
    run_scenario(BAD_ENV.replace("{var}", var), env={var: value}, timeout=30)


def test_300_character_kernel_name_compiles_and_runs() -> None:
    run_scenario(
        """
        name = "k" + "_very_long_name" * 20
        name = name[:300]
        k = vknb.compile(ADD, name=name)
        n = 500
        x = rng.random(n, dtype=np.float32)
        y = rng.random(n, dtype=np.float32)
        ref = y + np.float32(0.25) * x
        rec = k(x, y, a=0.25, n=n, grid=n)
        check(np.allclose(y, ref, rtol=1e-5), "wrong result")
        check(rec.kernel == name, "the record does not carry the name")
        repr(k)
        print("OK")
        """,
        validation=True,
        timeout=30,
    )


def test_lone_surrogate_in_glsl_source_names_the_line() -> None:
    run_scenario(
        """
        src = ("layout(local_size_x = 1) in;\\n"
               "layout(binding = 0) buffer D { float d[]; };\\n"
               "// a comment with a lone surrogate: \\ud800\\n"
               "void main() { d[0] = 1.0; }\\n")
        with raises((ValueError, vknb.ShaderCompileError), "line 3"):
            vknb.compile(src, name="surrogate")
        check_usable()
        print("OK")
        """,
        timeout=30,
    )


def test_masked_array_argument_is_refused() -> None:
    run_scenario(
        """
        k = vknb.compile(ADD, name="add")
        n = 64
        x = rng.random(n, dtype=np.float32)
        y = rng.random(n, dtype=np.float32)
        y0 = y.copy()
        mx = np.ma.array(x, mask=rng.random(n) < 0.5)
        with raises(TypeError, "'X'", "masked"):
            k(mx, y, a=1.0, n=n, grid=n)
        my = np.ma.array(y.copy(), mask=np.zeros(n, bool))
        with raises(TypeError, "'Y'", "masked"):
            k(x, Y=my, a=1.0, n=n, grid=n)
        check(np.array_equal(y, y0), "a refused call changed y")
        print("OK")
        """,
        timeout=30,
    )


def test_ipython_vknb_use_99_names_the_devices() -> None:
    run_scenario(
        """
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "vknb")
        names = [d.name for d in vknb.devices()]
        with raises(vknb.NoDeviceFound, "99", names[0]):
            shell.run_line_magic("vknb", "use 99")
        r = shell.run_cell("import numpy as np\\nz = np.arange(5, dtype=np.float32) * 3")
        check(r.success, "the shell is not usable after the error")
        check(np.array_equal(shell.user_ns["z"], np.arange(5, dtype=np.float32) * 3), "cell")
        shell.run_line_magic("vknb", "use 0")
        check_usable()
        print("OK")
        """,
        timeout=30,
    )


def test_glsl_save_to_an_existing_directory_is_a_clear_error() -> None:
    run_scenario(
        """
        import tempfile
        from IPython.core.error import UsageError
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "vknb")
        target = tempfile.mkdtemp(dir=TMP)
        cell = '''layout(local_size_x = 64) in;
        layout(binding = 0) buffer D { float d[]; };
        void main() { d[gl_GlobalInvocationID.x] += 1.0; }
        '''
        with raises((ValueError, UsageError, vknb.VulkanError), target, "directory"):
            shell.run_cell_magic("glsl", f"inc --save {target}", cell)
        check("inc" not in shell.user_ns, "the kernel was bound despite the error")
        shell.run_cell_magic("glsl", "inc -q", cell)
        d = rng.random(64, dtype=np.float32)
        ref = d + 1
        shell.user_ns["inc"](d, grid=64)
        check(np.allclose(d, ref), "kernel from the magic: wrong result")
        print("OK")
        """,
        timeout=30,
    )


def test_array_of_another_logical_device_names_both_devices() -> None:
    run_scenario(
        """
        k = vknb.compile(ADD, name="add")
        n = 64
        x = rng.random(n, dtype=np.float32)
        y = rng.random(n, dtype=np.float32)
        other = vknb.Device(0)
        A = vknb.asarray(x, device=other)
        name = vknb.device().info.name
        with raises(ValueError, "'X'") as r:
            k(A, y, a=1.0, n=n, grid=n)
        check(str(r.value).count(name) >= 2, f"the message does not name both devices: {r.value}")
        y0 = y.copy()
        k(vknb.asarray(A.numpy()), y, a=1.0, n=n, grid=n)
        check(np.allclose(y, y0 + x, rtol=1e-6), "after moving the data: wrong result")
        A.close()
        other.close()
        print("OK")
        """,
        validation=True,
        timeout=30,
    )


def test_argument_mistakes_are_clear_errors() -> None:
    run_scenario(
        """
        k = vknb.compile(ADD, name="add")
        n = 100
        x = rng.random(n, dtype=np.float32)
        y = rng.random(n, dtype=np.float32)
        y0 = y.copy()
        ro = y.copy()
        ro.setflags(write=False)
        cases = [
            (ValueError, ("'X'", "contiguous"), lambda: k(rng.random(2 * n, dtype=np.float32)[::2], y, a=1.0, n=n, grid=n)),
            (ValueError, ("'Y'", "contiguous"), lambda: k(x, np.asfortranarray(rng.random((10, 10), dtype=np.float32)), a=1.0, n=n, grid=n)),
            (TypeError, ("'X'", "float32", "float64"), lambda: k(x.astype(np.float64), y, a=1.0, n=n, grid=n)),
            (TypeError, ("'X'", "float32"), lambda: k(vknb.asarray(x.astype(np.int32)), y, a=1.0, n=n, grid=n)),
            (ValueError, ("'Y'", "read-only"), lambda: k(x, ro, a=1.0, n=n, grid=n)),
            (TypeError, ("'X'", "list"), lambda: k(list(x), y, a=1.0, n=n, grid=n)),
            (TypeError, ("bogus",), lambda: k(x, y, a=1.0, n=n, bogus=3, grid=n)),
            (TypeError, ("'n'",), lambda: k(x, y, a=1.0, n=100.0, grid=n)),
            (ValueError, ("'n'",), lambda: k(x, y, a=1.0, n=-1, grid=n)),
            (ValueError, ("'n'",), lambda: k(x, y, a=1.0, n=2**32, grid=n)),
            (TypeError, ("'n'",), lambda: k(x, y, a=1.0, grid=n)),
            (TypeError, ("'a'",), lambda: k(x, y, a="1.0", n=n, grid=n)),
            (TypeError, ("'a'",), lambda: k(x, y, a=np.ones(3, np.float32), n=n, grid=n)),
            (TypeError, ("2",), lambda: k(x, y, y, a=1.0, n=n, grid=n)),
            (TypeError, ("'Y'",), lambda: k(x, y, Y=y, a=1.0, n=n, grid=n)),
            (ValueError, ("'X'",), lambda: k(np.zeros(0, np.float32), y, a=1.0, n=n, grid=n)),
            (TypeError, ("'X'",), lambda: k(np.array([object()] * 4), y, a=1.0, n=n, grid=n)),
            (TypeError, ("'X'",), lambda: k(memoryview(x), y, a=1.0, n=n, grid=n)),
            (TypeError, ("compile",), lambda: vknb.compile(None)),
            (vknb.SpirvError, ("spir-v",), lambda: vknb.compile(b"\\x03\\x02\\x23\\x07" + bytes(20))),
            (vknb.ShaderCompileError, (), lambda: vknb.compile("")),
            (TypeError, ("object",), lambda: vknb.asarray(np.array([object()]))),
        ]
        for exc, words, f in cases:
            with raises(exc, *words):
                f()
        check(np.array_equal(y, y0), "a refused call changed y")
        check_usable()
        print("OK")
        """,  # noqa: E501
        validation=True,
        timeout=30,
    )
