"""Pure-Python SPIR-V parser and compute-shader reflection.

:func:`reflect` reads a SPIR-V module (1.0 to 1.6, either byte order) and returns a
:class:`Reflection`: the compute entry point, its workgroup size (and the specialization constants
that drive it), every descriptor binding with the byte layout of its block, the push-constant
block and the specialization constants. It decodes only what reflection needs, in one pass over
the words, and raises :class:`~vknb.errors.SpirvError` (naming the fault and its word offset) for
anything malformed.

Numpy dtypes
------------
Every layout is given as a little-endian numpy dtype whose offsets and itemsizes are exactly the
SPIR-V ``Offset`` / ``ArrayStride`` / ``MatrixStride`` decorations, so ``np.zeros(n, dtype)``
is a byte-exact host image of the GPU data:

* Scalars map to ``float32``, ``float64``, ``float16``, ``int8`` ... ``uint64``. A ``bool`` (which
  only appears in blocks as a 32-bit value) is ``uint32`` with type name ``'bool'``.
* A vector is a subarray ``np.dtype((base, (n,)))``: ``vec4 -> ('<f4', (4,))``.
* A column-major matrix of C columns of R rows is ``(base, (C, R))`` (indexed ``[column][row]``,
  like GLSL) when its ``MatrixStride`` equals ``R * itemsize``; a ``row_major`` one is
  ``(base, (R, C))`` (indexed ``[row][column]``) when the stride equals ``C * itemsize``.
* A struct is a structured dtype: one field per member (named after the member; ``_m<k>`` where
  the name was stripped), at the member's offset, with itemsize == the struct's size (the end of
  its highest-offset member, as spirv-cross computes ``block_size``).
* **Padding.** Where a stride is larger than the value it separates (an array element or a
  matrix column/row), the value is wrapped in a one-field struct whose field is named ``'v'``
  (:data:`PAD_FIELD`) and whose itemsize is the stride. So a std140 ``float a[4]`` element is
  ``{'names': ['v'], 'formats': ['<f4'], 'offsets': [0], 'itemsize': 16}``, a std430 ``vec3``
  array element is the same around ``('<f4', (3,))``, and a std140 ``mat3`` is
  ``(pad(vec3, 16), (3,))``: ``x['m']['v']`` is then a ``(3, 3)`` float view of the columns.
  A struct array element is not wrapped: its own dtype gets itemsize == ``ArrayStride``.
* A fixed-size array member is a subarray field ``(element, (n,))``, where ``element`` is padded
  to the ``ArrayStride`` as above; ``Member.dtype`` of an array is the dtype of ONE (padded)
  element of its outermost dimension.
* A block's dtype covers its fixed part only: a trailing runtime array is left out and is given
  by :attr:`Block.runtime_array`. :attr:`Binding.dtype` is the runtime array's (padded) element
  dtype when the block ends in one, else the block's dtype.
* A buffer reference (``PhysicalStorageBuffer`` pointer) is an 8-byte address: ``uint64``,
  typed with the referenced block's name, with no members.
* A float of another encoding (``OpTypeFloat`` with an FP Encoding operand: bfloat16 of
  SPV_KHR_bfloat16, E4M3 / E5M2 of SPV_EXT_float8) has no numpy dtype: a member holds its raw
  bits (``uint16`` / ``uint8``) and is typed ``bfloat16_t``, ``floate4m3_t``, ``floate5m2_t``
  (``bf16vec2``...).  :func:`encode_float` and :func:`decode_float` convert.

Specialization
--------------
:func:`reflect` evaluates specialization constants at their defaults.  Where one sizes an array
(of a block member, a descriptor array) or the workgroup, :meth:`Reflection.specialize` gives
the reflection of the module specialized with given values: every length, size, offset-derived
dtype, descriptor count and the workgroup size as the GPU will see them.  A
:class:`~vknb.Kernel` reflects itself that way with its ``constants=``.  Specialization
constants of bfloat16 or FP8 type report ``encoding`` and a decoded float ``default``.

Example
-------
>>> from vknb.shader.spirv import reflect
>>> r = reflect(spirv_bytes)                        # doctest: +SKIP
>>> r.local_size, [b.name for b in r.bindings]      # doctest: +SKIP
((64, 1, 1), ['x', 'y'])
>>> r.binding("y").dtype                            # doctest: +SKIP
dtype('float32')
"""

from __future__ import annotations

import math
import numbers
import operator
import struct
import sys
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import SpirvError

__all__ = [
    "PAD_FIELD",
    "Binding",
    "Block",
    "Member",
    "Reflection",
    "SpecConstant",
    "decode_float",
    "dtype_to_json",
    "encode_float",
    "float_max",
    "reflect",
]

#: Name of the single field of the struct that pads a value up to its stride.
PAD_FIELD = "v"

MAGIC = 0x07230203
_SWAPPED_MAGIC = 0x03022307
_MAX_BOUND = 0x3FFFFF  # SPIR-V universal limit on the <id> bound (4,194,303)
_MAX_DEPTH = 64  # nesting of structs and arrays

# --- opcodes ---------------------------------------------------------------------------------
_OP_NAME = 5
_OP_MEMBER_NAME = 6
_OP_ENTRY_POINT = 15
_OP_EXECUTION_MODE = 16
_OP_TYPE_BOOL = 20
_OP_TYPE_INT = 21
_OP_TYPE_FLOAT = 22
_OP_TYPE_VECTOR = 23
_OP_TYPE_MATRIX = 24
_OP_TYPE_IMAGE = 25
_OP_TYPE_SAMPLER = 26
_OP_TYPE_SAMPLED_IMAGE = 27
_OP_TYPE_ARRAY = 28
_OP_TYPE_RUNTIME_ARRAY = 29
_OP_TYPE_STRUCT = 30
_OP_TYPE_POINTER = 32
_OP_CONSTANT_TRUE = 41
_OP_CONSTANT_FALSE = 42
_OP_CONSTANT = 43
_OP_CONSTANT_COMPOSITE = 44
_OP_CONSTANT_NULL = 46
_OP_SPEC_CONSTANT_TRUE = 48
_OP_SPEC_CONSTANT_FALSE = 49
_OP_SPEC_CONSTANT = 50
_OP_SPEC_CONSTANT_COMPOSITE = 51
_OP_SPEC_CONSTANT_OP = 52
_OP_FUNCTION = 54
_OP_VARIABLE = 59
_OP_DECORATE = 71
_OP_MEMBER_DECORATE = 72
_OP_GROUP_DECORATE = 74
_OP_GROUP_MEMBER_DECORATE = 75
_OP_EXECUTION_MODE_ID = 331
_OP_TYPE_ACCELERATION_STRUCTURE = 5341

_TYPE_OPS = frozenset(
    {
        19,  # OpTypeVoid
        _OP_TYPE_BOOL,
        _OP_TYPE_INT,
        _OP_TYPE_FLOAT,
        _OP_TYPE_VECTOR,
        _OP_TYPE_MATRIX,
        _OP_TYPE_IMAGE,
        _OP_TYPE_SAMPLER,
        _OP_TYPE_SAMPLED_IMAGE,
        _OP_TYPE_ARRAY,
        _OP_TYPE_RUNTIME_ARRAY,
        _OP_TYPE_STRUCT,
        _OP_TYPE_POINTER,
        _OP_TYPE_ACCELERATION_STRUCTURE,
    }
)
_CONST_OPS = frozenset(
    {
        _OP_CONSTANT_TRUE,
        _OP_CONSTANT_FALSE,
        _OP_CONSTANT,
        _OP_CONSTANT_COMPOSITE,
        _OP_CONSTANT_NULL,
        _OP_SPEC_CONSTANT_TRUE,
        _OP_SPEC_CONSTANT_FALSE,
        _OP_SPEC_CONSTANT,
        _OP_SPEC_CONSTANT_COMPOSITE,
        _OP_SPEC_CONSTANT_OP,
    }
)
_SPEC_SCALAR_OPS = frozenset({_OP_SPEC_CONSTANT_TRUE, _OP_SPEC_CONSTANT_FALSE, _OP_SPEC_CONSTANT})
_WANTED = (
    _TYPE_OPS
    | _CONST_OPS
    | {
        _OP_NAME,
        _OP_MEMBER_NAME,
        _OP_ENTRY_POINT,
        _OP_EXECUTION_MODE,
        _OP_EXECUTION_MODE_ID,
        _OP_VARIABLE,
        _OP_DECORATE,
        _OP_MEMBER_DECORATE,
        _OP_GROUP_DECORATE,
        _OP_GROUP_MEMBER_DECORATE,
    }
)
# Fewest words (opcode word included) an instruction needs for what we read from it.
_MIN_WORDS = {
    _OP_NAME: 3,
    _OP_MEMBER_NAME: 4,
    _OP_ENTRY_POINT: 4,
    _OP_EXECUTION_MODE: 3,
    _OP_EXECUTION_MODE_ID: 3,
    19: 2,
    _OP_TYPE_BOOL: 2,
    _OP_TYPE_INT: 4,
    _OP_TYPE_FLOAT: 3,
    _OP_TYPE_VECTOR: 4,
    _OP_TYPE_MATRIX: 4,
    _OP_TYPE_IMAGE: 9,
    _OP_TYPE_SAMPLER: 2,
    _OP_TYPE_SAMPLED_IMAGE: 3,
    _OP_TYPE_ARRAY: 4,
    _OP_TYPE_RUNTIME_ARRAY: 3,
    _OP_TYPE_STRUCT: 2,
    _OP_TYPE_POINTER: 4,
    _OP_TYPE_ACCELERATION_STRUCTURE: 2,
    _OP_CONSTANT_TRUE: 3,
    _OP_CONSTANT_FALSE: 3,
    _OP_CONSTANT: 4,
    _OP_CONSTANT_COMPOSITE: 3,
    _OP_CONSTANT_NULL: 3,
    _OP_SPEC_CONSTANT_TRUE: 3,
    _OP_SPEC_CONSTANT_FALSE: 3,
    _OP_SPEC_CONSTANT: 4,
    _OP_SPEC_CONSTANT_COMPOSITE: 3,
    _OP_SPEC_CONSTANT_OP: 4,
    _OP_VARIABLE: 4,
    _OP_DECORATE: 3,
    _OP_MEMBER_DECORATE: 4,
    _OP_GROUP_DECORATE: 2,
    _OP_GROUP_MEMBER_DECORATE: 2,
}
_OP_NAMES = {
    _OP_NAME: "OpName",
    _OP_MEMBER_NAME: "OpMemberName",
    _OP_ENTRY_POINT: "OpEntryPoint",
    _OP_EXECUTION_MODE: "OpExecutionMode",
    _OP_EXECUTION_MODE_ID: "OpExecutionModeId",
    19: "OpTypeVoid",
    _OP_TYPE_BOOL: "OpTypeBool",
    _OP_TYPE_INT: "OpTypeInt",
    _OP_TYPE_FLOAT: "OpTypeFloat",
    _OP_TYPE_VECTOR: "OpTypeVector",
    _OP_TYPE_MATRIX: "OpTypeMatrix",
    _OP_TYPE_IMAGE: "OpTypeImage",
    _OP_TYPE_SAMPLER: "OpTypeSampler",
    _OP_TYPE_SAMPLED_IMAGE: "OpTypeSampledImage",
    _OP_TYPE_ARRAY: "OpTypeArray",
    _OP_TYPE_RUNTIME_ARRAY: "OpTypeRuntimeArray",
    _OP_TYPE_STRUCT: "OpTypeStruct",
    _OP_TYPE_POINTER: "OpTypePointer",
    _OP_TYPE_ACCELERATION_STRUCTURE: "OpTypeAccelerationStructureKHR",
    _OP_CONSTANT_TRUE: "OpConstantTrue",
    _OP_CONSTANT_FALSE: "OpConstantFalse",
    _OP_CONSTANT: "OpConstant",
    _OP_CONSTANT_COMPOSITE: "OpConstantComposite",
    _OP_CONSTANT_NULL: "OpConstantNull",
    _OP_SPEC_CONSTANT_TRUE: "OpSpecConstantTrue",
    _OP_SPEC_CONSTANT_FALSE: "OpSpecConstantFalse",
    _OP_SPEC_CONSTANT: "OpSpecConstant",
    _OP_SPEC_CONSTANT_COMPOSITE: "OpSpecConstantComposite",
    _OP_SPEC_CONSTANT_OP: "OpSpecConstantOp",
    _OP_VARIABLE: "OpVariable",
    _OP_DECORATE: "OpDecorate",
    _OP_MEMBER_DECORATE: "OpMemberDecorate",
    _OP_GROUP_DECORATE: "OpGroupDecorate",
    _OP_GROUP_MEMBER_DECORATE: "OpGroupMemberDecorate",
}

# --- decorations, storage classes, modes -----------------------------------------------------
_DEC_SPEC_ID = 1
_DEC_BLOCK = 2
_DEC_BUFFER_BLOCK = 3
_DEC_ROW_MAJOR = 4
_DEC_ARRAY_STRIDE = 6
_DEC_MATRIX_STRIDE = 7
_DEC_BUILTIN = 11
_DEC_NON_WRITABLE = 24
_DEC_NON_READABLE = 25
_DEC_BINDING = 33
_DEC_DESCRIPTOR_SET = 34
_DEC_OFFSET = 35
_BUILTIN_WORKGROUP_SIZE = 25

_SC_UNIFORM_CONSTANT = 0
_SC_UNIFORM = 2
_SC_WORKGROUP = 4
_SC_PUSH_CONSTANT = 9
_SC_STORAGE_BUFFER = 12
_SC_PHYSICAL_STORAGE_BUFFER = 5349

_MODE_LOCAL_SIZE = 17
_MODE_LOCAL_SIZE_ID = 38
_MODEL_GL_COMPUTE = 5
_MODEL_NAMES = {
    0: "Vertex",
    1: "TessellationControl",
    2: "TessellationEvaluation",
    3: "Geometry",
    4: "Fragment",
    5: "GLCompute",
    6: "Kernel",
    5267: "TaskNV",
    5268: "MeshNV",
    5313: "RayGenerationKHR",
    5314: "IntersectionKHR",
    5315: "AnyHitKHR",
    5316: "ClosestHitKHR",
    5317: "MissKHR",
    5318: "CallableKHR",
    5364: "TaskEXT",
    5365: "MeshEXT",
}

# VkDescriptorType values.
_DT_SAMPLER = 0
_DT_COMBINED_IMAGE_SAMPLER = 1
_DT_SAMPLED_IMAGE = 2
_DT_STORAGE_IMAGE = 3
_DT_UNIFORM_TEXEL_BUFFER = 4
_DT_STORAGE_TEXEL_BUFFER = 5
_DT_UNIFORM_BUFFER = 6
_DT_STORAGE_BUFFER = 7
_DT_INPUT_ATTACHMENT = 10
_DT_ACCELERATION_STRUCTURE = 1000150000

# (is_float, width, signed) -> (GLSL scalar name, vector prefix, matrix prefix, numpy format)
_SCALARS: dict[tuple[bool, int, bool], tuple[str, str, str, str]] = {
    (True, 16, True): ("float16_t", "f16vec", "f16mat", "<f2"),
    (True, 32, True): ("float", "vec", "mat", "<f4"),
    (True, 64, True): ("double", "dvec", "dmat", "<f8"),
    (False, 8, True): ("int8_t", "i8vec", "", "i1"),
    (False, 8, False): ("uint8_t", "u8vec", "", "u1"),
    (False, 16, True): ("int16_t", "i16vec", "", "<i2"),
    (False, 16, False): ("uint16_t", "u16vec", "", "<u2"),
    (False, 32, True): ("int", "ivec", "", "<i4"),
    (False, 32, False): ("uint", "uvec", "", "<u4"),
    (False, 64, True): ("int64_t", "i64vec", "", "<i8"),
    (False, 64, False): ("uint64_t", "u64vec", "", "<u8"),
}
_BOOL_DTYPE = np.dtype("<u4")


# --- data model ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Member:
    """One member of a block or struct.

    Attributes
    ----------
    name : str
        The member's name ('' if the module was stripped of names).
    offset : int
        Byte offset in the parent block or struct.
    type : str
        GLSL-style type name: ``'float'``, ``'uvec3'``, ``'mat3x4'``, a struct's name, and for
        arrays ``'float[16]'``, ``'vec4[]'`` or ``'float[2][3]'`` (outermost dimension first).
    dtype : numpy.dtype
        Dtype of one value; for arrays of ONE element of the outermost dimension, padded to
        the array stride (see the module docstring).
    size : int
        Bytes occupied: ``array_stride * array_length`` for fixed arrays, 0 for runtime arrays.
    array_length : int or None
        None when not an array, 0 for a runtime array, else the outermost length.
    array_stride, matrix_stride : int or None
        The ``ArrayStride`` / ``MatrixStride`` decorations.
    row_major : bool
        The ``RowMajor`` decoration.
    members : tuple of Member
        The members of a struct-typed member (or of an array of structs).
    """

    name: str
    offset: int
    type: str
    dtype: np.dtype
    size: int
    array_length: int | None
    array_stride: int | None
    matrix_stride: int | None
    row_major: bool
    members: tuple[Member, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data (dtypes as described by :func:`dtype_to_json`)."""
        return {
            "name": self.name,
            "offset": self.offset,
            "type": self.type,
            "dtype": dtype_to_json(self.dtype),
            "size": self.size,
            "array_length": self.array_length,
            "array_stride": self.array_stride,
            "matrix_stride": self.matrix_stride,
            "row_major": self.row_major,
            "members": [m.to_dict() for m in self.members],
        }


@dataclass(frozen=True)
class Block:
    """The layout of a uniform, storage or push-constant block.

    Attributes
    ----------
    name : str
        The block's (struct type's) name.
    size : int
        Bytes of the fixed part (spirv-cross's ``block_size``).
    members : tuple of Member
        All members, the trailing runtime array included.
    dtype : numpy.dtype
        Structured dtype of the fixed part, itemsize == ``size``.
    runtime_array : Member or None
        The trailing runtime-array member, if any.
    """

    name: str
    size: int
    members: tuple[Member, ...]
    dtype: np.dtype
    runtime_array: Member | None

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data."""
        return {
            "name": self.name,
            "size": self.size,
            "members": [m.to_dict() for m in self.members],
            "dtype": dtype_to_json(self.dtype),
            "runtime_array": None if self.runtime_array is None else self.runtime_array.name,
        }


# SPIR-V's ImageFormat enum -> (GLSL format qualifier, numpy dtype, channels, normalized).
# Packed formats (r11f_g11f_b10f, rgb10_a2, rgb10_a2ui) have no numpy dtype: dtype None.
IMAGE_FORMATS: dict[int, tuple[str, str | None, int, bool]] = {
    1: ("rgba32f", "float32", 4, False),
    2: ("rgba16f", "float16", 4, False),
    3: ("r32f", "float32", 1, False),
    4: ("rgba8", "uint8", 4, True),
    5: ("rgba8_snorm", "int8", 4, True),
    6: ("rg32f", "float32", 2, False),
    7: ("rg16f", "float16", 2, False),
    8: ("r11f_g11f_b10f", None, 3, False),
    9: ("r16f", "float16", 1, False),
    10: ("rgba16", "uint16", 4, True),
    11: ("rgb10_a2", None, 4, True),
    12: ("rg16", "uint16", 2, True),
    13: ("rg8", "uint8", 2, True),
    14: ("r16", "uint16", 1, True),
    15: ("r8", "uint8", 1, True),
    16: ("rgba16_snorm", "int16", 4, True),
    17: ("rg16_snorm", "int16", 2, True),
    18: ("rg8_snorm", "int8", 2, True),
    19: ("r16_snorm", "int16", 1, True),
    20: ("r8_snorm", "int8", 1, True),
    21: ("rgba32i", "int32", 4, False),
    22: ("rgba16i", "int16", 4, False),
    23: ("rgba8i", "int8", 4, False),
    24: ("r32i", "int32", 1, False),
    25: ("rg32i", "int32", 2, False),
    26: ("rg16i", "int16", 2, False),
    27: ("rg8i", "int8", 2, False),
    28: ("r16i", "int16", 1, False),
    29: ("r8i", "int8", 1, False),
    30: ("rgba32ui", "uint32", 4, False),
    31: ("rgba16ui", "uint16", 4, False),
    32: ("rgba8ui", "uint8", 4, False),
    33: ("r32ui", "uint32", 1, False),
    34: ("rgb10_a2ui", None, 4, False),
    35: ("rg32ui", "uint32", 2, False),
    36: ("rg16ui", "uint16", 2, False),
    37: ("rg8ui", "uint8", 2, False),
    38: ("r16ui", "uint16", 1, False),
    39: ("r8ui", "uint8", 1, False),
    40: ("r64ui", "uint64", 1, False),
    41: ("r64i", "int64", 1, False),
}
_IMAGE_DIMS = {0: "1d", 1: "2d", 2: "3d", 3: "cube", 4: "rect", 5: "buffer", 6: "subpass"}


@dataclass(frozen=True)
class ImageInfo:
    """What an image, sampled image or texel-buffer binding declares.

    Attributes
    ----------
    dim : str
        '1d', '2d', '3d', 'cube', 'rect', 'buffer' (texel buffers) or 'subpass'.
    arrayed : bool
        ``image2DArray``, ``sampler2DArray``, ... (layers).
    multisampled : bool
    depth : bool
        A depth (shadow) image: ``sampler2DShadow``.
    sampled_type : str
        'float', 'int' or 'uint': what a read returns (``vec4``, ``ivec4``, ``uvec4``).
    format : str or None
        The format qualifier of a storage image or texel buffer (``'rgba8'``, ``'r32f'``...);
        None where the shader declares none (sampled images take theirs from the data).
    dtype : str or None
        The numpy dtype of one channel of ``format`` (``'uint8'`` for ``rgba8``, which reads as
        normalized floats), None without a format or for packed formats.
    channels : int
        Channels of ``format`` (0 without one).
    normalized : bool
        ``format`` stores integers read as floats in [0, 1] (unorm) or [-1, 1] (snorm).
    """

    dim: str
    arrayed: bool
    multisampled: bool
    depth: bool
    sampled_type: str
    format: str | None
    dtype: str | None
    channels: int
    normalized: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data."""
        return dict(vars(self))


@dataclass(frozen=True)
class Binding:
    """One descriptor binding (a buffer, image, sampler, ...).

    Attributes
    ----------
    set, binding : int
        ``layout(set=, binding=)``.
    name : str
        The instance name, else the block name.
    block_name : str
        The block's name; '' for resources that are not blocks.
    kind : str
        'storage', 'uniform', 'storage_image', 'sampled_image', 'combined_image_sampler',
        'sampler', 'uniform_texel_buffer', 'storage_texel_buffer', 'input_attachment' or
        'acceleration_structure'.
    descriptor_type : int
        The ``VkDescriptorType`` value.
    count : int
        Descriptor array size: 1 for a single resource, the product of the lengths for an
        array of resources (``bufs[4]`` -> 4, ``imgs[2][3]`` -> 6), 0 for a runtime-sized
        (unsized) descriptor array ``bufs[]`` (see :attr:`runtime_sized`).  A length given by
        a specialization constant counts at the value the reflection is specialized with, the
        constant's default for :func:`reflect` (see :attr:`count_spec_ids` and
        :meth:`Reflection.specialize`).
    readonly, writeonly : bool
        ``NonWritable`` / ``NonReadable`` on the variable or on every member of its block.
        Uniform blocks, samplers and sampled images are readonly.
    block : Block or None
        The block layout of a buffer.
    dtype : numpy.dtype or None
        The element dtype of a trailing runtime array, else the block's dtype; None for
        images and samplers.
    members : tuple of Member
        ``block.members``, or ().
    aliases : tuple of str
        The names of the other bindings that share this one's (set, binding) (aliases), in
        module order; () for most bindings.  See :meth:`Reflection.check_layout`.
    count_spec_ids : tuple of int
        The specialization-constant ids that the descriptor array's length depends on (sorted);
        () when the length is literal.  Specializing one of them changes the real count.
    image : ImageInfo or None
        For images, sampled images and texel buffers: dimensionality, layers, format.
    """

    set: int
    binding: int
    name: str
    block_name: str
    kind: str
    descriptor_type: int
    count: int
    readonly: bool
    writeonly: bool
    block: Block | None
    dtype: np.dtype | None
    members: tuple[Member, ...]
    aliases: tuple[str, ...] = ()
    count_spec_ids: tuple[int, ...] = ()
    image: ImageInfo | None = None

    @property
    def runtime_sized(self) -> bool:
        """True for a runtime-sized descriptor array (``bufs[]``, :attr:`count` 0)."""
        return self.count == 0

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data."""
        return {
            "set": self.set,
            "binding": self.binding,
            "name": self.name,
            "block_name": self.block_name,
            "kind": self.kind,
            "descriptor_type": self.descriptor_type,
            "count": self.count,
            "readonly": self.readonly,
            "writeonly": self.writeonly,
            "block": None if self.block is None else self.block.to_dict(),
            "dtype": None if self.dtype is None else dtype_to_json(self.dtype),
            "aliases": list(self.aliases),
            "count_spec_ids": list(self.count_spec_ids),
            "image": None if self.image is None else self.image.to_dict(),
        }


@dataclass(frozen=True)
class SpecConstant:
    """A specialization constant (``layout(constant_id = N) const T NAME = default;``).

    Attributes
    ----------
    id : int
        The ``SpecId`` (``constant_id``).
    name : str
        '' where the module has no name for it.
    dtype : numpy.dtype
        ``bool``, an integer or a float dtype; for a float of a non-IEEE encoding (see
        :attr:`encoding`) the unsigned integer of its width, which holds its raw bits (numpy
        has no bfloat16 or 8-bit float).
    default : bool, int or float
        The module's default, whatever a reflection is specialized with; a float for encoded
        floats (decoded from their bits).
    encoding : str or None
        ``'bfloat16'`` (``OpTypeFloat 16 BFloat16KHR``), ``'float8_e4m3'`` or
        ``'float8_e5m2'`` (``OpTypeFloat 8 Float8E4M3EXT / Float8E5M2EXT``); None for IEEE
        floats, integers and bools.  Values are given as Python floats and packed by
        :func:`encode_float`.
    """

    id: int
    name: str
    dtype: np.dtype
    default: bool | int | float
    encoding: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data."""
        return {
            "id": self.id,
            "name": self.name,
            "dtype": dtype_to_json(self.dtype),
            "default": self.default,
            "encoding": self.encoding,
        }


@dataclass(frozen=True)
class Reflection:
    """Everything a compute pipeline needs to know about a shader's interface.

    Attributes
    ----------
    entry_point : str
        Name of the compute entry point.
    local_size : tuple of 3 int
        Workgroup size, with specialization constants at their defaults (or at the values of
        :attr:`specialization`): what the module runs with when the pipeline specializes
        nothing more. (glslang gives ``local_size_x_id = N``
        its own constant, default 1, even where the shader also declares
        ``layout(constant_id = N) const uint X = 32;``; ``local_size_for`` with that
        constant's value gives the size the author meant.)
    local_size_ids : tuple of 3 (int or None)
        The specialization-constant id that drives each dimension, None where it is literal.
    bindings : tuple of Binding
        Sorted by (set, binding).
    push_constants : Block or None
    spec_constants : tuple of SpecConstant
        Sorted by id.
    spirv_version : tuple of 2 int
    bound : int
        The module's <id> bound.
    specialization : tuple of (int, value) pairs
        The specialization-constant values (by id, sorted) that array lengths, block layouts,
        descriptor counts and the workgroup size were evaluated with; () for :func:`reflect`'s
        result (every constant at its default).  See :meth:`specialize`.
    shared_memory : int
        Bytes of the ``shared`` (Workgroup) variables, at their natural sizes with the
        specialization above (what ``maxComputeSharedMemorySize`` limits; a driver may add
        padding).
    """

    entry_point: str
    local_size: tuple[int, int, int]
    local_size_ids: tuple[int | None, int | None, int | None]
    bindings: tuple[Binding, ...]
    push_constants: Block | None
    spec_constants: tuple[SpecConstant, ...]
    spirv_version: tuple[int, int]
    bound: int
    specialization: tuple[tuple[int, bool | int | float], ...] = ()
    ext_inst_imports: tuple[str, ...] = ()
    shared_memory: int = 0
    # The module itself (little-endian words), for specialize(); not part of the reflection.
    _spirv: bytes = field(default=b"", compare=False, repr=False)

    @property
    def uses_printf(self) -> bool:
        """Whether the shader calls ``debugPrintfEXT`` (imports ``NonSemantic.DebugPrintf``)."""
        return "NonSemantic.DebugPrintf" in self.ext_inst_imports

    def specialize(
        self, constants: Mapping[int, Any] | Mapping[str, Any] | None = None
    ) -> Reflection:
        """The reflection of the module specialized with ``constants``.

        Specialization constants are fixed when a pipeline is built; where one sizes an
        array (``layout(constant_id = 0) const uint N = 4; buffer H { uint hist[N + 1]; }``,
        a push-constant or uniform member ``float w[N]``, a descriptor array ``tex[N]``) or the
        workgroup (``local_size_x_id``), the module's real layout is the specialized one.  The
        result re-evaluates every ``OpSpecConstant`` with the given values and every
        ``OpSpecConstantOp`` built on them (the integer arithmetic, shifts, comparisons,
        ``select`` and conversions that front ends emit for ``N + 1``, ``N * 2``,
        ``N > 4 ? a : b`` ...), so its array lengths, member sizes, block sizes and dtypes,
        :attr:`Binding.count` and :attr:`local_size` are those the GPU uses.
        :attr:`SpecConstant.default` keeps the module's defaults; :attr:`specialization`
        records the values.  Specializing a specialized reflection adds to (and overrides)
        its values.

        Parameters
        ----------
        constants : mapping, optional
            Values by specialization-constant id or name: bools for ``bool`` constants,
            integers (in the type's range) for integer ones, real numbers for floats.

        Returns
        -------
        Reflection
            ``self`` when ``constants`` is empty.

        Raises
        ------
        KeyError
            No specialization constant has that id or name.
        TypeError, ValueError
            A value of the wrong kind or out of its type's range.
        SpirvError
            The values make the module's layout invalid: an array length below 1, or a
            constant-sized array that now runs into the member after it (the compiler laid
            the block out for the default length; put such an array last).

        Example
        -------
        >>> r = reflect(spirv)   # constant_id = 0: N = 4; buffer H { uint hist[N + 1]; }
        ...                      # doctest: +SKIP
        >>> r.binding("H").block.size, r.specialize({"N": 10}).binding("H").block.size
        ...                                                             # doctest: +SKIP
        (20, 44)
        """
        if not constants:
            return self
        by_name = {c.name: c for c in self.spec_constants if c.name}
        by_id = {c.id: c for c in self.spec_constants}
        values = dict(self.specialization)
        for key, value in constants.items():
            spec = by_name.get(key) if isinstance(key, str) else by_id.get(key)
            if spec is None:
                avail = ", ".join(f"{c.name or '?'} (id {c.id})" for c in self.spec_constants)
                raise KeyError(
                    f"no specialization constant {key!r}; the module declares: {avail or 'none'}"
                )
            values[spec.id] = _spec_value(spec, value)
        if not self._spirv:
            raise SpirvError(
                "this Reflection was built without its module, so it cannot be specialized; "
                "use reflect(spirv).specialize(...)"
            )
        try:
            return _reflect(self._spirv, self.entry_point, values)
        except SpirvError as e:
            given = ", ".join(
                f"{by_id[sid].name or sid}={v!r}" for sid, v in sorted(values.items())
            )
            raise SpirvError(f"specialized with {given}: {e}") from None

    def local_size_for(
        self, constants: Mapping[int, Any] | Mapping[str, Any] | None = None
    ) -> tuple[int, int, int]:
        """Workgroup size with the given specialization-constant values.

        Parameters
        ----------
        constants : mapping, optional
            Values by specialization-constant id (or name); dimensions driven by constants
            that are not given keep their defaults, literal dimensions never change.

        Returns
        -------
        tuple of 3 int

        Raises
        ------
        TypeError
            A value that drives a dimension is not an integer.
        ValueError
            A value that drives a dimension is not positive.

        Example
        -------
        >>> r = reflect(spirv)          # layout(local_size_x_id = 0, local_size_y = 4) in;
        ...                             # doctest: +SKIP
        >>> r.local_size, r.local_size_for({0: 32})     # doctest: +SKIP
        ((1, 4, 1), (32, 4, 1))
        """
        if not constants:
            return self.local_size
        by_id: dict[int, Any] = {}
        names = {c.name: c.id for c in self.spec_constants if c.name}
        for key, value in constants.items():
            if isinstance(key, str):
                if key in names:
                    by_id[names[key]] = value
            else:
                by_id[key] = value
        out = list(self.local_size)
        for dim, sid in enumerate(self.local_size_ids):
            if sid is None or sid not in by_id:
                continue
            value = by_id[sid]
            try:
                size = operator.index(value)
            except TypeError:
                raise TypeError(
                    f"specialization constant {sid} sets local_size[{dim}]: expected an int, "
                    f"got {type(value).__name__} {value!r}"
                ) from None
            if size < 1:
                raise ValueError(
                    f"specialization constant {sid} sets local_size[{dim}]: it must be >= 1, "
                    f"got {size}"
                )
            out[dim] = size
        return (out[0], out[1], out[2])

    @property
    def aliases(self) -> dict[tuple[int, int], tuple[Binding, ...]]:
        """The descriptor slots that several bindings share: ``{(set, binding): bindings}``
        (module order), only for slots with two or more bindings; ``{}`` for most shaders.

        Example
        -------
        >>> r = reflect(spirv)  # readonly buffer A {float a[];}; writeonly buffer B {uint b[];}
        ...                     # both at binding 0                     # doctest: +SKIP
        >>> [b.name for b in r.aliases[(0, 0)]]                          # doctest: +SKIP
        ['A', 'B']
        """
        groups: dict[tuple[int, int], list[Binding]] = {}
        for b in self.bindings:
            groups.setdefault((b.set, b.binding), []).append(b)
        return {k: tuple(v) for k, v in groups.items() if len(v) > 1}

    def check_layout(self) -> tuple[Binding, ...]:
        """One binding per descriptor slot, sorted by (set, binding); refuse aliases that one
        descriptor cannot serve.

        Bindings that share a (set, binding) (aliases: several views of one buffer) become
        one slot when they have the same descriptor type and count: the slot is the alias
        with the largest fixed block part (the first in module order on a tie), ``readonly``
        only when every alias is, ``writeonly`` only when every alias is; its
        :attr:`Binding.aliases` names the others.  Slots without aliases are the bindings
        themselves.

        Returns
        -------
        tuple of Binding

        Raises
        ------
        SpirvError
            (a ``ValueError``) two bindings share a (set, binding) with different descriptor
            types or counts; the message names both.

        Example
        -------
        >>> [(b.binding, b.name) for b in reflect(spirv).check_layout()]  # doctest: +SKIP
        [(0, 'A'), (1, 'out')]
        """
        slots: list[Binding] = []
        shared = self.aliases
        for b in self.bindings:
            key = (b.set, b.binding)
            group = shared.get(key)
            if group is None:
                slots.append(b)
                continue
            if group[0] is not b:
                continue
            first = group[0]
            for other in group[1:]:
                for what, mine, theirs in (
                    ("descriptor types", first.kind, other.kind),
                    ("descriptor counts", first.count, other.count),
                ):
                    if mine != theirs:
                        raise SpirvError(
                            f"bindings {first.name!r} ({first.kind}, count {first.count}) "
                            f"and {other.name!r} ({other.kind}, count {other.count}) share "
                            f"set={b.set}, binding={b.binding} with different {what} "
                            f"({mine} and {theirs}): one descriptor cannot be both; give "
                            "them different binding numbers"
                        )
            widest = max(group, key=lambda a: a.block.size if a.block is not None else 0)
            slots.append(
                replace(
                    widest,
                    readonly=all(a.readonly for a in group),
                    writeonly=all(a.writeonly for a in group),
                )
            )
        return tuple(slots)

    def binding(self, name: str) -> Binding:
        """Find a binding by instance name, block name, or the name of its block's array member.

        The instance name wins over the block name, which wins over the member name (the
        member is the block's runtime array, or its only member when that is an array).

        Raises
        ------
        KeyError
            No binding (or more than one, by member name) matches; the message lists the
            names that exist.

        Example
        -------
        >>> r = reflect(spirv)   # buffer Out { float data[]; } out_;   # doctest: +SKIP
        >>> r.binding("out_") is r.binding("Out") is r.binding("data")  # doctest: +SKIP
        True
        """
        for key in (_instance_name, _block_name, _array_member_name):
            found = [b for b in self.bindings if key(b) == name]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                where = ", ".join(f"(set={b.set}, binding={b.binding})" for b in found)
                raise KeyError(f"binding name {name!r} is ambiguous: it names {where}")
        available = sorted(
            {n for b in self.bindings for n in (b.name, b.block_name, _array_member_name(b)) if n}
        )
        raise KeyError(f"no binding named {name!r}; available: {', '.join(available) or 'none'}")

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data (lists, dicts, str, int, float, bool, None).

        Example
        -------
        >>> import json
        >>> json.dumps(reflect(spirv).to_dict())        # doctest: +SKIP
        '{"entry_point": "main", "local_size": [64, 1, 1], ...'
        """
        return {
            "entry_point": self.entry_point,
            "local_size": list(self.local_size),
            "local_size_ids": list(self.local_size_ids),
            "bindings": [b.to_dict() for b in self.bindings],
            "push_constants": None
            if self.push_constants is None
            else self.push_constants.to_dict(),
            "spec_constants": [c.to_dict() for c in self.spec_constants],
            "spirv_version": list(self.spirv_version),
            "bound": self.bound,
            "specialization": [[sid, v] for sid, v in self.specialization],
            "shared_memory": self.shared_memory,
        }


def _spec_value(spec: SpecConstant, value: Any) -> bool | int | float:
    """``value`` checked against the type of ``spec`` and made a plain Python value."""
    what = f"specialization constant {spec.name or spec.id!r} ({spec.encoding or spec.dtype})"
    if spec.dtype == np.bool_:
        if isinstance(value, (bool, np.bool_)) or (
            isinstance(value, (int, np.integer)) and value in (0, 1)
        ):
            return bool(value)
        raise TypeError(f"{what} is a bool; got {type(value).__name__} {value!r}")
    if spec.encoding is None and spec.dtype.kind in "iu":
        try:
            v = operator.index(value)
        except TypeError:
            raise TypeError(f"{what} is an integer; got {type(value).__name__} {value!r}") from None
        info = np.iinfo(spec.dtype)
        if not info.min <= v <= info.max:
            raise ValueError(f"{what}: {v} is outside [{info.min}, {info.max}]")
        return int(v)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} is a float; got {type(value).__name__} {value!r}")
    if spec.encoding is not None:
        try:
            encode_float(value, spec.encoding)  # range check
        except ValueError as e:
            raise ValueError(f"{what}: {e}") from None
    return float(value)


def _instance_name(b: Binding) -> str:
    return b.name


def _block_name(b: Binding) -> str:
    return b.block_name


def _array_member_name(b: Binding) -> str:
    if b.block is None:
        return ""
    if b.block.runtime_array is not None:
        return b.block.runtime_array.name
    if len(b.members) == 1 and b.members[0].array_length is not None:
        return b.members[0].name
    return ""


def dtype_to_json(dt: np.dtype) -> Any:
    """A numpy dtype as JSON-able data.

    A plain dtype is its ``dtype.str`` (``'<f4'``); a subarray is
    ``{"base": ..., "shape": [...]}``; a structured dtype is
    ``{"names": [...], "formats": [...], "offsets": [...], "itemsize": n}``, which
    ``np.dtype()`` accepts back once the formats are converted the same way.

    Example
    -------
    >>> dtype_to_json(np.dtype(("<f4", (3,))))
    {'base': '<f4', 'shape': [3]}
    """
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return {"base": dtype_to_json(base), "shape": list(shape)}
    if dt.names is not None:
        fields = dt.fields
        assert fields is not None
        return {
            "names": list(dt.names),
            "formats": [dtype_to_json(fields[n][0]) for n in dt.names],
            "offsets": [fields[n][1] for n in dt.names],
            "itemsize": dt.itemsize,
        }
    return dt.str


# --- parsing ---------------------------------------------------------------------------------
def _error(message: str, at: int | None = None) -> SpirvError:
    if at is None:
        return SpirvError(f"invalid SPIR-V: {message}")
    return SpirvError(f"invalid SPIR-V at word {at}: {message}")


def _string(data: bytes, first: int, end: int, at: int, op: int) -> tuple[str, int]:
    """Decode the nul-terminated literal that starts at word ``first``; return it and the
    index of the word after it."""
    lo = first * 4
    z = data.find(b"\x00", lo, end * 4)
    if z < 0:
        raise _error(f"{_OP_NAMES.get(op, op)}: string literal is not nul-terminated", at)
    return data[lo:z].decode("utf-8", "replace"), z // 4 + 1


class _Module:
    """The parts of a module that reflection reads, decoded in one pass."""

    def __init__(
        self,
        spirv: bytes | bytearray | memoryview,
        spec_values: Mapping[int, bool | int | float] | None = None,
    ) -> None:
        # Specialization values by SpecId: OpSpecConstants take them instead of their defaults.
        self.spec_values: dict[int, bool | int | float] = dict(spec_values or {})
        if isinstance(spirv, memoryview):
            data = spirv.tobytes()
        elif isinstance(spirv, (bytes, bytearray)):
            data = bytes(spirv)
        else:
            raise TypeError(
                f"SPIR-V must be bytes, bytearray or memoryview, not {type(spirv).__name__}"
            )
        if len(data) % 4:
            raise _error(f"length {len(data)} bytes is not a multiple of 4")
        if len(data) < 20:
            raise _error(f"{len(data)} bytes is too short for the 5-word header")
        first = int.from_bytes(data[:4], "little")
        if first == _SWAPPED_MAGIC:  # a big-endian module: reverse the bytes of every word
            swapped = bytearray(data)
            swapped[0::4], swapped[1::4], swapped[2::4], swapped[3::4] = (
                data[3::4],
                data[2::4],
                data[1::4],
                data[0::4],
            )
            data = bytes(swapped)
        elif first != MAGIC:
            raise _error(f"magic number 0x{first:08x} is not SPIR-V's 0x{MAGIC:08x}", 0)
        words_array = array("I", data)
        if sys.byteorder == "big":
            words_array.byteswap()
        self.data = data
        self.words = words = words_array.tolist()

        version = words[1]
        major, minor = (version >> 16) & 0xFF, (version >> 8) & 0xFF
        if version & 0xFF0000FF or major != 1:
            raise _error(f"version word 0x{version:08x} is not a SPIR-V 1.x version", 1)
        self.version = (major, minor)
        bound = words[3]
        if bound == 0 or bound > _MAX_BOUND:
            raise _error(f"<id> bound {bound} is outside 1..{_MAX_BOUND}", 3)
        self.bound = bound

        self.names: dict[int, str] = {}
        self.member_names: dict[tuple[int, int], str] = {}
        self.entry_points: list[tuple[int, int, str, list[int], int]] = []
        self.modes: list[tuple[int, int, list[int], bool, int]] = []
        self.types: dict[int, tuple[int, list[int], int]] = {}
        self.consts: dict[int, tuple[int, int, list[int], int]] = {}
        self.variables: dict[int, tuple[int, int, int]] = {}
        self.deco: dict[int, dict[int, list[int]]] = {}
        self.mdeco: dict[tuple[int, int], dict[int, list[int]]] = {}
        self.groups: dict[int, list[int]] = {}
        self.mgroups: dict[tuple[int, int], list[int]] = {}
        self.workgroup_builtins: list[int] = []
        self.const_cache: dict[int, bool | int | float] = {}
        self._parse()

    def _parse(self) -> None:
        words, data, bound = self.words, self.data, self.bound
        names, member_names = self.names, self.member_names
        types, consts, variables = self.types, self.consts, self.variables
        deco, mdeco = self.deco, self.mdeco
        wanted, min_words = _WANTED, _MIN_WORDS
        type_ops, const_ops = _TYPE_OPS, _CONST_OPS
        n = len(words)
        i = 5
        while i < n:
            w = words[i]
            count = w >> 16
            op = w & 0xFFFF
            if count == 0:
                raise _error(f"instruction (opcode {op}) has word count 0", i)
            end = i + count
            if end > n:
                raise _error(
                    f"instruction (opcode {op}) with word count {count} runs past the end of "
                    f"the module ({n} words)",
                    i,
                )
            if op == _OP_FUNCTION:
                # Function bodies hold nothing reflection needs: only walk the boundaries.
                while i < n:
                    count = words[i] >> 16
                    if count == 0:
                        raise _error(
                            f"instruction (opcode {words[i] & 0xFFFF}) has word count 0", i
                        )
                    if i + count > n:
                        raise _error(
                            f"instruction (opcode {words[i] & 0xFFFF}) with word count {count} "
                            f"runs past the end of the module ({n} words)",
                            i,
                        )
                    i += count
                break
            if op not in wanted:
                i = end
                continue
            if count < min_words[op]:
                raise _error(
                    f"{_OP_NAMES[op]} has {count} words, it needs at least {min_words[op]}", i
                )
            if op == _OP_DECORATE:
                target, dec = words[i + 1], words[i + 2]
                d = deco.get(target)
                if d is None:
                    deco[target] = d = {}
                d.setdefault(dec, words[i + 3 : end])
                if dec == _DEC_BUILTIN and count > 3 and words[i + 3] == _BUILTIN_WORKGROUP_SIZE:
                    self.workgroup_builtins.append(target)
            elif op == _OP_MEMBER_DECORATE:
                key = (words[i + 1], words[i + 2])
                d = mdeco.get(key)
                if d is None:
                    mdeco[key] = d = {}
                d.setdefault(words[i + 3], words[i + 4 : end])
            elif op == _OP_NAME:
                names[words[i + 1]] = _string(data, i + 2, end, i, op)[0]
            elif op == _OP_MEMBER_NAME:
                member_names[(words[i + 1], words[i + 2])] = _string(data, i + 3, end, i, op)[0]
            elif op in type_ops:
                rid = words[i + 1]
                if rid >= bound:
                    raise _error(f"{_OP_NAMES[op]} result %{rid} is not below the bound {bound}", i)
                types[rid] = (op, words[i + 2 : end], i)
            elif op in const_ops:
                rid = words[i + 2]
                if rid >= bound:
                    raise _error(f"{_OP_NAMES[op]} result %{rid} is not below the bound {bound}", i)
                consts[rid] = (op, words[i + 1], words[i + 3 : end], i)
            elif op == _OP_VARIABLE:
                rid = words[i + 2]
                if rid >= bound:
                    raise _error(f"OpVariable result %{rid} is not below the bound {bound}", i)
                variables[rid] = (words[i + 1], words[i + 3], i)
            elif op == _OP_ENTRY_POINT:
                name, nxt = _string(data, i + 3, end, i, op)
                self.entry_points.append((words[i + 1], words[i + 2], name, words[nxt:end], i))
            elif op == _OP_EXECUTION_MODE or op == _OP_EXECUTION_MODE_ID:
                self.modes.append(
                    (words[i + 1], words[i + 2], words[i + 3 : end], op == _OP_EXECUTION_MODE_ID, i)
                )
            elif op == _OP_GROUP_DECORATE:
                group = words[i + 1]
                for target in words[i + 2 : end]:
                    self.groups.setdefault(target, []).append(group)
            elif op == _OP_GROUP_MEMBER_DECORATE:
                group = words[i + 1]
                pairs = words[i + 2 : end]
                if len(pairs) % 2:
                    raise _error("OpGroupMemberDecorate has an odd number of operands", i)
                for k in range(0, len(pairs), 2):
                    self.mgroups.setdefault((pairs[k], pairs[k + 1]), []).append(group)
            i = end

    # Decorations (decoration groups are looked up lazily, so applying them costs nothing).
    def decoration(self, target: int, dec: int) -> list[int] | None:
        d = self.deco.get(target)
        if d is not None and dec in d:
            return d[dec]
        for group in self.groups.get(target, ()):
            d = self.deco.get(group)
            if d is not None and dec in d:
                return d[dec]
        return None

    def member_decoration(self, struct_id: int, index: int, dec: int) -> list[int] | None:
        key = (struct_id, index)
        d = self.mdeco.get(key)
        if d is not None and dec in d:
            return d[dec]
        for group in self.mgroups.get(key, ()):
            d = self.deco.get(group)
            if d is not None and dec in d:
                return d[dec]
        return None

    def literal(self, target: int, dec: int, what: str) -> int | None:
        ops = self.decoration(target, dec)
        if ops is None:
            return None
        if not ops:
            raise _error(f"decoration {what} of %{target} has no value")
        return ops[0]

    def member_literal(self, struct_id: int, index: int, dec: int, what: str) -> int | None:
        ops = self.member_decoration(struct_id, index, dec)
        if ops is None:
            return None
        if not ops:
            raise _error(f"decoration {what} of member {index} of %{struct_id} has no value")
        return ops[0]

    def get_type(self, tid: int, user: str) -> tuple[int, list[int], int]:
        t = self.types.get(tid)
        if t is None:
            raise _error(f"{user} refers to %{tid}, which is not a type")
        return t

    def operand(self, t: tuple[int, list[int], int], k: int) -> int:
        ops = t[1]
        if k >= len(ops):
            raise _error(f"{_OP_NAMES.get(t[0], t[0])} lacks operand {k + 2}", t[2])
        return ops[k]


def _ext_inst_imports(words: list[int]) -> tuple[str, ...]:
    """The names of the extended instruction sets a module imports (``OpExtInstImport``)."""
    out = []
    i = 5
    n = len(words)
    while i < n:
        count, op = words[i] >> 16, words[i] & 0xFFFF
        if count == 0:
            break
        if op == 11 and count > 2:  # OpExtInstImport %id "name"
            raw = b"".join(w.to_bytes(4, "little") for w in words[i + 2 : i + count])
            out.append(raw.split(b"\0", 1)[0].decode(errors="replace"))
        elif op == 54:  # OpFunction: imports come before any function
            break
        i += count
    return tuple(out)


def _image_info(m: _Module, t: tuple[int, list[int], int]) -> ImageInfo:
    """The ImageInfo of an OpTypeImage (operands: sampled type, Dim, Depth, Arrayed, MS,
    Sampled, Image Format)."""
    sampled_type = "float"
    st = m.types.get(m.operand(t, 0))
    if st is not None and st[0] == _OP_TYPE_INT:
        sampled_type = "int" if m.operand(st, 1) else "uint"
    fmt = IMAGE_FORMATS.get(m.operand(t, 6))
    return ImageInfo(
        dim=_IMAGE_DIMS.get(m.operand(t, 1), str(m.operand(t, 1))),
        arrayed=bool(m.operand(t, 3)),
        multisampled=bool(m.operand(t, 4)),
        depth=m.operand(t, 2) == 1,
        sampled_type=sampled_type,
        format=fmt[0] if fmt else None,
        dtype=fmt[1] if fmt else None,
        channels=fmt[2] if fmt else 0,
        normalized=fmt[3] if fmt else False,
    )


# --- constants -------------------------------------------------------------------------------
# FP Encoding operand of OpTypeFloat (SPV_KHR_bfloat16, SPV_EXT_float8) -> encoding name.
_FP_ENCODINGS = {0: "bfloat16", 4214: "float8_e4m3", 4215: "float8_e5m2"}
# encoding -> (width, exponent bits, mantissa bits, bias, IEEE specials (inf, NaN at the top
# exponent); otherwise only S.1111.111 is NaN and there is no infinity: OCP's E4M3)
_FLOAT_FORMATS: dict[str, tuple[int, int, int, int, bool]] = {
    "bfloat16": (16, 8, 7, 127, True),
    "float8_e4m3": (8, 4, 3, 7, False),
    "float8_e5m2": (8, 5, 2, 15, True),
}
# encoding -> (GLSL scalar name, vector prefix)
_ENCODED_NAMES = {
    "bfloat16": ("bfloat16_t", "bf16vec"),
    "float8_e4m3": ("floate4m3_t", "fe4m3vec"),
    "float8_e5m2": ("floate5m2_t", "fe5m2vec"),
}


def _float_format(encoding: str) -> tuple[int, int, int, int, bool]:
    fmt = _FLOAT_FORMATS.get(encoding)
    if fmt is None:
        raise ValueError(
            f"unknown floating-point encoding {encoding!r}; known: {', '.join(_FLOAT_FORMATS)}"
        )
    return fmt


def float_max(encoding: str) -> float:
    """The largest finite value of a floating-point encoding (``'bfloat16'``,
    ``'float8_e4m3'`` or ``'float8_e5m2'``).

    Example
    -------
    >>> float_max("float8_e4m3"), float_max("float8_e5m2")
    (448.0, 57344.0)
    """
    _, ebits, mbits, bias, ieee = _float_format(encoding)
    top = (1 << ebits) - 1
    if ieee:
        return math.ldexp((2 << mbits) - 1, top - 1 - bias - mbits)
    return math.ldexp((2 << mbits) - 2, top - bias - mbits)


def decode_float(bits: int, encoding: str) -> float:
    """The value of the raw ``bits`` of a float of the given encoding.

    ``'bfloat16'`` is the upper half of an IEEE binary32 (8 exponent bits, 7 mantissa bits);
    ``'float8_e4m3'`` and ``'float8_e5m2'`` are the E4M3 and E5M2 formats of SPV_EXT_float8
    (OCP 8-bit floats: E4M3 has no infinities, its only NaN is ``S.1111.111`` and its largest
    value is 448; E5M2 follows IEEE rules, largest value 57344).

    Example
    -------
    >>> decode_float(0x3FC0, "bfloat16"), decode_float(0x7E, "float8_e4m3")
    (1.5, 448.0)
    """
    width, ebits, mbits, bias, ieee = _float_format(encoding)
    bits = operator.index(bits)
    if not 0 <= bits < 1 << width:
        raise ValueError(f"{bits:#x} is not a {width}-bit pattern")
    sign = -1.0 if bits >> (width - 1) else 1.0
    exp = (bits >> mbits) & ((1 << ebits) - 1)
    mant = bits & ((1 << mbits) - 1)
    top = (1 << ebits) - 1
    if ieee and exp == top:
        return sign * math.inf if mant == 0 else math.nan
    if not ieee and exp == top and mant == (1 << mbits) - 1:
        return math.nan
    if exp == 0:
        return sign * math.ldexp(mant, 1 - bias - mbits)
    return sign * math.ldexp(mant + (1 << mbits), exp - bias - mbits)


def encode_float(value: Any, encoding: str) -> int:
    """The raw bits of ``value`` in the given encoding, rounded to nearest, ties to even.

    Raises
    ------
    TypeError
        ``value`` is not a real number (a bool is not one).
    ValueError
        A finite ``value`` beyond :func:`float_max` of the encoding, or an infinity where the
        encoding has none (``'float8_e4m3'``).

    Example
    -------
    >>> hex(encode_float(1.5, "bfloat16")), hex(encode_float(-2.0, "float8_e5m2"))
    ('0x3fc0', '0xc0')
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"a {encoding} value must be a real number, not {type(value).__name__}")
    width, ebits, mbits, bias, ieee = _float_format(encoding)
    x = float(value)
    top = (1 << ebits) - 1
    sign = (1 << (width - 1)) if math.copysign(1.0, x) < 0 else 0
    if math.isnan(x):
        if ieee:
            return (top << mbits) | (1 << (mbits - 1))
        return (top << mbits) | ((1 << mbits) - 1)
    a = abs(x)
    if math.isinf(a):
        if not ieee:
            raise ValueError(f"{encoding} has no infinity")
        return sign | (top << mbits)
    largest = float_max(encoding)
    if a > largest:
        raise ValueError(f"{value!r} overflows {encoding} (largest finite value {largest!r})")
    if a == 0.0:
        return sign
    e = max(math.frexp(a)[1] - 1, 1 - bias)
    r = round(math.ldexp(a, mbits - e))  # exact scaling; Python rounds ties to even
    if r == 2 << mbits:
        e, r = e + 1, r >> 1
    if r >> mbits:
        return sign | ((e + bias) << mbits) | (r - (1 << mbits))
    return sign | r  # subnormal (or zero after rounding)


def _scalar_info(m: _Module, tid: int) -> tuple[bool, int, bool] | None:
    """(is_float, width, signed) of a numeric scalar type, None for bool; errors otherwise."""
    t = m.get_type(tid, "a constant")
    if t[0] == _OP_TYPE_BOOL:
        return None
    if t[0] == _OP_TYPE_INT:
        return (False, t[1][0], bool(t[1][1]))
    if t[0] == _OP_TYPE_FLOAT:
        return (True, t[1][0], True)
    raise _error(f"%{tid} is not a scalar type", t[2])


def _float_encoding(m: _Module, tid: int) -> str | None:
    """The FP encoding of an OpTypeFloat (None for IEEE, and for other types); errors for an
    encoding vknb does not know."""
    t = m.types.get(tid)
    if t is None or t[0] != _OP_TYPE_FLOAT or len(t[1]) < 2:
        return None
    name = _FP_ENCODINGS.get(t[1][1])
    if name is None or _FLOAT_FORMATS[name][0] != t[1][0]:
        raise _error(f"unsupported {t[1][0]}-bit floating-point encoding {t[1][1]}", t[2])
    return name


def _decode_literal(
    info: tuple[bool, int, bool], lits: list[int], at: int, encoding: str | None = None
) -> int | float:
    is_float, width, signed = info
    need = 2 if width > 32 else 1
    if len(lits) < need or width not in (8, 16, 32, 64):
        raise _error(f"constant of a {width}-bit type has {len(lits)} literal words", at)
    if is_float:
        if encoding is not None:
            return decode_float(lits[0] & ((1 << width) - 1), encoding)
        if width == 16:
            return float(struct.unpack("<e", struct.pack("<H", lits[0] & 0xFFFF))[0])
        if width == 32:
            return float(struct.unpack("<f", struct.pack("<I", lits[0]))[0])
        if width == 64:
            return float(struct.unpack("<d", struct.pack("<II", lits[0], lits[1]))[0])
        raise _error(f"{width}-bit float constant without an FP encoding", at)
    value = lits[0] | (lits[1] << 32) if width == 64 else lits[0] & ((1 << width) - 1)
    if signed and value >> (width - 1):
        value -= 1 << width
    return value


def _const_value(m: _Module, cid: int, depth: int = 0) -> bool | int | float:
    """The value of a scalar constant, spec constants at the module's specialization values
    (their defaults unless given) (memoized, so a chain of operations that reuse each other
    costs linear time)."""
    value = m.const_cache.get(cid)
    if value is None:
        value = m.const_cache[cid] = _eval_const(m, cid, depth)
    return value


def _wrap(value: int, width: int, signed: bool) -> int:
    value &= (1 << width) - 1
    if signed and value >> (width - 1):
        value -= 1 << width
    return value


def _spec_override(
    m: _Module, cid: int, info: tuple[bool, int, bool] | None, at: int
) -> bool | int | float | None:
    """The specialization value given for spec constant ``cid``, as its type; None if none."""
    if not m.spec_values:
        return None
    spec_id = m.literal(cid, _DEC_SPEC_ID, "SpecId")
    if spec_id is None or spec_id not in m.spec_values:
        return None
    value = m.spec_values[spec_id]
    if info is None:
        return bool(value)
    if info[0]:
        return float(value)
    try:
        return _wrap(operator.index(value), info[1], info[2])  # type: ignore[arg-type]
    except TypeError:
        raise _error(
            f"specialization constant {spec_id} is an integer, got {type(value).__name__}", at
        ) from None


# OpSpecConstantOp operations (the ones the Shader capability allows on scalars) by opcode.
_SC_UCONVERT, _SC_SCONVERT = 113, 114
_SC_SELECT, _SC_COMPOSITE_EXTRACT = 169, 81
_INT_BINARY = {
    128: operator.add,  # OpIAdd
    130: operator.sub,  # OpISub
    132: operator.mul,  # OpIMul
    197: operator.or_,  # OpBitwiseOr
    198: operator.xor,  # OpBitwiseXor
    199: operator.and_,  # OpBitwiseAnd
}
# comparisons: opcode -> (operation, operands read as signed)
_INT_COMPARE = {
    170: (operator.eq, True),  # OpIEqual
    171: (operator.ne, True),  # OpINotEqual
    172: (operator.gt, False),  # OpUGreaterThan
    173: (operator.gt, True),  # OpSGreaterThan
    174: (operator.ge, False),  # OpUGreaterThanEqual
    175: (operator.ge, True),  # OpSGreaterThanEqual
    176: (operator.lt, False),  # OpULessThan
    177: (operator.lt, True),  # OpSLessThan
    178: (operator.le, False),  # OpULessThanEqual
    179: (operator.le, True),  # OpSLessThanEqual
}
_LOGICAL = {
    164: operator.eq,  # OpLogicalEqual
    165: operator.ne,  # OpLogicalNotEqual
    166: lambda a, b: a or b,  # OpLogicalOr
    167: lambda a, b: a and b,  # OpLogicalAnd
}


def _as_int(m: _Module, cid: int, value: Any, signed: bool, at: int) -> int:
    """An integer operand read as signed or unsigned at its own type's width."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _error(f"OpSpecConstantOp operand %{cid} is not an integer", at)
    c = m.consts.get(cid)
    info = _scalar_info(m, c[1]) if c is not None else None
    if info is None or info[0]:
        return value
    return _wrap(value, info[1], signed)


def _eval_spec_op(
    m: _Module, cid: int, info: tuple[bool, int, bool] | None, lits: list[int], at: int, depth: int
) -> bool | int | float:
    if depth >= _MAX_DEPTH:
        raise _error(f"OpSpecConstantOp %{cid} nests more than {_MAX_DEPTH} deep", at)
    if not lits:
        raise _error(f"OpSpecConstantOp %{cid} has no operation", at)
    sub, ids = lits[0], lits[1:]
    if sub == _SC_COMPOSITE_EXTRACT and len(ids) == 2:
        comp = m.consts.get(ids[0])
        if comp is None or comp[0] not in (_OP_CONSTANT_COMPOSITE, _OP_SPEC_CONSTANT_COMPOSITE):
            raise _error(f"OpSpecConstantOp %{cid} extracts from a non-composite", at)
        if ids[1] >= len(comp[2]):
            raise _error(f"OpSpecConstantOp %{cid} extracts index {ids[1]} out of range", at)
        return _const_value(m, comp[2][ids[1]], depth + 1)
    args = [_const_value(m, a, depth + 1) for a in ids]
    if sub == _SC_SELECT and len(args) == 3:
        return args[1] if args[0] else args[2]
    if info is None:  # a bool result
        if sub in _LOGICAL and len(args) == 2:
            return bool(_LOGICAL[sub](bool(args[0]), bool(args[1])))
        if sub == 168 and len(args) == 1:  # OpLogicalNot
            return not args[0]
        if sub in _INT_COMPARE and len(args) == 2:
            fn, signed = _INT_COMPARE[sub]
            a, b = (_as_int(m, i, v, signed, at) for i, v in zip(ids, args, strict=True))
            return bool(fn(a, b))
    elif not info[0]:  # an integer result
        width, signed = info[1], info[2]
        if sub in _INT_BINARY and len(args) == 2:
            a, b = (_as_int(m, i, v, True, at) for i, v in zip(ids, args, strict=True))
            return _wrap(_INT_BINARY[sub](a, b), width, signed)
        if sub in (194, 195, 196) and len(args) == 2:  # shifts (right logical / arithmetic, left)
            a = _as_int(m, ids[0], args[0], sub == 195, at)
            b = _as_int(m, ids[1], args[1], False, at) % width
            return _wrap(a << b if sub == 196 else a >> b, width, signed)
        if sub in (134, 135, 137, 138, 139) and len(args) == 2:  # UDiv SDiv UMod SRem SMod
            is_signed = sub in (135, 138, 139)
            a, b = (_as_int(m, i, v, is_signed, at) for i, v in zip(ids, args, strict=True))
            if b == 0:
                raise _error(f"OpSpecConstantOp %{cid} divides by zero", at)
            if sub in (134, 137):
                value = a // b if sub == 134 else a % b
            elif sub == 135:
                value = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)
            elif sub == 138:
                value = abs(a) % abs(b) * (1 if a >= 0 else -1)
            else:
                value = a % b
            return _wrap(value, width, signed)
        if sub in (_SC_UCONVERT, _SC_SCONVERT) and len(args) == 1:
            return _wrap(_as_int(m, ids[0], args[0], sub == _SC_SCONVERT, at), width, signed)
        if sub in (126, 200) and len(args) == 1:  # OpSNegate, OpNot
            a = _as_int(m, ids[0], args[0], True, at)
            return _wrap(-a if sub == 126 else ~a, width, signed)
    raise _error(f"cannot evaluate OpSpecConstantOp %{cid} (operation {sub})", at)


def _eval_const(m: _Module, cid: int, depth: int) -> bool | int | float:
    c = m.consts.get(cid)
    if c is None:
        raise _error(f"%{cid} is not a constant")
    op, tid, lits, at = c
    if op in (_OP_SPEC_CONSTANT_TRUE, _OP_SPEC_CONSTANT_FALSE):
        given = _spec_override(m, cid, None, at)
        if given is not None:
            return given
    if op in (_OP_CONSTANT_TRUE, _OP_SPEC_CONSTANT_TRUE):
        return True
    if op in (_OP_CONSTANT_FALSE, _OP_SPEC_CONSTANT_FALSE):
        return False
    info = _scalar_info(m, tid)
    if op in (_OP_CONSTANT, _OP_SPEC_CONSTANT):
        if info is None:
            raise _error(f"{_OP_NAMES[op]} %{cid} has bool type", at)
        if op == _OP_SPEC_CONSTANT:
            given = _spec_override(m, cid, info, at)
            if given is not None:
                return given
        return _decode_literal(info, lits, at, _float_encoding(m, tid))
    if op == _OP_CONSTANT_NULL:
        return False if info is None else (0.0 if info[0] else 0)
    if op == _OP_SPEC_CONSTANT_OP:
        return _eval_spec_op(m, cid, info, lits, at, depth)
    raise _error(f"cannot evaluate constant %{cid} ({_OP_NAMES.get(op, op)})", at)


# --- layouts ---------------------------------------------------------------------------------
def _make_dtype(spec: Any, at: int | None) -> np.dtype:
    try:
        return np.dtype(spec)
    except (ValueError, TypeError, OverflowError, MemoryError) as e:
        raise _error(f"layout cannot be expressed as a numpy dtype ({e})", at) from e


def _pad(dt: np.dtype, stride: int | None, at: int) -> np.dtype:
    """``dt`` with itemsize ``stride``: structs grow, other values are wrapped in a struct."""
    if stride is None or stride == dt.itemsize:
        return dt
    if stride < dt.itemsize:
        raise _error(f"stride {stride} is smaller than the {dt.itemsize}-byte value it steps", at)
    if dt.names is not None and dt.subdtype is None:
        fields = dt.fields
        assert fields is not None
        return _make_dtype(
            {
                "names": list(dt.names),
                "formats": [fields[n][0] for n in dt.names],
                "offsets": [fields[n][1] for n in dt.names],
                "itemsize": stride,
            },
            at,
        )
    return _make_dtype(
        {"names": [PAD_FIELD], "formats": [dt], "offsets": [0], "itemsize": stride}, at
    )


class _Layouts:
    """Member and struct layouts, memoized per struct type (so shared types cost once)."""

    def __init__(self, m: _Module) -> None:
        self.m = m
        self.structs: dict[int, tuple[str, np.dtype, int, tuple[Member, ...]]] = {}
        self.visiting: set[int] = set()
        self.values: dict[tuple[int, int | None, bool], tuple[str, np.dtype]] = {}
        # Structs, and (struct, member index) pairs, whose size depends on a specialization
        # constant (an array sized by one).
        self.spec_structs: set[int] = set()
        self.spec_members: set[tuple[int, int]] = set()

    def struct_name(self, sid: int) -> str:
        return self.m.names.get(sid) or f"_{sid}"

    def struct(self, sid: int, depth: int) -> tuple[str, np.dtype, int, tuple[Member, ...]]:
        """(name, dtype without runtime arrays, size, members) of struct type ``sid``."""
        done = self.structs.get(sid)
        if done is not None:
            return done
        m = self.m
        t = m.get_type(sid, "a block")
        if t[0] != _OP_TYPE_STRUCT:
            raise _error(f"%{sid} ({_OP_NAMES.get(t[0], t[0])}) is not a struct", t[2])
        if sid in self.visiting:
            raise _error(f"struct %{sid} contains itself", t[2])
        if depth > _MAX_DEPTH:
            raise _error(f"types nest more than {_MAX_DEPTH} deep", t[2])
        self.visiting.add(sid)
        name = self.struct_name(sid)
        members: list[Member] = []
        for k, mtype in enumerate(t[1]):
            offset = m.member_literal(sid, k, _DEC_OFFSET, "Offset")
            if offset is None:
                raise _error(f"member {k} of struct {name!r} (%{sid}) has no Offset", t[2])
            members.append(self.member(sid, k, mtype, offset, depth + 1))
        self.visiting.discard(sid)
        if self.spec_members:
            self.check_specialized(sid, name, members, t[2])

        field_names: list[str] = []
        formats: list[np.dtype] = []
        offsets: list[int] = []
        size = 0
        for k, mem in enumerate(members):
            size = max(size, mem.offset + mem.size)
            if mem.array_length == 0:
                continue  # a runtime array has no place in a fixed-size dtype
            fname = mem.name or f"_m{k}"
            while fname in field_names:
                fname += "_"
            field_names.append(fname)
            offsets.append(mem.offset)
            if mem.array_length is None:
                formats.append(mem.dtype)
            else:
                formats.append(_make_dtype((mem.dtype, (mem.array_length,)), t[2]))
        dt = _make_dtype(
            {"names": field_names, "formats": formats, "offsets": offsets, "itemsize": size},
            t[2],
        )
        done = (name, dt, size, tuple(members))
        self.structs[sid] = done
        return done

    def check_specialized(self, sid: int, name: str, members: list[Member], at: int) -> None:
        """Refuse a member sized by a specialization constant that runs into a member after
        it: the offsets are literal, laid out by the compiler without the constant's value
        (glslang counts such an array as one element), so the GPU would see them overlap."""
        for k, mem in enumerate(members):
            if (sid, k) not in self.spec_members:
                continue
            self.spec_structs.add(sid)
            end = mem.offset + mem.size
            for other in members:
                if other is not mem and mem.offset < other.offset < end:
                    raise _error(
                        f"member {mem.name or k!r} ({mem.type}) of {name!r} spans bytes "
                        f"{mem.offset}..{end}, past the offset {other.offset} of member "
                        f"{other.name or '?'!r}: the compiler laid the offsets out without "
                        "the specialization constant's value, so they overlap on the GPU; "
                        "declare an array sized by a specialization constant as the last "
                        "member of its block",
                        at,
                    )

    def member(self, sid: int, index: int, tid: int, offset: int, depth: int) -> Member:
        m = self.m
        where = f"member {index} of struct %{sid}"
        # Peel array dimensions, outermost first.
        dims: list[tuple[int, int | None, int]] = []  # (length (0: runtime), stride, at)
        t = m.get_type(tid, where)
        while t[0] in (_OP_TYPE_ARRAY, _OP_TYPE_RUNTIME_ARRAY):
            if len(dims) + depth > _MAX_DEPTH:
                raise _error(f"types nest more than {_MAX_DEPTH} deep", t[2])
            if t[0] == _OP_TYPE_ARRAY:
                length_id = m.operand(t, 1)
                length = _const_value(m, length_id)
                if isinstance(length, bool) or not isinstance(length, int) or length < 1:
                    raise _error(f"array length {length!r} is not a positive integer", t[2])
                used: set[int] = set()
                _spec_ids_of(m, length_id, used)
                if used:
                    self.spec_members.add((sid, index))
            else:
                length = 0
                if dims:
                    raise _error("runtime array nested in an array", t[2])
            stride = m.literal(tid, _DEC_ARRAY_STRIDE, "ArrayStride")
            dims.append((length, stride, t[2]))
            tid = m.operand(t, 0)
            t = m.get_type(tid, where)

        matrix_stride = m.member_literal(sid, index, _DEC_MATRIX_STRIDE, "MatrixStride")
        row_major = m.member_decoration(sid, index, _DEC_ROW_MAJOR) is not None
        members: tuple[Member, ...] = ()
        op = t[0]
        if op == _OP_TYPE_STRUCT:
            type_name, dt, _, members = self.struct(tid, depth + len(dims))
            if tid in self.spec_structs:
                self.spec_members.add((sid, index))
        elif op == _OP_TYPE_POINTER and m.operand(t, 0) == _SC_PHYSICAL_STORAGE_BUFFER:
            pointee = m.operand(t, 1)
            pt = m.types.get(pointee)
            if pt is not None and pt[0] == _OP_TYPE_STRUCT:
                type_name = self.struct_name(pointee)
            else:
                type_name = "uint64_t"
            dt = np.dtype("<u8")
        else:
            key = (tid, matrix_stride, row_major)
            cached = self.values.get(key)
            if cached is None:
                cached = self.values[key] = self.value(t, tid, matrix_stride, row_major)
            type_name, dt = cached

        if dims:
            # Build the array dtypes from the innermost dimension out; `elem` ends as the
            # (padded) element of the outermost dimension.
            elem = dt
            for length, stride, arr_at in reversed(dims):
                elem = _pad(dt, stride, arr_at)
                if length:
                    dt = _make_dtype((elem, (length,)), arr_at)
            length, stride, _ = dims[0]
            type_name += "".join(f"[{d[0]}]" if d[0] else "[]" for d in dims)
            return Member(
                name=m.member_names.get((sid, index), ""),
                offset=offset,
                type=type_name,
                dtype=elem,
                size=elem.itemsize * length,
                array_length=length,
                array_stride=stride,
                matrix_stride=matrix_stride,
                row_major=row_major,
                members=members,
            )
        return Member(
            name=m.member_names.get((sid, index), ""),
            offset=offset,
            type=type_name,
            dtype=dt,
            size=dt.itemsize,
            array_length=None,
            array_stride=None,
            matrix_stride=matrix_stride,
            row_major=row_major,
            members=members,
        )

    def scalar(self, t: tuple[int, list[int], int]) -> tuple[str, str, str, np.dtype]:
        """(name, vector prefix, matrix prefix, dtype) of a scalar type."""
        op = t[0]
        if op == _OP_TYPE_BOOL:
            return ("bool", "bvec", "", _BOOL_DTYPE)
        if op == _OP_TYPE_INT:
            key = (False, t[1][0], bool(t[1][1]))
        elif op == _OP_TYPE_FLOAT:
            if len(t[1]) > 1:  # an FP encoding (bfloat16, FP8): numpy has none, keep the bits
                width = t[1][0]
                if width not in (8, 16, 32, 64):
                    raise _error(f"unsupported {width}-bit float", t[2])
                bits = np.dtype(f"<u{width // 8}")
                encoding = _FP_ENCODINGS.get(t[1][1])
                if encoding is not None and _FLOAT_FORMATS[encoding][0] == width:
                    name, vec = _ENCODED_NAMES[encoding]
                    return (name, vec, "", bits)
                return (f"float{width}_e{t[1][1]}", "", "", bits)
            key = (True, t[1][0], True)
        else:
            raise _error(f"{_OP_NAMES.get(op, op)} cannot be a member of a block", t[2])
        info = _SCALARS.get(key)
        if info is None:
            kind = "float" if key[0] else "integer"
            raise _error(f"unsupported {key[1]}-bit {kind} type", t[2])
        return (info[0], info[1], info[2], np.dtype(info[3]))

    def value(
        self,
        t: tuple[int, list[int], int],
        tid: int,
        matrix_stride: int | None,
        row_major: bool,
    ) -> tuple[str, np.dtype]:
        """Type name and dtype of a scalar, vector or matrix."""
        m = self.m
        op = t[0]
        if op == _OP_TYPE_VECTOR:
            n = m.operand(t, 1)
            if not 2 <= n <= 16:
                raise _error(f"vector of {n} components", t[2])
            name, vec, _, base = self.scalar(m.get_type(m.operand(t, 0), f"vector %{tid}"))
            return (f"{vec}{n}" if vec else f"{name}vec{n}", _make_dtype((base, (n,)), t[2]))
        if op == _OP_TYPE_MATRIX:
            cols = m.operand(t, 1)
            ct = m.get_type(m.operand(t, 0), f"matrix %{tid}")
            if ct[0] != _OP_TYPE_VECTOR:
                raise _error(f"matrix %{tid} has columns that are not vectors", t[2])
            rows = m.operand(ct, 1)
            if not 2 <= cols <= 16 or not 2 <= rows <= 16:
                raise _error(f"matrix of {cols} columns of {rows} rows", t[2])
            _, _, mat, component = self.scalar(m.get_type(m.operand(ct, 0), f"matrix %{tid}"))
            if not mat:
                raise _error(f"matrix %{tid} has non-float components", t[2])
            type_name = f"{mat}{cols}" if cols == rows else f"{mat}{cols}x{rows}"
            # row_major: R vectors of C components, `matrix_stride` apart.
            outer, inner = (rows, cols) if row_major else (cols, rows)
            natural = inner * component.itemsize
            stride = natural if matrix_stride is None else matrix_stride
            if stride == natural:
                return type_name, _make_dtype((component, (outer, inner)), t[2])
            padded = _pad(_make_dtype((component, (inner,)), t[2]), stride, t[2])
            return type_name, _make_dtype((padded, (outer,)), t[2])
        name, _, _, base = self.scalar(t)
        return name, base

    def block(self, sid: int) -> Block:
        name, dt, _, members = self.struct(sid, 0)
        runtime = None
        if members and members[-1].array_length == 0:
            runtime = members[-1]
        else:
            for mem in members:
                if mem.array_length == 0:
                    runtime = mem
        # The block's size is its fixed part: where the runtime array starts, if there is one.
        return Block(name=name, size=dt.itemsize, members=members, dtype=dt, runtime_array=runtime)


# --- reflection ------------------------------------------------------------------------------
def _select_entry_point(m: _Module, entry_point: str | None) -> tuple[int, str, list[int]]:
    found = [(model, fn, name, iface) for model, fn, name, iface, _ in m.entry_points]
    listing = ", ".join(
        f"{name!r} ({_MODEL_NAMES.get(model, model)})" for model, _, name, _ in found
    )
    listing = listing or "none"
    for model, fn, name, iface in found:
        if model == _MODEL_GL_COMPUTE and (entry_point is None or name == entry_point):
            return fn, name, iface
    if entry_point is None:
        raise SpirvError(f"the module has no compute (GLCompute) entry point; found: {listing}")
    raise SpirvError(f"no compute entry point named {entry_point!r}; found: {listing}")


def _dimension(m: _Module, cid: int) -> tuple[int, int | None]:
    """(default value, spec id or None) of a workgroup-size component constant."""
    c = m.consts.get(cid)
    if c is None:
        raise _error(f"workgroup size component %{cid} is not a constant")
    value = _const_value(m, cid)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _error(f"workgroup size component %{cid} is {value!r}, not a positive integer", c[3])
    spec_id = None
    if c[0] in _SPEC_SCALAR_OPS:
        spec_id = m.literal(cid, _DEC_SPEC_ID, "SpecId")
    return value, spec_id


def _local_size(
    m: _Module, fn: int, name: str
) -> tuple[tuple[int, int, int], tuple[int | None, int | None, int | None]]:
    comps: list[tuple[int, int | None]] | None = None
    for target in m.workgroup_builtins:  # the WorkgroupSize built-in overrides the modes
        c = m.consts.get(target)
        if c is not None and c[0] in (_OP_CONSTANT_COMPOSITE, _OP_SPEC_CONSTANT_COMPOSITE):
            if len(c[2]) != 3:
                raise _error(f"WorkgroupSize %{target} has {len(c[2])} components, not 3", c[3])
            comps = [_dimension(m, cid) for cid in c[2]]
            break
    if comps is None:
        for target, mode, ops, is_id, at in m.modes:
            if target != fn or mode not in (_MODE_LOCAL_SIZE, _MODE_LOCAL_SIZE_ID):
                continue
            if len(ops) != 3:
                raise _error(f"LocalSize{'Id' if is_id else ''} has {len(ops)} operands", at)
            if mode == _MODE_LOCAL_SIZE_ID:
                comps = [_dimension(m, cid) for cid in ops]
            else:
                if min(ops) < 1:
                    raise _error(f"LocalSize {tuple(ops)} has a zero dimension", at)
                comps = [(v, None) for v in ops]
            break
    if comps is None:
        raise SpirvError(
            f"entry point {name!r} declares no workgroup size (LocalSize, LocalSizeId or a "
            "WorkgroupSize built-in): add `layout(local_size_x = ...) in;`"
        )
    return (
        (comps[0][0], comps[1][0], comps[2][0]),
        (comps[0][1], comps[1][1], comps[2][1]),
    )


def _spec_constants(m: _Module) -> tuple[SpecConstant, ...]:
    out: dict[int, SpecConstant] = {}
    for cid, (op, tid, _, at) in m.consts.items():
        if op not in _SPEC_SCALAR_OPS:
            continue
        spec_id = m.literal(cid, _DEC_SPEC_ID, "SpecId")
        if spec_id is None:
            continue
        name = m.names.get(cid, "")
        if spec_id in out and (out[spec_id].name or not name):
            # glslang gives `local_size_x_id = N` its own unnamed constant (default 1) besides
            # the user's `layout(constant_id = N) const ... NAME`: the named one is reported.
            continue
        info = _scalar_info(m, tid)
        encoding = _float_encoding(m, tid)
        if info is None:
            dt = np.dtype(np.bool_)
        elif encoding is not None:
            dt = np.dtype(f"<u{info[1] // 8}")  # the raw bits: numpy has no such float
        else:
            fmt = _SCALARS.get(info)
            if fmt is None:
                raise _error(f"specialization constant %{cid} has an unsupported type", at)
            dt = np.dtype(fmt[3])
        out[spec_id] = SpecConstant(
            id=spec_id,
            name=name,
            dtype=dt,
            default=_default_value(m, cid, tid, info, encoding, at),
            encoding=encoding,
        )
    return tuple(out[k] for k in sorted(out))


def _default_value(
    m: _Module,
    cid: int,
    tid: int,
    info: tuple[bool, int, bool] | None,
    encoding: str | None,
    at: int,
) -> bool | int | float:
    """A spec constant's default: its own literal, whatever the module is specialized with."""
    op, _, lits, _ = m.consts[cid]
    if op == _OP_SPEC_CONSTANT_TRUE:
        return True
    if op == _OP_SPEC_CONSTANT_FALSE:
        return False
    if info is None:
        raise _error(f"OpSpecConstant %{cid} has bool type", at)
    return _decode_literal(info, lits, at, encoding)


def _bindings(m: _Module, layouts: _Layouts, interface: set[int] | None) -> tuple[Binding, ...]:
    out: list[Binding] = []
    for vid, (ptr, storage, at) in m.variables.items():
        if storage not in (_SC_UNIFORM_CONSTANT, _SC_UNIFORM, _SC_STORAGE_BUFFER):
            continue
        if interface is not None and vid not in interface:
            continue
        binding = m.literal(vid, _DEC_BINDING, "Binding")
        if binding is None:
            continue
        dset = m.literal(vid, _DEC_DESCRIPTOR_SET, "DescriptorSet") or 0
        pt = m.get_type(ptr, f"OpVariable %{vid}")
        if pt[0] != _OP_TYPE_POINTER:
            raise _error(f"OpVariable %{vid} has a non-pointer type %{ptr}", at)
        tid = m.operand(pt, 1)
        t = m.get_type(tid, f"OpVariable %{vid}")
        count = 1
        spec_ids: set[int] = set()
        for _ in range(_MAX_DEPTH):
            if t[0] == _OP_TYPE_ARRAY:
                length_id = m.operand(t, 1)
                length = _const_value(m, length_id)
                if isinstance(length, bool) or not isinstance(length, int) or length < 1:
                    raise _error(f"descriptor array length {length!r} is not positive", t[2])
                count *= length
                _spec_ids_of(m, length_id, spec_ids)
            elif t[0] == _OP_TYPE_RUNTIME_ARRAY:
                count = 0
            else:
                break
            tid = m.operand(t, 0)
            t = m.get_type(tid, f"OpVariable %{vid}")
        else:
            raise _error(f"descriptor arrays nest more than {_MAX_DEPTH} deep", t[2])

        var_name = m.names.get(vid, "")
        nonwritable = m.decoration(vid, _DEC_NON_WRITABLE) is not None
        nonreadable = m.decoration(vid, _DEC_NON_READABLE) is not None
        block: Block | None = None
        dtype: np.dtype | None = None
        image: ImageInfo | None = None
        op = t[0]
        if op == _OP_TYPE_STRUCT:
            if storage == _SC_UNIFORM_CONSTANT:
                continue
            if storage == _SC_STORAGE_BUFFER or m.decoration(tid, _DEC_BUFFER_BLOCK) is not None:
                kind, dtype_code = "storage", _DT_STORAGE_BUFFER
            else:
                kind, dtype_code = "uniform", _DT_UNIFORM_BUFFER
            block = layouts.block(tid)
            n_members = len(t[1])
            if n_members:
                nonwritable = nonwritable or all(
                    m.member_decoration(tid, k, _DEC_NON_WRITABLE) is not None
                    for k in range(n_members)
                )
                nonreadable = nonreadable or all(
                    m.member_decoration(tid, k, _DEC_NON_READABLE) is not None
                    for k in range(n_members)
                )
            if kind == "uniform":
                nonwritable = True
            runtime = block.runtime_array
            dtype = block.dtype if runtime is None else runtime.dtype
        elif op == _OP_TYPE_IMAGE:
            image = _image_info(m, t)
            dim, sampled = m.operand(t, 1), m.operand(t, 5)
            if dim == 5:  # Buffer
                if sampled == 2:
                    kind, dtype_code = "storage_texel_buffer", _DT_STORAGE_TEXEL_BUFFER
                else:
                    kind, dtype_code = "uniform_texel_buffer", _DT_UNIFORM_TEXEL_BUFFER
                    nonwritable = True
            elif dim == 6:  # SubpassData
                kind, dtype_code = "input_attachment", _DT_INPUT_ATTACHMENT
                nonwritable = True
            elif sampled == 2:
                kind, dtype_code = "storage_image", _DT_STORAGE_IMAGE
            else:
                kind, dtype_code = "sampled_image", _DT_SAMPLED_IMAGE
                nonwritable = True
        elif op == _OP_TYPE_SAMPLED_IMAGE:
            image_type = m.get_type(m.operand(t, 0), f"OpTypeSampledImage %{tid}")
            if image_type[0] == _OP_TYPE_IMAGE:
                image = _image_info(m, image_type)
            if image_type[0] == _OP_TYPE_IMAGE and m.operand(image_type, 1) == 5:  # samplerBuffer
                kind, dtype_code = "uniform_texel_buffer", _DT_UNIFORM_TEXEL_BUFFER
            else:
                kind, dtype_code = "combined_image_sampler", _DT_COMBINED_IMAGE_SAMPLER
            nonwritable = True
        elif op == _OP_TYPE_SAMPLER:
            kind, dtype_code, nonwritable = "sampler", _DT_SAMPLER, True
        elif op == _OP_TYPE_ACCELERATION_STRUCTURE:
            kind, dtype_code = "acceleration_structure", _DT_ACCELERATION_STRUCTURE
            nonwritable = True
        else:
            continue
        block_name = block.name if block is not None else ""
        out.append(
            Binding(
                set=dset,
                binding=binding,
                name=var_name or block_name or f"_{vid}",
                block_name=block_name,
                kind=kind,
                descriptor_type=dtype_code,
                count=count,
                readonly=nonwritable,
                writeonly=nonreadable,
                block=block,
                dtype=dtype,
                members=block.members if block is not None else (),
                count_spec_ids=tuple(sorted(spec_ids)),
                image=image,
            )
        )
    out.sort(key=lambda b: (b.set, b.binding))
    slots: dict[tuple[int, int], list[str]] = {}
    for b in out:
        slots.setdefault((b.set, b.binding), []).append(b.name)
    for k, b in enumerate(out):
        names = slots[(b.set, b.binding)]
        if len(names) > 1:
            others = list(names)
            others.remove(b.name)
            out[k] = replace(b, aliases=tuple(others))
    return tuple(out)


def _spec_ids_of(m: _Module, cid: int, found: set[int]) -> None:
    """Add to ``found`` the SpecIds of the specialization constants constant ``cid`` uses."""
    seen: set[int] = set()
    todo = [cid]
    while todo:
        at = todo.pop()
        c = m.consts.get(at)
        if c is None:
            continue
        op, _, lits, _ = c
        if op in _SPEC_SCALAR_OPS:
            spec_id = m.literal(at, _DEC_SPEC_ID, "SpecId")
            if spec_id is not None:
                found.add(spec_id)
        elif op == _OP_SPEC_CONSTANT_OP:
            for operand in lits[1:]:
                if operand not in seen:
                    seen.add(operand)
                    todo.append(operand)


def _push_constants(m: _Module, layouts: _Layouts, interface: set[int] | None) -> Block | None:
    for vid, (ptr, storage, at) in m.variables.items():
        if storage != _SC_PUSH_CONSTANT or (interface is not None and vid not in interface):
            continue
        pt = m.get_type(ptr, f"OpVariable %{vid}")
        if pt[0] != _OP_TYPE_POINTER:
            raise _error(f"OpVariable %{vid} has a non-pointer type %{ptr}", at)
        return layouts.block(m.operand(pt, 1))
    return None


def reflect(spirv: bytes | bytearray | memoryview, entry_point: str | None = None) -> Reflection:
    """Reflect the interface of a compute shader.

    Parameters
    ----------
    spirv : bytes, bytearray or memoryview
        A SPIR-V module (1.0 to 1.6), in either byte order.
    entry_point : str, optional
        Name of the compute entry point; the first one by default.

    Returns
    -------
    Reflection

    Raises
    ------
    SpirvError
        The module is malformed (the message names the fault and its word offset), has no
        such compute entry point (the message lists the entry points), or uses a layout that
        reflection cannot express.
    TypeError
        ``spirv`` is not a bytes-like object.

    Example
    -------
    >>> import vknb
    >>> spv = vknb.compile_glsl('''
    ... #version 450
    ... layout(local_size_x = 64) in;
    ... layout(binding = 0) buffer Data { float x[]; };
    ... void main() { x[gl_GlobalInvocationID.x] *= 2.0; }
    ... ''')                                            # doctest: +SKIP
    >>> r = reflect(spv)                                # doctest: +SKIP
    >>> r.local_size, r.bindings[0].name, r.bindings[0].dtype   # doctest: +SKIP
    ((64, 1, 1), 'Data', dtype('float32'))
    """
    return _reflect(spirv, entry_point, {})


def _reflect(
    spirv: bytes | bytearray | memoryview,
    entry_point: str | None,
    spec_values: Mapping[int, bool | int | float],
) -> Reflection:
    m = _Module(spirv, spec_values)
    fn, name, iface = _select_entry_point(m, entry_point)
    # From SPIR-V 1.4 on, an entry point's interface lists every global variable it uses.
    interface = set(iface) if m.version >= (1, 4) else None
    layouts = _Layouts(m)
    local_size, local_size_ids = _local_size(m, fn, name)
    return Reflection(
        entry_point=name,
        local_size=local_size,
        local_size_ids=local_size_ids,
        bindings=_bindings(m, layouts, interface),
        push_constants=_push_constants(m, layouts, interface),
        spec_constants=_spec_constants(m),
        spirv_version=m.version,
        bound=m.bound,
        specialization=tuple(sorted(m.spec_values.items())),
        ext_inst_imports=_ext_inst_imports(m.words),
        shared_memory=_shared_memory(m, interface),
        _spirv=m.data,
    )


def _shared_memory(m: _Module, interface: set[int] | None) -> int:
    """Bytes of the module's Workgroup variables (the entry point's, from SPIR-V 1.4 on)."""
    total = 0
    for vid, (ptr, storage, _at) in m.variables.items():
        if storage != _SC_WORKGROUP or (interface is not None and vid not in interface):
            continue
        t = m.get_type(ptr, f"shared variable %{vid}")
        total += _natural_size(m, m.operand(t, 1), 0)
    return total


def _natural_size(m: _Module, tid: int, depth: int) -> int:
    """Size of a type without explicit layout: scalars, vectors, matrices, arrays, structs."""
    if depth > 64:
        raise _error(f"type %{tid} nests more than 64 levels deep")
    t = m.get_type(tid, "a shared variable")
    op = t[0]
    if op == _OP_TYPE_BOOL:
        return 4
    if op in (_OP_TYPE_INT, _OP_TYPE_FLOAT):
        return max(1, m.operand(t, 0) // 8)
    if op in (_OP_TYPE_VECTOR, _OP_TYPE_MATRIX):
        return m.operand(t, 1) * _natural_size(m, m.operand(t, 0), depth + 1)
    if op == _OP_TYPE_ARRAY:
        n = _const_value(m, m.operand(t, 1))
        length = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
        return length * _natural_size(m, m.operand(t, 0), depth + 1)
    if op == _OP_TYPE_STRUCT:
        return sum(_natural_size(m, member, depth + 1) for member in t[1])
    return 0  # (opaque types take no shared memory)
