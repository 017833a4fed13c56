#version 450
// row_major and column_major matrices, square and not, in std140 and std430.
layout(local_size_x = 1) in;
layout(std140, binding = 0) uniform U {
    layout(row_major) mat4 rm4;
    layout(row_major) mat3 rm3;
    layout(row_major) mat2x3 rm23;
    layout(column_major) mat3x2 cm32;
    layout(row_major) mat3x2 rm32;
    mat2 cm2;
    layout(row_major) mat4x3 rms[2];
} u;
layout(std430, row_major, binding = 1) buffer S {
    mat3 m3;
    mat2x4 m24;
    layout(column_major) mat4x2 c42;
    mat3 arr[];
} s;
void main() { s.m3 = u.rm3 * s.m3; }
