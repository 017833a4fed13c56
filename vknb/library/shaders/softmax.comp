// softmax.comp -- row-wise softmax of a row-major float32 matrix: y[r] = exp(x[r] - max) / sum.
//
// One workgroup per row.  The workgroup finds the row's maximum (subtracted first so exp never
// overflows), then the sum of exp(x - max), each with a grid-stride loop over the columns and
// a subgroup reduction (subgroupMax / subgroupAdd) combined across subgroups through shared
// memory; then every invocation writes its columns.
//
// Bindings (set 0):
//   0  x  readonly   float[]  rows * cols values, row-major
//   1  y  writeonly  float[]  rows * cols values
// Push constants:
//   uint rows, cols   matrix shape
// Specialization constants:
//   id 0  local_size_x = 256  workgroup size (take a smaller one for short rows, e.g. 64)
// Dispatch:
//   groups=rows (one workgroup per row; at most 65535 rows on some GPUs).
// Usage:
//   k = vknb.library.load("softmax")
//   y = np.empty_like(x)                     # float32 (rows, cols)
//   k(x, y, rows=rows, cols=cols, groups=rows)
//   vknb.library.softmax(x)                  # the helper

#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require

layout(local_size_x = 256, local_size_x_id = 0) in;

layout(set = 0, binding = 0) readonly buffer XBuf { float x[]; };
layout(set = 0, binding = 1) writeonly buffer YBuf { float y[]; };

layout(push_constant) uniform Params {
    uint rows;
    uint cols;
};

shared float partials[gl_WorkGroupSize.x];   // one slot per subgroup

// Reduce v over the workgroup (op 0: max, 1: sum); every invocation gets the result.
float workgroup_reduce(float v, uint op) {
    v = op == 0u ? subgroupMax(v) : subgroupAdd(v);
    if (subgroupElect()) {
        partials[gl_SubgroupID] = v;
    }
    barrier();
    float r = partials[0];
    for (uint s = 1u; s < gl_NumSubgroups; ++s) {
        r = op == 0u ? max(r, partials[s]) : r + partials[s];
    }
    barrier();   // partials is reused by the next reduction
    return r;
}

void main() {
    uint row = gl_WorkGroupID.x;
    if (row >= rows) {
        return;   // the whole workgroup leaves: barriers stay uniform
    }
    uint base = row * cols;
    uint lid = gl_LocalInvocationID.x;

    float m = uintBitsToFloat(0xff800000u);   // -infinity
    for (uint c = lid; c < cols; c += gl_WorkGroupSize.x) {
        m = max(m, x[base + c]);
    }
    m = workgroup_reduce(m, 0u);

    float s = 0.0;
    for (uint c = lid; c < cols; c += gl_WorkGroupSize.x) {
        s += exp(x[base + c] - m);
    }
    s = workgroup_reduce(s, 1u);

    float inv = 1.0 / s;
    for (uint c = lid; c < cols; c += gl_WorkGroupSize.x) {
        y[base + c] = exp(x[base + c] - m) * inv;
    }
}
