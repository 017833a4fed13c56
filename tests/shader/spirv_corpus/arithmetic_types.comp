#version 450
#extension GL_EXT_shader_explicit_arithmetic_types : require
// 8-, 16- and 64-bit scalars and vectors in buffers, push constants and spec constants.
layout(local_size_x = 32) in;
layout(constant_id = 0) const int64_t BIG = -5000000000l;
layout(constant_id = 1) const uint64_t UBIG = 9000000000ul;
layout(constant_id = 2) const float16_t HALF = 1.5hf;
layout(constant_id = 3) const int16_t SHORT = -12s;
layout(constant_id = 4) const uint8_t BYTE = uint8_t(200);
layout(constant_id = 5) const int8_t SBYTE = int8_t(-3);
layout(std430, binding = 0) buffer Wide {
    int64_t a;
    uint64_t b;
    i64vec2 c;
    u64vec3 d;
    float64_t e;
    f64vec2 f;
} wide;
layout(std430, binding = 1) buffer Narrow {
    float16_t h;
    f16vec2 h2;
    f16vec3 h3;
    int16_t s;
    u16vec4 us4;
    int8_t b;
    uint8_t ub;
    i8vec3 b3;
    u8vec2 ub2[5];
    f16mat2x3 hm;
    float16_t tail[];
} narrow;
layout(push_constant) uniform Push { uint64_t address; uint16_t count; uint8_t mode; } pc;
void main() {
    narrow.h = HALF + narrow.h2.x + float16_t(SHORT) + float16_t(pc.count);
    wide.a = BIG + int64_t(UBIG) + int64_t(BYTE) + int64_t(SBYTE) + int64_t(pc.address);
}
