/*
 * The agent's vision pipeline: frame sources, ONNX inference with provider fallback, model
 * adapters, the pipeline with its metrics window and camera-health detectors, and the detect CLI.
 */
export type { Detection, ModelAdapter, ModelInput, ModelOutputs, OutputTensor } from './adapters/adapter-types.ts';
export { createModelAdapter } from './adapters/model-adapter.ts';
export { PPOCR_DET_MANIFEST_PATH, ppocrDetModelPath } from './bundled-models.ts';
export type { CameraHealthOptions } from './camera-health.ts';
export { createCameraHealthMonitor, DEFAULT_CAMERA_HEALTH_OPTIONS, lumaThumbnail } from './camera-health.ts';
export type { VisionConfigInput, VisionSourceConfig } from './config.ts';
export { parseVisionConfig, resolveVisionPaths, VisionConfig } from './config.ts';
export type { DetectCliIo } from './detect-cli.ts';
export { runDetectCli } from './detect-cli.ts';
export { resolveFfmpegPath } from './ffmpeg-process.ts';
export type { FfmpegSource, FfmpegSourceOptions } from './ffmpeg-source.ts';
export { createFfmpegSource } from './ffmpeg-source.ts';
export type { Frame, FrameHandler, FrameSource, FrameSourceKind, SourceStats } from './frame-source.ts';
export { createImageFolderSource } from './image-folder-source.ts';
export type { ModelSession, ModelSessionOptions } from './inference.ts';
export { createModelSession, DEFAULT_PROVIDERS } from './inference.ts';
export type { MetricsWindow, StageTimings } from './metrics-window.ts';
export { createMetricsWindow } from './metrics-window.ts';
export { loadModelManifest, parseModelManifest } from './model-manifest.ts';
export { createPiCameraSource } from './pi-camera-source.ts';
export type {
  FrameResult,
  PipelineOutcome,
  PipelineStats,
  VisionPipeline,
  VisionPipelineDeps,
  VisionPipelineOptions,
  VisionSink,
} from './pipeline.ts';
export { createVisionPipeline } from './pipeline.ts';
export { createSyntheticSource } from './synthetic-source.ts';
export type { Vision, VisionDeps, VisionFault } from './vision.ts';
export { createFrameSource, createVision } from './vision.ts';
export type { VisionErrorCode } from './vision-error.ts';
export { isVisionError, VisionError } from './vision-error.ts';
export type { VisionModel } from './vision-model.ts';
export { loadVisionModel } from './vision-model.ts';
