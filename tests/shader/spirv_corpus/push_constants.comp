#version 450
// A push-constant block with vectors, a matrix, arrays and a struct.
layout(local_size_x = 16, local_size_y = 16) in;
struct Range { uint begin; uint end; };
layout(push_constant) uniform Push {
    mat4 transform;
    vec3 offset;
    float scale;
    ivec2 size;
    Range range;
    float taps[3];
} pc;
layout(std430, binding = 0) buffer Data { vec4 v[]; };
void main() {
    uint i = gl_GlobalInvocationID.x + pc.range.begin;
    v[i] = pc.transform * v[i] * pc.scale + vec4(pc.offset, pc.taps[1]);
}
