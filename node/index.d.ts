// Types of the mlxq Node binding (index.js): the model card's API.

export type ReasoningEffort = 'none' | 'low' | 'medium' | 'high';

export interface ChatConfig {
  maxNewTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  minP?: number;
  repetitionPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  seed?: number;
  stop?: string[];
  reasoningEffort?: ReasoningEffort;
  thinkingTokenBudget?: number;
  /** Keep generating past stop tokens up to maxNewTokens (benchmarks, tests). */
  ignoreEos?: boolean;
  /** Accepted for the card's code; performance is always reported. */
  reportPerformance?: boolean;
}

export interface ToolDefinition {
  type: 'function';
  function: { name: string; description?: string; parameters?: Record<string, unknown> };
}

export interface SendOptions {
  /** sendStream / send only: images shown before the text (encoded PNG, JPEG, WebP, BMP or GIF
   *  bytes, or file paths). The model needs a vision tower (ModelInfo.vision). */
  images?: Array<Uint8Array | string>;
  config?: ChatConfig;
  tools?: ToolDefinition[];
  /** Aborting cancels the turn (finishReason 'cancelled'); the session stays usable. */
  signal?: AbortSignal;
}

export interface ToolCall {
  id: string;
  name: string;
  arguments: Record<string, unknown> | string;
  status: 'ok' | 'invalid_json' | 'missing_name' | 'parse_error';
}

export interface Performance {
  ttftMs: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  /** Of ttftMs: this turn's new images through the vision tower. */
  visionMs: number;
}

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'cancelled' | 'error';

export interface ChatResult {
  done: true;
  text: string;
  thinking: string | null;
  thinkingEnabled: boolean;
  toolCalls: ToolCall[];
  finishReason: FinishReason;
  numTokens: number;
  promptTokens: number;
  cachedTokens: number;
  prefillTokens: number;
  reasoningTokens: number;
  rawText: string;
  performance: Performance;
}

export interface DeltaEvent {
  done: false;
  text: string;
  isReasoning: boolean;
}

export type ChatStreamEvent = DeltaEvent | ChatResult;

export interface SessionOptions {
  system?: string;
  defaultConfig?: ChatConfig;
  maxContext?: number;
}

export interface LoadOptions {
  /** Threads of the model's pool (0: all cores). */
  threads?: number;
  /** KV-cache positions of each session. */
  maxContext?: number;
  /** f32 activations in every matmul. */
  exact?: boolean;
  /** Soft tokens per image (default: the checkpoint's, 280). */
  maxSoftTokens?: 70 | 140 | 280 | 560 | 1120;
}

export interface ModelInfo {
  path: string;
  modelType: string;
  vocabSize: number;
  numLayers: number;
  precision: 'fast' | 'exact' | 'int8';
  threads: number;
  /** Takes images (a vision tower in the checkpoint). */
  vision: boolean;
  maxSoftTokens: number;
  liveSessions: number;
}

export declare class Session {
  private constructor();
  readonly turns: number;
  readonly historyLength: number;
  /** The token ids the session's KV cache holds (a copy; read between turns). */
  readonly history: Int32Array;
  readonly pendingUnresolvedToolCallCount: number;
  /** Whether the conversation holds images. */
  readonly hasImages: boolean;
  readonly model: Model;
  sendStream(text: string, options?: SendOptions): AsyncGenerator<ChatStreamEvent, void, undefined>;
  send(text: string, options?: SendOptions): Promise<ChatResult>;
  sendToolResultStream(callId: string, content: string, options?: SendOptions): AsyncGenerator<ChatStreamEvent, void, undefined>;
  sendToolResult(callId: string, content: string, options?: SendOptions): Promise<ChatResult>;
  reset(): void;
}

export declare class Model {
  private constructor();
  readonly info: ModelInfo;
  createSession(options?: SessionOptions): Session;
}

/** Loads a checkpoint once; sessions created from it share its weights. No path: the embedded default model. */
export declare function loadModel(path?: string, options?: LoadOptions): Promise<Model>;
/** A model with one session (the model card's entry point). No path: the embedded default model. */
export declare function loadSession(path?: string, options?: LoadOptions & SessionOptions): Promise<Session>;
export declare function defaultModelDescription(): string;
