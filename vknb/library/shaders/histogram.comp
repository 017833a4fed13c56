// histogram.comp -- bins[v] += number of elements equal to v, for uint values v < num_bins.
//
// Each workgroup counts into a private histogram in shared memory (atomicAdd on shared uints,
// cheap and uncontended across workgroups), then adds its non-zero counts to the global bins
// with one atomicAdd each.  Values >= num_bins are ignored.  With more than SHARED_BINS bins
// the kernel counts straight into global memory with atomics instead.
// The values are read as uvec4, two loads in flight per invocation and iteration (a counting
// kernel issues few loads of its own, so the loads in flight set its bandwidth); the last
// n % 4 values are read one by one.
// Data with long runs of one value (an image's background) adds to one shared counter many
// times in a row; on the H100 that still reads at a copy's bandwidth (an equal-values path
// through subgroup votes was measured slower there and on lavapipe, and was dropped).
//
// Bindings (set 0):
//   0  values   readonly    uint[]   the values; at least n elements
//   0  values4  readonly    uvec4[]  the same buffer, 4 values at a time
//   1  bins     read/write  uint[]   the counts, accumulated (zero them first); num_bins elements
// Push constants:
//   uint n          number of values
//   uint num_bins   number of bins
// Specialization constants:
//   id 0  local_size_x = 256     workgroup size
//   id 1  SHARED_BINS = 4096     bins privatized in shared memory (4 bytes each: 16 KiB)
// Dispatch:
//   Grid-stride loop: any number of groups covers all n values.  Each workgroup flushes its
//   private histogram with up to num_bins global atomics, so fewer, busier workgroups amortize
//   that; vknb.library.histogram takes enough to fill the device (library.tuning("histogram")).
// Usage:
//   k = vknb.library.load("histogram")
//   counts = np.zeros(64, np.uint32)
//   k(values, counts, n=values.size, num_bins=64, groups=min(-(-values.size // 1024), 256))
//   vknb.library.histogram(values, 64)      # the helper; == np.bincount(values, minlength=64)

layout(local_size_x = 256, local_size_x_id = 0) in;
layout(constant_id = 1) const uint SHARED_BINS = 4096u;

layout(set = 0, binding = 0) readonly buffer ValuesBuf { uint values[]; };
layout(set = 0, binding = 0) readonly buffer ValuesBuf4 { uvec4 values4[]; };
layout(set = 0, binding = 1) buffer BinsBuf { uint bins[]; };

layout(push_constant) uniform Params {
    uint n;
    uint num_bins;
};

shared uint local_bins[SHARED_BINS];

void add(uint v, uint c, bool privatized) {
    if (v < num_bins) {
        if (privatized) {
            atomicAdd(local_bins[v], c);
        } else {
            atomicAdd(bins[v], c);
        }
    }
}

void count4(uvec4 q, bool privatized) {
    add(q.x, 1u, privatized);
    add(q.y, 1u, privatized);
    add(q.z, 1u, privatized);
    add(q.w, 1u, privatized);
}

void main() {
    uint lid = gl_LocalInvocationID.x;
    bool privatized = num_bins <= SHARED_BINS;

    if (privatized) {
        for (uint b = lid; b < num_bins; b += gl_WorkGroupSize.x) {
            local_bins[b] = 0u;
        }
    }
    barrier();

    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    uint n4 = n >> 2;
    uint i = gl_GlobalInvocationID.x;
    for (; i + stride < n4; i += 2u * stride) {
        uvec4 a = values4[i];
        uvec4 b = values4[i + stride];
        count4(a, privatized);
        count4(b, privatized);
    }
    if (i < n4) {
        count4(values4[i], privatized);
    }
    if (gl_GlobalInvocationID.x < (n & 3u)) {
        add(values[(n4 << 2) + gl_GlobalInvocationID.x], 1u, privatized);
    }
    barrier();

    if (privatized) {
        for (uint b = lid; b < num_bins; b += gl_WorkGroupSize.x) {
            uint c = local_bins[b];
            if (c != 0u) {
                atomicAdd(bins[b], c);
            }
        }
    }
}
