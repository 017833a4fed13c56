// transpose.comp -- dst = src.T for a row-major rows x cols matrix of 4-byte elements.
//
// A 32 x 8 workgroup moves one 32 x 32 tile: it reads the tile row by row (coalesced), stores
// it in shared memory, and writes it out column by column -- which are rows of dst, so the
// writes are coalesced too.  The shared tile has 33 words per row: reading a column of a
// 32-word-wide tile would hit the same memory bank 32 times, the padding spreads it over all.
// Each invocation moves 4 elements (rows ty, ty + 8, ty + 16, ty + 24 of the tile).
//
// Bindings (set 0):
//   0  src  readonly   T[]  rows * cols elements, row-major
//   1  dst  writeonly  T[]  cols * rows elements, row-major (dst[c][r] = src[r][c])
// Push constants:
//   uint rows, cols   shape of src
// Specialization constants:
//   none: the 32 x 8 workgroup is tied to the 32 x 32 tile (local_size is fixed).
// Defines:
//   T = float (default), int or uint -- any 4-byte type
// Dispatch:
//   groups=(ceil(cols / 32), ceil(rows / 32)).
// Usage:
//   k = vknb.library.load("transpose")
//   out = np.empty((cols, rows), np.float32)
//   k(a, out, rows=rows, cols=cols, groups=(-(-cols // 32), -(-rows // 32)))
//   vknb.library.transpose(a)                # the helper

#ifndef T
#define T float
#endif

#define TILE 32u
#define ROWS_PER_PASS 8u

layout(local_size_x = 32, local_size_y = 8) in;

layout(set = 0, binding = 0) readonly buffer SrcBuf { T src[]; };
layout(set = 0, binding = 1) writeonly buffer DstBuf { T dst[]; };

layout(push_constant) uniform Params {
    uint rows;
    uint cols;
};

shared T tile[TILE][TILE + 1u];

void main() {
    uint tx = gl_LocalInvocationID.x;
    uint ty = gl_LocalInvocationID.y;
    uint col0 = gl_WorkGroupID.x * TILE;
    uint row0 = gl_WorkGroupID.y * TILE;

    for (uint j = 0u; j < TILE; j += ROWS_PER_PASS) {
        uint r = row0 + ty + j;
        uint c = col0 + tx;
        if (r < rows && c < cols) {
            tile[ty + j][tx] = src[r * cols + c];
        }
    }
    barrier();

    // dst row = a column of src (col0 + ty + j), dst column = a row of src (row0 + tx).
    for (uint j = 0u; j < TILE; j += ROWS_PER_PASS) {
        uint dr = col0 + ty + j;
        uint dc = row0 + tx;
        if (dr < cols && dc < rows) {
            dst[dr * rows + dc] = tile[tx][ty + j];
        }
    }
}
