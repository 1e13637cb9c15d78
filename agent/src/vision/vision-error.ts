/**
 * Stable failure codes of the vision pipeline. Sources, the model loader and the detect CLI fail
 * with a `VisionError` carrying one of these; callers branch on `code`, people read `message`.
 *
 *   source_not_found     file, device or URL path does not exist (ffmpeg "No such file", HTTP 404)
 *   source_unauthorized  permission denied, HTTP 401/403, RTSP auth failure
 *   source_invalid       not a video/image ffmpeg can read, unknown protocol, no video stream
 *   source_failed        the stream died (connection refused, killed, EOF on a live stream)
 *   source_timeout       a capture or a stream produced nothing within its time limit
 *   camera_unavailable   the camera program is missing or reports no camera
 *   decode_failed        an image could not be decoded
 *   model_not_found      the ONNX file does not exist
 *   model_invalid        onnxruntime could not load the file, or its inputs/outputs do not fit
 *   provider_unavailable no execution provider in the preference list could be used
 *   manifest_invalid     the model manifest does not parse or does not fit the model
 *   adapter_unknown      no manifest and the adapter cannot be guessed from the model's outputs
 *   inference_failed     session.run threw
 */
export const VISION_ERROR_CODES = [
  'source_not_found',
  'source_unauthorized',
  'source_invalid',
  'source_failed',
  'source_timeout',
  'camera_unavailable',
  'decode_failed',
  'model_not_found',
  'model_invalid',
  'provider_unavailable',
  'manifest_invalid',
  'adapter_unknown',
  'inference_failed',
] as const;
export type VisionErrorCode = (typeof VISION_ERROR_CODES)[number];

export class VisionError extends Error {
  readonly code: VisionErrorCode;

  constructor(code: VisionErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VisionError';
    this.code = code;
  }
}

export function isVisionError(value: unknown): value is VisionError {
  return value instanceof VisionError;
}

/** A message for any thrown value. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
