#version 450
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
// Buffer references (device addresses) in a storage buffer and a push-constant block.
layout(local_size_x = 64) in;
layout(buffer_reference) buffer Node;
layout(buffer_reference, std430, buffer_reference_align = 16) buffer Node { vec4 value; Node next; };
layout(std430, binding = 0) buffer Roots { Node head; uint64_t raw; Node nodes[]; } roots;
layout(push_constant) uniform Push { Node start; } pc;
void main() { roots.head.value = pc.start.next.value; }
