// radix_sort.glsl -- key and value types of the radix_sort_* kernels, and the key order.
//
//     #define KEY float                 // uint (default), int or float
//     #include "radix_sort.glsl"
//     uint b = key_bits(keys[i]);       // the key's 32 bits
//     uint d = radix_digit(b, shift);   // its 8-bit digit at bit `shift` of the sort order
//     keys_out[j] = bits_as(b, KEY(0)); // the bits back as a KEY (the second argument only
//                                       // picks the overload)
//
// The radix sort orders keys by radix_order(bits), a uint whose unsigned order is the keys'
// order (the usual bit transforms):
//   uint   as is
//   int    the sign bit flipped
//   float  the sign bit flipped for positive numbers, all bits for negative ones; -0.0 is
//          taken as +0.0 (they compare equal) and every NaN as 0xFFFFFFFF, after +inf, so
//          that the order is numpy's: NaNs last, equal keys (and all NaNs) in input order.
// Keys move through the sort as their bits (NaN payloads and the sign of zero are kept).
// VALUE (uint by default, int or float) is the type of the values of a key-value sort; they
// are moved as bits too.

#ifndef VKNB_RADIX_SORT_GLSL
#define VKNB_RADIX_SORT_GLSL

#ifndef KEY
#define KEY uint
#endif
#ifndef VALUE
#define VALUE uint
#endif

uint key_bits(uint k) {
    return k;
}
uint key_bits(int k) {
    return uint(k);
}
uint key_bits(float k) {
    return floatBitsToUint(k);
}

uint bits_as(uint b, uint type_of_result) {
    return b;
}
int bits_as(uint b, int type_of_result) {
    return int(b);
}
float bits_as(uint b, float type_of_result) {
    return uintBitsToFloat(b);
}

uint radix_order(uint b, uint key_type) {
    return b;
}
uint radix_order(uint b, int key_type) {
    return b ^ 0x80000000u;
}
uint radix_order(uint b, float key_type) {
    if ((b & 0x7FFFFFFFu) > 0x7F800000u) {
        return 0xFFFFFFFFu;  // NaN
    }
    if (b == 0x80000000u) {
        b = 0u;  // -0.0
    }
    return (b & 0x80000000u) != 0u ? ~b : b | 0x80000000u;
}

// The 8-bit digit at bit `shift` (0, 8, 16 or 24) of the order of a KEY given by its bits.
uint radix_digit(uint b, uint shift) {
    return (radix_order(b, KEY(0)) >> shift) & 0xFFu;
}

#endif
