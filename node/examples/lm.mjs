// The model card's benchmark (mlx-node examples/lm.ts): one session, system prompt "You are a
// helpful assistant. Be concise.", four streamed capitals turns with {maxNewTokens: 2048,
// temperature: 0.6, reasoningEffort: 'low'}; prints each turn's figures and the headline, the
// best decode tok/s over turns 2-4 (session-and-benchmark.md §7).
//   node node/examples/lm.mjs [MODEL_DIR] [--max-tokens N] [--threads N]
import mlxq from '../index.js';
const { loadSession } = mlxq;

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  if (i < 0) return def;
  const v = Number(args[i + 1]);
  args.splice(i, 2);
  return v;
};
const maxNewTokens = opt('--max-tokens', 2048), threads = opt('--threads', 0);
const modelPath = args[0];

const t0 = performance.now();
const session = await loadSession(modelPath, { threads, system: 'You are a helpful assistant. Be concise.' });
console.log(`loaded ${modelPath ?? 'the embedded default model'} in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
const turns = [
  'What is the capital of France?',
  'What about Germany?',
  'And Japan?',
  'Which of those three cities has the largest population?',
];
const decode = [];
for (const [i, text] of turns.entries()) {
  console.log(`\n> ${text}`);
  for await (const event of session.sendStream(text, { config: { maxNewTokens, temperature: 0.6, reasoningEffort: 'low' } })) {
    if (!event.done) { process.stdout.write(event.text); continue; }
    const p = event.performance;
    decode.push(p.decodeTokensPerSecond);
    console.log(`\n[turn ${i + 1}: ${event.numTokens} tokens, ${event.finishReason}, prompt ${event.promptTokens} ` +
                `(cached ${event.cachedTokens}), TTFT ${p.ttftMs.toFixed(1)} ms, prefill ` +
                `${p.prefillTokensPerSecond.toFixed(1)} tok/s, decode ${p.decodeTokensPerSecond.toFixed(2)} tok/s]`);
  }
}
console.log(`\nbest decode tok/s over turns 2-4: ${Math.max(...decode.slice(1)).toFixed(2)}`);
