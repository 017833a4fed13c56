#version 450
// Several variables sharing one (set, binding): aliases, views of one descriptor.
// Same descriptor type and count in each slot, so one descriptor serves them all.
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer InF { float f[]; };
layout(std430, set = 0, binding = 0) writeonly buffer OutU { uint u[]; };
layout(std430, set = 0, binding = 1) buffer Header { uint count; float scale; } header;
layout(std430, set = 0, binding = 1) buffer Bytes { uint words[]; } raw;
layout(std140, set = 0, binding = 2) uniform Params { vec4 p; } params;
layout(std140, set = 0, binding = 2) uniform ParamsInt { ivec4 q; } params_int;
layout(set = 1, binding = 0, r32f) uniform image2D img_f;
layout(set = 1, binding = 0, r32ui) uniform uimage2D img_u;
layout(std430, set = 1, binding = 1) buffer Lonely { float lonely[]; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    u[i] = floatBitsToUint(f[i] * header.scale) + raw.words[i] + uint(params.p.x)
        + uint(params_int.q.y) + uint(imageLoad(img_f, ivec2(0)).x) + imageLoad(img_u, ivec2(1)).x;
    lonely[i] = float(header.count);
}
