#version 450
// The workgroup size comes from specialization constants (x, y) and a literal (z).
layout(local_size_x_id = 3, local_size_y_id = 7, local_size_z = 2) in;
layout(constant_id = 3) const uint WG_X = 32;
layout(constant_id = 7) const uint WG_Y = 4;
layout(std430, binding = 0) buffer Data { uint data[]; };
void main() {
    data[gl_LocalInvocationIndex] = WG_X * WG_Y + gl_WorkGroupSize.x;
}
