// Compiled by `tsc -p node/tsconfig.json` (never run): the card's usage and the rest of the API
// type-check against index.d.ts, and misuse does not.
import { loadModel, loadSession, type ChatResult } from '../index.js';

async function card(): Promise<void> {
  const session = await loadSession('./Gemma-4-26B-A4B-IT-UD-Q3_K_XL-mlx');
  for await (const event of session.sendStream('Explain the MoE architecture in Gemma-4.', {
    config: { maxNewTokens: 2048, temperature: 0.6, reasoningEffort: 'low' },
  })) {
    if (!event.done) process.stdout.write(event.text);
    else console.log(event.performance.decodeTokensPerSecond, event.toolCalls.length, event.finishReason);
  }
}

async function shared(): Promise<ChatResult> {
  const model = await loadModel(undefined, { threads: 2 });
  const a = model.createSession({ system: 'Be concise.' });
  const ac = new AbortController();
  const r = await a.send('Hi', { config: { seed: 1, stop: ['\n'] }, signal: ac.signal });
  if (r.toolCalls.length === 1) return a.sendToolResult(r.toolCalls[0].id, 'sunny');
  // @ts-expect-error unknown config key
  await a.send('x', { config: { maxTokens: 5 } });
  // @ts-expect-error reasoningEffort is an enumeration
  await a.send('x', { config: { reasoningEffort: 'max' } });
  return r;
}

declare const process: { stdout: { write(s: string): void } };
void card;
void shared;
