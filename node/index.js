// mlxq for Node.js: the model card's API (loadSession, sendStream, ...) over the native addon
// (src/addon.cpp). This file checks options and turns the addon's event callbacks into async
// iterators; generation itself runs on native threads, off the JS thread.
'use strict';

const path = require('node:path');
const fs = require('node:fs');

function loadAddon() {
  const candidates = [
    process.env.MLXQ_NODE_ADDON,
    // In the source tree (node/ linked or run in place): the build tree's addon, never a stale copy.
    path.join(__dirname, '..', 'build', 'node', 'mlxq.node'),
    // An installed package (npm pack): the copy it carries.
    path.join(__dirname, 'build', 'mlxq.node'),
  ].filter(Boolean);
  for (const p of candidates) if (fs.existsSync(p)) return require(p);
  throw new Error(`mlxq: native addon not found (looked in ${candidates.join(', ')}); build it with ` +
                  '`cmake --build build --target mlxq_node` or reinstall the package');
}
const native = loadAddon();

// ChatConfig keys and their types (session-and-benchmark.md §4.1).
const CONFIG_KEYS = {
  maxNewTokens: 'integer', temperature: 'number', topP: 'number', topK: 'integer', minP: 'number',
  repetitionPenalty: 'number', presencePenalty: 'number', frequencyPenalty: 'number', seed: 'integer',
  stop: 'strings', reasoningEffort: 'effort', thinkingTokenBudget: 'integer', ignoreEos: 'boolean',
  reportPerformance: 'boolean',  // accepted for the card's code; performance is always reported
};
const EFFORTS = ['none', 'low', 'medium', 'high'];

function checkConfig(config, where) {
  if (config === undefined || config === null) return {};
  if (typeof config !== 'object' || Array.isArray(config)) throw new TypeError(`${where}: config must be an object`);
  const out = {};
  for (const [k, v] of Object.entries(config)) {
    const type = CONFIG_KEYS[k];
    if (!type) throw new TypeError(`${where}: unknown config key '${k}' (known: ${Object.keys(CONFIG_KEYS).join(', ')})`);
    if (v === undefined || v === null) continue;
    const bad = (what) => new TypeError(`${where}: config.${k} must be ${what}, got ${JSON.stringify(v)}`);
    switch (type) {
      case 'number': if (typeof v !== 'number' || !Number.isFinite(v)) throw bad('a finite number'); break;
      case 'integer': if (!Number.isInteger(v)) throw bad('an integer'); break;
      case 'boolean': if (typeof v !== 'boolean') throw bad('a boolean'); break;
      case 'strings':
        if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw bad('an array of strings');
        break;
      case 'effort': if (!EFFORTS.includes(v)) throw bad(`one of ${EFFORTS.join(', ')}`); break;
    }
    out[k] = v;
  }
  if (out.seed !== undefined && out.seed < 0) throw new TypeError(`${where}: config.seed must not be negative`);
  return out;
}

function checkSendOptions(opts, where, allowImages = false) {
  if (opts === undefined || opts === null) opts = {};
  if (typeof opts !== 'object') throw new TypeError(`${where}: options must be an object`);
  const known = allowImages ? ['images', 'config', 'tools', 'signal'] : ['config', 'tools', 'signal'];
  for (const k of Object.keys(opts))
    if (!known.includes(k)) throw new TypeError(`${where}: unknown option '${k}' (known: ${known.join(', ')})`);
  let images;
  if (opts.images !== undefined && opts.images !== null) {
    if (!Array.isArray(opts.images)) throw new TypeError(`${where}: images must be an array of Buffers or file paths`);
    opts.images.forEach((im, i) => {
      if (typeof im !== 'string' && !(im instanceof Uint8Array))
        throw new TypeError(`${where}: images[${i}] must be a Buffer, a Uint8Array or a file path`);
    });
    images = opts.images;
  }
  const cfg = checkConfig(opts.config, where);
  if (opts.tools !== undefined && opts.tools !== null) {
    if (!Array.isArray(opts.tools)) throw new TypeError(`${where}: tools must be an array of tool definitions`);
    cfg.toolsJson = JSON.stringify(opts.tools);
  }
  if (opts.signal !== undefined && !(opts.signal instanceof AbortSignal))
    throw new TypeError(`${where}: signal must be an AbortSignal`);
  return { cfg, signal: opts.signal, images };
}

class Session {
  #native; #busy = false; #model;
  constructor(nativeSession, model) { this.#native = nativeSession; this.#model = model; }

  get turns() { return this.#native.turns(); }
  get historyLength() { return this.#native.historyLength(); }
  /** The token ids the session's KV cache holds (a copy; between turns). */
  get history() { return this.#native.history(); }
  get pendingUnresolvedToolCallCount() { return this.#native.pendingToolCalls(); }
  /** Whether the conversation holds images. */
  get hasImages() { return this.#native.hasImages(); }
  get model() { return this.#model; }

  sendStream(text, opts) {
    if (typeof text !== 'string') throw new TypeError('sendStream: text must be a string');
    const { cfg, signal, images } = checkSendOptions(opts, 'sendStream', true);
    return this.#stream('user', text, '', cfg, signal, 'sendStream', images);
  }

  sendToolResultStream(callId, content, opts) {
    if (typeof callId !== 'string' || typeof content !== 'string')
      throw new TypeError('sendToolResultStream: callId and content must be strings');
    const { cfg, signal } = checkSendOptions(opts, 'sendToolResultStream');
    return this.#stream('tool', callId, content, cfg, signal, 'sendToolResultStream');
  }

  async send(text, opts) { return last(this.sendStream(text, opts)); }
  async sendToolResult(callId, content, opts) { return last(this.sendToolResultStream(callId, content, opts)); }

  reset() {
    if (this.#busy) throw new Error('reset: a send is in flight on this session');
    this.#native.reset();
  }

  // The turn runs natively; events arrive through a queue this generator drains. Leaving the loop
  // early (break, return, a throw) or aborting the signal cancels the turn and waits for it to
  // end, so the session can take the next send at once.
  async *#stream(kind, a, b, cfg, signal, where, images) {
    if (this.#busy) throw new Error(`${where}: another send is in flight on this session`);
    if (signal?.aborted) throw signal.reason ?? new Error('aborted');
    this.#busy = true;
    const queue = [];
    let wake = null, ended = false, endedResolve;
    const endedPromise = new Promise((r) => { endedResolve = r; });
    const push = (ev) => {
      if (ev.done || ev.error !== undefined) { ended = true; endedResolve(); }
      queue.push(ev);
      if (wake) { const w = wake; wake = null; w(); }
    };
    const onAbort = () => this.#native.cancel();
    try {
      this.#native.start(kind, a, b, cfg, push, images);
    } catch (e) {
      this.#busy = false;
      throw e;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        if (queue.length === 0) await new Promise((r) => { wake = r; });
        const ev = queue.shift();
        if (ev.error !== undefined) throw new Error(`${where}: ${ev.error}`);
        yield ev;
        if (ev.done) return;
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      if (!ended) {
        this.#native.cancel();
        await endedPromise;
      }
      this.#busy = false;
    }
  }
}

async function last(iter) {
  let final;
  for await (const ev of iter) if (ev.done) final = ev;
  return final;
}

class Model {
  #native;
  constructor(nativeModel) { this.#native = nativeModel; }
  get info() { return this.#native.info(); }
  createSession(options) {
    const o = options ?? {};
    if (typeof o !== 'object') throw new TypeError('createSession: options must be an object');
    for (const k of Object.keys(o))
      if (!['system', 'defaultConfig', 'maxContext'].includes(k))
        throw new TypeError(`createSession: unknown option '${k}' (known: system, defaultConfig, maxContext)`);
    if (o.system !== undefined && typeof o.system !== 'string') throw new TypeError('createSession: system must be a string');
    if (o.maxContext !== undefined && !(Number.isInteger(o.maxContext) && o.maxContext > 0))
      throw new TypeError('createSession: maxContext must be a positive integer');
    const native = this.#native.createSession({
      system: o.system, maxContext: o.maxContext, defaultConfig: checkConfig(o.defaultConfig, 'createSession.defaultConfig'),
    });
    return new Session(native, this);
  }
}

function checkLoadOptions(options, where) {
  const o = options ?? {};
  if (typeof o !== 'object') throw new TypeError(`${where}: options must be an object`);
  const known = ['threads', 'maxContext', 'exact', 'maxSoftTokens', 'system', 'defaultConfig'];
  for (const k of Object.keys(o))
    if (!known.includes(k)) throw new TypeError(`${where}: unknown option '${k}' (known: ${known.join(', ')})`);
  if (o.threads !== undefined && !(Number.isInteger(o.threads) && o.threads >= 0))
    throw new TypeError(`${where}: threads must be a non-negative integer`);
  if (o.maxContext !== undefined && !(Number.isInteger(o.maxContext) && o.maxContext > 0))
    throw new TypeError(`${where}: maxContext must be a positive integer`);
  if (o.exact !== undefined && typeof o.exact !== 'boolean') throw new TypeError(`${where}: exact must be a boolean`);
  if (o.maxSoftTokens !== undefined && ![70, 140, 280, 560, 1120].includes(o.maxSoftTokens))
    throw new TypeError(`${where}: maxSoftTokens must be 70, 140, 280, 560 or 1120`);
  return o;
}

// loadModel(path?, options?): the model, loaded once; sessions share it. No path (or undefined):
// the embedded default model.
async function loadModel(modelPath, options) {
  if (modelPath !== undefined && modelPath !== null && typeof modelPath !== 'string')
    throw new TypeError('loadModel: path must be a string');
  const o = checkLoadOptions(options, 'loadModel');
  return new Model(await native.loadModel(modelPath ?? '', {
    threads: o.threads, maxContext: o.maxContext, exact: o.exact, maxSoftTokens: o.maxSoftTokens,
  }));
}

// loadSession(path?, options?): a model with one session (the card's entry point). options may
// also carry the session's system prompt and default config.
async function loadSession(modelPath, options) {
  const o = checkLoadOptions(options, 'loadSession');
  const model = await loadModel(modelPath, {
    threads: o.threads, maxContext: o.maxContext, exact: o.exact, maxSoftTokens: o.maxSoftTokens,
  });
  return model.createSession({ system: o.system, defaultConfig: o.defaultConfig });
}

module.exports = { loadModel, loadSession, Model, Session, defaultModelDescription: native.defaultModelDescription };
