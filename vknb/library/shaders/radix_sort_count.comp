// radix_sort_count.comp -- radix sort, step 1 of a pass: digit counts of each tile of keys.
//
// LSD radix sort of 32-bit keys, 8-bit digits, passes at shift = 0, 8, 16, 24; each pass is
// radix_sort_count, radix_sort_scan and radix_sort_scatter.  The keys are cut into tiles of
// TILE = 256 * ITEMS consecutive keys, one workgroup each (nblocks = ceil(n / TILE)).  A
// workgroup counts the digits of its tile in shared memory (atomicAdd) and writes the 256 counts
// digit-major: counts[d * nblocks + block], the layout that radix_sort_scan turns into the
// scatter offsets.  mode 1 also adds the tile's counts of all four digits to totals[4][256] (with
// global atomics, zeroed by mode 2 first): digit totals are the same in every pass (a pass
// permutes the keys), so one count gives them all -- and a pass whose digit is the same for
// every key (totals[p][d] == n) can be skipped.  Keys are ordered by radix_sort.glsl's
// radix_order (int and float keys by the usual bit transforms).
//
// Bindings (set 0):
//   0  keys    readonly    KEY[]   the keys of this pass, n elements
//   1  counts  writeonly   uint[]  256 * nblocks digit counts, digit-major
//   2  totals  read/write  uint[]  4 * 256 digit totals (modes 1 and 2 only)
// Push constants:
//   uint n      number of keys
//   uint shift  the pass's digit: 0, 8, 16 or 24
//   uint mode   0: count; 1: count, and add all four digits' counts to totals; 2: zero totals
//               (groups=1; nothing else is read or written)
// Specialization constants:
//   id 1  ITEMS = 16  keys per invocation (TILE = 256 * ITEMS; the same in all three kernels;
//                     at most 255)
//   local_size_x = 256, fixed (one digit per invocation)
// Defines:
//   KEY = uint (default), int or float
// Dispatch:
//   groups=nblocks = ceil(n / TILE) (at most 65535); mode 2: groups=1.
// Usage:
//   kc = vknb.library.load("radix_sort_count")
//   kc(keys, counts, totals, n=n, shift=0, mode=2, groups=1)
//   kc(keys, counts, totals, n=n, shift=0, mode=1, groups=nblocks)
//   ... radix_sort_scan, radix_sort_scatter; then mode 0 for shift = 8, 16, 24 ...
//   vknb.library.sort(keys)   # the helper (vknb/library/_radix.py drives the passes)

#include "radix_sort.glsl"

layout(local_size_x = 256) in;
layout(constant_id = 1) const uint ITEMS = 16u;

layout(set = 0, binding = 0) readonly buffer KeysBuf { KEY keys[]; };
layout(set = 0, binding = 1) writeonly buffer CountsBuf { uint counts[]; };
layout(set = 0, binding = 2) buffer TotalsBuf { uint totals[]; };

layout(push_constant) uniform Params {
    uint n;
    uint shift;
    uint mode;
};

const uint WG = 256u;

shared uint bins[4u * 256u];

void main() {
    uint lid = gl_LocalInvocationID.x;
    if (mode == 2u) {
        for (uint i = lid; i < 4u * 256u; i += WG) {
            totals[i] = 0u;
        }
        return;
    }
    bool all_digits = mode == 1u;
    for (uint i = lid; i < 4u * 256u; i += WG) {
        bins[i] = 0u;
    }
    barrier();

    uint base = gl_WorkGroupID.x * WG * ITEMS;
    for (uint k = 0u; k < ITEMS; ++k) {
        uint i = base + k * WG + lid;
        if (i < n) {
            uint o = radix_order(key_bits(keys[i]), KEY(0));
            if (all_digits) {
                atomicAdd(bins[o & 0xFFu], 1u);
                atomicAdd(bins[256u + ((o >> 8u) & 0xFFu)], 1u);
                atomicAdd(bins[512u + ((o >> 16u) & 0xFFu)], 1u);
                atomicAdd(bins[768u + (o >> 24u)], 1u);
            } else {
                atomicAdd(bins[(o >> shift) & 0xFFu], 1u);
            }
        }
    }
    barrier();

    uint slot = all_digits ? (shift >> 3u) * 256u : 0u;
    counts[lid * gl_NumWorkGroups.x + gl_WorkGroupID.x] = bins[slot + lid];
    if (all_digits) {
        for (uint p = 0u; p < 4u; ++p) {
            uint c = bins[p * 256u + lid];
            if (c != 0u) {
                atomicAdd(totals[p * 256u + lid], c);
            }
        }
    }
}
