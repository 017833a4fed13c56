#version 450
// Double-precision vectors and matrices (dvec3 aligns to 32 bytes).
layout(local_size_x = 16) in;
layout(std140, binding = 0) uniform DU { double a; dvec3 b; dmat3 c; dmat2x3 d; double e[2]; } du;
layout(std430, binding = 1) buffer DS { dvec2 x; dvec3 y; dmat4 z; layout(row_major) dmat3x2 w; dvec3 tail[]; } ds;
void main() { ds.x = du.b.xy * du.a + ds.y.xy; }
