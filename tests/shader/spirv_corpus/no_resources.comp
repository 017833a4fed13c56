#version 450
// A kernel with no descriptors at all (it only writes shared memory).
layout(local_size_x = 1024) in;
shared float scratch[1024];
void main() { scratch[gl_LocalInvocationIndex] = float(gl_LocalInvocationIndex); barrier(); }
