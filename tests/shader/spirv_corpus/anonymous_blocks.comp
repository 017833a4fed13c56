#version 450
// Anonymous instances (no instance name), bool members, one-member blocks.
layout(local_size_x = 256) in;
layout(std430, binding = 0) buffer Counts { uint counts[]; };
layout(std140, binding = 1) uniform Settings { bool enabled; bvec2 mask; float threshold; };
layout(std430, binding = 2) buffer Histogram { uint bins[64]; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (enabled && mask.y && float(counts[i]) > threshold) atomicAdd(bins[counts[i] % 64], 1u);
}
