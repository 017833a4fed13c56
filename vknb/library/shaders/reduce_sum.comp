// reduce_sum.comp -- sum of an array in one pass: partial sums, then the last workgroup adds them.
//
// Each workgroup adds up one contiguous share of the array ("even share", as CUB does): in
// each step its invocations load ITEMS elements each, into independent accumulators, with
// consecutive invocations on consecutive addresses (coalesced): with VEC4, ITEMS/4 uvec4
// loads (ITEMS a multiple of 4), the n % 4 elements after the last uvec4 one by one; without,
// ITEMS scalar loads.  The workgroup combines its invocations with subgroupAdd
// (GL_KHR_shader_subgroup_arithmetic) and one shared value per subgroup (SUBGROUPS=1), or
// with a shared-memory tree (SUBGROUPS=0), and writes its partial sum to sums[1 + group].  The
// last workgroup to finish (an atomic counter of finished workgroups) adds the partial sums,
// in the same tree shape, into sums[0] and resets the counter: one dispatch, the same result
// on every run (no float atomics), and the next call needs no clearing.  Integer sums are
// exact (mod 2^32) in any order; float sums are tree-shaped: each value goes through
// ~n / (groups * local_size * ITEMS) serial additions and log2 levels, far more accurate than
// a serial loop.
// Nothing assumes a subgroup size: gl_SubgroupSize is 8 on lavapipe, 32 on NVIDIA, 64 on AMD.
// Chosen per device by vknb.library.reduce_sum (once; vknb.library.tuning("reduce_sum")):
// 256 x 16 with 16-byte loads and at most 2048 workgroups on discrete GPUs; 256 x 8, at most
// 512 on other GPUs; 256 x 8 with 4-byte loads, at most 128 on CPU drivers; SUBGROUPS=0 where
// the device has no subgroup arithmetic.
//
// Bindings (set 0):
//   0  x      readonly  T[]  the values; at least n elements
//   0  x4     readonly  T4[] the same buffer, 4 elements at a time (T4 = vec4/ivec4/uvec4)
//   1  sums   coherent  T[]  sums[0] = the total (the result); sums[1 + g] = group g's partial
//                            sum; at least groups + 1 elements
//   2  state  uint[]         [0]: finished workgroups; zero before the first call, and left at
//                            zero by every call (calls that share it must not overlap)
// Push constants:
//   uint n   number of values to add
// Specialization constants:
//   id 0  local_size_x = 256  workgroup size (any size)
//   id 1  ITEMS = 16          elements per invocation and loop step
//   id 2  VEC4 = true         16-byte loads (GPUs); false: 4-byte loads (CPU drivers, where a
//                             vector load per invocation becomes a gather)
// Defines:
//   T = float (default), int or uint: the element type (integer sums wrap around mod 2^32)
//   SUBGROUPS = 1 (default): subgroupAdd; 0: shared memory only
// Dispatch:
//   groups = G, any G >= 1: enough to fill the device, e.g. min(ceil(n / (256 * 16)), 2048).
//   (lavapipe ends a loop after 65535 iterations: keep n / (G * 256 * 16) well below that.)
// Usage:
//   k = vknb.library.load("reduce_sum")
//   sums = vknb.empty(G + 1, np.float32); state = vknb.zeros(1, np.uint32)   # state: once
//   k(x, sums, state, n=x.size, groups=G)
//   total = sums.numpy()[0]
//   vknb.library.reduce_sum(x)             # the helper: tuned sizes, cached buffers

#ifndef SUBGROUPS
#define SUBGROUPS 1
#endif
#if SUBGROUPS
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

#ifndef T
#define T float
#endif
#define VEC4_float vec4
#define VEC4_int ivec4
#define VEC4_uint uvec4
#define PASTE(a, b) a##b
#define XPASTE(a, b) PASTE(a, b)
#define T4 XPASTE(VEC4_, T)

layout(local_size_x = 256, local_size_x_id = 0) in;
layout(constant_id = 1) const uint ITEMS = 16u;
layout(constant_id = 2) const bool VEC4 = true;

layout(set = 0, binding = 0) readonly buffer XBuf { T x[]; };
layout(set = 0, binding = 0) readonly buffer XBuf4 { T4 x4[]; };
layout(set = 0, binding = 1) coherent buffer SumsBuf { T sums[]; };
layout(set = 0, binding = 2) buffer StateBuf { uint state[]; };

layout(push_constant) uniform Params {
    uint n;
};

// One slot per subgroup (a subgroup has at least one invocation) or per invocation.
shared T s_sums[gl_WorkGroupSize.x];
shared T s_total;
shared bool s_last;

// The sum of one value per invocation, returned to every invocation.
T workgroup_sum(T v) {
#if SUBGROUPS
    v = subgroupAdd(v);
    if (subgroupElect()) {
        s_sums[gl_SubgroupID] = v;
    }
    barrier();
    // The first subgroup folds the per-subgroup sums (there may be more of them than it has
    // invocations: 256 / 8 = 32 on lavapipe), then reduces across itself.
    if (gl_SubgroupID == 0u) {
        T w = T(0);
        for (uint s = gl_SubgroupInvocationID; s < gl_NumSubgroups; s += gl_SubgroupSize) {
            w += s_sums[s];
        }
        w = subgroupAdd(w);
        if (subgroupElect()) {
            s_total = w;
        }
    }
#else
    uint lid = gl_LocalInvocationID.x;
    s_sums[lid] = v;
    barrier();
    uint half_size = 1u;
    while (2u * half_size < gl_WorkGroupSize.x) {
        half_size *= 2u;
    }
    for (uint d = half_size; d > 0u; d >>= 1) {
        if (lid < d && lid + d < gl_WorkGroupSize.x) {
            s_sums[lid] += s_sums[lid + d];
        }
        barrier();
    }
    if (lid == 0u) {
        s_total = s_sums[0];
    }
#endif
    barrier();
    T total = s_total;
    barrier();  // s_sums and s_total may be written again right after
    return total;
}

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint group = gl_WorkGroupID.x;
    uint groups = gl_NumWorkGroups.x;
    uint local_size = gl_WorkGroupSize.x;

    // Even share: workgroup g adds up the g-th of `groups` contiguous ranges of loads (a load:
    // one T4 with VEC4, else one T), in steps of U loads per invocation, consecutive
    // invocations on consecutive loads.  The n % 4 elements after the last T4 come last.
    bool vec4_loads = VEC4 && ITEMS % 4u == 0u;
    const uint U4 = ITEMS >= 4u ? ITEMS / 4u : 1u;  // T4 loads per step (ITEMS % 4 == 0)
    uint U = vec4_loads ? U4 : ITEMS;
    uint loads = vec4_loads ? n >> 2 : n;
    uint step = U * local_size;
    uint steps = loads / step + (loads % step != 0u ? 1u : 0u);
    uint share = (steps / groups + (steps % groups != 0u ? 1u : 0u)) * step;
    uint lo = min(group * share, loads);
    uint hi = min(lo + share, loads);

    T acc = T(0);
    uint i = lo + lid;
    if (vec4_loads) {
        T4 a = T4(0);
        for (; i + (U - 1u) * local_size < hi; i += step) {
            for (uint u = 0u; u < U4; ++u) {  // U4 independent loads per step
                a += x4[i + u * local_size];
            }
        }
        for (; i < hi; i += local_size) {
            a += x4[i];
        }
        acc = (a.x + a.y) + (a.z + a.w);
        uint tail = 4u * loads + group * local_size + lid;
        if (tail < n) {
            acc += x[tail];
        }
    } else {
        for (; i + (U - 1u) * local_size < hi; i += step) {
            for (uint u = 0u; u < ITEMS; ++u) {  // ITEMS independent loads per step
                acc += x[i + u * local_size];
            }
        }
        for (; i < hi; i += local_size) {
            acc += x[i];
        }
    }

    // Every invocation reaches this point (uniform control flow), as subgroup ops require.
    T partial = workgroup_sum(acc);
    if (lid == 0u) {
        sums[1u + gl_WorkGroupID.x] = partial;
        memoryBarrierBuffer();  // the partial sum is visible before the count says so
        s_last = atomicAdd(state[0], 1u) == gl_NumWorkGroups.x - 1u;
    }
    barrier();
    if (s_last) {  // uniform: the last workgroup to finish adds the partial sums
        memoryBarrierBuffer();
        T w = T(0);
        for (uint g = lid; g < gl_NumWorkGroups.x; g += gl_WorkGroupSize.x) {
            w += sums[1u + g];
        }
        T total = workgroup_sum(w);
        if (lid == 0u) {
            sums[0] = total;
            atomicExchange(state[0], 0u);
        }
    }
}
