// random_uniform.comp -- values[i] = a uniform float32 in [0, 1), from random.glsl's PCG.
//
// Element i is the first draw of the stream seeded with hash2(uvec2(i, seed)):
//   state = pcg_hash(i + pcg_hash(seed)); values[i] = rng_uniform(state)
// so the result depends only on (i, seed) -- not on the workgroup size or the dispatch -- and
// is a multiple of 2^-24 (24 random bits).  vknb.library.random_uniform_reference is the same
// generator in numpy, bit for bit.
//
// Bindings (set 0):
//   0  values  writeonly  float[]  at least n elements
// Push constants:
//   uint n      number of values
//   uint seed   any 32-bit seed; the same seed gives the same numbers
// Specialization constants:
//   id 0  local_size_x = 256  workgroup size
// Dispatch:
//   grid=n; or groups=min(ceil(n / 256), 65535) (grid-stride loop).
// Usage:
//   k = vknb.library.load("random_uniform")
//   u = np.empty(10**6, np.float32)
//   k(u, n=u.size, seed=42, grid=u.size)
//   vknb.library.random_uniform(10**6, seed=42)   # the helper

#include "random.glsl"

layout(local_size_x = 256, local_size_x_id = 0) in;

layout(set = 0, binding = 0) writeonly buffer ValuesBuf { float values[]; };

layout(push_constant) uniform Params {
    uint n;
    uint seed;
};

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < n; i += stride) {
        uint state = hash2(uvec2(i, seed));
        values[i] = rng_uniform(state);
    }
}
