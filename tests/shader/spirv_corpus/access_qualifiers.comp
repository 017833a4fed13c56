#version 450
// readonly / writeonly on blocks, on every member, on some members only, and on images.
layout(local_size_x = 32) in;
layout(std430, binding = 0) readonly buffer In { vec4 data[]; } src;
layout(std430, binding = 1) writeonly buffer OutBuf { vec4 data[]; } dst;
layout(std430, binding = 2) buffer Partial { readonly uint n; float values[]; } partial;
layout(std430, binding = 3) buffer AllMembers { readonly uint a; readonly float b[]; } all_members;
layout(std430, binding = 4) restrict coherent buffer Rw { uint counter; } rw;
layout(binding = 5, rgba32f) uniform readonly image2D ro_img;
layout(binding = 6, rgba32f) uniform writeonly image2D wo_img;
void main() {
    uint i = gl_GlobalInvocationID.x;
    dst.data[i] = src.data[i] + vec4(partial.values[i] + all_members.b[i] + float(partial.n + all_members.a));
    atomicAdd(rw.counter, 1u);
    imageStore(wo_img, ivec2(i, 0), imageLoad(ro_img, ivec2(i, 0)));
}
