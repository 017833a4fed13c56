// sobel.comp -- Sobel gradient magnitude of a float32 image, clamp-to-edge borders.
//
//   gx = (p[y-1][x+1] + 2 p[y][x+1] + p[y+1][x+1]) - (p[y-1][x-1] + 2 p[y][x-1] + p[y+1][x-1])
//   gy = (p[y+1][x-1] + 2 p[y+1][x] + p[y+1][x+1]) - (p[y-1][x-1] + 2 p[y-1][x] + p[y-1][x+1])
//   magnitude[y][x] = sqrt(gx^2 + gy^2)
//
// with rows and columns outside the image clamped to the nearest edge (so a constant image
// gives 0 everywhere, borders included).
//
// Bindings (set 0):
//   0  image      readonly   float[]  height * width values, row-major
//   1  magnitude  writeonly  float[]  height * width values
// Push constants:
//   uint width, height   image size
// Specialization constants:
//   id 0, 1  local_size_x = local_size_y = 16   workgroup size
// Dispatch:
//   grid=(width, height).
// Usage:
//   k = vknb.library.load("sobel")
//   mag = np.empty_like(img)                 # float32 (H, W)
//   k(img, mag, width=W, height=H, grid=(W, H))
//   vknb.library.sobel(img)                  # the helper

layout(local_size_x = 16, local_size_y = 16, local_size_x_id = 0, local_size_y_id = 1) in;

layout(set = 0, binding = 0) readonly buffer ImageBuf { float image[]; };
layout(set = 0, binding = 1) writeonly buffer MagnitudeBuf { float magnitude[]; };

layout(push_constant) uniform Params {
    uint width;
    uint height;
};

float p(int y, int x) {
    int yy = clamp(y, 0, int(height) - 1);
    int xx = clamp(x, 0, int(width) - 1);
    return image[uint(yy) * width + uint(xx)];
}

void main() {
    uint ux = gl_GlobalInvocationID.x;
    uint uy = gl_GlobalInvocationID.y;
    if (ux >= width || uy >= height) {
        return;
    }
    int x = int(ux);
    int y = int(uy);
    float gx = (p(y - 1, x + 1) + 2.0 * p(y, x + 1) + p(y + 1, x + 1))
             - (p(y - 1, x - 1) + 2.0 * p(y, x - 1) + p(y + 1, x - 1));
    float gy = (p(y + 1, x - 1) + 2.0 * p(y + 1, x) + p(y + 1, x + 1))
             - (p(y - 1, x - 1) + 2.0 * p(y - 1, x) + p(y - 1, x + 1));
    magnitude[uy * width + ux] = sqrt(gx * gx + gy * gy);
}
