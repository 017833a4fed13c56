// blur_image.comp -- one pass of a separable filter through a linear sampler (half the taps).
//
//   result[y][x] = sum_{k < ntaps} taps[k].y * source( (x, y) + 0.5 + taps[k].x * direction )
//
// sampled with linear filtering and clamp to edge.  The linear-filtering trick: two
// neighbouring filter taps w_a (at offset a) and w_b (at a + 1) are one bilinear read with weight
// w_a + w_b at offset a + w_b / (w_a + w_b), because the hardware's interpolation of texels a
// and a + 1 at that point is (w_a v_a + w_b v_b) / (w_a + w_b).  A filter of 2R + 1 taps thus
// needs R + 1 reads; clamp to edge applies to each of the two texels, so borders behave as for
// the full filter (edge pixels repeat).  It needs non-negative pairs (w_a + w_b > 0), as a
// Gaussian has.  Precision: the hardware rounds each read's position to its sub-texel precision
// (subTexelPrecisionBits, 8 on most GPUs: a weight error of up to 2^-8 of the pair's weight).
//
// Run it twice for a 2-D separable blur: direction (1, 0) then (0, 1).  vknb.library.blur_image
// keeps the horizontal pass in an rgba32f image on the device.
//
// Bindings (set 0):
//   0  source  combined image sampler  sampler2D, linear filtering, clamp to edge
//   1  result  writeonly  FORMAT image2D    same size as the source
//   2  taps    readonly   vec2[]   (offset in texels, weight) of each bilinear read
// Push constants:
//   vec2 direction   (1, 0) for a horizontal pass, (0, 1) for a vertical one
//   uint ntaps       number of reads (taps.length() may be larger)
// Specialization constants:
//   id 0, 1  local_size_x = local_size_y = 16   workgroup size
// Defines:
//   FORMAT = rgba32f   the result's format qualifier (rgba8 for uint8 images)
// Dispatch:
//   grid=(W, H).
// Usage:
//   k = vknb.library.load("blur_image")
//   taps = np.float32([[-0.5, 0.5], [0.5, 0.5]])           # a [1/4, 1/2, 1/4] filter
//   tmp = np.empty_like(img)                              # float32 (H, W, 4)
//   k(img, tmp, taps, direction=[1, 0], ntaps=2, grid=(W, H))
//   vknb.library.blur_image(img, sigma=2.0)               # the helper

layout(local_size_x = 16, local_size_y = 16, local_size_x_id = 0, local_size_y_id = 1) in;

#ifndef FORMAT
#define FORMAT rgba32f
#endif

layout(set = 0, binding = 0) uniform sampler2D source;
layout(set = 0, binding = 1, FORMAT) uniform writeonly image2D result;
layout(set = 0, binding = 2) readonly buffer TapsBuf { vec2 taps[]; };

layout(push_constant) uniform Params {
    vec2 direction;
    uint ntaps;
};

void main() {
    ivec2 size = imageSize(result);
    ivec2 o = ivec2(gl_GlobalInvocationID.xy);
    if (o.x >= size.x || o.y >= size.y) {
        return;
    }
    vec2 size_f = vec2(textureSize(source, 0));
    vec2 p = vec2(o) + 0.5;
    vec4 sum = vec4(0.0);
    for (uint k = 0u; k < ntaps; ++k) {
        vec2 t = taps[k];
        sum += t.y * textureLod(source, (p + t.x * direction) / size_f, 0.0);
    }
    imageStore(result, o, sum);
}
