#version 460
#extension GL_EXT_ray_query : require
// An acceleration structure descriptor, traced with ray queries.
layout(local_size_x = 8) in;
layout(set = 0, binding = 0) uniform accelerationStructureEXT tlas;
layout(std430, set = 0, binding = 1) buffer Hits { uint hits[]; };
void main() {
    rayQueryEXT q;
    rayQueryInitializeEXT(q, tlas, 0, 0xFF, vec3(0), 0.0, vec3(0, 0, 1), 100.0);
    rayQueryProceedEXT(q);
    hits[gl_GlobalInvocationID.x] = rayQueryGetIntersectionTypeEXT(q, false);
}
