// scan.comp -- prefix sum (inclusive or exclusive) of arrays of any length, in passes.
//
// The portable scan: vknb.library.scan uses it where the single-pass scan_lookback.comp cannot
// run (no 64-bit atomics), and where lavapipe's loop guard cut a look-back short.
// A workgroup scans one block of B = local_size_x * ITEMS consecutive elements: each invocation
// scans its ITEMS elements serially, the workgroup scans the invocations' totals with
// subgroupExclusiveAdd (GL_KHR_shader_subgroup_arithmetic) and a shared array of subgroup
// totals (or a shared-memory scan with SUBGROUPS=0), and the block's total goes to
// sums[block].  Arrays longer than one block take three steps (vknb.library.scan does them,
// recursively); each element is read twice and written twice:
//   1. mode=0: scan every block of x into y; block totals into sums      (groups = nblocks)
//   2. exclusive scan of sums, by this same kernel (recursion while nblocks > 1)
//   3. mode=1: y[i] += scanned_sums[block of i]                          (groups = nblocks)
//
// Bindings (set 0):
//   0  x     readonly  T[]  input, at least n elements (mode 1 never reads it: bind y again)
//   1  y     T[]            output: the scan of x within each block (mode 0); gets the block
//                           offsets added (mode 1); at least n elements
//   2  sums  T[]            mode 0 writes block totals, mode 1 reads block offsets; at least
//                           nblocks = ceil(n / B) elements
// Push constants:
//   uint n          number of elements
//   uint exclusive  1: y[i] = x[0] + ... + x[i-1] (y[0] = 0); 0: inclusive, ... + x[i]
//   uint mode       0: scan blocks; 1: add block offsets
// Specialization constants:
//   id 0  local_size_x = 256  workgroup size
//   id 1  ITEMS = 4           elements per invocation (B = local_size_x * ITEMS = 1024)
// Defines:
//   T = float (default), int or uint (integer scans wrap around mod 2^32)
//   SUBGROUPS = 1 (default): subgroup scans; 0: shared memory only
// Dispatch:
//   groups=ceil(n / B) for both modes (at most 65535 blocks on some GPUs: n <= 67 million).
// Usage:
//   k = vknb.library.load("scan")
//   B = 256 * 4; nb = -(-n // B)
//   y = vknb.empty(n, np.float32); sums = vknb.empty(nb, np.float32)
//   k(x, y, sums, n=n, exclusive=0, mode=0, groups=nb)          # enough when nb == 1
//   offs = ...exclusive scan of sums (same kernel)...
//   k(y, y, offs, n=n, exclusive=0, mode=1, groups=nb)
//   vknb.library.scan(x, exclusive=False)                       # the helper

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

layout(local_size_x = 256, local_size_x_id = 0) in;
layout(constant_id = 1) const uint ITEMS = 4u;

layout(set = 0, binding = 0) readonly buffer XBuf { T x[]; };
layout(set = 0, binding = 1) buffer YBuf { T y[]; };
layout(set = 0, binding = 2) buffer SumsBuf { T sums[]; };

layout(push_constant) uniform Params {
    uint n;
    uint exclusive;
    uint mode;
};

// One slot per subgroup (SUBGROUPS=1) or per invocation (SUBGROUPS=0).
shared T s_scan[gl_WorkGroupSize.x];

// Exclusive scan of one value per invocation across the workgroup.
T workgroup_exclusive_scan(T v) {
#if SUBGROUPS
    T before = subgroupExclusiveAdd(v);
    T sum = subgroupAdd(v);
    if (subgroupElect()) {
        s_scan[gl_SubgroupID] = sum;
    }
    barrier();
    if (gl_SubgroupID == 0u) {
        // The first subgroup scans the subgroup totals in chunks of gl_SubgroupSize.
        T carry = T(0);
        for (uint s0 = 0u; s0 < gl_NumSubgroups; s0 += gl_SubgroupSize) {
            uint s = s0 + gl_SubgroupInvocationID;
            T w = s < gl_NumSubgroups ? s_scan[s] : T(0);
            T b = subgroupExclusiveAdd(w);
            if (s < gl_NumSubgroups) {
                s_scan[s] = carry + b;
            }
            carry += subgroupAdd(w);
        }
    }
    barrier();
    return s_scan[gl_SubgroupID] + before;
#else
    uint lid = gl_LocalInvocationID.x;
    s_scan[lid] = v;
    barrier();
    // Hillis-Steele: after the step with offset d, slot i holds the sum of 2d values.
    for (uint d = 1u; d < gl_WorkGroupSize.x; d <<= 1) {
        T add = lid >= d ? s_scan[lid - d] : T(0);
        barrier();
        s_scan[lid] += add;
        barrier();
    }
    return lid > 0u ? s_scan[lid - 1u] : T(0);
#endif
}

void main() {
    uint block = gl_WorkGroupID.x;
    uint lid = gl_LocalInvocationID.x;
    uint base = block * gl_WorkGroupSize.x * ITEMS + lid * ITEMS;

    if (mode == 1u) {
        T offset = sums[block];
        for (uint k = 0u; k < ITEMS; ++k) {
            uint i = base + k;
            if (i < n) {
                y[i] += offset;
            }
        }
        return;
    }

    // 1. Serial scan of this invocation's elements (kept exclusive; the total in `run`).
    T local_excl[ITEMS];
    T run = T(0);
    for (uint k = 0u; k < ITEMS; ++k) {
        uint i = base + k;
        T v = i < n ? x[i] : T(0);
        local_excl[k] = run;
        run += v;
    }

    // 2. Exclusive scan of the invocations' totals across the workgroup.
    T offset = workgroup_exclusive_scan(run);

    // 3. Write the block's scan and, from the last invocation, the block total.
    for (uint k = 0u; k < ITEMS; ++k) {
        uint i = base + k;
        if (i < n) {
            y[i] = exclusive != 0u ? offset + local_excl[k]
                                   : offset + (local_excl[k] + x[i]);
        }
    }
    if (lid == gl_WorkGroupSize.x - 1u) {
        sums[block] = offset + run;
    }
}
