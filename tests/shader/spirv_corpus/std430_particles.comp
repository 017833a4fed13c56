#version 450
// std430 runtime array of structs with vec3, mat3, fixed arrays and a nested struct.
layout(local_size_x = 128) in;
struct Material { vec4 albedo; float roughness; uint flags; };
struct Particle {
    vec3 position;
    float mass;
    vec3 velocity;
    mat3 orientation;
    float history[4];
    Material material;
    ivec2 cell;
};
layout(std430, set = 0, binding = 0) buffer Particles { uint count; float dt; Particle p[]; } particles;
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= particles.count) return;
    particles.p[i].position += particles.dt * particles.p[i].velocity;
}
