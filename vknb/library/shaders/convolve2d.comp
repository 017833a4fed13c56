// convolve2d.comp -- 2-D convolution of float32 images with a KH x KW filter, clamp-to-edge.
//
//   out[p][y][x] = sum_{i < KH, j < KW} w[i][j] * img[p][cy(y + KH/2 - i)][cx(x + KW/2 - j)]
//
// where cy, cx clamp to the image (edge pixels repeat) and KH/2, KW/2 round down: a true
// convolution (the filter is flipped), centred for odd sizes -- scipy.ndimage.convolve with
// mode="nearest".  Pass a flipped filter (w[::-1, ::-1]) for a correlation (cv2.filter2D).
// Separable filters (a Gaussian blur) run as two passes with a 1 x K and a K x 1 filter.
//
// Each 16 x 16 workgroup stages its tile of the image plus the filter's halo in shared memory
// (one global read per staged pixel instead of KH * KW), as long as KH and KW are at most
// 2 * MAX_RADIUS + 1; larger filters read the image from global memory directly.
//
// Bindings (set 0):
//   0  image    readonly   float[]  planes * height * width values, row-major ([p][y][x])
//   1  weights  readonly   float[]  kh * kw filter values, row-major
//   2  result   writeonly  float[]  planes * height * width values
// Push constants:
//   uint width, height   image size
//   uint kw, kh          filter size (any, >= 1)
// Specialization constants:
//   id 0, 1  local_size_x = local_size_y = 16   workgroup size
//   id 2     MAX_RADIUS = 16   halo staged in shared memory: (16 + 32)^2 floats = 9 KiB
// Dispatch:
//   grid=(width, height, planes): one invocation per output pixel, one z layer per plane.
// Usage:
//   k = vknb.library.load("convolve2d")
//   out = np.empty_like(img)                      # float32, (H, W) or (planes, H, W)
//   k(img, w, out, width=W, height=H, kw=w.shape[1], kh=w.shape[0], grid=(W, H, 1))
//   vknb.library.convolve2d(img, w); vknb.library.blur(img, sigma=2.0)   # the helpers

layout(local_size_x = 16, local_size_y = 16, local_size_x_id = 0, local_size_y_id = 1) in;
layout(constant_id = 2) const uint MAX_RADIUS = 16u;

layout(set = 0, binding = 0) readonly buffer ImageBuf { float image[]; };
layout(set = 0, binding = 1) readonly buffer WeightsBuf { float weights[]; };
layout(set = 0, binding = 2) writeonly buffer ResultBuf { float result[]; };

layout(push_constant) uniform Params {
    uint width;
    uint height;
    uint kw;
    uint kh;
};

const uint TILE_W = gl_WorkGroupSize.x + 2u * MAX_RADIUS;
const uint TILE_H = gl_WorkGroupSize.y + 2u * MAX_RADIUS;
shared float tile[TILE_W * TILE_H];

float pixel(uint plane, int y, int x) {
    int yy = clamp(y, 0, int(height) - 1);
    int xx = clamp(x, 0, int(width) - 1);
    return image[plane * width * height + uint(yy) * width + uint(xx)];
}

void main() {
    uint x = gl_GlobalInvocationID.x;
    uint y = gl_GlobalInvocationID.y;
    uint plane = gl_GlobalInvocationID.z;
    int cy = int(kh / 2u);
    int cx = int(kw / 2u);
    bool staged = kh <= 2u * MAX_RADIUS + 1u && kw <= 2u * MAX_RADIUS + 1u;

    float acc = 0.0;
    if (staged) {
        // The workgroup's outputs need rows y0 + cy - (kh - 1) .. y1 + cy, likewise columns.
        uint tw = gl_WorkGroupSize.x + kw - 1u;
        uint th = gl_WorkGroupSize.y + kh - 1u;
        int oy = int(gl_WorkGroupID.y * gl_WorkGroupSize.y) + cy - int(kh) + 1;
        int ox = int(gl_WorkGroupID.x * gl_WorkGroupSize.x) + cx - int(kw) + 1;
        uint wg = gl_WorkGroupSize.x * gl_WorkGroupSize.y;
        for (uint s = gl_LocalInvocationIndex; s < tw * th; s += wg) {
            uint sy = s / tw;
            uint sx = s % tw;
            tile[sy * tw + sx] = pixel(plane, oy + int(sy), ox + int(sx));
        }
        barrier();
        if (x < width && y < height) {
            uint ly = gl_LocalInvocationID.y + kh - 1u;
            uint lx = gl_LocalInvocationID.x + kw - 1u;
            for (uint i = 0u; i < kh; ++i) {
                for (uint j = 0u; j < kw; ++j) {
                    acc += weights[i * kw + j] * tile[(ly - i) * tw + (lx - j)];
                }
            }
        }
    } else if (x < width && y < height) {
        for (uint i = 0u; i < kh; ++i) {
            for (uint j = 0u; j < kw; ++j) {
                acc += weights[i * kw + j]
                     * pixel(plane, int(y) + cy - int(i), int(x) + cx - int(j));
            }
        }
    }
    if (x < width && y < height) {
        result[plane * width * height + y * width + x] = acc;
    }
}
