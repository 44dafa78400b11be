#!/usr/bin/env node
// Serving benchmark: `mlxq serve` on a checkpoint, N concurrent streamed chat completions (each
// generating exactly --tokens tokens: ignore_eos), for each N in --streams. Reports per N the
// steady aggregate decode rate (tokens of all streams while all are decoding, no prefill in the
// span) against one stream measured just before and after, the aggregate over the span from the
// first stream's first token to the last stream's end (prefills of the later streams inside),
// per-stream TTFT and decode tok/s (the server's own timings),
// and, for one stream, the overhead against `mlxq bench -n TOKENS` on the same checkpoint, run
// in alternating phases (bench, server, bench, server) because memory bandwidth drifts.
//
//   node bench/serve_bench.mjs -m /work/models/26b-a4b-q3 [--streams 1,2,4,8] [--tokens 64]
//        [--rounds 2] [--reps 1] [--interleave N] [--threads 0] [--precision int8] [--bin build/mlxq]
import { spawn, execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('-')) acc.push([a.replace(/^-+/, ''), all[i + 1]]);
  return acc;
}, []));
const model = args.m ?? args.model;
if (!model) { console.error('usage: serve_bench.mjs -m MODEL_DIR [--streams 1,2,4,8] [--tokens 64] [--rounds 2]'); process.exit(2); }
const bin = args.bin ?? path.join(repo, 'build/mlxq');
const streams = (args.streams ?? '1,2,4,8').split(',').map(Number);
const tokens = Number(args.tokens ?? 64);
const rounds = Number(args.rounds ?? 2);
const reps = Number(args.reps ?? 1);  // one-stream repetitions per round, for the overhead
// --interleave N: only the overhead, finely: one server kept up, then N pairs of (one `mlxq bench`
// run, one server request) a few seconds apart, so bandwidth drift hits both sides alike.
const interleave = Number(args.interleave ?? 0);
const threads = String(args.threads ?? 0);
// --precision int8: both the server and `mlxq bench` with one int8 activation part.
const precision = args.precision === 'int8' ? ['--int8'] : [];
const maxStreams = Math.max(...streams);
const topics = ['France', 'Japan', 'Peru', 'Kenya', 'Canada', 'Italy', 'India', 'Chile'];

async function startServer() {
  const child = spawn(bin, ['serve', '-m', model, '--port', '0', '--parallel', String(maxStreams), '--ctx-size', '1024',
                            '--threads', threads, ...precision], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const port = await new Promise((resolve, reject) => {
    child.stderr.on('data', (d) => {
      log += d;
      const m = log.match(/on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (c) => reject(new Error(`server exited ${c}: ${log}`)));
  });
  return { child, url: `http://127.0.0.1:${port}` };
}

// One streamed completion: client-side TTFT (first SSE chunk with content) and the final timings.
async function stream(url, i) {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [{ role: 'user', content: `Tell me about ${topics[i % topics.length]}, stream ${i}.` }],
                           max_tokens: tokens, ignore_eos: true, temperature: 0, stream: true }) });
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '', first = null, timings = null;
  const chunks = [];  // arrival time of each content chunk
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let at;
    while ((at = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, at); buf = buf.slice(at + 2);
      if (!frame.startsWith('data: {')) continue;
      const j = JSON.parse(frame.slice(6));
      const d = j.choices?.[0]?.delta;
      if (d && (d.content || d.reasoning_content || d.tool_calls)) {
        const now = performance.now();
        if (first === null) first = now;
        chunks.push(now);
      }
      if (j.timings) timings = j.timings;
    }
  }
  const end = performance.now();
  return { start: t0, first: first ?? end, end, ttft_ms: (first ?? end) - t0, timings, chunks };
}

// The server's counter of wall time inside forward passes (GET /metrics).
async function forwardSeconds(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(text.match(/^mlxq_forward_seconds_total (\S+)$/m)[1]);
}

async function phase(url, n) {
  const fwd0 = await forwardSeconds(url);
  const t0 = performance.now();
  const runs = await Promise.all(Array.from({ length: n }, (_, i) => stream(url, i)));
  const wall = (performance.now() - t0) / 1000, fwd = (await forwardSeconds(url)) - fwd0;
  // The server's share of the time, free of bandwidth drift (the passes are the work `mlxq bench`
  // times): the client's whole request time outside forward passes (HTTP, JSON, rendering,
  // sampling, SSE). (The passes include the one that commits the last token after the answer.)
  const firstToken = Math.min(...runs.map((r) => r.first)), last = Math.max(...runs.map((r) => r.end));
  const decoded = runs.reduce((s, r) => s + Math.max(0, r.timings.predicted_n - 1), 0);
  // Steady state: the span in which every stream is decoding (from the last stream's first token
  // to the first stream's end), no prefill in it. A stream's tokens in it are its content chunks
  // there, scaled by its tokens per chunk (a chunk is one token unless the detokenizer held bytes
  // back or a token printed nothing).
  const from = Math.max(...runs.map((r) => r.first)), to = Math.min(...runs.map((r) => r.end));
  const steadyTokens = runs.reduce((s, r) => {
    const inside = r.chunks.filter((t) => t > from && t <= to).length;
    return s + inside * (r.timings.predicted_n - 1) / Math.max(1, r.chunks.length - 1);
  }, 0);
  return {
    streams: n,
    outside_forward_request: n === 1 ? 1 - fwd / wall : NaN,
    steady_decode_tps: to > from ? steadyTokens / ((to - from) / 1000) : 0,
    aggregate_decode_tps: decoded / ((last - firstToken) / 1000),
    aggregate_tps_incl_prefill: runs.reduce((s, r) => s + r.timings.predicted_n, 0) / ((last - Math.min(...runs.map((r) => r.start))) / 1000),
    ttft_ms_mean: runs.reduce((s, r) => s + r.ttft_ms, 0) / n,
    ttft_ms_max: Math.max(...runs.map((r) => r.ttft_ms)),
    stream_decode_tps_mean: runs.reduce((s, r) => s + r.timings.predicted_per_second, 0) / n,
  };
}

function cliBench() {
  const out = execFileSync(bin, ['bench', '-m', model, '-p', '16', '-n', String(tokens), '-r', String(reps), '--json',
                                 '--bandwidth-gib', '0', '-t', threads, ...precision], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return JSON.parse(out).tests.find((t) => t.test === `tg${tokens}`).tokens_per_second_mean;
}

const results = {};
const overhead = [];
if (interleave > 0) {
  const srv = await startServer();
  await phase(srv.url, 1);
  const pairs = [];
  for (let i = 0; i < interleave; i++) {
    const cli = cliBench();
    const server = (await phase(srv.url, 1)).stream_decode_tps_mean;
    pairs.push({ cli, server });
    console.log(`pair ${i + 1}: mlxq bench tg${tokens} ${cli.toFixed(2)} tok/s, server ${server.toFixed(2)} tok/s (${((1 - server / cli) * 100).toFixed(1)}%)`);
  }
  srv.child.kill('SIGTERM');
  const c = pairs.reduce((s, p) => s + p.cli, 0) / pairs.length, v = pairs.reduce((s, p) => s + p.server, 0) / pairs.length;
  const diffs = pairs.map((p) => 1 - p.server / p.cli).sort((a, b) => a - b);
  console.log(`# ${model}, ${interleave} interleaved pairs, ${new Date().toISOString()}: mlxq bench ${c.toFixed(2)} tok/s, ` +
              `server ${v.toFixed(2)} tok/s, overhead of the means ${((1 - v / c) * 100).toFixed(1)}%, median pair ${(diffs[diffs.length >> 1] * 100).toFixed(1)}%`);
  process.exit(0);
}
for (let round = 0; round < rounds; round++) {
  const cli = cliBench();
  const srv = await startServer();
  await phase(srv.url, 1);  // warm-up: page in the weights
  for (const n of streams) {
    // Each N-stream phase is bracketed by one-stream phases: its "x single" is against their mean,
    // taken minutes apart at most, because the machine's bandwidth drifts.
    const before = n > 1 ? await phase(srv.url, 1) : null;
    const r = await phase(srv.url, n);
    if (before) r.single_tps = (before.steady_decode_tps + (await phase(srv.url, 1)).steady_decode_tps) / 2;
    else r.single_tps = r.steady_decode_tps;
    (results[n] ??= []).push(r);
    if (n === 1) {
      let tps = r.stream_decode_tps_mean;
      for (let i = 1; i < reps; i++) tps += (await phase(srv.url, 1)).stream_decode_tps_mean;
      overhead.push({ cli_tps: cli, server_tps: tps / reps, req: r.outside_forward_request });
    }
  }
  srv.child.kill('SIGTERM');
  await new Promise((r) => srv.child.on('exit', r));
}
const mean = (a, k) => a.reduce((s, x) => s + x[k], 0) / a.length;
console.log(`# ${model}, ${tokens} tokens per stream, ${precision.length ? "int8" : "fast"} precision, ${rounds} rounds, ${os.cpus().length} CPUs (${os.cpus()[0].model}), ${new Date().toISOString()}`);
console.log('| streams | steady aggregate decode tok/s | one stream around it | x single | from first token to last end | incl. prefill | TTFT mean / max ms | per-stream decode tok/s |');
console.log('|---|---|---|---|---|---|---|---|');
for (const n of streams) {
  const a = results[n];
  const ratio = a.reduce((s, r) => s + r.steady_decode_tps / r.single_tps, 0) / a.length;
  console.log(`| ${n} | ${mean(a, 'steady_decode_tps').toFixed(2)} | ${mean(a, 'single_tps').toFixed(2)} | ${ratio.toFixed(2)} | ` +
              `${mean(a, 'aggregate_decode_tps').toFixed(2)} | ${mean(a, 'aggregate_tps_incl_prefill').toFixed(2)} | ` +
              `${mean(a, 'ttft_ms_mean').toFixed(0)} / ${mean(a, 'ttft_ms_max').toFixed(0)} | ${mean(a, 'stream_decode_tps_mean').toFixed(2)} |`);
}
if (overhead.length) {
  const c = overhead.reduce((s, o) => s + o.cli_tps, 0) / overhead.length, v = overhead.reduce((s, o) => s + o.server_tps, 0) / overhead.length;
  const outside = overhead.reduce((s, o) => s + o.req, 0) / overhead.length;
  console.log(`one stream, mean of ${overhead.length} rounds x ${reps}: mlxq bench ${c.toFixed(2)} tok/s, server ${v.toFixed(2)} tok/s: overhead ${((1 - v / c) * 100).toFixed(1)}%; ` +
              `request time outside forward passes ${(outside * 100).toFixed(2)}%`);
}
for (const o of overhead)
  console.log(`one stream: mlxq bench tg${tokens} ${o.cli_tps.toFixed(2)} tok/s, server ${o.server_tps.toFixed(2)} tok/s: overhead ${((1 - o.server_tps / o.cli_tps) * 100).toFixed(1)}%; ` +
              `request time outside forward passes ${(o.req * 100).toFixed(2)}%`);
