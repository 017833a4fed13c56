#version 450
#extension GL_EXT_scalar_block_layout : require
// Scalar block layout: vec3s packed tightly, arrays with element-sized strides.
layout(local_size_x = 64) in;
struct Vertex { vec3 position; vec3 normal; vec2 uv; };
layout(scalar, binding = 0) buffer Vertices { uint count; vec3 bounds[2]; Vertex v[]; } vertices;
layout(scalar, binding = 1) uniform Params { vec3 a; float b; vec2 c; mat3 m; float arr[3]; } params;
layout(scalar, binding = 2) buffer Points { vec3 p[]; } points;
layout(scalar, push_constant) uniform Push { vec3 origin; float radius; vec3 axis; } pc;
void main() {
    uint i = gl_GlobalInvocationID.x;
    points.p[i] = vertices.v[i].position + params.a * params.b + pc.origin + params.m[0] * params.arr[1];
}
