// map.comp -- elementwise out[i] = f(a[i], b[i], alpha) on float32 vectors.
//
// The function is chosen by the specialization constant OP (one pipeline per op), or by a
// GLSL expression in the define EXPR over the names a, b and alpha, which overrides OP.
//
//   binary:   0 add a+b     1 sub a-b     2 mul a*b     3 div a/b
//             4 max         5 min         6 pow(a, b)  (a > 0)
//   unary:   10 neg -a     11 abs        12 exp        13 log        14 sqrt
//            15 sin        16 cos        17 tanh       18 relu max(a, 0)
//            19 sigmoid 1/(1+exp(-a))    20 square a*a 21 reciprocal 1/a
//   scalar:  30 scale a*alpha            31 add_scalar a+alpha
//            32 axpy alpha*a+b           33 pow_scalar pow(a, alpha)
//
// Bindings (set 0):
//   0  a       readonly   float[]  first operand; at least n elements
//   1  b       readonly   float[]  second operand (unary and scalar ops never read it: bind a again)
//   2  result  writeonly  float[]  f(a, b, alpha); at least n elements
// Push constants:
//   uint  n      number of elements
//   float alpha  the scalar of ops 30-33 (ignored by the others, but required: pass 0.0)
// Specialization constants:
//   id 0  local_size_x = 256  workgroup size
//   id 1  OP = 0              the operation, from the table above
// Dispatch:
//   grid=n; or groups=min(ceil(n / 256), 65535) (grid-stride loop).
// Usage:
//   k = vknb.library.load("map", constants={"OP": 12})            # exp
//   k(x, x, result, n=x.size, alpha=0.0, grid=x.size)
//   k = vknb.library.load("map", defines={"EXPR": "a * a + alpha * b"})
//   vknb.library.elementwise("exp", x)                             # the helper

layout(local_size_x = 256, local_size_x_id = 0) in;
layout(constant_id = 1) const uint OP = 0u;

layout(set = 0, binding = 0) readonly buffer ABuf { float a[]; };
layout(set = 0, binding = 1) readonly buffer BBuf { float b[]; };
layout(set = 0, binding = 2) writeonly buffer OutBuf { float result[]; };

layout(push_constant) uniform Params {
    uint n;
    float alpha;
};

float apply(float a, float b) {
#ifdef EXPR
    return (EXPR);
#else
    switch (OP) {
        case 0u: return a + b;
        case 1u: return a - b;
        case 2u: return a * b;
        case 3u: return a / b;
        case 4u: return max(a, b);
        case 5u: return min(a, b);
        case 6u: return pow(a, b);
        case 10u: return -a;
        case 11u: return abs(a);
        case 12u: return exp(a);
        case 13u: return log(a);
        case 14u: return sqrt(a);
        case 15u: return sin(a);
        case 16u: return cos(a);
        case 17u: return tanh(a);
        case 18u: return max(a, 0.0);
        case 19u: return 1.0 / (1.0 + exp(-a));
        case 20u: return a * a;
        case 21u: return 1.0 / a;
        case 30u: return a * alpha;
        case 31u: return a + alpha;
        case 32u: return alpha * a + b;
        case 33u: return pow(a, alpha);
        default: return a;
    }
#endif
}

// Whether b is read (binary ops, axpy, any EXPR): the others never touch it, so any buffer
// may be bound there.
bool reads_b() {
#ifdef EXPR
    return true;
#else
    return OP <= 6u || OP == 32u;
#endif
}

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < n; i += stride) {
        float ai = a[i];
        float bi = reads_b() ? b[i] : 0.0;
        result[i] = apply(ai, bi);
    }
}
