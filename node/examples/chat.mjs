// The model card's usage snippet, as it stands, with one changed import.
//   node node/examples/chat.mjs [MODEL_DIR]   (no MODEL_DIR: the embedded default model)
import mlxq from '../index.js';
const { loadSession } = mlxq;

const session = await loadSession(process.argv[2]);
for await (const event of session.sendStream(process.argv[3] ?? 'Explain the MoE architecture in Gemma-4.', {
  config: { maxNewTokens: 2048, temperature: 0.6, reasoningEffort: 'low' },
})) {
  if (!event.done) process.stdout.write(event.text);
}
process.stdout.write('\n');
