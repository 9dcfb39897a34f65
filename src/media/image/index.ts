/**
 * The image library (sharp / libvips): probe an upload, derive its placeholders and fingerprints,
 * render its variants, and render on-the-fly transforms. Every refusal is an ImageError with a stable
 * code and `permanent: true`. Nothing here knows about HTTP, jobs or configuration files: callers pass
 * the limits and settings in (DEFAULT_* below are the suggested defaults).
 */
export { type AnalyseOptions, analyseImage, type ImageAnalysis } from './analyse.ts';
export { MemoryBudget } from './budget.ts';
export { IMAGE_ERROR_CODES, ImageError, type ImageErrorCode } from './errors.ts';
export type { SafeExif } from './exif.ts';
export {
  type CropWindow,
  focalCrop,
  type GeometryLimits,
  planResize,
  type ResizeMode,
  type ResizePlan,
  type ResizeRequest,
  type Size,
} from './geometry.ts';
export {
  CONTENT_TYPES,
  DEFAULT_IMAGE_LIMITS,
  type EncoderSettings,
  type ImageInput,
  type ImageLimits,
  type InputFormat,
  TRANSFORM_ENCODERS,
  VARIANT_ENCODERS,
} from './libvips.ts';
export { hammingDistance } from './phash.ts';
export { type ProbeResult, probeImage } from './probe.ts';
export { DEFAULT_RENDER_OPTIONS, type RenderedImage, type RenderOptions, renderTransform } from './render.ts';
export { configureRuntime, type ImageRuntime } from './runtime.ts';
export {
  DEFAULT_VARIANT_FORMATS,
  DEFAULT_VARIANT_OPTIONS,
  DEFAULT_VARIANT_PRESETS,
  type RenderedVariant,
  renderVariants,
  type VariantOptions,
  type VariantPreset,
} from './variants.ts';
