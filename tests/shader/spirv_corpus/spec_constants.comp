#version 450
// Specialization constants of every scalar type, one sizing an array.
layout(local_size_x = 64) in;
layout(constant_id = 0) const bool USE_FAST_PATH = true;
layout(constant_id = 1) const int ITERATIONS = -7;
layout(constant_id = 2) const uint TILE = 16u;
layout(constant_id = 3) const float SCALE = 0.5;
layout(constant_id = 4) const double PRECISE = 3.25;
layout(constant_id = 10) const bool DEBUG = false;
layout(constant_id = 11) const int TAPS = 4;
layout(std430, binding = 0) buffer Data { float data[]; };
layout(std140, binding = 1) uniform Kernel { float w[TAPS]; } kern;
void main() {
    uint i = gl_GlobalInvocationID.x;
    float acc = 0.0;
    for (int k = 0; k < TAPS; ++k) acc += kern.w[k];
    if (USE_FAST_PATH && !DEBUG) data[i] = acc * SCALE + float(ITERATIONS) + float(TILE) + float(PRECISE);
}
