// saxpy.comp -- y = a * x + y on float32 vectors (BLAS saxpy), in place.
//
// Bindings (set 0):
//   0  x  readonly    float[]  the vector to scale; at least n elements
//   1  y  read/write  float[]  the vector to add to; overwritten with a * x + y
// Push constants:
//   float a   the scale
//   uint  n   number of elements to update (x and y may be longer)
// Specialization constants:
//   id 0  local_size_x = 256  workgroup size (vknb.compile(..., local_size=128) changes it)
// Dispatch:
//   One invocation per element: grid=n.  The kernel loops with a grid stride, so a capped
//   number of workgroups also covers all n elements: groups=min(ceil(n / 256), 65535).
// Usage:
//   k = vknb.library.load("saxpy")
//   k(x, y, a=2.0, n=x.size, grid=x.size)   # numpy y is written back in place
//   vknb.library.saxpy(2.0, x, y)           # or the helper: returns a * x + y

layout(local_size_x = 256, local_size_x_id = 0) in;

layout(set = 0, binding = 0) readonly buffer XBuf { float x[]; };
layout(set = 0, binding = 1) buffer YBuf { float y[]; };

layout(push_constant) uniform Params {
    float a;
    uint n;
};

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < n; i += stride) {
        y[i] = a * x[i] + y[i];
    }
}
