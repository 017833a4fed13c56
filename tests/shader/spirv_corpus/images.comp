#version 450
// Every kind of image / sampler descriptor a compute shader can use.
layout(local_size_x = 8, local_size_y = 8) in;
layout(set = 0, binding = 0, rgba8) uniform readonly image2D src_img;
layout(set = 0, binding = 1, rgba16f) uniform writeonly image2D dst_img;
layout(set = 0, binding = 2, r32ui) uniform uimage3D volume;
layout(set = 0, binding = 3) uniform sampler2D combined;
layout(set = 0, binding = 4) uniform texture2D separate_tex;
layout(set = 0, binding = 5) uniform sampler separate_smp;
layout(set = 0, binding = 6) uniform samplerBuffer uniform_texels;
layout(set = 0, binding = 7, r32f) uniform imageBuffer storage_texels;
layout(set = 0, binding = 8) uniform textureBuffer plain_texels;
layout(set = 0, binding = 9, r32i) uniform iimage2DArray layers;
void main() {
    ivec2 p = ivec2(gl_GlobalInvocationID.xy);
    vec4 c = imageLoad(src_img, p) + texture(combined, vec2(p)) + texture(sampler2D(separate_tex, separate_smp), vec2(p))
        + texelFetch(uniform_texels, p.x) + imageLoad(storage_texels, p.x) + texelFetch(plain_texels, p.x);
    imageStore(dst_img, p, c);
    imageAtomicAdd(volume, ivec3(p, 0), 1u);
    imageStore(layers, ivec3(p, 1), ivec4(c));
}
