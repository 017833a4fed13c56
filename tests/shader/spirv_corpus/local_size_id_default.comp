#version 450
// local_size_x_id without a matching constant declaration: default 1.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) buffer Data { uint data[]; };
void main() { data[gl_GlobalInvocationID.x] = gl_WorkGroupSize.x; }
