// bitonic_sort.comp -- sort uint keys ascending (optionally carrying uint values), n = 2^p.
//
// Bitonic sorting network in passes.  Invocation t owns the pair (i, i + j) with
// i = 2 j floor(t / j) + t mod j, and orders it ascending when (i & k) == 0, descending
// otherwise; a sort is the steps k = 2, 4, ..., n and, for each k, j = k/2, k/4, ..., 1.
// Steps with small j stay inside blocks of BLOCK = 2 * local_size_x elements, so they run in
// shared memory within one dispatch; only steps with j >= BLOCK need a dispatch each:
//   mode 0  sort each block: all steps with k <= BLOCK           (groups = n / BLOCK)
//   mode 1  one global step (k, j), j >= BLOCK                    (groups = n / BLOCK)
//   mode 2  the steps j = BLOCK/2 .. 1 of a merge k > BLOCK      (groups = n / BLOCK)
// n must be a power of two and at least BLOCK (512): pad the keys with 0xFFFFFFFF, which sort
// last (vknb.library.sort does).  Sorting is not stable; WITH_VALUES orders pairs by key, then
// by value, so that with distinct values (the keys' indices, for an argsort) the result is the
// stable order -- and padding keys with indices >= n stay after real keys of 0xFFFFFFFF.
//
// Bindings (set 0):
//   0  keys    read/write  uint[]  n keys, sorted in place
//   1  values  read/write  uint[]  n values moved with their keys (and breaking ties between
//                                  equal keys) -- only with WITH_VALUES
// Push constants:
//   uint n      number of keys (a power of two, >= BLOCK)
//   uint k, j   the step, for modes 1 and 2 (mode 0 ignores them: pass 0)
//   uint mode   0, 1 or 2 as above
// Specialization constants:
//   id 0  local_size_x = 256  workgroup size, a power of two (BLOCK = 2 * local_size_x)
// Defines:
//   WITH_VALUES  add the values binding (e.g. indices, for an argsort)
// Dispatch:
//   groups = n / BLOCK for every mode:
//     mode 0;  then for k = 2 BLOCK, 4 BLOCK, ..., n:
//       for j = k/2, k/4, ..., BLOCK: mode 1 (k, j);  then mode 2 (k)
// Usage:
//   k = vknb.library.load("bitonic_sort")
//   keys = vknb.asarray(padded_keys)         # uint32, power-of-two length >= 512
//   ... k(keys, n=n, k=kk, j=jj, mode=m, groups=n // 512) for the steps above ...
//   vknb.library.sort(keys); vknb.library.argsort(keys)   # the helpers

layout(local_size_x = 256, local_size_x_id = 0) in;

layout(set = 0, binding = 0) buffer KeysBuf { uint keys[]; };
#ifdef WITH_VALUES
layout(set = 0, binding = 1) buffer ValuesBuf { uint values[]; };
#endif

layout(push_constant) uniform Params {
    uint n;
    uint k;
    uint j;
    uint mode;
};

const uint BLOCK = 2u * gl_WorkGroupSize.x;
shared uint skeys[BLOCK];
#ifdef WITH_VALUES
shared uint svalues[BLOCK];
#endif

// The pair of compare-exchange step (kk, jj) that invocation t owns.
uvec2 pair_of(uint t, uint jj) {
    uint i = 2u * jj * (t / jj) + (t % jj);
    return uvec2(i, i + jj);
}

// One step inside the block held in shared memory; `offset` is the block's global index.
void local_step(uint offset, uint kk, uint jj) {
    uvec2 p = pair_of(gl_LocalInvocationID.x, jj);
    bool ascending = ((offset + p.x) & kk) == 0u;
    uint a = skeys[p.x];
    uint b = skeys[p.y];
#ifdef WITH_VALUES
    uint va = svalues[p.x];
    uint vb = svalues[p.y];
    bool greater = a > b || (a == b && va > vb);
#else
    bool greater = a > b;
#endif
    if (greater == ascending) {
        skeys[p.x] = b;
        skeys[p.y] = a;
#ifdef WITH_VALUES
        svalues[p.x] = vb;
        svalues[p.y] = va;
#endif
    }
    barrier();
}

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint offset = gl_WorkGroupID.x * BLOCK;

    if (mode == 1u) {
        uvec2 p = pair_of(gl_GlobalInvocationID.x, j);
        if (p.y >= n) {
            return;
        }
        bool ascending = (p.x & k) == 0u;
        uint a = keys[p.x];
        uint b = keys[p.y];
#ifdef WITH_VALUES
        uint va = values[p.x];
        uint vb = values[p.y];
        bool greater = a > b || (a == b && va > vb);
#else
        bool greater = a > b;
#endif
        if (greater == ascending) {
            keys[p.x] = b;
            keys[p.y] = a;
#ifdef WITH_VALUES
            values[p.x] = vb;
            values[p.y] = va;
#endif
        }
        return;
    }

    // Modes 0 and 2: stage the block in shared memory (two elements per invocation).
    for (uint e = lid; e < BLOCK; e += gl_WorkGroupSize.x) {
        skeys[e] = keys[offset + e];
#ifdef WITH_VALUES
        svalues[e] = values[offset + e];
#endif
    }
    barrier();

    if (mode == 0u) {
        for (uint kk = 2u; kk <= BLOCK; kk <<= 1u) {
            for (uint jj = kk >> 1u; jj > 0u; jj >>= 1u) {
                local_step(offset, kk, jj);
            }
        }
    } else {
        for (uint jj = BLOCK >> 1u; jj > 0u; jj >>= 1u) {
            local_step(offset, k, jj);
        }
    }

    for (uint e = lid; e < BLOCK; e += gl_WorkGroupSize.x) {
        keys[offset + e] = skeys[e];
#ifdef WITH_VALUES
        values[offset + e] = svalues[e];
#endif
    }
}
