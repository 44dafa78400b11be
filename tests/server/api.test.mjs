// `mlxq serve` against the official clients (npm openai, @anthropic-ai/sdk) on 127.0.0.1, with the
// trained tiny default model: each API answers a capital question right, streams, reasons, calls
// the weather tool and uses its result, continues conversations from its cache; and every kind of
// bad or hostile input gets the API's error object with the right status while the server keeps
// serving.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { get, metric, post, startServer } from './harness.mjs';

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather', description: 'Get the current weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string', description: 'The city name' } }, required: ['city'] },
  },
};
const user = (content) => ({ role: 'user', content });

describe('mlxq serve with the official clients', () => {
  let srv, openai, anthropic;
  before(async () => {
    srv = await startServer(['--parallel', '2', '--ctx-size', '2048']);
    openai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
    anthropic = new Anthropic({ baseURL: srv.url, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
  });
  after(async () => { assert.equal(await srv.stop(), 0, srv.log()); });

  test('chat completions: the capital, whole and streamed, with usage and timings', async () => {
    const r = await openai.chat.completions.create({ model: 'tiny-chat', messages: [user('What is the capital of France?')], temperature: 0, max_tokens: 40 });
    assert.equal(r.object, 'chat.completion');
    assert.match(r.choices[0].message.content, /Paris/);
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.ok(r.usage.prompt_tokens > 10 && r.usage.completion_tokens > 0);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
    assert.ok(r.timings.predicted_n === r.usage.completion_tokens, JSON.stringify(r.timings));

    const stream = await openai.chat.completions.create({
      model: 'tiny-chat', messages: [user('What is the capital of Japan?')], temperature: 0, max_tokens: 40,
      stream: true, stream_options: { include_usage: true } });
    let text = '', finish = null, usage = null, chunks = 0;
    for await (const c of stream) {
      chunks++;
      if (c.usage) usage = c.usage;
      for (const ch of c.choices) {
        text += ch.delta.content ?? '';
        if (ch.finish_reason) finish = ch.finish_reason;
      }
    }
    assert.match(text, /Tokyo/);
    assert.equal(finish, 'stop');
    assert.ok(chunks > 3, `${chunks} chunks`);
    assert.ok(usage && usage.completion_tokens > 0);
  });

  test('a second turn reuses the cached prefix (cached_tokens > 0)', async () => {
    const first = [user('What is the capital of Canada?')];
    const a = await openai.chat.completions.create({ model: 'tiny-chat', messages: first, temperature: 0, max_tokens: 40 });
    assert.match(a.choices[0].message.content, /Ottawa/);
    const b = await openai.chat.completions.create({
      model: 'tiny-chat', temperature: 0, max_tokens: 40,
      messages: [...first, { role: 'assistant', content: a.choices[0].message.content }, user('What about Peru?')] });
    assert.match(b.choices[0].message.content, /Lima/);
    assert.ok(b.usage.prompt_tokens_details.cached_tokens > 10, JSON.stringify(b.usage));
    assert.equal(b.timings.cache_n, b.usage.prompt_tokens_details.cached_tokens);
  });

  test('reasoning_content when reasoning_effort turns thinking on', async () => {
    const r = await openai.chat.completions.create({ model: 'tiny-chat', messages: [user('What is the capital of Italy?')], temperature: 0, max_tokens: 200, reasoning_effort: 'high' });
    const m = r.choices[0].message;
    assert.ok(m.reasoning_content && m.reasoning_content.length > 0, JSON.stringify(m));
    assert.match(m.content, /Rome/);
    assert.doesNotMatch(m.content, /<\|channel>|thought/);
    assert.ok(r.usage.completion_tokens_details.reasoning_tokens > 0);

    const stream = await openai.chat.completions.create({ model: 'tiny-chat', messages: [user('What is the capital of Italy?')], temperature: 0, max_tokens: 200, reasoning_effort: 'high', stream: true });
    let reasoning = '', content = '';
    for await (const c of stream) for (const ch of c.choices) { reasoning += ch.delta.reasoning_content ?? ''; content += ch.delta.content ?? ''; }
    assert.equal(reasoning, m.reasoning_content);
    assert.equal(content, m.content);

    const off = await openai.chat.completions.create({ model: 'tiny-chat', messages: [user('What is the capital of Italy?')], temperature: 0, max_tokens: 60 });
    assert.equal(off.choices[0].message.reasoning_content ?? '', '');
  });

  test('a tool-call round trip: get_weather is called, its result used', async () => {
    const messages = [user('What is the weather in Paris?')];
    const r = await openai.chat.completions.create({ model: 'tiny-chat', messages, tools: [weatherTool], temperature: 0, max_tokens: 60 });
    assert.equal(r.choices[0].finish_reason, 'tool_calls');
    const call = r.choices[0].message.tool_calls[0];
    assert.equal(call.type, 'function');
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris' });
    messages.push(r.choices[0].message);
    messages.push({ role: 'tool', tool_call_id: call.id, content: 'cloudy, 14 C' });
    const r2 = await openai.chat.completions.create({ model: 'tiny-chat', messages, tools: [weatherTool], temperature: 0, max_tokens: 60 });
    assert.equal(r2.choices[0].finish_reason, 'stop');
    assert.match(r2.choices[0].message.content, /14/);

    // Streamed: the call arrives as tool_calls deltas the SDK can assemble.
    const s = await openai.chat.completions.create({ model: 'tiny-chat', messages: [user('What is the weather in Paris?')], tools: [weatherTool], temperature: 0, max_tokens: 60, stream: true });
    let name = '', args = '', finish = null;
    for await (const c of s) for (const ch of c.choices) {
      for (const d of ch.delta.tool_calls ?? []) { name += d.function?.name ?? ''; args += d.function?.arguments ?? ''; }
      if (ch.finish_reason) finish = ch.finish_reason;
    }
    assert.equal(name, 'get_weather');
    assert.deepEqual(JSON.parse(args), { city: 'Paris' });
    assert.equal(finish, 'tool_calls');
  });

  test('responses: previous_response_id continues the conversation from the cache', async () => {
    const r1 = await openai.responses.create({ model: 'tiny-chat', input: 'What is the capital of France?', temperature: 0, max_output_tokens: 40 });
    assert.equal(r1.status, 'completed');
    assert.match(r1.output_text, /Paris/);
    const r2 = await openai.responses.create({ model: 'tiny-chat', previous_response_id: r1.id, input: 'What about Germany?', temperature: 0, max_output_tokens: 40 });
    assert.match(r2.output_text, /Berlin/);
    assert.ok(r2.usage.input_tokens > r1.usage.input_tokens);
    assert.ok(r2.usage.input_tokens_details.cached_tokens > 10, JSON.stringify(r2.usage));

    const stream = await openai.responses.create({ model: 'tiny-chat', previous_response_id: r2.id, input: 'What about Japan?', temperature: 0, max_output_tokens: 40, stream: true });
    let text = '', completed = null;
    for await (const e of stream) {
      if (e.type === 'response.output_text.delta') text += e.delta;
      if (e.type === 'response.completed') completed = e.response;
    }
    assert.match(text, /Tokyo/);
    assert.equal(completed.output_text ?? completed.output.find((o) => o.type === 'message').content[0].text, text);

    await assert.rejects(openai.responses.create({ model: 'tiny-chat', previous_response_id: 'resp_missing', input: 'hi' }),
      (e) => e.status === 400 && e.error?.param === 'previous_response_id');
  });

  test('messages: thinking blocks, text, tool_use, streaming and count_tokens', async () => {
    const m = await anthropic.messages.create({ model: 'tiny-chat', max_tokens: 300, temperature: 0,
      thinking: { type: 'enabled', budget_tokens: 200 }, messages: [user('What is the capital of Spain?')] });
    assert.equal(m.type, 'message');
    const thinking = m.content.find((b) => b.type === 'thinking');
    const text = m.content.find((b) => b.type === 'text');
    assert.ok(thinking && thinking.thinking.length > 0, JSON.stringify(m.content));
    assert.match(text.text, /Madrid/);
    assert.equal(m.stop_reason, 'end_turn');
    assert.ok(m.usage.output_tokens > 0);

    const n = await anthropic.messages.countTokens({ model: 'tiny-chat', messages: [user('What is the capital of Spain?')] });
    const plain = await anthropic.messages.create({ model: 'tiny-chat', max_tokens: 40, temperature: 0, messages: [user('What is the capital of Spain?')] });
    assert.equal(n.input_tokens, plain.usage.input_tokens + (plain.usage.cache_read_input_tokens ?? 0));

    const tools = [{ name: 'get_weather', description: 'Get the current weather in a city',
                     input_schema: weatherTool.function.parameters }];
    const t = await anthropic.messages.create({ model: 'tiny-chat', max_tokens: 60, temperature: 0, tools, messages: [user('What is the weather in Paris?')] });
    assert.equal(t.stop_reason, 'tool_use');
    const use = t.content.find((b) => b.type === 'tool_use');
    assert.deepEqual(use.input, { city: 'Paris' });
    const t2 = await anthropic.messages.create({ model: 'tiny-chat', max_tokens: 60, temperature: 0, tools, messages: [
      user('What is the weather in Paris?'), { role: 'assistant', content: t.content },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'cloudy, 14 C' }] }] });
    assert.match(t2.content.find((b) => b.type === 'text').text, /14/);

    const stream = anthropic.messages.stream({ model: 'tiny-chat', max_tokens: 300, temperature: 0,
      thinking: { type: 'enabled', budget_tokens: 200 }, messages: [user('What is the capital of Spain?')] });
    const final = await stream.finalMessage();
    assert.deepEqual(final.content.map((b) => b.type), m.content.map((b) => b.type));
    assert.equal(final.content.find((b) => b.type === 'text').text, text.text);
  });

  test('models, health and metrics', async () => {
    const list = await openai.models.list();
    assert.deepEqual(list.data.map((m) => m.id), ['tiny-chat']);
    const h = await get(`${srv.url}/health`);
    assert.equal(h.json.status, 'ok');
    const m = await get(`${srv.url}/metrics`);
    assert.ok(metric(m.text, 'mlxq_generated_tokens_total') > 50);
    assert.ok(metric(m.text, 'mlxq_prompt_cached_tokens_total') > 10);
    assert.equal(metric(m.text, 'mlxq_slots_total'), 2);
    assert.equal(metric(m.text, 'mlxq_slots_busy'), 0);
    assert.ok(metric(m.text, 'mlxq_requests_total{endpoint="/v1/chat/completions",status="200"}') >= 8);
    // Time in forward passes: most of the generations' time, never much more (the passes that
    // commit each answer's last token come after its decode time).
    const fwd = metric(m.text, 'mlxq_forward_seconds_total');
    const gen = metric(m.text, 'mlxq_prefill_seconds_total') + metric(m.text, 'mlxq_decode_seconds_total');
    assert.ok(fwd > 0.3 * gen && fwd < 1.2 * gen + 0.5, `forward ${fwd} s, generations ${gen} s`);
  });
});

describe('bad and hostile input', () => {
  let srv, openai, anthropic;
  before(async () => {
    srv = await startServer(['--parallel', '1', '--queue', '0', '--ctx-size', '4096', '--timeout', '2', '--api-key', 'sekrit']);
    openai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'sekrit', maxRetries: 0, timeout: 60000 });
    anthropic = new Anthropic({ baseURL: srv.url, apiKey: 'sekrit', maxRetries: 0, timeout: 60000 });
  });
  after(async () => { assert.equal(await srv.stop(), 0, srv.log()); });
  const auth = { authorization: 'Bearer sekrit' };
  const chat = (body) => post(`${srv.url}/v1/chat/completions`, body, auth);

  test('401 without the key, with either client or none', async () => {
    const bad = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'wrong', maxRetries: 0 });
    await assert.rejects(bad.chat.completions.create({ model: 'tiny-chat', messages: [user('hi')] }), (e) => e.status === 401);
    const badA = new Anthropic({ baseURL: srv.url, apiKey: 'wrong', maxRetries: 0 });
    await assert.rejects(badA.messages.create({ model: 'tiny-chat', max_tokens: 5, messages: [user('hi')] }),
      (e) => e.status === 401 && e.error?.error?.type === 'authentication_error');
    const none = await post(`${srv.url}/v1/chat/completions`, { messages: [user('hi')] });
    assert.equal(none.status, 401);
    assert.equal(none.json.error.type, 'authentication_error');
    assert.equal((await get(`${srv.url}/health`)).status, 200);  // health needs no key
    const ok = await openai.chat.completions.create({ model: 'tiny-chat', messages: [user('What is the capital of France?')], temperature: 0, max_tokens: 20 });
    assert.match(ok.choices[0].message.content, /Paris/);
  });

  test('malformed JSON, wrong types, unknown model, bad roles: 4xx naming the field', async () => {
    let r = await chat('{"messages": [');
    assert.equal(r.status, 400);
    assert.equal(r.json.error.type, 'invalid_request_error');
    r = await chat({ messages: [user('hi')], temperature: 'hot' });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.param, 'temperature');
    r = await chat({ messages: [{ role: 'wizard', content: 'hi' }] });
    assert.equal(r.status, 400);
    assert.match(r.json.error.param, /messages\[0\]\.role/);
    r = await chat({ messages: 'hi' });
    assert.equal(r.status, 400);
    r = await chat({ messages: [user('hi')], max_tokens: -3 });
    assert.equal(r.status, 400);
    r = await chat('[1, 2]');
    assert.equal(r.status, 400);
    r = await chat(`{"messages": ${'['.repeat(500)}${']'.repeat(500)}}`);
    assert.equal(r.status, 400);
    await assert.rejects(openai.chat.completions.create({ model: 'gpt-17', messages: [user('hi')] }),
      (e) => e.status === 404 && e.code === 'model_not_found');
    await assert.rejects(anthropic.messages.create({ model: 'tiny-chat', messages: [user('hi')] }),  // no max_tokens
      (e) => e.status === 400 && e.error?.type === 'error' && e.error?.error?.type === 'invalid_request_error');
    r = await post(`${srv.url}/v1/nowhere`, {}, auth);
    assert.equal(r.status, 404);
  });

  test('a prompt over the context, too many stop strings, an oversized body', async () => {
    const long = Array.from({ length: 5000 }, (_, i) => `city${i}`).join(' ');
    await assert.rejects(openai.chat.completions.create({ model: 'tiny-chat', messages: [user(long)] }),
      (e) => e.status === 400 && e.code === 'context_length_exceeded');
    let r = await chat({ messages: [user('hi')], stop: Array.from({ length: 40 }, (_, i) => `s${i}`) });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.param, 'stop');
    r = await chat(JSON.stringify({ messages: [user('x'.repeat(9 << 20))] }));
    assert.equal(r.status, 413);
    assert.ok(r.json.error.message.length > 0);
  });

  test('a slowloris client gets 408 and the server keeps serving meanwhile', async () => {
    const started = Date.now();
    const slow = await new Promise((resolve, reject) => {
      const s = net.connect(srv.port, '127.0.0.1', () => {
        s.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n');
        const drip = setInterval(() => s.write('X'), 300);
        let got = '';
        s.on('data', (d) => { got += d; });
        s.on('close', () => { clearInterval(drip); resolve({ got, ms: Date.now() - started }); });
        s.on('error', () => {});
      });
      s.on('error', reject);
    });
    // Meanwhile (the drip runs for ~2 s) others are served.
    assert.match(slow.got, /^HTTP\/1\.1 408/);
    assert.ok(slow.ms >= 1900 && slow.ms < 6000, `${slow.ms} ms`);
    const ok = await openai.chat.completions.create({ model: 'tiny-chat', messages: [user('What is the capital of France?')], temperature: 0, max_tokens: 20 });
    assert.match(ok.choices[0].message.content, /Paris/);
  });

  test('a client that leaves mid-stream frees the slot; a full queue gets 503', async () => {
    const ac = new AbortController();
    const stream = await openai.chat.completions.create({ model: 'tiny-chat', messages: [user('What is the capital of France?')],
      max_tokens: 4000, ignore_eos: true, stream: true }, { signal: ac.signal });
    let n = 0;
    // While that stream holds the only slot (queue 0), another request is refused with 503.
    const busy = await chat({ messages: [user('hi')], max_tokens: 5 });
    assert.equal(busy.status, 503);
    assert.ok(busy.headers.get('retry-after'));
    try {
      for await (const c of stream) { if (++n === 3) ac.abort(); }
    } catch { /* the abort surfaces as an error or as the stream's end, depending on timing */ }
    assert.ok(n >= 3);
    let m;
    for (let i = 0; i < 50; i++) {
      m = (await get(`${srv.url}/metrics`, auth)).text;
      if (metric(m, 'mlxq_slots_busy') === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(metric(m, 'mlxq_slots_busy'), 0);
    assert.ok(metric(m, 'mlxq_requests_cancelled_total') >= 1);
    assert.ok(metric(m, 'mlxq_generated_tokens_total') < 2000);  // generation stopped early
    const ok = await openai.chat.completions.create({ model: 'tiny-chat', messages: [user('What is the capital of France?')], temperature: 0, max_tokens: 20 });
    assert.match(ok.choices[0].message.content, /Paris/);
  });
  test('a non-streamed request whose client leaves stops generating too', async () => {
    const before = metric((await get(`${srv.url}/metrics`, auth)).text, 'mlxq_requests_cancelled_total');
    const ac = new AbortController();
    const pending = fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', signal: ac.signal,
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ messages: [user('What is the capital of France?')], max_tokens: 4000, ignore_eos: true }) });
    await new Promise((r) => setTimeout(r, 300));
    ac.abort();
    await assert.rejects(pending);
    let m;
    for (let i = 0; i < 50; i++) {
      m = (await get(`${srv.url}/metrics`, auth)).text;
      if (metric(m, 'mlxq_slots_busy') === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(metric(m, 'mlxq_slots_busy'), 0);
    assert.equal(metric(m, 'mlxq_requests_cancelled_total'), before + 1);
  });
});
