#version 450
// std140: vec3 padding, mat3 columns padded to 16 bytes, scalar arrays with stride 16.
layout(local_size_x = 8, local_size_y = 8) in;
struct Light { vec3 position; float intensity; vec3 color; };
layout(std140, set = 0, binding = 0) uniform Scene {
    mat4 view;
    mat3 normal_matrix;
    vec3 eye;
    float time;
    vec2 jitter;
    float weights[5];
    ivec3 dims;
    bool enabled;
    Light lights[3];
    mat2 rot;
    uvec4 flags;
} scene;
layout(std430, set = 0, binding = 1) writeonly buffer Out { vec4 pixels[]; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    pixels[i] = scene.view * vec4(scene.eye, scene.time) + vec4(scene.lights[1].color, scene.weights[2]);
}
