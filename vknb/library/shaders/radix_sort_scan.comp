// radix_sort_scan.comp -- radix sort, step 2 of a pass: tile digit counts -> scatter offsets.
//
// Row d of radix_sort_count's digit-major counts becomes global offsets, in place:
// counts[d * nblocks + b] becomes the number of keys with a smaller digit (the exclusive prefix
// of this pass's digit totals, from totals[shift / 8][0 .. d-1]) plus the number of keys with
// digit d in tiles before b.  Keys of digit d from tile b then go to offsets
// counts[d * nblocks + b] onwards (radix_sort_scatter).  With 256 workgroups, workgroup d scans
// row d in chunks of 1024 (4 per invocation), for any nblocks; with one workgroup, invocation d
// scans row d alone -- one dispatch of one workgroup, the cheaper choice for a few tiles.
//
// Bindings (set 0):
//   0  counts  read/write  uint[]  256 * nblocks tile counts in, scatter offsets out
//   1  totals  readonly    uint[]  4 * 256 digit totals (radix_sort_count mode 1)
// Push constants:
//   uint nblocks  number of tiles (radix_sort_count's groups)
//   uint shift    the pass's digit: 0, 8, 16 or 24
// Specialization constants:
//   none; local_size_x = 256, fixed (one digit total per invocation)
// Defines:
//   SUBGROUP_ARITHMETIC  scan with subgroup operations (GL_KHR_shader_subgroup_arithmetic)
//                        instead of a shared-memory scan: fewer barriers
// Dispatch:
//   groups=256 (one workgroup per digit), or groups=1 where nblocks is small (vknb.library
//   does so up to 64 tiles).
// Usage:
//   ks = vknb.library.load("radix_sort_scan")
//   ks(counts, totals, nblocks=nblocks, shift=0, groups=256)
//   vknb.library.sort(keys)   # the helper

#ifdef SUBGROUP_ARITHMETIC
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(local_size_x = 256) in;

layout(set = 0, binding = 0) buffer CountsBuf { uint counts[]; };
layout(set = 0, binding = 1) readonly buffer TotalsBuf { uint totals[]; };

layout(push_constant) uniform Params {
    uint nblocks;
    uint shift;
};

const uint WG = 256u;

shared uint sums[WG];
shared uint row_base;

// Exclusive prefix sum of v over the workgroup, in gl_LocalInvocationID order; `total` gets
// the sum of all.  Every invocation calls it (it has barriers).  With subgroup arithmetic
// and subgroups that tile the workgroup: subgroup s scans elements [s * S, (s + 1) * S) in lane
// order, whatever invocations the driver put in it, and each invocation adds the totals of the
// blocks before its own (3 barriers in all); else Kogge-Stone in shared memory (18).
uint workgroup_exclusive_sum(uint v, out uint total) {
    uint lid = gl_LocalInvocationID.x;
    barrier();  // earlier readers of sums are done
    sums[lid] = v;
    barrier();
#ifdef SUBGROUP_ARITHMETIC
    if (gl_NumSubgroups * gl_SubgroupSize == WG) {
        uint S = gl_SubgroupSize;
        uint i = gl_SubgroupID * S + gl_SubgroupInvocationID;
        sums[i] = subgroupInclusiveAdd(sums[i]);  // slot i is this invocation's alone
        barrier();
        uint before = sums[lid] - v;
        for (uint b = 0u; b < lid / S; ++b) {
            before += sums[b * S + S - 1u];
        }
        total = 0u;
        for (uint b = 0u; b < WG / S; ++b) {
            total += sums[b * S + S - 1u];
        }
        return before;
    }
#endif
    for (uint off = 1u; off < WG; off <<= 1u) {
        uint add = lid >= off ? sums[lid - off] : 0u;
        barrier();
        sums[lid] += add;
        barrier();
    }
    total = sums[WG - 1u];
    return sums[lid] - v;
}

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint d = gl_WorkGroupID.x;

    uint n_keys;
    uint before = workgroup_exclusive_sum(totals[(shift >> 3u) * 256u + lid], n_keys);
    if (lid == d) {
        row_base = before;
    }
    barrier();
    uint row = d * nblocks;
    if (gl_NumWorkGroups.x == 1u) {  // one workgroup: invocation lid scans row lid
        uint run = before;
        row = lid * nblocks;
        for (uint b = 0u; b < nblocks; ++b) {
            uint c = counts[row + b];
            counts[row + b] = run;
            run += c;
        }
        return;
    }
    uint carry = row_base;
    for (uint c0 = 0u; c0 < nblocks; c0 += 4u * WG) {
        uint first = c0 + 4u * lid;
        uvec4 v = uvec4(0u);
        for (uint k = 0u; k < 4u; ++k) {
            if (first + k < nblocks) {
                v[k] = counts[row + first + k];
            }
        }
        uint chunk;
        uint run = carry + workgroup_exclusive_sum(v.x + v.y + v.z + v.w, chunk);
        for (uint k = 0u; k < 4u; ++k) {
            if (first + k < nblocks) {
                counts[row + first + k] = run;
            }
            run += v[k];
        }
        carry += chunk;
    }
}
