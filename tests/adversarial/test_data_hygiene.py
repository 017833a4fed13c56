"""Right results where careless use could silently give wrong ones: aliased bindings, shared
binding slots, descriptor arrays, partial writeonly outputs, bool push constants (contract
scenarios 6, 15, 16, 17, 22)."""

from __future__ import annotations

from .conftest import run_scenario


def test_two_blocks_of_the_same_type_on_one_binding_share_one_argument() -> None:
    run_scenario(
        """
        k = vknb.compile('''
        layout(local_size_x = 1) in;
        layout(binding = 0) buffer A { float a[]; };
        layout(binding = 0) buffer B { uint b[]; };
        void main() { a[0] = 2.5; b[1] = 7u; }
        ''', name="shared_slot")
        def expect(raw_f32, label):
            got = raw_f32.view(np.uint32)
            check(raw_f32[0] == np.float32(2.5), f"{label}: a[0] = {raw_f32[0]}")
            check(got[1] == 7, f"{label}: b[1] = {got[1]}")
        for label, call in [
            ("by position", lambda v: k(v, groups=1)),
            ("by name A", lambda v: k(A=v, groups=1)),
            ("by name a", lambda v: k(a=v, groups=1)),
        ]:
            v = rng.random(8, dtype=np.float32)
            rest = v[2:].copy()
            call(v)
            expect(v, label)
            check(np.array_equal(v[2:], rest), f"{label}: other elements changed")
        for label, call in [("by name B", lambda u: k(B=u, groups=1)),
                            ("by name b", lambda u: k(b=u, groups=1))]:
            u = rng.integers(0, 2**32, 8, dtype=np.uint32)
            rest = u[2:].copy()
            call(u)
            expect(u.view(np.float32), label)
            check(np.array_equal(u[2:], rest), f"{label}: other elements changed")
        V = vknb.asarray(rng.random(8, dtype=np.float32))
        k(V, groups=1)
        expect(V.numpy(), "device Array")
        with raises(TypeError):
            k(A=rng.random(8, dtype=np.float32), B=rng.integers(0, 9, 8, dtype=np.uint32),
              groups=1)
        print("OK")
        """,
        validation=True,
        timeout=30,
    )


DESCRIPTOR_ARRAY = '''
DA = """
layout(local_size_x = 64) in;
layout(binding = 0) buffer B { float d[]; } bufs[4];
layout(push_constant) uniform P { uint n; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= n) return;
    for (int j = 0; j < 4; j++) bufs[j].d[i] = bufs[j].d[i] * 2.0 + float(j + 1);
}
"""
'''


def test_descriptor_array_binding_takes_a_list_of_arrays() -> None:
    run_scenario(
        DESCRIPTOR_ARRAY
        + """
k = vknb.compile(DA, name="desc_array")
n = 300
arrs = [rng.random(n, dtype=np.float32) for _ in range(4)]
refs = [a * 2 + (j + 1) for j, a in enumerate(arrs)]
k(arrs, n=n, grid=n)
for j in range(4):
    check(np.allclose(arrs[j], refs[j], rtol=1e-6), f"element {j} of the list is wrong")
dev = [vknb.asarray(rng.random(n, dtype=np.float32)) for _ in range(4)]
start = [d.numpy() for d in dev]
k(bufs=dev, n=n, grid=n)
for j in range(4):
    check(np.allclose(dev[j].numpy(), start[j] * 2 + (j + 1), rtol=1e-6), f"Array {j} wrong")
for wrong in (arrs[:3], arrs + [arrs[0].copy()]):
    with raises((TypeError, ValueError), "bufs", "4"):
        k(wrong, n=n, grid=n)
print("OK")
""",
        validation=True,
        timeout=30,
    )


def test_unsized_descriptor_array_is_refused_at_compile() -> None:
    run_scenario(
        """
        src = '''
        #extension GL_EXT_nonuniform_qualifier : require
        layout(local_size_x = 64) in;
        layout(binding = 0) buffer B { float d[]; } bufs[];
        void main() { uint i = gl_GlobalInvocationID.x; bufs[nonuniformEXT(i % 2u)].d[i] = 1.0; }
        '''
        with raises((vknb.VulkanError, ValueError), "bufs"):
            vknb.compile(src, name="unsized")
        check_usable()
        print("OK")
        """,
        timeout=30,
    )


def test_same_numpy_array_on_two_writable_bindings_matches_device_array() -> None:
    run_scenario(
        """
        k = vknb.compile('''
        layout(local_size_x = 64) in;
        layout(binding = 0) buffer A { float a[]; };
        layout(binding = 1) buffer B { float b[]; };
        layout(push_constant) uniform P { uint n; };
        void main() {
            uint i = gl_GlobalInvocationID.x;
            if (i < n) { a[i] += 1.0; b[i] += 1.0; }
        }
        ''', name="twice")
        n = 1000
        base = rng.random(n, dtype=np.float32)
        ref = base + 2  # both bindings are the same memory
        x = base.copy()
        k(x, x, n=n, grid=n)
        X = vknb.asarray(base)
        k(X, X, n=n, grid=n)
        check(np.allclose(X.numpy(), ref), "same Array twice: not +2")
        check(np.allclose(x, ref), f"same numpy array twice: {x[:3] - base[:3]} instead of +2")
        z = base.copy()
        k(z[:], z, n=n, grid=n)  # a view and its base alias too
        check(np.allclose(z, ref), f"view + base: {z[:3] - base[:3]} instead of +2")
        print("OK")
        """,
        validation=True,
        timeout=30,
    )


def test_writeonly_binding_partly_written_leaves_zeros_not_old_bytes() -> None:
    run_scenario(
        """
        k = vknb.compile('''
        layout(local_size_x = 64) in;
        layout(binding = 0) readonly buffer S { float s[]; };
        layout(binding = 1) writeonly buffer O { float o[]; };
        layout(push_constant) uniform P { uint n; };
        void main() {
            uint i = gl_GlobalInvocationID.x;
            if (i < n && i % 2u == 0u) o[i] = s[i] * 3.0;
        }
        ''', name="evens")
        n = 1000
        for call in range(3):
            s = rng.random(n, dtype=np.float32) + call
            out = rng.random(n, dtype=np.float32) + 10 * (call + 1)  # never uploaded
            k(s, out, n=n, grid=n)
            check(np.allclose(out[0::2], s[0::2] * 3), f"call {call}: written part wrong")
            check(np.all(out[1::2] == 0),
                  f"call {call}: unwritten part holds {out[1:8:2]} instead of zeros")
        print("OK")
        """,
        validation=True,
        timeout=30,
    )


def test_bool_push_constant_takes_true_and_false() -> None:
    run_scenario(
        """
        k = vknb.compile('''
        layout(local_size_x = 64) in;
        layout(binding = 0) buffer D { uint d[]; };
        layout(push_constant) uniform P { bool flag; uint add; };
        void main() {
            uint i = gl_GlobalInvocationID.x;
            if (i < d.length()) d[i] = d[i] + (flag ? add : 0u);
        }
        ''', name="boolpc")
        for flag in (True, False, True, np.bool_(False)):
            d = rng.integers(0, 1000, 100, dtype=np.uint32)
            ref = d + (5 if flag else 0)
            k(d, flag=flag, add=5, grid=100)
            check(np.array_equal(d, ref), f"flag={flag!r}: shader saw the wrong value")
        d = rng.integers(0, 1000, 100, dtype=np.uint32)
        ref = d + 7
        k(d, P={"flag": True, "add": 7}, grid=100)
        check(np.array_equal(d, ref), "flag=True in a dict: wrong")
        print("OK")
        """,
        validation=True,
        timeout=30,
    )
