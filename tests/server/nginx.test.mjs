// Scale-out behind nginx: the shipped deploy/nginx/mlxq.conf (only its ports substituted) in front
// of two `mlxq serve` replicas. 200 chat completions from 20 conversations (X-Session-Id), one
// replica SIGKILLed after 60 of them: no request may fail, each conversation sticks to one replica
// while both live, everything goes to the survivor afterwards, and a stream passes through intact.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from './harness.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const NGINX = '/usr/sbin/nginx';
const SHIPPED = path.join(repo, 'deploy/nginx/mlxq.conf');

const TOTAL = 200, CONCURRENCY = 4, CONVERSATIONS = 20, KILL_AFTER = 60, MAX_TOKENS = 8;
const REQUEST_TIMEOUT_MS = 30000;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

// The shipped config with the test's ports: listen 8080 -> 127.0.0.1:<free>, replicas 8081/8082 ->
// the ports the two servers bound. Its paths are all relative (under nginx -p PREFIX): checked, so
// nothing the test runs writes outside its temp prefix.
function deriveConfig(text, listenPort, replicaPorts) {
  for (const m of text.matchAll(/^\s*(pid|error_log|access_log|\w+_temp_path)\s+(\S+)/gm))
    assert.ok(!m[2].startsWith('/'), `${m[1]} ${m[2]}: the shipped config's paths must be relative to the prefix`);
  let out = text.replace(/^(\s*)listen\s+8080\s*;/m, `$1listen 127.0.0.1:${listenPort};`);
  assert.notEqual(out, text, 'the shipped config has no `listen 8080;`');
  const servers = [...text.matchAll(/^\s*server\s+127\.0\.0\.1:(\d+)\b/gm)].map((m) => Number(m[1]));
  assert.deepEqual(servers, [8081, 8082], 'the shipped upstream lists 127.0.0.1:8081 and :8082');
  servers.forEach((p, i) => {
    out = out.replace(new RegExp(`^(\\s*server\\s+127\\.0\\.0\\.1:)${p}\\b`, 'm'), `$1${replicaPorts[i]}`);
  });
  return out;
}

async function startNginx(prefix, conf, port) {
  const child = spawn(NGINX, ['-p', prefix + '/', '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => { log += d.toString(); });
  const errorLog = () => { try { return fs.readFileSync(path.join(prefix, 'logs/error.log'), 'utf8'); } catch { return ''; } };
  const kill = () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM'); };
  process.on('exit', kill);  // never leave a master (and its workers) behind
  const deadline = Date.now() + 15000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited (${child.exitCode}):\n${log}\n${errorLog()}`);
    try {
      const r = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(2000) });
      await r.text();
      if (r.status === 200) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) { kill(); throw new Error(`nginx did not answer /health in 15 s:\n${log}\n${errorLog()}`); }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    child, log: () => log + errorLog(),
    async stop() {  // fast shutdown (SIGTERM); the workers go with the master
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10000);
      await exited;
      clearTimeout(t);
    },
  };
}

// The replica that finally answered: the last of $upstream_addr ("A, B" when A failed first).
const lastUpstream = (h) => (h ?? "").split(/,\s*|\s+:\s+/).pop().trim();

test('nginx in front of two replicas: sticky conversations, failover on a killed replica, SSE through',
     { skip: !fs.existsSync(NGINX) && `${NGINX} is missing (apt-get install nginx)`, timeout: 300000 }, async (t) => {
  const prefix = fs.mkdtempSync(path.join(os.tmpdir(), 'mlxq-nginx-'));
  fs.chmodSync(prefix, 0o755);  // as root, nginx's workers run as nobody and need their temp dirs
  fs.mkdirSync(path.join(prefix, 'logs'));
  fs.mkdirSync(path.join(prefix, 'tmp'));
  const stops = [];
  try {
    // One after the other: the first start may convert the default model into the shared cache.
    const replicas = [];
    for (let i = 0; i < 2; i++) {
      const s = await startServer(['--threads', '1']);
      replicas.push(s);
      stops.push(() => s.stop());
    }
    const addr = replicas.map((r) => `127.0.0.1:${r.port}`);
    const port = await freePort();
    const conf = path.join(prefix, 'nginx.conf');
    fs.writeFileSync(conf, deriveConfig(fs.readFileSync(SHIPPED, 'utf8'), port, replicas.map((r) => r.port)));
    const nginx = await startNginx(prefix, conf, port);
    stops.unshift(() => nginx.stop());
    assert.ok(fs.existsSync(path.join(prefix, 'logs/nginx.pid')), 'the pid file is under the prefix');
    const base = `http://127.0.0.1:${port}`;

    // ---- 200 requests, 4 at a time, one replica killed after 60 ----
    const victim = replicas[1], survivor = replicas[0];
    let phase = 'before';  // before -> killing (SIGKILL sent, exit not seen yet) -> after
    let next = 0, completed = 0, clientRetries = 0;
    const results = [];
    const retryLog = [];

    async function once_(body, session) {
      const r = await fetch(`${base}/v1/chat/completions`, {
        method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        headers: { 'content-type': 'application/json', 'x-session-id': session },
      });
      return { status: r.status, upstream: r.headers.get('x-upstream'), text: await r.text() };
    }

    async function request(i) {
      const conv = i % CONVERSATIONS, turn = Math.floor(i / CONVERSATIONS);
      const session = `conv-${conv}`;
      // A growing conversation: earlier turns (with stand-in answers) precede the new question.
      const messages = [];
      for (let k = 0; k <= turn; k++) {
        messages.push({ role: 'user', content: `Conversation ${conv}, question ${k}: what is ${conv} plus ${k}?` });
        if (k < turn) messages.push({ role: 'assistant', content: `${conv + k}` });
      }
      const body = { messages, max_tokens: MAX_TOKENS };
      const startPhase = phase;
      let res;
      for (let attempt = 0; attempt < 2; attempt++) {
        try {
          res = await once_(body, session);
          if (attempt === 0 && [502, 503, 504].includes(res.status)) {
            clientRetries++; retryLog.push(`#${i} ${session}: HTTP ${res.status} via ${res.upstream}`); continue;
          }
          break;
        } catch (e) {
          res = { status: 0, error: `${e.name}: ${e.cause?.code ?? e.message}` };
          if (attempt === 0 && e.name !== 'TimeoutError') { clientRetries++; retryLog.push(`#${i} ${session}: ${res.error}`); continue; }
          break;
        }
      }
      let json = null;
      try { json = JSON.parse(res.text); } catch { /* reported below */ }
      const ok = res.status === 200 && typeof json?.choices?.[0]?.message?.content === 'string';
      results.push({ i, session, startPhase, endPhase: phase, ok, status: res.status, error: res.error,
                     upstreamHeader: res.upstream, upstream: lastUpstream(res.upstream),
                     cached: json?.usage?.prompt_tokens_details?.cached_tokens ?? 0, body: ok ? '' : res.text });
      if (++completed === KILL_AFTER) {
        phase = 'killing';
        const exited = once(victim.child, 'exit');
        victim.child.kill('SIGKILL');
        exited.then(() => { phase = 'after'; });
      }
    }

    const t0 = Date.now();
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < TOTAL) await request(next++);
    }));
    const seconds = (Date.now() - t0) / 1000;

    const failed = results.filter((r) => !r.ok);
    const pre = results.filter((r) => r.endPhase === 'before');
    const post = results.filter((r) => r.startPhase === 'after');
    const spread = Object.fromEntries(addr.map((a) => [a, pre.filter((r) => r.upstream === a).length]));
    const nginxFailovers = results.filter((r) => (r.upstreamHeader ?? '').includes(',')).length;
    const cached = results.reduce((n, r) => n + r.cached, 0);
    t.diagnostic(`${results.length} requests in ${seconds.toFixed(1)} s (${(results.length / seconds).toFixed(1)}/s), ` +
                 `${failed.length} failed, ${clientRetries} client retries, ${nginxFailovers} answered after an nginx failover`);
    t.diagnostic(`before the kill (${pre.length}): ${JSON.stringify(spread)}; in flight at the kill: ` +
                 `${results.length - pre.length - post.length}; after (${post.length}): ` +
                 `${post.filter((r) => r.upstream === addr[0]).length} on the survivor; cached prompt tokens: ${cached}`);
    for (const line of retryLog) t.diagnostic(`client retry: ${line}`);
    // What nginx saw of the dead replica: refused connects, and requests cut while it was answering.
    const errors = nginx.log().split('\n').filter((l) => l.includes('[error]'));
    const count = (re) => errors.filter((l) => re.test(l)).length;
    t.diagnostic(`nginx error log: ${count(/connect\(\) failed \(111/)} refused connects, ` +
                 `${count(/prematurely closed|recv\(\) failed/)} requests cut mid-answer, ` +
                 `${count(/no live upstreams/)} "no live upstreams"`);

    // On a failure: what the replicas and nginx logged.
    const logs = () => replicas.map((r, k) => `--- replica ${addr[k]} (exit ${r.child.exitCode ?? r.child.signalCode ?? 'running'}):\n` +
                                            r.log().split('\n').slice(-30).join('\n')).join('\n') +
                       `\n--- nginx:\n${nginx.log().split('\n').slice(-40).join('\n')}`;
    assert.equal(results.length, TOTAL);
    assert.deepEqual(failed.map((r) => `#${r.i} ${r.session}: ${r.status} ${r.error ?? ''} ${r.body.slice(0, 200)}`), [],
                     `failed requests\n${logs()}`);
    assert.equal(pre.length, KILL_AFTER);
    assert.ok(spread[addr[0]] > 0 && spread[addr[1]] > 0, `both replicas served before the kill: ${JSON.stringify(spread)}\n${logs()}`);
    assert.equal(pre.filter((r) => !addr.includes(r.upstream)).length, 0, 'every answer names a replica in X-Upstream');
    // Sticky: one replica per conversation while both were up.
    const home = new Map();
    for (const r of pre) {
      if (!home.has(r.session)) home.set(r.session, r.upstream);
      assert.equal(r.upstream, home.get(r.session), `${r.session} moved between replicas before the kill (#${r.i})`);
    }
    // After the kill: everything on the survivor, the victim's conversations included.
    assert.ok(post.length > 0);
    assert.deepEqual(post.filter((r) => r.upstream !== addr[0]).map((r) => `#${r.i} ${r.upstreamHeader}`), []);
    const moved = post.filter((r) => home.get(r.session) === addr[1]);
    assert.ok(moved.length > 0, 'the dead replica\'s conversations came back on the survivor');
    assert.ok(nginxFailovers > 0, 'nginx retried at least one request on the survivor (X-Upstream "A, B")');

    // ---- one streamed answer through nginx ----
    const r = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST', signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      headers: { 'content-type': 'application/json', 'x-session-id': 'conv-stream' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'What is the capital of France?' }], max_tokens: 16, stream: true }),
    });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/event-stream/);
    assert.equal(lastUpstream(r.headers.get('x-upstream')), addr[0]);
    let sse = '', reads = 0;
    const dec = new TextDecoder();
    for await (const chunk of r.body) { sse += dec.decode(chunk, { stream: true }); reads++; }
    assert.ok(sse.endsWith('data: [DONE]\n\n'), `the stream ends with data: [DONE]:\n${sse.slice(-300)}`);
    const events = sse.split('\n\n').filter((e) => e.length > 0);
    assert.equal(events.at(-1), 'data: [DONE]');
    const chunks = events.slice(0, -1).map((e) => {
      assert.ok(e.startsWith('data: '), `an SSE event: ${e}`);
      return JSON.parse(e.slice(6));
    });
    assert.ok(chunks.length >= 2);
    for (const c of chunks) assert.equal(c.object, 'chat.completion.chunk');
    assert.ok(chunks.some((c) => c.choices?.[0]?.finish_reason), 'a chunk carries the finish_reason');
    const text = chunks.map((c) => c.choices?.[0]?.delta?.content ?? '').join('');
    t.diagnostic(`stream: ${events.length} events in ${reads} reads via ${r.headers.get('x-upstream')}: ${JSON.stringify(text)}`);
  } finally {
    for (const stop of stops) await stop().catch(() => {});
    fs.rmSync(prefix, { recursive: true, force: true });
  }
});
