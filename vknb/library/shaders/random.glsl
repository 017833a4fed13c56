// random.glsl -- small, fast pseudo-random numbers for vknb compute shaders.
//
//     #include "random.glsl"
//
//     void main() {
//         uint i = gl_GlobalInvocationID.x;
//         uint state = hash2(uvec2(i, seed));   // one independent stream per invocation
//         float u = rng_uniform(state);         // in [0, 1)
//         uint  r = rng_next(state);            // 32 random bits
//     }
//
// The generator is PCG-RXS-M-XS-32: a 32-bit LCG whose output goes through the PCG permutation.
// Its period is 2^32 per stream and its state is one uint, which is what a GPU thread wants;
// it is not a cryptographic generator, and one stream should not be asked for more than a few
// million numbers.  Reference: M. Jarzynski and M. Olano, "Hash Functions for GPU Rendering",
// JCGT 9(3), 2020 (the "pcg" hash), and M. E. O'Neill, "PCG: A Family of ... Algorithms", 2014.

#ifndef VKNB_RANDOM_GLSL
#define VKNB_RANDOM_GLSL

// The PCG LCG constants (multiplier and increment of the 32-bit PCG reference generator).
#define VKNB_PCG_MUL 747796405u
#define VKNB_PCG_INC 2891336453u

// The PCG RXS-M-XS output permutation of a 32-bit state: a bijection on uint.
uint vknb_pcg_permute(uint state) {
    uint word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// pcg_hash: hash one uint to a well-mixed uint (one LCG step, then the permutation).
// Use it to turn an index or a seed into a generator state.  A bijection on uint.
uint pcg_hash(uint v) {
    return vknb_pcg_permute(v * VKNB_PCG_MUL + VKNB_PCG_INC);
}

// rng_next: advance `state` by one LCG step and return 32 random bits.
// Seed `state` with pcg_hash() or hash2() of something unique to the invocation.
uint rng_next(inout uint state) {
    state = state * VKNB_PCG_MUL + VKNB_PCG_INC;
    return vknb_pcg_permute(state);
}

// rng_uniform: a float uniformly distributed in [0, 1), from the 24 high bits of rng_next().
// 24 bits fit a float's mantissa exactly, so the result is k / 2^24 and never rounds up to 1.0.
float rng_uniform(inout uint state) {
    return float(rng_next(state) >> 8u) * (1.0 / 16777216.0);
}

// hash2: hash two uints (an index and a seed, or a 2D coordinate) to one well-mixed uint,
// by nesting pcg_hash as Jarzynski & Olano do: hash(x + hash(y)).
uint hash2(uvec2 v) {
    return pcg_hash(v.x + pcg_hash(v.y));
}

#endif // VKNB_RANDOM_GLSL
