// mandelbrot.comp -- escape-time iteration counts of the Mandelbrot set over a window.
//
// Pixel (x, y) of a width x height image (row 0 at the top) is the point
//   c = (center_x + (x - width/2 + 0.5) * scale,  center_y + (height/2 - y - 0.5) * scale)
// and gets the number of iterations of z = z^2 + c (from z = 0) before |z| > 2, or max_iter
// when it never escapes.  All arithmetic is float32 and marked `precise` (no fused
// multiply-add), so each operation is rounded once, as the Vulkan spec requires for + - *:
// the counts equal a numpy float32 evaluation of the same expressions bit for bit.
//
// Bindings (set 0):
//   0  iterations  writeonly  uint[]  height * width counts, row-major
// Push constants:
//   uint  width, height        image size in pixels
//   float center_x, center_y   the complex number at the image centre
//   float scale                complex units per pixel (e.g. 3.0 / width for the whole set)
//   uint  max_iter             iteration limit
// Specialization constants:
//   id 0, 1  local_size_x = local_size_y = 16   workgroup size
// Dispatch:
//   grid=(width, height).
// Usage:
//   k = vknb.library.load("mandelbrot")
//   it = np.empty((480, 640), np.uint32)
//   k(it, width=640, height=480, center_x=-0.5, center_y=0.0, scale=3.0 / 640,
//     max_iter=256, grid=(640, 480))
//   vknb.library.mandelbrot(640, 480)        # the helper

layout(local_size_x = 16, local_size_y = 16, local_size_x_id = 0, local_size_y_id = 1) in;

layout(set = 0, binding = 0) writeonly buffer IterBuf { uint iterations[]; };

layout(push_constant) uniform Params {
    uint width;
    uint height;
    float center_x;
    float center_y;
    float scale;
    uint max_iter;
};

void main() {
    uint px = gl_GlobalInvocationID.x;
    uint py = gl_GlobalInvocationID.y;
    if (px >= width || py >= height) {
        return;
    }
    precise float cr = center_x + (float(px) - 0.5 * float(width) + 0.5) * scale;
    precise float ci = center_y + (0.5 * float(height) - float(py) - 0.5) * scale;
    precise float zr = 0.0;
    precise float zi = 0.0;
    uint i = 0u;
    for (; i < max_iter; ++i) {
        precise float zr2 = zr * zr;
        precise float zi2 = zi * zi;
        if (zr2 + zi2 > 4.0) {
            break;
        }
        precise float zri = zr * zi;
        zi = zri + zri + ci;
        zr = zr2 - zi2 + cr;
    }
    iterations[py * width + px] = i;
}
