// matmul_fp16_coopmat.comp -- C = A @ B in float16 on tensor cores (cooperative matrices):
// A is M x K, B is K x N, C is M x N, all row-major float16; products summed in float32.
//
// Requires: VK_NV_cooperative_matrix
//   (NVIDIA Turing and later); vknb enables it where the driver has it
//   (`vknb.device().cooperative_matrix`).  Elsewhere vknb.library.load raises NotAvailable.
//
// A workgroup of 8 subgroups (256 invocations) computes a 128 x 256 tile of C: subgroup w owns
// the 64 x 64 block at rows 64 (w / 4), columns 64 (w % 4) of the tile, as TM x TN accumulator
// matrices of MMA_M x MMA_N float32 (4 x 8 of 16 x 8).  K is walked in steps of 32: each
// invocation fetches its share of the next 128 x 32 slice of A and 32 x 256 slice of B into
// registers while the subgroups multiply the current slice from shared memory (16-byte words,
// rows padded by one word against bank conflicts), then stores it there.  The shape and tile
// are defines, so other configurations can be measured (python -m benchmarks.probes.coopmat);
// the defaults were the fastest of those tried on an H100 (see docs/performance.md for the
// current numbers against cuBLAS's fp16 GEMM, which uses Hopper's warpgroup instructions that
// Vulkan does not reach).
//
// Bindings (set 0), each read and written as uvec4 (8 float16 per word):
//   0  A  readonly   M * K float16, row-major
//   1  B  readonly   K * N float16, row-major
//   2  C  writeonly  M * N float16, row-major
// Push constants:
//   uint M, N, K   M a multiple of 128, N of 256, K of 32
// Specialization constants:
//   none.  Defines (compile time): MMA_M, MMA_N, MMA_K, the cooperative-matrix shape (default
//   16, 8, 16; one of vknb.device().cooperative_matrix_shapes(), each dividing 64, 64, 32);
//   BM, BN, WM, WN, THREADS, NBUF, BK, GM, the tiling (see below).
// Dispatch:
//   groups=(N / 256, M / 128).
// Usage:
//   vknb.library.matmul_fp16(A, B)      # the helper: picks the shape, checks the sizes

#version 450
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require

#ifndef MMA_M
#define MMA_M 16
#endif
#ifndef MMA_N
#define MMA_N 8
#endif
#ifndef MMA_K
#define MMA_K 16
#endif

// The tile configuration (defaults: what measured fastest on an H100).
#ifndef BM
#define BM 128u                 // rows of C per workgroup
#endif
#ifndef BN
#define BN 256u                 // columns of C per workgroup
#endif
#ifndef WM
#define WM 64u                  // rows of C per subgroup
#endif
#ifndef WN
#define WN 64u                  // columns of C per subgroup
#endif
#ifndef THREADS
#define THREADS 256             // (BM / WM) * (BN / WN) subgroups of 32
#endif
#ifndef NBUF
#define NBUF 1                  // shared-memory slices: 2 = double-buffered
#endif
#ifndef BK
#define BK 32u                  // K step per shared-memory slice
#endif
#ifndef GM
#define GM 0u                   // > 0: workgroups walk C in bands of GM tile rows (L2 reuse)
#endif
#define TM (WM / MMA_M)
#define TN (WN / MMA_N)
#define AW (BK / 8u + 1u)       // words per shared row of A (padded)
#define BW (BN / 8u + 1u)       // words per shared row of B (padded)
#define T uint(THREADS)

layout(local_size_x = THREADS) in;

layout(set = 0, binding = 0) readonly buffer ABuf { uvec4 A[]; };
layout(set = 0, binding = 1) readonly buffer BBuf { uvec4 B[]; };
layout(set = 0, binding = 2) writeonly buffer CBuf { uvec4 C[]; };

layout(push_constant) uniform Params {
    uint M;
    uint N;
    uint K;
};

shared uvec4 sA[NBUF][BM * AW];
shared uvec4 sB[NBUF][BK * BW];

// The words of A and of B that each invocation moves per slice (BM x 32 and 32 x BN float16).
#define AWORDS (BM * (BK / 8u) / T)
#define BWORDS (BK * (BN / 8u) / T)

void fetch(uint k0, uint m0, uint n0, uint tid, out uvec4 ra[AWORDS], out uvec4 rb[BWORDS]) {
    uint K8 = K / 8u, N8 = N / 8u;
    for (uint s = 0u; s < AWORDS; ++s) {
        uint i = tid + s * T;
        ra[s] = A[(m0 + i / (BK / 8u)) * K8 + k0 / 8u + i % (BK / 8u)];
    }
    for (uint s = 0u; s < BWORDS; ++s) {
        uint i = tid + s * T;
        rb[s] = B[(k0 + i / (BN / 8u)) * N8 + n0 / 8u + i % (BN / 8u)];
    }
}

void stash(uint buf, uint tid, uvec4 ra[AWORDS], uvec4 rb[BWORDS]) {
    for (uint s = 0u; s < AWORDS; ++s) {
        uint i = tid + s * T;
        sA[buf][(i / (BK / 8u)) * AW + i % (BK / 8u)] = ra[s];
    }
    for (uint s = 0u; s < BWORDS; ++s) {
        uint i = tid + s * T;
        sB[buf][(i / (BN / 8u)) * BW + i % (BN / 8u)] = rb[s];
    }
}

void main() {
    uint tid = gl_LocalInvocationID.x;
    uint sg = gl_SubgroupID;
    uint wm = sg / (BN / WN), wn = sg % (BN / WN);
    uint tm = gl_WorkGroupID.y, tn = gl_WorkGroupID.x;
    if (GM > 0u) {  // consecutive workgroups share rows of A and columns of B in L2
        uint nm = gl_NumWorkGroups.y, nn = gl_NumWorkGroups.x;
        uint pid = tm * nn + tn;
        uint first = (pid / (GM * nn)) * GM;
        uint rows = min(nm - first, GM);
        tm = first + (pid % (GM * nn)) % rows;
        tn = (pid % (GM * nn)) / rows;
    }
    uint m0 = tm * BM, n0 = tn * BN;

    fcoopmatNV<32, gl_ScopeSubgroup, MMA_M, MMA_N> acc[TM][TN];
    for (uint i = 0u; i < TM; ++i) {
        for (uint j = 0u; j < TN; ++j) {
            acc[i][j] = fcoopmatNV<32, gl_ScopeSubgroup, MMA_M, MMA_N>(0.0);
        }
    }

    uvec4 ra[AWORDS], rb[BWORDS];
    fetch(0u, m0, n0, tid, ra, rb);
    stash(0u, tid, ra, rb);
    barrier();
    uint buf = 0u;  // (always 0 with NBUF 1)
    for (uint k0 = 0u; k0 < K; k0 += BK) {
        bool more = k0 + BK < K;
        if (more) {
            fetch(k0 + BK, m0, n0, tid, ra, rb);  // in flight while this slice is multiplied
        }
        for (uint kk = 0u; kk < BK; kk += MMA_K) {
            fcoopmatNV<16, gl_ScopeSubgroup, MMA_M, MMA_K> fa[TM];
            fcoopmatNV<16, gl_ScopeSubgroup, MMA_K, MMA_N> fb[TN];
            for (uint i = 0u; i < TM; ++i) {
                coopMatLoadNV(fa[i], sA[buf], (wm * WM + i * MMA_M) * AW + kk / 8u, AW, false);
            }
            for (uint j = 0u; j < TN; ++j) {
                coopMatLoadNV(fb[j], sB[buf], kk * BW + (wn * WN + j * MMA_N) / 8u, BW, false);
            }
            for (uint i = 0u; i < TM; ++i) {
                for (uint j = 0u; j < TN; ++j) {
                    acc[i][j] = coopMatMulAddNV(fa[i], fb[j], acc[i][j]);
                }
            }
        }
#if NBUF == 2
        if (more) {
            stash(buf ^ 1u, tid, ra, rb);  // the other buffer: nobody reads it in this step
        }
        barrier();  // the next slice is in place, and `buf` is free to be overwritten
        buf ^= 1u;
#else
        barrier();  // everyone is done with the slice
        if (more) {
            stash(0u, tid, ra, rb);
        }
        barrier();
#endif
    }

    uint N8 = N / 8u;
    for (uint i = 0u; i < TM; ++i) {
        for (uint j = 0u; j < TN; ++j) {
            fcoopmatNV<16, gl_ScopeSubgroup, MMA_M, MMA_N> out16 =
                fcoopmatNV<16, gl_ScopeSubgroup, MMA_M, MMA_N>(acc[i][j]);
            uint row = m0 + wm * WM + i * MMA_M, col = n0 + wn * WN + j * MMA_N;
            coopMatStoreNV(out16, C, row * N8 + col / 8u, N8, false);
        }
    }
}
