// Images over HTTP: OpenAI image_url data URLs, the Responses API's input_image and Anthropic image
// blocks through the official clients, against `mlxq serve` on a small synthetic checkpoint with a
// vision tower (random weights: the checks are on the prompt the server builds, its cache reuse
// and its errors, not on the answers); and a text-only model (the default) refusing images.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { bin, post, startServer } from './harness.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const png = fs.readFileSync(path.join(repo, 'tests/data/gemma4-vision/images/img1.png'));
const png2 = fs.readFileSync(path.join(repo, 'tests/data/gemma4-vision/images/img2.png'));
const dataUrl = (b) => `data:image/png;base64,${b.toString('base64')}`;
// img1 (768 x 768) at a budget of 70: 384 x 384, 8 x 8 soft tokens, plus <|image> and <image|>.
const RUN = 64 + 2;

describe('mlxq serve with images', () => {
  let dir, srv, openai, anthropic;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlxq-vision-'));
    execFileSync(bin, ['make-model', '-q', '--preset', 'small', '--format', 'mlx', '--q-bits', '4', '--seed', '3',
      '-t', '2', '-o', path.join(dir, 'm')], { stdio: ['ignore', 'ignore', 'inherit'] });
    srv = await startServer(['-m', path.join(dir, 'm'), '--parallel', '2', '--ctx-size', '1024', '--max-soft-tokens', '70']);
    openai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
    anthropic = new Anthropic({ baseURL: srv.url, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
  });
  after(async () => {
    assert.equal(await srv.stop(), 0, srv.log());
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const ask = (parts, extra = {}) => openai.chat.completions.create({
    model: 'm', messages: [{ role: 'user', content: parts }], temperature: 0, max_tokens: 3, ...extra });

  test('chat completions: an image_url part adds its run to the prompt; a second turn reuses it', async () => {
    const plain = await ask([{ type: 'text', text: 'What is in the picture?' }]);
    const r = await ask([{ type: 'image_url', image_url: { url: dataUrl(png) } }, { type: 'text', text: 'What is in the picture?' }]);
    assert.equal(r.usage.prompt_tokens, plain.usage.prompt_tokens + RUN);
    const streamed = await openai.chat.completions.create({
      model: 'm', stream: true, stream_options: { include_usage: true }, temperature: 0, max_tokens: 3,
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl(png) } }, { type: 'text', text: 'What is in the picture?' }] }] });
    let usage;
    for await (const chunk of streamed) if (chunk.usage) usage = chunk.usage;
    assert.equal(usage.prompt_tokens, r.usage.prompt_tokens);
    assert.ok(usage.prompt_tokens_details.cached_tokens >= r.usage.prompt_tokens - 1, JSON.stringify(usage));

    const two = await openai.chat.completions.create({ model: 'm', temperature: 0, max_tokens: 3, messages: [
      { role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl(png) } }, { type: 'text', text: 'What is in the picture?' }] },
      { role: 'assistant', content: r.choices[0].message.content },
      { role: 'user', content: 'And the colours?' }] });
    assert.ok(two.usage.prompt_tokens_details.cached_tokens > RUN, JSON.stringify(two.usage));
    // Another image in the same place: the cache stops before its run.
    const other = await ask([{ type: 'image_url', image_url: { url: dataUrl(png2) } }, { type: 'text', text: 'What is in the picture?' }]);
    assert.ok(other.usage.prompt_tokens_details.cached_tokens < plain.usage.prompt_tokens, JSON.stringify(other.usage));
  });

  test('responses input_image and messages image blocks give the same prompt', async () => {
    const chat = await ask([{ type: 'text', text: 'Describe:' }, { type: 'image_url', image_url: { url: dataUrl(png) } }]);
    const resp = await openai.responses.create({ model: 'm', temperature: 0, max_output_tokens: 3, input: [
      { role: 'user', content: [{ type: 'input_text', text: 'Describe:' }, { type: 'input_image', image_url: dataUrl(png), detail: 'auto' }] }] });
    assert.equal(resp.usage.input_tokens, chat.usage.prompt_tokens);
    const msg = await anthropic.messages.create({ model: 'm', max_tokens: 3, temperature: 0, messages: [
      { role: 'user', content: [{ type: 'text', text: 'Describe:' },
        { type: 'image', source: { type: 'base64', media_type: 'image/png', data: png.toString('base64') } }] }] });
    assert.equal(msg.usage.input_tokens + (msg.usage.cache_read_input_tokens ?? 0), chat.usage.prompt_tokens);
    const counted = await anthropic.messages.countTokens({ model: 'm', messages: [
      { role: 'user', content: [{ type: 'text', text: 'Describe:' },
        { type: 'image', source: { type: 'base64', media_type: 'image/png', data: png.toString('base64') } }] }] });
    assert.equal(counted.input_tokens, chat.usage.prompt_tokens);
  });

  test('bad images: a 400 naming the field, and the server keeps serving', async () => {
    const url = `${srv.url}/v1/chat/completions`;
    const bad = async (part, want) => {
      const r = await post(url, { model: 'm', max_tokens: 2, messages: [{ role: 'user', content: [part, { type: 'text', text: 'x' }] }] });
      assert.equal(r.status, 400, r.text);
      assert.match(r.json.error.message, want, r.text);
    };
    await bad({ type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }, /messages\[0\]\.content\[0\]\.image_url\.url.*data URLs/);
    await bad({ type: 'image_url', image_url: { url: 'data:image/png;base64,@@@@' } }, /not valid base64/);
    await bad({ type: 'image_url', image_url: { url: dataUrl(Buffer.from('not an image')) } }, /unknown or unsupported image format/);
    await bad({ type: 'image_url', image_url: { url: dataUrl(png.subarray(0, 2000)) } }, /corrupt or truncated PNG/);
    await bad({ type: 'image_url' }, /image_url/);
    const m = await post(`${srv.url}/v1/messages`, { model: 'm', max_tokens: 2, messages: [{ role: 'user', content: [
      { type: 'image', source: { type: 'url', url: 'https://example.com/cat.png' } }] }] });
    assert.equal(m.status, 400, m.text);
    assert.equal(m.json.type, 'error');
    assert.match(m.json.error.message, /source\.url.*data URLs/);
    const ok = await ask([{ type: 'text', text: 'still there?' }]);
    assert.equal(ok.choices.length, 1);
  });
});

describe('a text-only model refuses images', () => {
  let srv;
  before(async () => { srv = await startServer(['--parallel', '1', '--ctx-size', '1024']); });
  after(async () => { assert.equal(await srv.stop(), 0, srv.log()); });
  test('400 saying the checkpoint has no vision tower', async () => {
    const r = await post(`${srv.url}/v1/chat/completions`, { model: 'tiny-chat', max_tokens: 2, messages: [
      { role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl(png) } }, { type: 'text', text: 'x' }] }] });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error.message, /no vision tower/);
  });
});
