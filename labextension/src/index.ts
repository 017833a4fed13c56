/**
 * vknb-glsl: GLSL syntax highlighting for `%%glsl` cells (vknb) in JupyterLab 4 and Notebook 7.
 *
 * Every CodeMirror editor gets one extra extension: while the editor's first line starts with
 * `%%glsl`, it holds a GLSL language at the highest precedence, so the cell is parsed and
 * highlighted as GLSL (with JupyterLab's own highlight style and theme colours); when the magic
 * line goes, so does the GLSL language and the kernel's language (Python) is back.  Nothing is stored in the notebook.  `.comp`, `.glsl` (and other shader)
 * files get the same language in the file editor.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  EditorExtensionRegistry,
  IEditorExtensionRegistry,
  IEditorLanguageRegistry
} from '@jupyterlab/codemirror';
import {
  HighlightStyle,
  LanguageSupport,
  StreamLanguage,
  StringStream,
  syntaxHighlighting
} from '@codemirror/language';
import { tags } from '@lezer/highlight';
import { clike } from '@codemirror/legacy-modes/mode/clike';
import { Compartment, EditorState, Extension, Prec, Text } from '@codemirror/state';
import { ViewPlugin } from '@codemirror/view';

function words(str: string): Record<string, boolean> {
  const obj: Record<string, boolean> = {};
  for (const w of str.split(/\s+/)) {
    if (w) {
      obj[w] = true;
    }
  }
  return obj;
}

// GLSL 4.60 (compute shaders first): storage qualifiers, layout, control flow, `void`.
const KEYWORDS =
  'layout uniform buffer shared in out inout const attribute varying ' +
  'readonly writeonly coherent volatile restrict precise invariant ' +
  'flat smooth noperspective centroid sample patch subroutine ' +
  'highp mediump lowp precision struct void ' +
  'if else for while do switch case default break continue return discard ' +
  'demote terminateInvocation';

const SCALARS = 'bool int uint float double atomic_uint';
const VECTORS = ['b', 'i', 'u', '', 'd', 'f16', 'i8', 'u8', 'i16', 'u16', 'i64', 'u64']
  .map(p => [2, 3, 4].map(n => `${p}vec${n}`).join(' '))
  .join(' ');
const MATRICES = ['', 'd', 'f16']
  .map(p =>
    [2, 3, 4]
      .map(n => `${p}mat${n} ` + [2, 3, 4].map(m => `${p}mat${n}x${m}`).join(' '))
      .join(' ')
  )
  .join(' ');
const EXPLICIT =
  'int8_t uint8_t int16_t uint16_t int32_t uint32_t int64_t uint64_t ' +
  'float16_t float32_t float64_t bfloat16_t';
const OPAQUE = ['', 'i', 'u']
  .map(p =>
    [
      '1D',
      '2D',
      '3D',
      'Cube',
      '2DRect',
      '1DArray',
      '2DArray',
      'CubeArray',
      'Buffer',
      '2DMS',
      '2DMSArray'
    ]
      .map(d => `${p}sampler${d} ${p}image${d} ${p}texture${d}`)
      .join(' ')
  )
  .join(' ');
const TYPES = [
  SCALARS,
  VECTORS,
  MATRICES,
  EXPLICIT,
  OPAQUE,
  'sampler samplerShadow sampler1DShadow sampler2DShadow samplerCubeShadow ' +
    'sampler1DArrayShadow sampler2DArrayShadow samplerCubeArrayShadow ' +
    'accelerationStructureEXT rayQueryEXT'
].join(' ');

const BUILTINS =
  'radians degrees sin cos tan asin acos atan sinh cosh tanh asinh acosh atanh ' +
  'pow exp log exp2 log2 sqrt inversesqrt abs sign floor trunc round roundEven ceil fract ' +
  'mod modf min max clamp mix step smoothstep isnan isinf fma frexp ldexp ' +
  'floatBitsToInt floatBitsToUint intBitsToFloat uintBitsToFloat ' +
  'packHalf2x16 unpackHalf2x16 packUnorm4x8 unpackUnorm4x8 packSnorm4x8 unpackSnorm4x8 ' +
  'length distance dot cross normalize faceforward reflect refract ' +
  'matrixCompMult outerProduct transpose determinant inverse ' +
  'lessThan lessThanEqual greaterThan greaterThanEqual equal notEqual any all not ' +
  'uaddCarry usubBorrow umulExtended imulExtended bitfieldExtract bitfieldInsert ' +
  'bitfieldReverse bitCount findLSB findMSB ' +
  'atomicAdd atomicMin atomicMax atomicAnd atomicOr atomicXor atomicExchange atomicCompSwap ' +
  'atomicCounter atomicCounterIncrement atomicCounterDecrement ' +
  'imageLoad imageStore imageSize imageSamples imageAtomicAdd imageAtomicMin imageAtomicMax ' +
  'imageAtomicAnd imageAtomicOr imageAtomicXor imageAtomicExchange imageAtomicCompSwap ' +
  'texture textureLod textureOffset texelFetch texelFetchOffset textureSize textureGrad ' +
  'textureGather textureQueryLevels textureQueryLod ' +
  'barrier memoryBarrier memoryBarrierShared memoryBarrierBuffer memoryBarrierImage ' +
  'memoryBarrierAtomicCounter groupMemoryBarrier ' +
  'subgroupBarrier subgroupElect subgroupAll subgroupAny subgroupAllEqual ' +
  'subgroupBroadcast subgroupBroadcastFirst subgroupBallot subgroupBallotBitCount ' +
  'subgroupAdd subgroupMul subgroupMin subgroupMax subgroupAnd subgroupOr subgroupXor ' +
  'subgroupInclusiveAdd subgroupExclusiveAdd subgroupShuffle subgroupShuffleXor ' +
  'subgroupShuffleUp subgroupShuffleDown ' +
  'dFdx dFdy fwidth';

const ATOMS =
  'true false ' +
  'gl_GlobalInvocationID gl_LocalInvocationID gl_WorkGroupID gl_NumWorkGroups ' +
  'gl_WorkGroupSize gl_LocalInvocationIndex gl_SubgroupSize gl_SubgroupInvocationID ' +
  'gl_NumSubgroups gl_SubgroupID gl_SubgroupEqMask gl_SubgroupGeMask gl_SubgroupGtMask ' +
  'gl_SubgroupLeMask gl_SubgroupLtMask gl_FragCoord gl_Position gl_VertexIndex ' +
  'gl_InstanceIndex';

/** A line that starts with `#` (the preprocessor) or `%%` (the cell magic) is meta. */
function metaLine(stream: StringStream): string | false {
  if (stream.column() !== stream.indentation()) {
    return false;
  }
  stream.skipToEnd();
  return 'meta';
}

export const glslParser = clike({
  name: 'glsl',
  keywords: words(KEYWORDS),
  types: words(TYPES),
  blockKeywords: words('for while do if else switch struct'),
  builtin: words(BUILTINS),
  atoms: words(ATOMS),
  indentSwitch: false,
  hooks: {
    '#': metaLine,
    '%': (stream: StringStream) => {
      if (stream.column() === 0 && stream.match('%glsl')) {
        stream.skipToEnd();
        return 'meta';
      }
      return false;
    }
  }
});

/** The GLSL language (a CodeMirror 6 stream language). */
export const glslLanguage = StreamLanguage.define(glslParser);

/** Whether a document is a `%%glsl` cell. */
export function isGlslCell(doc: Text): boolean {
  return doc.lines > 0 && /^%%glsl\b/.test(doc.line(1).text);
}

// JupyterLab's highlight style leaves type names uncoloured (C has few); GLSL is mostly types.
const glslTypes = HighlightStyle.define([
  { tag: tags.typeName, color: 'var(--jp-mirror-editor-variable-2-color)' }
]);

const GLSL: Extension = Prec.highest([
  new LanguageSupport(glslLanguage),
  syntaxHighlighting(glslTypes)
]);

/**
 * The editor extension: a compartment that holds the GLSL language (at the highest precedence,
 * so it takes over from the kernel's language) while the first line is a `%%glsl` magic, and
 * nothing otherwise; every transaction that changes the document re-checks the first line.
 * `initially` is whether the editor opens on a `%%glsl` cell (no flash of Python colours).
 */
export function glslCells(initially = false): Extension {
  const slot = new Compartment();
  const active = (state: EditorState) => slot.get(state) === GLSL;
  return [
    slot.of(initially ? GLSL : []),
    EditorState.transactionExtender.of(tr => {
      if (!tr.docChanged) {
        return null;
      }
      const on = isGlslCell(tr.newDoc);
      return on === active(tr.startState)
        ? null
        : { effects: slot.reconfigure(on ? GLSL : []) };
    }),
    // An editor whose document was set without a transaction: check once it exists.
    ViewPlugin.define(view => {
      if (isGlslCell(view.state.doc) !== active(view.state)) {
        Promise.resolve().then(() => {
          const on = isGlslCell(view.state.doc);
          if (on !== active(view.state)) {
            view.dispatch({ effects: slot.reconfigure(on ? GLSL : []) });
          }
        });
      }
      return {};
    })
  ];
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'vknb-glsl:plugin',
  description: 'GLSL syntax highlighting for %%glsl cells (vknb).',
  autoStart: true,
  requires: [IEditorExtensionRegistry],
  optional: [IEditorLanguageRegistry],
  activate: (
    app: JupyterFrontEnd,
    extensions: IEditorExtensionRegistry,
    languages: IEditorLanguageRegistry | null
  ) => {
    extensions.addExtension({
      name: 'vknb-glsl:cells',
      // Code cells and consoles (inline editors), not Markdown cells nor file editors.
      factory: options =>
        options.inline && !/markdown|ipythongfm/.test(options.model.mimeType)
          ? EditorExtensionRegistry.createImmutableExtension(
              glslCells(isGlslCell(Text.of(options.model.sharedModel.getSource().split('\n'))))
            )
          : null
    });
    if (languages) {
      languages.addLanguage({
        name: 'glsl',
        displayName: 'GLSL',
        mime: ['text/x-glsl', 'x-shader/x-compute'],
        extensions: ['glsl', 'comp', 'vert', 'frag', 'geom', 'tesc', 'tese'],
        support: new LanguageSupport(glslLanguage)
      });
    }
  }
};

export default plugin;
