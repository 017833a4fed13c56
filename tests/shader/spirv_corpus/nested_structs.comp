#version 450
// Structs inside structs inside arrays, in both layouts.
layout(local_size_x = 32) in;
struct Inner { float a; vec3 b; };
struct Middle { Inner inner[2]; mat2 m; uint tag; };
struct Outer { Middle middle; vec3 c; Inner last; };
layout(std140, binding = 0) uniform UO { Outer o; Middle ms[2]; } uo;
layout(std430, binding = 1) buffer SO { Outer o; Outer more[]; } so;
void main() { so.more[gl_GlobalInvocationID.x].c = uo.o.c + so.o.middle.inner[1].b; }
