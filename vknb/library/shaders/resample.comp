// resample.comp -- affine resampling through a sampler: resize, rotate, warp an image.
//
// Output texel (x, y) has its centre at p = (x + 0.5, y + 0.5) in texel coordinates (Vulkan's:
// texel i covers [i, i + 1), its centre is at i + 0.5).  It takes the source's value at
//
//   s = (m[0] p.x + m[1] p.y + m[2],  m[3] p.x + m[4] p.y + m[5])      (source texel coords)
//
// cubic = 0: textureLod(source, s / textureSize(source, 0), 0): the sampler's filter (nearest
//   or linear) and address mode (clamp to edge, repeat, mirrored repeat, clamp to border and
//   its colour) decide, exactly as Vulkan defines them.  A resize to W' x H' is
//   m = (W/W', 0, 0, 0, H/H', 0): pixel centres map to pixel centres ("half-pixel" convention,
//   as OpenCV's INTER_LINEAR and PIL without antialiasing).
// cubic = 1: bicubic convolution (Keys, a = -0.5: Catmull-Rom) from 16 texelFetch reads around
//   s - 0.5, with `address` (0 repeat, 1 mirrored repeat, 2 clamp to edge, 3 clamp to border:
//   the VkSamplerAddressMode values) applied to the texel indices by the shader and `border` the
//   colour of clamp to border.  Weights are computed in float32, so no sub-texel precision
//   limit of the sampler applies.  The result may overshoot the input range (not clamped for
//   float formats; the store clamps unorm ones to [0, 1]).
//
// Bindings (set 0):
//   0  source  combined image sampler  sampler2D (any float/unorm format)
//   1  result  writeonly  FORMAT image2D    the output, W' x H'
// Push constants:
//   float m[6]      the affine map above, row-major 2 x 3
//   uint  cubic     0: through the sampler; 1: bicubic from texel fetches
//   uint  address   bicubic's address mode (VkSamplerAddressMode), ignored when cubic = 0
//   vec4  border    bicubic's border colour for address 3
// Specialization constants:
//   id 0, 1  local_size_x = local_size_y = 16   workgroup size
// Defines:
//   FORMAT = rgba32f   the result's format qualifier (rgba8 for uint8 images)
// Dispatch:
//   grid=(W', H').
// Usage:
//   k = vknb.library.load("resample")                     # rgba32f result
//   out = np.empty((2 * H, 2 * W, 4), np.float32)
//   k(img, out, m=[0.5, 0, 0, 0, 0.5, 0], cubic=0, address=2, border=[0] * 4,
//     grid=(2 * W, 2 * H))                                # a 2x bilinear upscale
//   vknb.library.resize(img, (2 * H, 2 * W)); vknb.library.rotate(img, 30)   # the helpers

layout(local_size_x = 16, local_size_y = 16, local_size_x_id = 0, local_size_y_id = 1) in;

#ifndef FORMAT
#define FORMAT rgba32f
#endif

layout(set = 0, binding = 0) uniform sampler2D source;
layout(set = 0, binding = 1, FORMAT) uniform writeonly image2D result;

layout(push_constant) uniform Params {
    float m[6];
    uint cubic;
    uint address;
    vec4 border;
};

// i mod m in [0, m) for m > 0.  GLSL leaves % undefined for a negative operand (and NVIDIA's
// driver returns garbage for one), so % only ever sees non-negative values here.
int pmod(int i, int m) {
    if (i >= 0) {
        return i % m;
    }
    int r = (-i) % m;
    return r == 0 ? 0 : m - r;
}

// Texel index i of an axis of n texels under an address mode, or -1 for "the border colour".
int wrap(int i, int n) {
    if (address == 0u) {  // repeat
        return pmod(i, n);
    }
    if (address == 1u) {  // mirrored repeat: (n - 1) - mirror((i mod 2n) - n)
        int r = pmod(i, 2 * n) - n;
        return (n - 1) - (r >= 0 ? r : -(1 + r));
    }
    if (address == 3u && (i < 0 || i >= n)) {  // clamp to border
        return -1;
    }
    return clamp(i, 0, n - 1);  // clamp to edge
}

vec4 fetch(ivec2 q, ivec2 size) {
    int x = wrap(q.x, size.x);
    int y = wrap(q.y, size.y);
    if (x < 0 || y < 0) {
        return border;
    }
    return texelFetch(source, ivec2(x, y), 0);
}

// Keys' cubic convolution weights (a = -0.5) of the taps at -1, 0, 1, 2 for a fraction t.
vec4 cubic_weights(float t) {
    const float a = -0.5;
    float t2 = t * t;
    float t3 = t2 * t;
    return vec4(
        a * t3 - 2.0 * a * t2 + a * t,
        (a + 2.0) * t3 - (a + 3.0) * t2 + 1.0,
        -(a + 2.0) * t3 + (2.0 * a + 3.0) * t2 - a * t,
        -a * t3 + a * t2);
}

void main() {
    ivec2 out_size = imageSize(result);
    ivec2 o = ivec2(gl_GlobalInvocationID.xy);
    if (o.x >= out_size.x || o.y >= out_size.y) {
        return;
    }
    vec2 p = vec2(o) + 0.5;
    vec2 s = vec2(m[0] * p.x + m[1] * p.y + m[2], m[3] * p.x + m[4] * p.y + m[5]);
    ivec2 size = textureSize(source, 0);
    vec4 v;
    if (cubic == 0u) {
        v = textureLod(source, s / vec2(size), 0.0);
    } else {
        vec2 t = s - 0.5;
        vec2 f = floor(t);
        ivec2 base = ivec2(f);
        vec4 wx = cubic_weights(t.x - f.x);
        vec4 wy = cubic_weights(t.y - f.y);
        v = vec4(0.0);
        for (int j = 0; j < 4; ++j) {
            vec4 row = vec4(0.0);
            for (int i = 0; i < 4; ++i) {
                row += wx[i] * fetch(base + ivec2(i - 1, j - 1), size);
            }
            v += wy[j] * row;
        }
    }
    imageStore(result, o, v);
}
