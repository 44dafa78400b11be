// Load test: 8 concurrent clients against one `mlxq serve` (4 slots) on 127.0.0.1 for a bounded
// time (MLXQ_LOAD_SECONDS, default 120) and request count, mixing every API, streamed and not,
// multi-turn chats and disconnects. Asserts zero failed requests, RSS flat after warm-up (unless
// MLXQ_LOAD_CHECK_RSS=0, for the ASan build), and a clean exit; with the ASan build
// (MLXQ_BIN=build-asan/mlxq) also no sanitizer report in its log and no leak at exit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { get, metric, post, startServer } from './harness.mjs';

const seconds = Number(process.env.MLXQ_LOAD_SECONDS ?? 120);
const clients = Number(process.env.MLXQ_LOAD_CLIENTS ?? 8);
const maxRequests = 20000;
const countries = ['France', 'Germany', 'Japan', 'Canada', 'Peru', 'Italy', 'Spain', 'Kenya', 'Brazil', 'India'];

function rssMiB(pid) {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(s.match(/VmRSS:\s+(\d+)/)[1]) / 1024;
}

// Reads an SSE body to the end; returns the text of its data lines.
async function drain(res) {
  const text = await res.text();
  return text.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6));
}

test(`load: ${clients} clients for ${seconds} s`, { timeout: (seconds + 240) * 1000 }, async () => {
  const srv = await startServer(['--parallel', '4', '--queue', '64', '--ctx-size', '1024']);
  const url = srv.url;
  const stats = { ok: 0, failed: 0, aborted: 0, byKind: {} };
  const failures = [];
  const rss = [];
  const t0 = Date.now();
  const deadline = t0 + seconds * 1000;
  const sampler = setInterval(() => rss.push({ t: (Date.now() - t0) / 1000, mib: rssMiB(srv.child.pid) }), 2000);

  const kinds = {
    async chat(i) {
      const r = await post(`${url}/v1/chat/completions`, { messages: [{ role: 'user', content: `What is the capital of ${countries[i % 10]}?` }], max_tokens: 24, temperature: 0.7, seed: i });
      return r.status === 200 && r.json.choices[0].message.content.length > 0 ? null : `${r.status} ${r.text.slice(0, 200)}`;
    },
    async chatStream(i) {
      const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ messages: [{ role: 'user', content: `What is the capital of ${countries[i % 10]}?` }], max_tokens: 24, stream: true, stream_options: { include_usage: true } }) });
      const data = await drain(res);
      return res.status === 200 && data.at(-1) === '[DONE]' ? null : `${res.status} ${data.slice(-2).join('|')}`;
    },
    async multiTurn(i) {
      const msgs = [{ role: 'user', content: `What is the capital of ${countries[i % 10]}?` }];
      for (let turn = 0; turn < 3; turn++) {
        const r = await post(`${url}/v1/chat/completions`, { messages: msgs, max_tokens: 20, temperature: 0 });
        if (r.status !== 200) return `${r.status} ${r.text.slice(0, 200)}`;
        msgs.push(r.json.choices[0].message, { role: 'user', content: `What about ${countries[(i + turn + 1) % 10]}?` });
      }
      return null;
    },
    async responses(i) {
      const a = await post(`${url}/v1/responses`, { input: `What is the capital of ${countries[i % 10]}?`, max_output_tokens: 20 });
      if (a.status !== 200) return `${a.status} ${a.text.slice(0, 200)}`;
      const b = await post(`${url}/v1/responses`, { previous_response_id: a.json.id, input: 'What about Japan?', max_output_tokens: 20 });
      return b.status === 200 && b.json.status ? null : `${b.status} ${b.text.slice(0, 200)}`;
    },
    async messagesStream(i) {
      const res = await fetch(`${url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ max_tokens: 64, stream: true, thinking: { type: 'enabled', budget_tokens: 32 }, messages: [{ role: 'user', content: `What is the capital of ${countries[i % 10]}?` }] }) });
      const text = await res.text();
      return res.status === 200 && text.includes('event: message_stop') ? null : `${res.status} ${text.slice(-200)}`;
    },
    async disconnect(i) {  // leaves after the first bytes: not a failure, the server must cope
      const ac = new AbortController();
      const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, signal: ac.signal,
        body: JSON.stringify({ messages: [{ role: 'user', content: `Tell me about ${countries[i % 10]}.` }], max_tokens: 200, ignore_eos: true, stream: true }) });
      if (res.status !== 200) return `${res.status}`;
      const reader = res.body.getReader();
      await reader.read();
      ac.abort();
      stats.aborted++;
      return null;
    },
  };
  const names = Object.keys(kinds);
  let issued = 0;
  async function client(c) {
    for (let i = c; Date.now() < deadline && issued < maxRequests; i += clients) {
      const kind = names[(issued++ + c) % names.length];
      let err;
      try {
        err = await kinds[kind](i);
      } catch (e) {
        err = String(e);
      }
      stats.byKind[kind] = (stats.byKind[kind] ?? 0) + 1;
      if (err) { stats.failed++; if (failures.length < 10) failures.push(`${kind}: ${err}`); } else stats.ok++;
    }
  }
  await Promise.all(Array.from({ length: clients }, (_, c) => client(c)));
  clearInterval(sampler);
  const m = (await get(`${url}/metrics`)).text;
  const code = await srv.stop();
  const log = srv.log();

  // RSS after warm-up (the first third): the last samples against the first ones.
  const warm = rss.filter((s) => s.t >= seconds / 3);
  const head = warm.slice(0, 5).map((s) => s.mib), tail = warm.slice(-5).map((s) => s.mib);
  const avg = (a) => a.reduce((x, y) => x + y, 0) / a.length;
  const growth = avg(tail) - avg(head);
  const batches = metric(m, 'mlxq_forward_batches_total'), seqs = metric(m, 'mlxq_forward_sequences_total');
  const summary = { seconds, clients, ...stats, rss_first_mib: Math.round(rss[0]?.mib), rss_after_warmup_mib: Math.round(avg(head)),
    rss_end_mib: Math.round(avg(tail)), rss_growth_mib: Math.round(growth * 10) / 10,
    generated_tokens: metric(m, 'mlxq_generated_tokens_total'), sequences_per_forward: Math.round((seqs / batches) * 100) / 100,
    cancelled: metric(m, 'mlxq_requests_cancelled_total'), exit: code,
    rss_every_10s: rss.filter((_, i) => i % 5 === 4).map((x) => Math.round(x.mib)) };
  console.log(`load summary: ${JSON.stringify(summary)}`);
  assert.deepEqual(failures, []);
  assert.equal(stats.failed, 0);
  assert.ok(stats.ok > clients * 4, `only ${stats.ok} requests`);
  assert.ok(warm.length >= 10, 'too few RSS samples');
  // RSS is judged on the Release build: ASan holds freed memory in its quarantine (256 MiB by
  // default) and pads every allocation, so its RSS moves by tens of MiB with the requests in flight.
  if (process.env.MLXQ_LOAD_CHECK_RSS !== '0')
    assert.ok(growth < Math.max(16, 0.03 * avg(head)), `RSS grew ${growth.toFixed(1)} MiB after warm-up`);
  assert.equal(code, 0, log.slice(-2000));
  assert.doesNotMatch(log, /ERROR: (Address|Leak)Sanitizer|runtime error:/);
});
