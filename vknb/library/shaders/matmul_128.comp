// matmul_128.comp -- C = A @ B for row-major float32 matrices, tuned for large sizes: A is
// M x K, B is K x N, C is M x N.  vknb.library.matmul picks it over matmul.comp when the
// 128 x 128 tiles fill the GPU.
//
// A 16 x 16 workgroup computes one 128 x 128 tile of C, each invocation an 8 x 8 block of it in
// registers: rows 4 ty .. +3 and 64 + 4 ty .. +3, columns 4 tx .. +3 and 64 + 4 tx .. +3, so
// that each reads its operands from shared memory as two vec4s per matrix (every value read is
// used 8 times) and neighbouring invocations write neighbouring vec4s of C.  K is walked in
// steps of 8 through two shared-memory buffers: while the workgroup multiplies one 128 x 8
// slice of A and 8 x 128 slice of B, each invocation already holds its part of the next slices
// in registers (one barrier per step).  As is stored k-major and each of its rows padded by one
// vec4, so the transposing store hits distinct banks.
//
// Loads outside A or B read zeros and stores outside C are skipped, so M, N and K are
// arbitrary.  Compiled with VEC4 defined (K and N multiples of 4), A, B and C are read and
// written as vec4s.  With GROUP_ROWS=G the tiles run in bands of G tile rows, column by column
// within a band, so that the workgroups running at once share rows of A and columns of B in
// the L2 cache (vknb.library.matmul sets G = 8 on discrete GPUs).
//
// Bindings (set 0):
//   0  A  readonly   float[]  M * K elements, row-major (A[m][k] at m * K + k)
//   1  B  readonly   float[]  K * N elements, row-major
//   2  C  writeonly  float[]  M * N elements, row-major
// Push constants:
//   uint M, N, K   the sizes
// Specialization constants:
//   none: the 16 x 16 workgroup is tied to the 128 x 128 tile (local_size is fixed).
// Dispatch:
//   groups=(ceil(N / 128), ceil(M / 128)).
// Usage:
//   k = vknb.library.load("matmul_128", defines={"VEC4": 1, "GROUP_ROWS": 8})  # K, N % 4 == 0
//   C = np.empty((M, N), np.float32)
//   k(A, B, C, M=M, N=N, K=K, groups=(-(-N // 128), -(-M // 128)))
//   vknb.library.matmul(A, B)                                   # the helper chooses

#define BM 128u       // rows of C per workgroup
#define BN 128u       // columns of C per workgroup
#define BK 8u         // K step staged in shared memory

layout(local_size_x = 16, local_size_y = 16) in;

#ifdef VEC4
layout(set = 0, binding = 0) readonly buffer ABuf { vec4 A[]; };
layout(set = 0, binding = 1) readonly buffer BBuf { vec4 B[]; };
layout(set = 0, binding = 2) writeonly buffer CBuf { vec4 C[]; };
#else
layout(set = 0, binding = 0) readonly buffer ABuf { float A[]; };
layout(set = 0, binding = 1) readonly buffer BBuf { float B[]; };
layout(set = 0, binding = 2) writeonly buffer CBuf { float C[]; };
#endif

layout(push_constant) uniform Params {
    uint M;
    uint N;
    uint K;
};

shared vec4 As[2][BK][BM / 4u + 1u];   // As[buf][k][m / 4][m % 4], k-major, padded rows
shared vec4 Bs[2][BK][BN / 4u];        // Bs[buf][k][n / 4][n % 4]

// What each invocation stages per step: 4 consecutive k of one row of A (t / 2, k 4 (t % 2)),
// 4 consecutive columns of one row of B (row t / 32, columns 4 (t % 32)).
vec4 loadA(uint row, uint k) {
    if (row >= M) {
        return vec4(0.0);
    }
#ifdef VEC4
    return k < K ? A[(row * K + k) / 4u] : vec4(0.0);
#else
    uint base = row * K + k;
    return vec4(k < K ? A[base] : 0.0, k + 1u < K ? A[base + 1u] : 0.0,
                k + 2u < K ? A[base + 2u] : 0.0, k + 3u < K ? A[base + 3u] : 0.0);
#endif
}

vec4 loadB(uint k, uint col) {
    if (k >= K) {
        return vec4(0.0);
    }
#ifdef VEC4
    return col < N ? B[(k * N + col) / 4u] : vec4(0.0);
#else
    uint base = k * N + col;
    return vec4(col < N ? B[base] : 0.0, col + 1u < N ? B[base + 1u] : 0.0,
                col + 2u < N ? B[base + 2u] : 0.0, col + 3u < N ? B[base + 3u] : 0.0);
#endif
}

void main() {
    uint tx = gl_LocalInvocationID.x;
    uint ty = gl_LocalInvocationID.y;
    uint t = gl_LocalInvocationIndex;             // 0 .. 255
    uvec2 tile = gl_WorkGroupID.xy;
#ifdef GROUP_ROWS
    {
        uint id = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
        uint band = uint(GROUP_ROWS) * gl_NumWorkGroups.x;
        uint first = id / band * uint(GROUP_ROWS);
        uint rows = min(gl_NumWorkGroups.y - first, uint(GROUP_ROWS));
        uint r = id % band;
        tile = uvec2(r / rows, first + r % rows);
    }
#endif
    uint row0 = tile.y * BM;
    uint col0 = tile.x * BN;

    uint aRow = t >> 1u;                          // 0 .. 127
    uint aK = (t & 1u) * 4u;                      // 0 or 4
    uint bK = t >> 5u;                            // 0 .. 7
    uint bCol = (t & 31u) * 4u;                   // 0 .. 124

    vec4 acc[8][2];
    for (uint i = 0u; i < 8u; ++i) {
        acc[i][0] = vec4(0.0);
        acc[i][1] = vec4(0.0);
    }

    vec4 pa = loadA(row0 + aRow, aK);
    vec4 pb = loadB(bK, col0 + bCol);
    uint cur = 0u;
    for (uint k0 = 0u; k0 < K; k0 += BK) {
        // The staged slices of this step go to buffer cur; the other buffer was last read
        // before the previous step's barrier.
        for (uint e = 0u; e < 4u; ++e) {
            As[cur][aK + e][aRow >> 2u][aRow & 3u] = pa[e];
        }
        Bs[cur][bK][bCol >> 2u] = pb;
        barrier();
        if (k0 + BK < K) {                        // the next step's slices, while this one runs
            pa = loadA(row0 + aRow, k0 + BK + aK);
            pb = loadB(k0 + BK + bK, col0 + bCol);
        }
        for (uint kk = 0u; kk < BK; ++kk) {
            vec4 a0 = As[cur][kk][ty];
            vec4 a1 = As[cur][kk][ty + 16u];
            vec4 b0 = Bs[cur][kk][tx];
            vec4 b1 = Bs[cur][kk][tx + 16u];
            for (uint i = 0u; i < 4u; ++i) {
                acc[i][0] += a0[i] * b0;
                acc[i][1] += a0[i] * b1;
                acc[i + 4u][0] += a1[i] * b0;
                acc[i + 4u][1] += a1[i] * b1;
            }
        }
        cur ^= 1u;
    }

    for (uint i = 0u; i < 8u; ++i) {
        uint r = row0 + (i < 4u ? 4u * ty + i : 64u + 4u * ty + i - 4u);
        if (r >= M) {
            continue;
        }
        for (uint h = 0u; h < 2u; ++h) {
            uint c = col0 + 64u * h + 4u * tx;
#ifdef VEC4
            if (c < N) {
                C[(r * N + c) / 4u] = acc[i][h];
            }
#else
            for (uint j = 0u; j < 4u; ++j) {
                if (c + j < N) {
                    C[r * N + c + j] = acc[i][h][j];
                }
            }
#endif
        }
    }
}
