// kiln's public API: what `import ... from "kiln"` gives. The runners, the option and result types,
// the extension points a user implements, and every named error a caller may catch. Anything not
// exported here is internal and may change without notice.

// The named errors (test/index.test.ts checks that every KilnError subclass a library call can raise
// is here). Catch KilnError for any user error; `details` holds the lines the CLI shows with --verbose.
export {
  CublasError,
  CudaError,
  CudaUnavailableError,
  KernelArgumentError,
  NvrtcError,
} from "./backends/cuda/ffi/errors.ts";
export { KvCacheDtypeUnsupportedError } from "./backends/kv_cache_dtype.ts";
export type { ResolvedEngine } from "./builder/engine_cache.ts";
export {
  ModelIsEngineError,
  OutputNotWritableError,
  PrequantizedCheckpointError,
  UnusedTensorError,
} from "./builder/errors.ts";
export { BUNDLED_MODEL_DIR } from "./bundled_model.ts";
export {
  CheckpointNotFoundError,
  ConfigError,
  MissingTensorError,
  PackedTensorError,
  QuantizedTensorError,
  SafetensorsError,
  UnsupportedQuantizationError,
} from "./checkpoint/errors.ts";
export type { BackendName, BuildConfig, QuantizeMethod } from "./engine/build_config.ts";
export {
  CalibrationFileError,
  CalibrationMemoryError,
  CalibrationNotUsedError,
} from "./engine/calibration.ts";
export {
  EngineCorruptError,
  EngineError,
  EngineTargetMismatchError,
  OutputNotEngineError,
  QuantizedEngineUnsupportedError,
  UnknownWeightFormatError,
} from "./engine/errors.ts";
export { InvalidArgumentError, InvalidEnvironmentError, KilnError } from "./errors.ts";
export {
  ExecutorShutDownError,
  InvalidRequestError,
  KvCacheNoRoomError,
  // The runtime's former name for KvCacheNoRoomError: the same class, so catch clauses keep working.
  KvCacheNoRoomError as KvCacheExhaustedError,
  QueueFullError,
  RequestCallbackError,
  RequestLogitsNotFiniteError,
  RequestTooLargeError,
  UnknownRequestError,
  UnsupportedRequestError,
} from "./executor/errors.ts";
export type {
  ExecutorOptions,
  ExecutorRequest,
  ExecutorStats,
  IterationStats,
  KvCacheLimit,
  KvCacheSizing,
  ResultEvent,
} from "./executor/executor.ts";
export { Executor } from "./executor/executor.ts";
export type { KvCacheStats } from "./executor/kv_cache_manager.ts";
export type { RequestFinishReason } from "./executor/request.ts";
export type { RequestTiming } from "./executor/request_results.ts";
export { ExecutorThread } from "./executor/thread/executor_thread.ts";
export type { ExecutorThreadInfo } from "./executor/thread/messages.ts";
export { RemoteKilnError } from "./executor/thread/remote_error.ts";
export { CacheDirError, FileSystemError } from "./fs_errors.ts";
export { UnsupportedArchitectureError } from "./models/errors.ts";
export {
  ContextWindowExceededError,
  InvalidPromptError,
  InvalidTokenIdError,
  NonFiniteLogitsError,
  RunnerDisposedError,
  StreamIdleTimeoutError,
  UnknownOptionError,
} from "./runtime/errors.ts";
export type { DecodeOptions, GenerationSessionOptions } from "./runtime/generation_session.ts";
export { GenerationSession } from "./runtime/generation_session.ts";
export type { KvCacheConfig, KvCacheDtype, KvPoolInfo, KvPoolLimit } from "./runtime/kv_cache_config.ts";
export { InvalidKvCacheConfigError } from "./runtime/kv_cache_config.ts";
export type {
  GenerateOptions,
  GenerationOutput,
  Prompt,
  PromptBatch,
  RunnerOptions,
} from "./runtime/model_runner.ts";
export { ModelRunner } from "./runtime/model_runner.ts";
export type { OpenExecutorOptions } from "./runtime/open_executor.ts";
export { openExecutor } from "./runtime/open_executor.ts";
export type { OpenedExecutorThread, ThreadExecutorOptions } from "./runtime/open_executor_thread.ts";
export { openExecutorThread } from "./runtime/open_executor_thread.ts";
export type { RequestOutput, SequenceOutput, StepOutput, TokenEvent } from "./runtime/outputs.ts";
export type { FinishReason } from "./runtime/sequence.ts";
export { Session, type SessionOpenOptions } from "./runtime/session.ts";
export type { LogitsProcessor, SequenceView, StoppingCriteria } from "./sampling/logits_processor.ts";
export type { PerSeq, SamplingConfig, WordSpec } from "./sampling/sampling_config.ts";
export { InvalidSamplingConfigError, TokenIdOutOfRangeError } from "./sampling/sampling_config.ts";
export { TokenizerError } from "./tokenizer/errors.ts";
export type { Encoding, Tokenizer } from "./tokenizer/tokenizer.ts";
export { KILN_VERSION } from "./version.ts";
