// Images through the Node binding: sendStream(text, {images}) with a Buffer or a file path on a
// small synthetic checkpoint with a vision tower (random weights: the checks are on the prompt
// and the cache, not on the answers), and the errors a text-only model and bad input give.
// Run: node --test node/test/
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
process.env.XDG_CACHE_HOME ??= path.join(repo, 'build', 'test-cache-node');
const mlxqBin = process.env.MLXQ_BIN ?? path.join(repo, 'build', 'mlxq');
const { loadModel } = (await import('../index.js')).default;

const img1 = path.join(repo, 'tests/data/gemma4-vision/images/img1.png');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlxq-node-vision-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
execFileSync(mlxqBin, ['make-model', '-q', '--preset', 'small', '--format', 'mlx', '--q-bits', '4', '--seed', '4', '-t', '2',
  '-o', path.join(dir, 'm')], { stdio: ['ignore', 'ignore', 'inherit'] });
const model = await loadModel(path.join(dir, 'm'), { threads: 2, maxContext: 1024, maxSoftTokens: 70 });
const greedy = { maxNewTokens: 3, temperature: 0 };

async function final(iter) {
  let last;
  for await (const ev of iter) last = ev;
  return last;
}

test('a Buffer and a path give the same turn; the image adds its run; the next turn reuses the cache', async () => {
  assert.equal(model.info.vision, true);
  assert.equal(model.info.maxSoftTokens, 70);
  const plain = await model.createSession().send('What is in the picture?', { config: greedy });
  const a = model.createSession();
  const ra = await final(a.sendStream('What is in the picture?', { images: [fs.readFileSync(img1)], config: greedy }));
  const b = model.createSession();
  const rb = await b.send('What is in the picture?', { images: [img1], config: greedy });
  assert.equal(ra.promptTokens, plain.promptTokens + 64 + 2);  // 768 x 768 at 70: 8 x 8 soft tokens
  assert.equal(ra.rawText, rb.rawText);
  assert.deepEqual(Array.from(a.history), Array.from(b.history));
  assert.equal(a.hasImages, true);
  assert.ok(ra.performance.visionMs > 0);
  const before = a.historyLength;
  const next = await a.send('And the colours?', { config: greedy });
  assert.equal(next.cachedTokens, before);
  a.reset();
  assert.equal(a.hasImages, false);
});

test('errors: bad image values, unreadable files, corrupt bytes, a text-only model', async () => {
  const s = model.createSession();
  assert.throws(() => s.sendStream('x', { images: 'a.png' }), /images must be an array/);
  assert.throws(() => s.sendStream('x', { images: [42] }), /images\[0\] must be a Buffer/);
  await assert.rejects(s.send('x', { images: [path.join(dir, 'missing.png')], config: greedy }), /missing\.png/);
  await assert.rejects(s.send('x', { images: [Buffer.from('not an image')], config: greedy }),
    /images\[0\]: unknown or unsupported image format/);
  assert.equal((await s.send('still usable?', { config: greedy })).numTokens, 3);
  await assert.rejects(s.sendToolResult('c', 'r', { images: [img1] }), /unknown option 'images'/);
  const text = await loadModel(undefined, { threads: 2, maxContext: 512 });
  assert.equal(text.info.vision, false);
  await assert.rejects(text.createSession().send('x', { images: [img1], config: greedy }), /no vision tower/);
});
