#version 450
// Bindings spread over several sets, declared out of order, with gaps.
layout(local_size_x = 64) in;
layout(std430, set = 2, binding = 5) buffer C { uint c[]; };
layout(std430, set = 0, binding = 3) buffer A { uint a[]; };
layout(std140, set = 1, binding = 0) uniform B { uvec4 b; };
layout(std430, set = 0, binding = 0) buffer D { uint d[]; } named_d;
layout(std430, set = 3, binding = 1) readonly buffer E { uint e[]; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    c[i] = a[i] + b.x + named_d.d[i] + e[i];
}
