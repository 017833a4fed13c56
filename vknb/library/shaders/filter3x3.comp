// filter3x3.comp -- 3x3 image filter on rgba8 storage images: emboss, edge detect, sharpen.
//
// The filters of the Vulkan samples' compute shader example (Sascha Willems, "computeshader":
// emboss.comp, edgedetect.comp, sharpen.comp) as one kernel with the filter as data:
//
//   sum_c[y][x] = sum_{i, j < 3} weights[3 i + j] * v_c[cy(y + i - 1)][cx(x + j - 1)]
//   result[y][x].c = clamp(sum_c * scale + offset, 0, 1)        for c = r, g, b
//   result[y][x].a = source[y][x].a
//
// a correlation (the filter is not flipped; weights row-major, row i = offset i - 1 in y), read
// from `source` as floats in [0, 1].  With gray = 1, v is the average (r + g + b) / 3 of each
// neighbour and the one result goes to r, g and b (emboss, edge detect); with gray = 0 each
// channel is filtered on its own (sharpen).  `scale` is the sample's 1 / denom.
//
// Borders: cy, cx clamp to the image (edge pixels repeat), where the sample reads outside the
// image (undefined values without robustness).  The alpha channel is copied from the centre
// pixel (the sample writes 1).  The result is rounded to 8 bits by the store.
//
// Bindings (set 0):
//   0  source  readonly   rgba8 image2D  the input, H x W
//   1  result  writeonly  rgba8 image2D  the output, same size
// Push constants:
//   float weights[9]   the 3x3 filter, row-major
//   float scale        multiplies the sum (the sample's 1 / denom)
//   float offset       added after scaling
//   uint  gray         1: filter the average of r, g, b (one gray result); 0: each channel
// Specialization constants:
//   id 0, 1  local_size_x = local_size_y = 16   workgroup size
// Dispatch:
//   grid=(W, H).
// Usage:
//   k = vknb.library.load("filter3x3")
//   out = np.empty_like(img)                       # uint8 (H, W, 4)
//   emboss = [-1, 0, 0, 0, -1, 0, 0, 0, 2]
//   k(img, out, weights=np.float32(emboss), scale=1.0, offset=0.5, gray=1, grid=(W, H))
//   vknb.library.emboss(img); vknb.library.filter3x3(img, w)    # the helpers

layout(local_size_x = 16, local_size_y = 16, local_size_x_id = 0, local_size_y_id = 1) in;

layout(set = 0, binding = 0, rgba8) uniform readonly image2D source;
layout(set = 0, binding = 1, rgba8) uniform writeonly image2D result;

layout(push_constant) uniform Params {
    float weights[9];
    float scale;
    float offset;
    uint gray;
};

void main() {
    ivec2 size = imageSize(source);
    ivec2 p = ivec2(gl_GlobalInvocationID.xy);
    if (p.x >= size.x || p.y >= size.y) {
        return;
    }
    vec3 sum = vec3(0.0);
    for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 3; ++j) {
            ivec2 q = clamp(p + ivec2(j - 1, i - 1), ivec2(0), size - 1);
            vec3 v = imageLoad(source, q).rgb;
            if (gray != 0u) {
                v = vec3((v.r + v.g + v.b) / 3.0);
            }
            sum += weights[3 * i + j] * v;
        }
    }
    float alpha = imageLoad(source, p).a;
    imageStore(result, p, vec4(clamp(sum * scale + offset, 0.0, 1.0), alpha));
}
