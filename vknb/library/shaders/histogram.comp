// histogram.comp -- bins[v] += number of elements equal to v, for uint values v < num_bins.
//
// Each workgroup counts into a private histogram in shared memory (atomicAdd on shared uints,
// cheap and uncontended across workgroups), then adds its non-zero counts to the global bins
// with one atomicAdd each.  Values >= num_bins are ignored.  With more than SHARED_BINS bins
// the kernel counts straight into global memory with atomics instead.
//
// Bindings (set 0):
//   0  values  readonly    uint[]  the values; at least n elements
//   1  bins    read/write  uint[]  the counts, accumulated (zero them first); num_bins elements
// Push constants:
//   uint n          number of values
//   uint num_bins   number of bins
// Specialization constants:
//   id 0  local_size_x = 256     workgroup size
//   id 1  SHARED_BINS = 4096     bins privatized in shared memory (4 bytes each: 16 KiB)
// Dispatch:
//   Grid-stride loop: any number of groups covers all n values.  Fewer, busier workgroups
//   amortize clearing and flushing the private histogram: groups=min(ceil(n / 256), 256).
// Usage:
//   k = vknb.library.load("histogram")
//   counts = np.zeros(64, np.uint32)
//   k(values, counts, n=values.size, num_bins=64, groups=min(-(-values.size // 256), 256))
//   vknb.library.histogram(values, 64)      # the helper; == np.bincount(values, minlength=64)

layout(local_size_x = 256, local_size_x_id = 0) in;
layout(constant_id = 1) const uint SHARED_BINS = 4096u;

layout(set = 0, binding = 0) readonly buffer ValuesBuf { uint values[]; };
layout(set = 0, binding = 1) buffer BinsBuf { uint bins[]; };

layout(push_constant) uniform Params {
    uint n;
    uint num_bins;
};

shared uint local_bins[SHARED_BINS];

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
    for (uint i = gl_GlobalInvocationID.x; i < n; i += stride) {
        uint v = values[i];
        if (v < num_bins) {
            if (privatized) {
                atomicAdd(local_bins[v], 1u);
            } else {
                atomicAdd(bins[v], 1u);
            }
        }
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
