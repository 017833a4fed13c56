// radix_sort_scatter.comp -- radix sort, step 3 of a pass: move each tile's keys, stably.
//
// Workgroup b re-reads tile b (TILE = 256 * ITEMS keys) and ranks each key among the keys of
// its digit, in tile order; keys of digit d then go to offsets[d * nblocks + b] (from
// radix_sort_scan) plus that rank.  Equal digits keep their order -- the pass is stable, which
// an LSD radix sort needs.  The ranking ("multi-split"): the tile is cut into one segment per
// subgroup; a subgroup takes its segment ITEMS rows of S keys at a time, finds the lanes that
// share its digit (8 subgroupBallots, one per digit bit: GL_KHR_shader_subgroup_ballot), and
// the first lane of each digit adds their number to the subgroup's own digit counters in
// shared memory (16-bit, two per uint).  Counters of earlier subgroups and earlier digits
// (a scan over the tile's 256 digit counts) complete the key's place in the locally sorted
// tile.  The tile is sorted in shared memory, then written out in order: consecutive
// invocations write consecutive addresses within each digit's run.
//
// Without SUBGROUP_BALLOT, or where the subgroups do not tile the workgroup evenly (or there
// are more than SUBGROUPS of them), the same ranking runs on "virtual subgroups" of 32
// invocations that compare digits through shared memory (slower, portable).  Values (with
// WITH_VALUES) follow their keys through the same places.
//
// Shared memory: 4 * max(TILE, SUBGROUPS * 128) + 3 KiB bytes (19 KiB for ITEMS = 16 and
// SUBGROUPS <= 32); vknb.library picks ITEMS and SUBGROUPS to fit the device.
//
// Bindings (set 0):
//   0  keys_in     readonly   KEY[]    this pass's keys, n elements
//   1  keys_out    writeonly  KEY[]    the keys after the pass, n elements (not keys_in)
//   2  offsets     readonly   uint[]   radix_sort_scan's 256 * nblocks offsets
//   3  values_in   readonly   VALUE[]  values moved with the keys -- only with WITH_VALUES
//   4  values_out  writeonly  VALUE[]  ... after the pass -- only with WITH_VALUES
// Push constants:
//   uint n      number of keys
//   uint shift  the pass's digit: 0, 8, 16 or 24
//   uint iota   1: the value of key i is i (values_in is not read: bind any buffer); 0: read
//               values_in (with WITH_VALUES; ignored without)
// Specialization constants:
//   id 1  ITEMS = 16       keys per invocation (TILE = 256 * ITEMS; as in radix_sort_count);
//                          at most 255 (the tile's counts are 16-bit)
//   id 2  SUBGROUPS = 32   digit counter sets: at least 256 / the subgroup size (and 8);
//                          32 costs no shared memory beyond the tile's at ITEMS = 16
//   local_size_x = 256, fixed
// Defines:
//   KEY, VALUE = uint (default), int or float (see radix_sort.glsl)
//   WITH_VALUES      add the values bindings (a key-value sort; an argsort with iota=1)
//   SUBGROUP_BALLOT  rank with subgroup ballots (where the device has the ballot operations)
//   SUBGROUP_ARITHMETIC  scan the tile's digit counts with subgroup arithmetic, not in shared
//                    memory alone
// Dispatch:
//   groups=nblocks = ceil(n / TILE), as radix_sort_count.
// Usage:
//   kx = vknb.library.load("radix_sort_scatter", defines={"SUBGROUP_BALLOT": 1})
//   kx(keys, keys_out, counts, n=n, shift=0, iota=0, groups=nblocks)
//   vknb.library.sort(keys); vknb.library.sort_pairs(keys, values)   # the helpers

#if defined(SUBGROUP_BALLOT) || defined(SUBGROUP_ARITHMETIC)
#extension GL_KHR_shader_subgroup_basic : require
#endif
#ifdef SUBGROUP_BALLOT
#extension GL_KHR_shader_subgroup_ballot : require
#endif
#ifdef SUBGROUP_ARITHMETIC
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

#include "radix_sort.glsl"

layout(local_size_x = 256) in;
layout(constant_id = 1) const uint ITEMS = 16u;
layout(constant_id = 2) const uint SUBGROUPS = 32u;

layout(set = 0, binding = 0) readonly buffer KeysInBuf { KEY keys_in[]; };
layout(set = 0, binding = 1) writeonly buffer KeysOutBuf { KEY keys_out[]; };
layout(set = 0, binding = 2) readonly buffer OffsetsBuf { uint offsets[]; };
#ifdef WITH_VALUES
layout(set = 0, binding = 3) readonly buffer ValuesInBuf { VALUE values_in[]; };
layout(set = 0, binding = 4) writeonly buffer ValuesOutBuf { VALUE values_out[]; };
#endif

layout(push_constant) uniform Params {
    uint n;
    uint shift;
    uint iota;
};

const uint WG = 256u;
const uint TILE = WG * ITEMS;
const uint COUNTER_SETS = SUBGROUPS > 8u ? SUBGROUPS : 8u;
const uint REGION = TILE > COUNTER_SETS * 128u ? TILE : COUNTER_SETS * 128u;

// The subgroups' packed digit counters while ranking; then the tile in sorted order.
shared uint region[REGION];
shared uint scratch[WG];         // virtual-subgroup digits; the scan
shared uint digit_start[256];    // the tile's digit counts, then their exclusive prefix
shared uint digit_dest[256];     // offsets[d] - digit_start[d]: tile place -> global place

// Exclusive prefix sum of v over the workgroup, in gl_LocalInvocationID order.  Every
// invocation calls it (it has barriers).  With subgroup arithmetic
// and subgroups that tile the workgroup: subgroup s scans elements [s * S, (s + 1) * S) in lane
// order, whatever invocations the driver put in it, and each invocation adds the totals of the
// blocks before its own (3 barriers in all); else Kogge-Stone in shared memory (18).
uint workgroup_exclusive_sum(uint v) {
    uint lid = gl_LocalInvocationID.x;
    barrier();  // earlier readers of scratch are done
    scratch[lid] = v;
    barrier();
#ifdef SUBGROUP_ARITHMETIC
    if (gl_NumSubgroups * gl_SubgroupSize == WG) {
        uint S = gl_SubgroupSize;
        uint i = gl_SubgroupID * S + gl_SubgroupInvocationID;
        scratch[i] = subgroupInclusiveAdd(scratch[i]);  // slot i is this invocation's alone
        barrier();
        uint before = scratch[lid] - v;
        for (uint b = 0u; b < lid / S; ++b) {
            before += scratch[b * S + S - 1u];
        }
        return before;
    }
#endif
    for (uint off = 1u; off < WG; off <<= 1u) {
        uint add = lid >= off ? scratch[lid - off] : 0u;
        barrier();
        scratch[lid] += add;
        barrier();
    }
    return scratch[lid] - v;
}

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint base = gl_WorkGroupID.x * TILE;
    uint count = min(TILE, n - base);  // keys in this tile

    // Who ranks with whom (uniform over the workgroup).
    bool hw = false;
    uint S = 32u;
    uint sub = lid / 32u;
    uint lane = lid % 32u;
    uint nsub = WG / 32u;
#ifdef SUBGROUP_BALLOT
    hw = gl_SubgroupSize <= 128u && gl_NumSubgroups <= SUBGROUPS &&
         gl_NumSubgroups * gl_SubgroupSize == WG;
    if (hw) {
        S = gl_SubgroupSize;
        sub = gl_SubgroupID;
        lane = gl_SubgroupInvocationID;
        nsub = gl_NumSubgroups;
    }
#endif

    for (uint w = lid; w < nsub * 128u; w += WG) {
        region[w] = 0u;
    }
    barrier();

    // 1. Rank: key t = sub * S * ITEMS + i * S + lane of the tile gets, in rank[i], the number
    //    of keys of its digit before it in its subgroup's segment.
    uint kb[ITEMS];
    uint rank[ITEMS];
    uint first = sub * S * ITEMS + lane;
    for (uint i = 0u; i < ITEMS; ++i) {
        uint t = first + i * S;
        bool valid = t < count;
        uint b = valid ? key_bits(keys_in[base + t]) : 0u;
        uint d = radix_digit(b, shift);
        kb[i] = b;
        uint before = 0u;  // peers (same digit, valid) in lower lanes
        uint peers = 0u;
        if (hw) {
#ifdef SUBGROUP_BALLOT
            uvec4 m = subgroupBallot(valid);
            for (uint bit = 0u; bit < 8u; ++bit) {
                bool set = ((d >> bit) & 1u) != 0u;
                uvec4 ballot = subgroupBallot(set);
                m &= set ? ballot : ~ballot;
            }
            before = subgroupBallotExclusiveBitCount(m);
            peers = subgroupBallotBitCount(m);
#endif
        } else {
            scratch[lid] = valid ? d : 0xFFFFFFFFu;
            barrier();
            uint s0 = sub * 32u;
            for (uint j = 0u; j < 32u; ++j) {
                if (scratch[s0 + j] == d) {
                    peers += 1u;
                    before += j < lane ? 1u : 0u;
                }
            }
        }
        uint word = sub * 128u + (d >> 1u);
        uint sh = (d & 1u) * 16u;
        uint prev = (region[word] >> sh) & 0xFFFFu;
        // Every peer has read the counter before the first of them adds to it.
        if (hw) {
#ifdef SUBGROUP_BALLOT
            subgroupMemoryBarrierShared();
            subgroupBarrier();
#endif
        } else {
            barrier();
        }
        if (valid && before == 0u) {
            atomicAdd(region[word], peers << sh);
        }
        if (hw) {
#ifdef SUBGROUP_BALLOT
            subgroupMemoryBarrierShared();
            subgroupBarrier();
#endif
        } else {
            barrier();
        }
        rank[i] = prev + before;
    }
    barrier();

    // 2. Per digit pair (one uint of counters): the subgroups' counts -> exclusive offsets
    //    across subgroups; the totals are the tile's digit counts.
    if (lid < 128u) {
        uint run = 0u;
        for (uint s = 0u; s < nsub; ++s) {
            uint c = region[s * 128u + lid];
            region[s * 128u + lid] = run;
            run += c;  // two 16-bit halves; each stays below 2^16 (TILE <= 65535)
        }
        digit_start[2u * lid] = run & 0xFFFFu;
        digit_start[2u * lid + 1u] = run >> 16u;
    }
    barrier();
    uint start = workgroup_exclusive_sum(digit_start[lid]);
    digit_start[lid] = start;
    digit_dest[lid] = offsets[lid * gl_NumWorkGroups.x + gl_WorkGroupID.x] - start;
    barrier();

    // 3. Places in the sorted tile.
    for (uint i = 0u; i < ITEMS; ++i) {
        if (first + i * S < count) {
            uint d = radix_digit(kb[i], shift);
            uint ahead = (region[sub * 128u + (d >> 1u)] >> ((d & 1u) * 16u)) & 0xFFFFu;
            rank[i] += digit_start[d] + ahead;
        }
    }
    barrier();  // the counters are read: the region holds the tile from here on

    // 4. Sort the tile in shared memory; write it out in order.
    for (uint i = 0u; i < ITEMS; ++i) {
        if (first + i * S < count) {
            region[rank[i]] = kb[i];
        }
    }
    barrier();
    uint dest[ITEMS];
    for (uint k = 0u; k < ITEMS; ++k) {
        uint j = k * WG + lid;
        dest[k] = 0u;
        if (j < count) {
            uint b = region[j];
            dest[k] = digit_dest[radix_digit(b, shift)] + j;
            keys_out[dest[k]] = bits_as(b, KEY(0));
        }
    }
#ifdef WITH_VALUES
    barrier();
    for (uint i = 0u; i < ITEMS; ++i) {
        uint t = first + i * S;
        if (t < count) {
            region[rank[i]] = iota != 0u ? base + t : key_bits(values_in[base + t]);
        }
    }
    barrier();
    for (uint k = 0u; k < ITEMS; ++k) {
        uint j = k * WG + lid;
        if (j < count) {
            values_out[dest[k]] = bits_as(region[j], VALUE(0));
        }
    }
#endif
}
