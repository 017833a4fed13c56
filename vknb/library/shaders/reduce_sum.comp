// reduce_sum.comp -- partial sums: partial[g] = sum of the elements that workgroup g visits.
//
// Two-pass reduction.  Each invocation adds up elements i, i + S, i + 2S, ... (S = invocations
// in the dispatch: a grid-stride loop, coalesced); the workgroup then combines its invocations
// with subgroupAdd (GL_KHR_shader_subgroup_arithmetic) and a shared-memory array holding one
// value per subgroup, and writes one partial sum.  Run it again on the partial sums, with one
// workgroup, to get the total (vknb.library.reduce_sum does exactly that).  Nothing assumes a
// subgroup size: gl_SubgroupSize is 8 on lavapipe, 32 on NVIDIA, 64 on AMD.
//
// Bindings (set 0):
//   0  x        readonly   T[]  the values; at least n elements
//   1  partial  writeonly  T[]  one sum per workgroup: at least (number of groups) elements
// Push constants:
//   uint n   number of values to add
// Specialization constants:
//   id 0  local_size_x = 256  workgroup size (any size; shared memory = 4 bytes per invocation)
// Defines:
//   T = float (default), int or uint: the element type (integer sums wrap around mod 2^32)
// Dispatch:
//   First pass: groups=G with G = min(ceil(n / (256 * 4)), 1024), about 4 elements per
//   invocation.  Then call it again on the G partial sums (n=G, groups=1), and so on while more
//   than one value is left.
// Usage:
//   k = vknb.library.load("reduce_sum")
//   partial = vknb.empty(G, np.float32)
//   k(x, partial, n=x.size, groups=G)
//   total = vknb.empty(1, np.float32)
//   k(partial, total, n=G, groups=1); total.numpy()[0]
//   vknb.library.reduce_sum(x)             # the helper

#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require

#ifndef T
#define T float
#endif

layout(local_size_x = 256, local_size_x_id = 0) in;

layout(set = 0, binding = 0) readonly buffer XBuf { T x[]; };
layout(set = 0, binding = 1) writeonly buffer PartialBuf { T partial[]; };

layout(push_constant) uniform Params {
    uint n;
};

// One slot per subgroup; a subgroup has at least one invocation, so this is always enough.
shared T subgroup_sums[gl_WorkGroupSize.x];

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    T acc = T(0);
    for (uint i = gl_GlobalInvocationID.x; i < n; i += stride) {
        acc += x[i];
    }
    // Every invocation reaches this point (uniform control flow), as subgroup ops require.
    acc = subgroupAdd(acc);
    if (subgroupElect()) {
        subgroup_sums[gl_SubgroupID] = acc;
    }
    barrier();
    // The first subgroup folds the per-subgroup sums (there may be more of them than it has
    // invocations: 256 / 8 = 32 on lavapipe), then reduces across itself.
    if (gl_SubgroupID == 0u) {
        T v = T(0);
        for (uint s = gl_SubgroupInvocationID; s < gl_NumSubgroups; s += gl_SubgroupSize) {
            v += subgroup_sums[s];
        }
        v = subgroupAdd(v);
        if (subgroupElect()) {
            partial[gl_WorkGroupID.x] = v;
        }
    }
}
