#version 450
#extension GL_EXT_nonuniform_qualifier : require
// Arrays of descriptors: fixed-size, runtime-sized (unsized), spec-constant-sized.
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) buffer Bufs { float x[]; } bufs[4];
layout(std140, set = 0, binding = 1) uniform Params { vec4 p; } params[3];
layout(set = 0, binding = 2) uniform sampler2D textures[];
layout(set = 1, binding = 0, r32f) uniform image2D images[8];
// Sized by a specialization constant: counted at its default, with its id reported.
layout(constant_id = 0) const uint NT = 5;
layout(set = 1, binding = 2) uniform sampler2D spec_textures[NT];
void main() {
    uint i = gl_GlobalInvocationID.x;
    bufs[i % 4].x[i] = params[2].p.x + texture(textures[nonuniformEXT(i)], vec2(0.5)).x
        + imageLoad(images[3], ivec2(0)).x
        + texture(spec_textures[nonuniformEXT(i % NT)], vec2(0.5)).x;
}
