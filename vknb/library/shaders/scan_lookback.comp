// scan_lookback.comp -- prefix sum in one pass: chained scan with decoupled look-back.
//
// Single-pass scan after Merrill & Garland (2016), "Single-pass Parallel Prefix Scan with
// Decoupled Look-back": every element is read once and written once, so the scan can run at
// the speed of a copy (the multi-pass scan.comp reads and writes each element twice).
// A workgroup takes a tile of B = local_size_x * ITEMS consecutive elements by a dynamic tile
// id (an atomic counter: tiles are handed out in the order in which workgroups start, so
// every tile a workgroup waits for belongs to a workgroup that is already running), then:
//   1. each invocation loads ITEMS consecutive elements into registers (T4 loads where ITEMS
//      is a multiple of 4 and the elements lie inside the array) and scans them serially;
//      with STRIPED, each subgroup takes a run of gl_SubgroupSize * ITEMS consecutive elements
//      instead, in ITEMS / 4 steps in which its invocations load neighbouring T4s (one
//      contiguous block per load instruction) and scan them with subgroupExclusiveAdd;
//   2. the workgroup scans the invocations' totals: subgroupExclusiveAdd and one shared value
//      per subgroup (GL_KHR_shader_subgroup_arithmetic), or a shared-memory scan (SUBGROUPS=0);
//      with STRIPED, the subgroups' totals;
//   3. it publishes its aggregate (flag A) in status[tile], and looks back over its
//      predecessors' words (a subgroup reads as many at once as it has invocations; one
//      invocation reads them one by one with SUBGROUPS=0), adding aggregates until it meets
//      an inclusive prefix (flag P); then it publishes its own inclusive prefix (flag P) and
//      claims its next tile;
//   4. it writes its elements: the prefix, plus the scan within the tile.
// A status word is one uint64, written and read only by 64-bit atomics: flag (2 bits), epoch
// (30 bits), value (the 32 bits of T).  Flag and value are always seen together, so no
// ordering between separate memory words is needed.
// Forward progress: a predecessor that stays "not ready" for SPINS reads is added up from its
// input by the waiting workgroup instead ("decoupled fallback"), so no workgroup waits on
// another without bound, even where workgroups are not scheduled fairly.
// Cleanup: the last workgroup to finish resets the tile counter and bumps the epoch, so the
// next call with the same status/state buffers needs no clearing (words of an older epoch read
// as "not ready").  Zero both buffers once, before the first call; calls that share them must
// not overlap on the GPU.
// lavapipe ends every loop once an invocation has run 65535 loop iterations in all (a guard
// against endless loops); a kernel cut short that way sets state[3], and the result must then
// be recomputed (vknb.library.scan does: it reruns the multi-pass scan.comp).
// Needs shaderInt64 and shaderBufferInt64Atomics (vknb.library.scan runs scan.comp on devices
// without them).  Chosen per device by vknb.library.scan (once; vknb.library.tuning("scan")):
// tiles of 256 x 16 on discrete GPUs, 256 x 8 elsewhere; a workgroup per tile on GPUs, and on
// CPU drivers (where starting a workgroup costs more than a tile) 4 per CPU thread, each
// taking its share of the tiles; SPINS = 1024 on GPUs, 256 on CPU drivers (where a waiting
// workgroup holds one of a few threads); SUBGROUPS=0 without subgroup arithmetic; STRIPED where a probe
// (benchmarks/probes/histscan.py) measured it faster.
//
// Bindings (set 0):
//   0  x       readonly   T[]       input, at least n elements
//   0  x4      readonly   T4[]      the same buffer, 4 elements at a time (T4 = vec4/ivec4/uvec4)
//   1  y       writeonly  T[]       output, at least n elements
//   1  y4      writeonly  T4[]      the same buffer, 4 elements at a time
//   2  status  read/write uint64_t[] one word per tile: at least ceil(n / B); zero initially
//   3  state   read/write uint[]    4 words, zero initially: [0] next tile, [1] epoch,
//                                   [2] finished workgroups, [3] set if a loop was cut short
// Push constants:
//   uint n          number of elements (n <= 2^32 - 2 B)
//   uint exclusive  1: y[i] = x[0] + ... + x[i-1] (y[0] = 0); 0: inclusive, ... + x[i]
// Specialization constants:
//   id 0  local_size_x = 256  workgroup size
//   id 1  ITEMS = 8           elements per invocation (B = local_size_x * ITEMS)
//   id 2  SPINS = 1024        reads of a predecessor's word before adding up its tile itself
//   id 3  STRIPED = false     subgroup-striped loads and stores (with SUBGROUPS=1, ITEMS a
//                             multiple of 4 and local_size_x a multiple of the subgroup size;
//                             ignored otherwise)
// Defines:
//   T = float (default), int or uint (integer scans wrap around mod 2^32)
//   SUBGROUPS = 1 (default): subgroup scan and look-back; 0: shared memory, one invocation
// Dispatch:
//   groups = min(ceil(n / B), 65535); fewer is fine: each workgroup takes up to
//   ceil(tiles / groups) tiles, in the order in which it gets them
// Usage:
//   k = vknb.library.load("scan_lookback", defines={"T": "uint"})
//   B = k.local_size[0] * 8; tiles = -(-n // B)
//   status = vknb.zeros(tiles, np.uint64); state = vknb.zeros(4, np.uint32)  # once
//   y = vknb.empty(n, np.uint32)
//   k(x, y, status, state, n=n, exclusive=0, groups=min(tiles, 65535))
//   assert state.numpy()[3] == 0                  # always, except on lavapipe (rarely)
//   vknb.library.scan(x)     # the helper: tuned per device, cached buffers, fallbacks

#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#extension GL_EXT_shader_atomic_int64 : require
#extension GL_KHR_memory_scope_semantics : require

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
layout(constant_id = 1) const uint ITEMS = 8u;
layout(constant_id = 2) const uint SPINS = 1024u;
layout(constant_id = 3) const bool STRIPED = false;
#if SUBGROUPS
// (where ITEMS or the workgroup does not fit the striped layout, the per-invocation one runs)
#define STRIPE (STRIPED && ITEMS % 4u == 0u && gl_WorkGroupSize.x % gl_SubgroupSize == 0u)
#else
#define STRIPE false
#endif

layout(set = 0, binding = 0) readonly buffer XBuf { T x[]; };
layout(set = 0, binding = 0) readonly buffer XBuf4 { T4 x4[]; };
layout(set = 0, binding = 1) writeonly buffer YBuf { T y[]; };
layout(set = 0, binding = 1) writeonly buffer YBuf4 { T4 y4[]; };
layout(set = 0, binding = 2) buffer StatusBuf { uint64_t status[]; };
layout(set = 0, binding = 3) buffer StateBuf { uint state[]; };

layout(push_constant) uniform Params {
    uint n;
    uint exclusive;
};

const uint FLAG_A = 1u;  // the word holds the tile's aggregate
const uint FLAG_P = 2u;  // the word holds the tile's inclusive prefix
const uint EPOCH_MASK = 0x3FFFFFFFu;
const uint TILE = gl_WorkGroupSize.x * ITEMS;
const bool VEC4_ITEMS = ITEMS % 4u == 0u;  // each invocation's items start 16-byte aligned

uint to_bits(float v) { return floatBitsToUint(v); }
uint to_bits(int v) { return uint(v); }
uint to_bits(uint v) { return v; }
void from_bits(uint b, out float v) { v = uintBitsToFloat(b); }
void from_bits(uint b, out int v) { v = int(b); }
void from_bits(uint b, out uint v) { v = b; }

void publish(uint tile, uint flag, uint epoch, T value) {
    uint hi = ((epoch & EPOCH_MASK) << 2) | flag;
    atomicStore(status[tile], (uint64_t(hi) << 32) | uint64_t(to_bits(value)), gl_ScopeDevice,
                gl_StorageSemanticsBuffer, gl_SemanticsRelaxed);
}

// The flag of a predecessor's word for this epoch (0: not ready) and its value.
uint read_status(uint tile, uint epoch, out T value) {
    uint64_t s = atomicLoad(status[tile], gl_ScopeDevice, gl_StorageSemanticsBuffer,
                            gl_SemanticsRelaxed);
    uint hi = uint(s >> 32);
    from_bits(uint(s), value);
    return (hi >> 2) == (epoch & EPOCH_MASK) ? (hi & 3u) : 0u;
}

// Sum of the (complete) tile's input, added up by the `lanes` invocations ranked 0 .. lanes-1.
T tile_input_sum(uint tile, uint rank, uint lanes) {
    T sum = T(0);
    if (VEC4_ITEMS) {
        T4 acc = T4(0);
        for (uint i = tile * (TILE / 4u) + rank; i < (tile + 1u) * (TILE / 4u); i += lanes) {
            acc += x4[i];
        }
        sum = (acc.x + acc.y) + (acc.z + acc.w);
    } else {
        for (uint i = tile * TILE + rank; i < (tile + 1u) * TILE; i += lanes) {
            sum += x[i];
        }
    }
    return sum;
}

shared uint s_tile;
shared uint s_epoch;
shared T s_prefix;
shared T s_total;
// One slot per subgroup (SUBGROUPS=1) or per invocation (SUBGROUPS=0).
shared T s_scan[gl_WorkGroupSize.x];

#if SUBGROUPS
// Exclusive scan across the workgroup of one value per subgroup (`sum`, the same in all its
// invocations); `total` gets the sum of all.
T subgroups_exclusive_scan(T sum, out T total) {
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
        if (subgroupElect()) {
            s_total = carry;
        }
    }
    barrier();
    total = s_total;
    return s_scan[gl_SubgroupID];
}
#endif

// Exclusive scan of one value per invocation across the workgroup; `total` gets the sum.
T workgroup_exclusive_scan(T v, out T total) {
#if SUBGROUPS
    return subgroups_exclusive_scan(subgroupAdd(v), total) + subgroupExclusiveAdd(v);
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
    total = s_scan[gl_WorkGroupSize.x - 1u];
    return lid > 0u ? s_scan[lid - 1u] : T(0);
#endif
}

// The exclusive prefix of `tile`: the sum of all earlier tiles, from their status words.
// A predecessor that stays "not ready" for SPINS reads is added up from the input instead
// (decoupled fallback): no workgroup ever waits on another without bound.
// SUBGROUPS=1: called by every invocation of subgroup 0; SUBGROUPS=0: by one invocation.
T look_back(uint tile, uint epoch) {
    T prefix = T(0);
    int top = int(tile) - 1;  // the nearest predecessor not yet added
    uint spins = 0u;
#if SUBGROUPS
    // Lane k (the k-th active invocation of the subgroup) reads tile top - k, so a subgroup
    // looks at as many predecessors at once as it has invocations.
    uint rank = subgroupExclusiveAdd(1u);
    uint lanes = subgroupAdd(1u);
    while (top >= 0) {
        int idx = top - int(rank);
        T value = T(0);
        uint flag = FLAG_P;  // before tile 0: an inclusive prefix of 0
        if (idx >= 0) {
            flag = read_status(uint(idx), epoch, value);
        }
        uint first_wait = subgroupMin(flag == 0u ? rank : lanes);
        uint first_done = subgroupMin(flag == FLAG_P ? rank : lanes);
        // The lanes below the first one still to wait for hold aggregates (A), and the lanes
        // up to the first P complete the prefix: take them, go on from there.
        bool complete = first_done < first_wait;
        uint take = complete ? first_done + 1u : first_wait;
        prefix += subgroupAdd(rank < take ? value : T(0));
        top = complete ? -1 : top - int(take);
        spins = take > 0u ? 0u : spins + 1u;
        if (top >= 0 && spins >= SPINS) {
            prefix += subgroupAdd(tile_input_sum(uint(top), rank, lanes));
            top -= 1;
            spins = 0u;
        }
    }
#else
    while (top >= 0) {
        T value;
        uint flag = read_status(uint(top), epoch, value);
        if (flag != 0u) {
            prefix += value;
            top = flag == FLAG_P ? -1 : top - 1;
            spins = 0u;
        } else if (++spins >= SPINS) {
            prefix += tile_input_sum(uint(top), 0u, 1u);
            top -= 1;
            spins = 0u;
        }
    }
#endif
    return prefix;
}

// lavapipe ends every loop once an invocation has run 65535 loop iterations in all (its guard
// against endless loops), which can cut a long look-back short.  Then this loop of two
// iterations (a trip count the compiler cannot know) stops after one, and the call is reported
// in state[3]: vknb.library.scan reruns it with the multi-pass scan.  GPUs never cut loops.
void report_cut_loops() {
    uint trips = 0u;
    for (uint i = 0u; i < 2u + (exclusive >> 1); ++i) {
        ++trips;
    }
    if (trips < 2u) {
        atomicOr(state[3], 1u);
    }
}

// Scans one tile (steps 1 to 4 of the header); returns the next tile, claimed on the way if
// `claim` (else a tile past the end).
uint scan_tile(uint tile, uint epoch, bool claim) {
    uint lid = gl_LocalInvocationID.x;

    T v[ITEMS];
    T aggregate;
    T before;
#if SUBGROUPS
    // 1-2, STRIPED: this subgroup's run, ITEMS / 4 neighbouring T4s per step; v[4r + c] holds
    // the run's scan (inclusive, or exclusive) at element 4 * (r * gl_SubgroupSize + lane) + c.
    uint run = tile * TILE + gl_SubgroupID * gl_SubgroupSize * ITEMS;
    if (STRIPE) {
        T carry = T(0);
        for (uint r = 0u; r < ITEMS / 4u; ++r) {
            uint e = run + (r * gl_SubgroupSize + gl_SubgroupInvocationID) * 4u;
            T4 q;
            if (e + 4u <= n) {
                q = x4[e >> 2];
            } else {
                q = T4(e < n ? x[e] : T(0), e + 1u < n ? x[e + 1u] : T(0),
                       e + 2u < n ? x[e + 2u] : T(0), T(0));
            }
            T s1 = q.x + q.y;
            T s2 = s1 + q.z;
            T s3 = s2 + q.w;
            T off = carry + subgroupExclusiveAdd(s3);
            if (exclusive != 0u) {
                v[4u * r] = off;
                v[4u * r + 1u] = off + q.x;
                v[4u * r + 2u] = off + s1;
                v[4u * r + 3u] = off + s2;
            } else {
                v[4u * r] = off + q.x;
                v[4u * r + 1u] = off + s1;
                v[4u * r + 2u] = off + s2;
                v[4u * r + 3u] = off + s3;
            }
            carry += subgroupAdd(s3);
        }
        before = subgroups_exclusive_scan(carry, aggregate);
    }
#endif

    // 1. Load ITEMS consecutive elements and scan them serially (inclusive).
    uint base = tile * TILE + lid * ITEMS;
    bool vec4_io = VEC4_ITEMS && base + ITEMS <= n;
    if (STRIPE) {
        // loaded and scanned above
    } else if (vec4_io) {
        for (uint j = 0u; j < ITEMS; j += 4u) {
            T4 q = x4[(base + j) >> 2];
            v[j] = q.x;
            v[j + 1u] = q.y;
            v[j + 2u] = q.z;
            v[j + 3u] = q.w;
        }
    } else {
        for (uint j = 0u; j < ITEMS; ++j) {
            v[j] = base + j < n ? x[base + j] : T(0);
        }
    }
    if (!STRIPE) {
        for (uint j = 1u; j < ITEMS; ++j) {
            v[j] += v[j - 1u];
        }
        // 2. Scan the invocations' totals across the workgroup.
        before = workgroup_exclusive_scan(v[ITEMS - 1u], aggregate);
    }

    // 3. Publish the aggregate, look back, publish the inclusive prefix.
#if SUBGROUPS
    if (gl_SubgroupID == 0u) {
        bool leader = subgroupElect();
#else
    if (lid == 0u) {
        bool leader = true;
#endif
        T prefix = T(0);
        if (tile == 0u) {
            if (leader) {
                publish(0u, FLAG_P, epoch, aggregate);
            }
        } else {
            if (leader) {
                publish(tile, FLAG_A, epoch, aggregate);
            }
            prefix = look_back(tile, epoch);
            if (leader) {
                publish(tile, FLAG_P, epoch, prefix + aggregate);
            }
        }
        if (leader) {
            s_prefix = prefix;
            s_tile = claim ? atomicAdd(state[0], 1u) : 0xFFFFFFFFu;  // all read this one
        }
    }
    barrier();
    uint next = s_tile;

    // 4. Write this invocation's elements.
    T offset = s_prefix + before;
#if SUBGROUPS
    if (STRIPE) {
        for (uint r = 0u; r < ITEMS / 4u; ++r) {
            uint e = run + (r * gl_SubgroupSize + gl_SubgroupInvocationID) * 4u;
            T4 q = T4(v[4u * r], v[4u * r + 1u], v[4u * r + 2u], v[4u * r + 3u]) + offset;
            if (e + 4u <= n) {
                y4[e >> 2] = q;
            } else {
                for (uint c = 0u; c < 4u && e + c < n; ++c) {
                    y[e + c] = q[c];
                }
            }
        }
        return next;
    }
#endif
    if (exclusive != 0u) {
        for (uint j = ITEMS - 1u; j > 0u; --j) {
            v[j] = offset + v[j - 1u];
        }
        v[0] = offset;
    } else {
        for (uint j = 0u; j < ITEMS; ++j) {
            v[j] = offset + v[j];
        }
    }
    if (vec4_io) {
        for (uint j = 0u; j < ITEMS; j += 4u) {
            y4[(base + j) >> 2] = T4(v[j], v[j + 1u], v[j + 2u], v[j + 3u]);
        }
    } else {
        for (uint j = 0u; j < ITEMS; ++j) {
            if (base + j < n) {
                y[base + j] = v[j];
            }
        }
    }
    return next;
}

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint tiles = n / TILE + (n % TILE != 0u ? 1u : 0u);

    if (lid == 0u) {
        s_epoch = atomicLoad(state[1], gl_ScopeDevice, gl_StorageSemanticsBuffer,
                             gl_SemanticsRelaxed);
        s_tile = atomicAdd(state[0], 1u);
    }
    barrier();
    // Take tiles until they run out (uniform: every invocation reads the same s_tile).
    // A workgroup scans at most its share of the tiles, so that the groups workgroups are
    // all needed (on a CPU driver, the first few to start would otherwise take every tile).
    uint share = tiles / gl_NumWorkGroups.x + (tiles % gl_NumWorkGroups.x != 0u ? 1u : 0u);
    uint tile = s_tile;
    for (uint done = 1u; tile < tiles; ++done) {
        tile = scan_tile(tile, s_epoch, done < share);
    }
    report_cut_loops();

    // The last workgroup to finish resets the tile counter and starts the next epoch.  Every
    // workgroup has taken its last tile id and read the epoch before it counts itself here.
    if (lid == 0u) {
        memoryBarrierBuffer();
        uint finished = atomicAdd(state[2], 1u);
        if (finished == gl_NumWorkGroups.x - 1u) {
            memoryBarrierBuffer();
            atomicExchange(state[0], 0u);
            atomicExchange(state[2], 0u);
            atomicExchange(state[1], (s_epoch + 1u) & EPOCH_MASK);
        }
    }
}
