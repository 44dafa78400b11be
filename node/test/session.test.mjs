// The Node binding against the C++ engine and the card's semantics, on the embedded default
// model (tiny-chat): streaming order and fields, agreement with `mlxq run --json`, KV reuse,
// a tool-call round trip, cancel by break and by AbortSignal, a responsive event loop, two
// sessions on one model, and the errors bad input gets. Run: node --test node/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
// The converted default model goes into the build tree, not the user's cache; `mlxq run` below
// inherits the same setting, so both open the same files.
process.env.XDG_CACHE_HOME ??= path.join(repo, 'build', 'test-cache-node');
const mlxqBin = process.env.MLXQ_BIN ?? path.join(repo, 'build', 'mlxq');
const { loadModel, loadSession } = (await import('../index.js')).default;

const model = await loadModel(undefined, { threads: 2, maxContext: 1024 });
const greedy = (extra = {}) => ({ config: { maxNewTokens: 60, temperature: 0, reasoningEffort: 'low', ...extra } });
const WEATHER = [{ type: 'function', function: { name: 'get_weather', description: 'Get the current weather in a city',
  parameters: { type: 'object', properties: { city: { type: 'string', description: 'The city name' } }, required: ['city'] } } }];

async function collect(iter) {
  const events = [];
  for await (const ev of iter) events.push(ev);
  return events;
}

test('the card snippet streams deltas, then one final event with every field', async () => {
  const session = await loadSession(undefined, { threads: 2 });
  const events = await collect(session.sendStream('What is the capital of France?', {
    config: { maxNewTokens: 2048, temperature: 0.6, reasoningEffort: 'low' } }));
  const final = events.at(-1);
  assert.equal(final.done, true);
  assert.equal(events.filter((e) => e.done).length, 1);
  const deltas = events.slice(0, -1);
  assert.ok(deltas.length >= 2, 'several deltas');
  for (const d of deltas) {
    assert.equal(d.done, false);
    assert.equal(typeof d.text, 'string');
    assert.equal(d.isReasoning, false);
  }
  assert.equal(deltas.map((d) => d.text).join(''), final.text);
  assert.match(final.text, /Paris/);
  for (const k of ['text', 'thinking', 'thinkingEnabled', 'toolCalls', 'finishReason', 'numTokens', 'promptTokens',
    'cachedTokens', 'reasoningTokens', 'rawText', 'performance']) assert.ok(k in final, k);
  assert.equal(final.thinking, null);
  assert.equal(final.thinkingEnabled, false);
  assert.equal(final.finishReason, 'stop');
  assert.deepEqual(final.toolCalls, []);
  assert.ok(final.performance.ttftMs > 0 && final.performance.decodeTokensPerSecond > 0);
  assert.equal(session.turns, 1);
});

test('the final event agrees with mlxq run --json (same prompt, seed and model)', async () => {
  const prompt = 'What is the capital of Peru?';
  const cli = JSON.parse(execFileSync(mlxqBin, ['run', '-t', '2', '--seed', '7', '--temp', '0.8', '--max-tokens', '40',
    '--reasoning-effort', 'low', '--json', '-p', prompt], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  const session = model.createSession();
  const r = await session.send(prompt, { config: { seed: 7, temperature: 0.8, maxNewTokens: 40, reasoningEffort: 'low' } });
  assert.equal(r.text, cli.text);
  assert.equal(r.rawText, cli.raw_text);
  assert.equal(r.numTokens, cli.num_tokens);
  assert.equal(r.promptTokens, cli.prompt_tokens);
  assert.equal(r.finishReason, cli.finish_reason);
});

test('turn 2 reuses the cache', async () => {
  const s = model.createSession({ system: 'You are a helpful assistant. Be concise.' });
  const r1 = await s.send('What is the capital of France?', greedy());
  const r2 = await s.send('What about Germany?', greedy());
  assert.equal(r1.cachedTokens, 0);
  assert.ok(r2.cachedTokens > 0, `cachedTokens ${r2.cachedTokens}`);
  assert.ok(r2.cachedTokens >= r1.promptTokens);
  assert.match(r2.text, /Berlin/);
  assert.equal(s.turns, 2);
});

test('reasoningEffort high streams the thought channel as reasoning deltas', async () => {
  const s = model.createSession();
  const events = await collect(s.sendStream('What is the capital of Italy?', greedy({ reasoningEffort: 'high', maxNewTokens: 120 })));
  const final = events.at(-1);
  assert.equal(final.thinkingEnabled, true);
  assert.ok(final.thinking && final.thinking.length > 0, final.rawText);
  const reasoning = events.filter((e) => !e.done && e.isReasoning).map((e) => e.text).join('');
  const answer = events.filter((e) => !e.done && !e.isReasoning).map((e) => e.text).join('');
  assert.ok(reasoning.length > 0);
  assert.equal(answer, final.text);
  assert.match(final.text, /Rome/);
  assert.ok(final.reasoningTokens > 0);
  assert.equal(s.history.length, s.historyLength);
  assert.ok(s.history instanceof Int32Array && s.history[0] === 2, 'starts with <bos>');
});

test('a tool call and its result', async () => {
  const s = model.createSession();
  const call = await s.send("What's the weather in Paris?", { ...greedy(), tools: WEATHER });
  assert.equal(call.finishReason, 'tool_calls', call.rawText);
  assert.equal(call.toolCalls.length, 1);
  assert.deepEqual(call.toolCalls[0].arguments, { city: 'Paris' });
  assert.equal(call.toolCalls[0].name, 'get_weather');
  assert.equal(call.toolCalls[0].status, 'ok');
  assert.equal(s.pendingUnresolvedToolCallCount, 1);
  await assert.rejects(s.send('hello', greedy()), /pending tool call/);
  const ans = await s.sendToolResult(call.toolCalls[0].id, 'cloudy, 14 C', { ...greedy(), tools: WEATHER });
  assert.equal(ans.finishReason, 'stop', ans.rawText);
  assert.match(ans.text, /cloudy/);
});

test('break out of for await cancels the turn and leaves the session usable', async () => {
  const s = model.createSession();
  let n = 0;
  for await (const ev of s.sendStream('Tell me about the capitals of Europe.', greedy({ maxNewTokens: 500, ignoreEos: true }))) {
    if (!ev.done && ++n === 3) break;
  }
  assert.equal(s.turns, 0, 'a cancelled turn is not committed');
  const r = await s.send('What is the capital of Italy?', greedy());
  assert.match(r.text, /Rome/);
  assert.equal(s.turns, 1);
});

test('an AbortSignal cancels the turn', async () => {
  const s = model.createSession();
  const ac = new AbortController();
  let final, n = 0;
  for await (const ev of s.sendStream('Tell me about Spain.', { ...greedy({ maxNewTokens: 500, ignoreEos: true }), signal: ac.signal })) {
    if (!ev.done && ++n === 3) ac.abort();
    if (ev.done) final = ev;
  }
  assert.equal(final.finishReason, 'cancelled');
  assert.ok(final.numTokens < 500);
  const aborted = new AbortController();
  aborted.abort();
  await assert.rejects(collect(s.sendStream('Hi', { signal: aborted.signal })));
  const r = await s.send('What is the capital of Spain?', greedy());
  assert.match(r.text, /Madrid/);
});

test('the event loop stays responsive while an answer streams', async () => {
  const s = model.createSession();
  let ticks = 0;
  const timer = setInterval(() => { ticks++; }, 1);
  const t0 = Date.now();
  await s.send('Tell me about Japan.', greedy({ maxNewTokens: 300, ignoreEos: true }));
  clearInterval(timer);
  const ms = Date.now() - t0;
  assert.ok(ticks >= Math.min(5, ms / 10), `${ticks} timer ticks in ${ms} ms`);
});

test('two sessions on one model answer concurrently without interfering', async () => {
  const q = ['What is the capital of Canada?', 'What is the capital of Kenya?'];
  const alone = [];
  for (const x of q) alone.push((await model.createSession().send(x, greedy())).rawText);
  const [a, b] = await Promise.all(q.map((x) => model.createSession().send(x, greedy())));
  assert.deepEqual([a.rawText, b.rawText], alone);
  assert.match(a.text, /Ottawa/);
  assert.match(b.text, /Nairobi/);
});

test('bad input gets a clear error', async () => {
  const s = model.createSession();
  assert.throws(() => s.sendStream('x', { config: { maxTokens: 5 } }), /unknown config key 'maxTokens'/);
  assert.throws(() => s.sendStream('x', { config: { temperature: 'hot' } }), /config.temperature must be a finite number/);
  assert.throws(() => s.sendStream('x', { config: { reasoningEffort: 'max' } }), /reasoningEffort must be one of/);
  assert.throws(() => s.sendStream('x', { confg: {} }), /unknown option 'confg'/);
  assert.throws(() => s.sendStream(42), /text must be a string/);
  await assert.rejects(loadModel('/nonexistent/model'), /nonexistent/);
  await assert.rejects(loadModel(undefined, { thread: 2 }), /unknown option 'thread'/);
  const first = s.send('Tell me about France.', greedy({ maxNewTokens: 200, ignoreEos: true }));
  await assert.rejects(s.send('Again?', greedy()), /another send is in flight/);
  assert.throws(() => s.reset(), /in flight/);
  await first;
  s.reset();
  assert.equal(s.turns, 0);
});

test('npm pack, then install the tarball into a new project: the card snippet runs there', async () => {
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const os = await import('node:os');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mlxq-pack-'));
  try {
    const pkgDir = path.join(repo, 'node');
    const tgz = execFileSync('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: pkgDir, encoding: 'utf8' })
      .trim().split('\n').at(-1);
    const proj = path.join(dir, 'app');
    execFileSync('mkdir', [proj]);
    writeFileSync(path.join(proj, 'package.json'), '{"name":"app","version":"1.0.0","private":true}\n');
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--offline', path.join(dir, tgz)], { cwd: proj, stdio: 'ignore' });
    writeFileSync(path.join(proj, 'card.mjs'), `import { loadSession } from 'mlxq';
const session = await loadSession();
for await (const event of session.sendStream('What is the capital of Japan?', {
  config: { maxNewTokens: 2048, temperature: 0.6, reasoningEffort: 'low' },
})) {
  if (!event.done) process.stdout.write(event.text);
}
`);
    const out = execFileSync('node', ['card.mjs'], { cwd: proj, encoding: 'utf8' });
    assert.match(out, /Tokyo/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
