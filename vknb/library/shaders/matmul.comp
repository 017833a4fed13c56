// matmul.comp -- C = A @ B for row-major float32 matrices: A is M x K, B is K x N, C is M x N.
//
// Register-blocked tiling: a 16 x 16 workgroup computes one 64 x 64 tile of C, each invocation
// a 4 x 4 block of it held in registers.  The K dimension is walked in steps of 16: the
// workgroup stages a 64 x 16 slice of A and a 16 x 64 slice of B in shared memory (8 KiB), and
// every value read from shared memory is used 4 times.  Invocation (tx, ty) owns rows
// ty + 16 i and columns tx + 16 j (i, j < 4): neighbouring invocations read neighbouring words
// of shared memory (no bank conflicts) and write neighbouring words of C (coalesced).  Loads
// outside A or B read zeros and stores outside C are skipped, so M, N and K are arbitrary.
//
// Bindings (set 0):
//   0  A  readonly   float[]  M * K elements, row-major (A[m][k] at m * K + k)
//   1  B  readonly   float[]  K * N elements, row-major
//   2  C  writeonly  float[]  M * N elements, row-major
// Push constants:
//   uint M, N, K   the sizes
// Specialization constants:
//   none: the 16 x 16 workgroup is tied to the 64 x 64 tile (local_size is fixed).
// Dispatch:
//   groups=(ceil(N / 64), ceil(M / 64)).
// Usage:
//   k = vknb.library.load("matmul")
//   C = np.empty((M, N), np.float32)
//   k(A, B, C, M=M, N=N, K=K, groups=(-(-N // 64), -(-M // 64)))
//   vknb.library.matmul(A, B)                # the helper

#define TILE 64u      // rows and columns of C per workgroup
#define TK 16u        // K step staged in shared memory
#define WG 16u        // workgroup is WG x WG
#define R 4u          // each invocation computes R x R values of C (TILE = WG * R)

layout(local_size_x = 16, local_size_y = 16) in;

layout(set = 0, binding = 0) readonly buffer ABuf { float A[]; };
layout(set = 0, binding = 1) readonly buffer BBuf { float B[]; };
layout(set = 0, binding = 2) writeonly buffer CBuf { float C[]; };

layout(push_constant) uniform Params {
    uint M;
    uint N;
    uint K;
};

// As is stored k-major (As[k][m]) so the inner loop reads a row of it, like Bs.  Its rows are
// padded by one word: the staging loop writes a column of it (16 invocations, same m, k = 0..15),
// which would hit one memory bank 16 times with a row length of 64 words.
shared float As[TK][TILE + 1u];
shared float Bs[TK][TILE];

void main() {
    uint tx = gl_LocalInvocationID.x;
    uint ty = gl_LocalInvocationID.y;
    uint t = gl_LocalInvocationIndex;             // 0 .. 255
    uint row0 = gl_WorkGroupID.y * TILE;
    uint col0 = gl_WorkGroupID.x * TILE;

    float acc[R][R];
    for (uint i = 0u; i < R; ++i) {
        for (uint j = 0u; j < R; ++j) {
            acc[i][j] = 0.0;
        }
    }

    for (uint k0 = 0u; k0 < K; k0 += TK) {
        // Stage A[row0 .. +64][k0 .. +16] and B[k0 .. +16][col0 .. +64]: 1024 values each,
        // 4 per invocation; consecutive invocations read consecutive addresses.
        for (uint e = 0u; e < 4u; ++e) {
            uint idx = t + e * (WG * WG);
            uint ar = idx / TK;
            uint ak = idx % TK;
            uint gr = row0 + ar;
            uint gk = k0 + ak;
            As[ak][ar] = (gr < M && gk < K) ? A[gr * K + gk] : 0.0;

            uint bk = idx / TILE;
            uint bc = idx % TILE;
            uint gbk = k0 + bk;
            uint gc = col0 + bc;
            Bs[bk][bc] = (gbk < K && gc < N) ? B[gbk * N + gc] : 0.0;
        }
        barrier();

        for (uint kk = 0u; kk < TK; ++kk) {
            float a[R];
            float b[R];
            for (uint i = 0u; i < R; ++i) {
                a[i] = As[kk][ty + WG * i];
                b[i] = Bs[kk][tx + WG * i];
            }
            for (uint i = 0u; i < R; ++i) {
                for (uint j = 0u; j < R; ++j) {
                    acc[i][j] += a[i] * b[j];
                }
            }
        }
        barrier();
    }

    for (uint i = 0u; i < R; ++i) {
        uint r = row0 + ty + WG * i;
        if (r >= M) {
            break;
        }
        for (uint j = 0u; j < R; ++j) {
            uint c = col0 + tx + WG * j;
            if (c < N) {
                C[r * N + c] = acc[i][j];
            }
        }
    }
}
