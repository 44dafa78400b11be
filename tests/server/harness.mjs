// Starts and stops `mlxq serve` for the server tests: on 127.0.0.1, a free port (--port 0; the
// server prints the one it bound), the embedded default model from the build's test cache.
// Every server a test starts is killed when the test process exits, whatever happens.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const bin = process.env.MLXQ_BIN ?? path.join(repo, 'build/mlxq');
// The default model is converted on first use into this cache (shared with the Node binding's tests).
export const cacheHome = process.env.MLXQ_TEST_XDG_CACHE ?? path.join(repo, 'build/test-cache-node');

const live = new Set();
process.on('exit', () => { for (const c of live) c.kill('SIGKILL'); });

// Resolves once the server listens: {url, port, child, log(), stop()}. `args` go after `serve`.
export async function startServer(args = [], { timeoutMs = 180000, env = {} } = {}) {
  const child = spawn(bin, ['serve', '--host', '127.0.0.1', '--port', '0', ...args], {
    env: { ...process.env, XDG_CACHE_HOME: cacheHome, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  live.add(child);
  let log = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`mlxq serve did not start in ${timeoutMs} ms:\n${log}`)), timeoutMs);
    child.stderr.on('data', (d) => {
      log += d.toString();
      const m = log.match(/on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    child.on('exit', (code, sig) => { clearTimeout(timer); reject(new Error(`mlxq serve exited (${code ?? sig}):\n${log}`)); });
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    url, port, child,
    log: () => log,
    // SIGTERM, then the exit status (a clean stop is 0; the ASan build reports leaks there).
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const [code] = await exited;
      live.delete(child);
      return code;
    },
  };
}

// GET url -> parsed JSON (or text for /metrics).
export async function get(url, headers = {}) {
  const r = await fetch(url, { headers });
  const text = await r.text();
  return { status: r.status, headers: r.headers, text, json: (() => { try { return JSON.parse(text); } catch { return null; } })() };
}

// POST a raw body -> {status, headers, json, text}.
export async function post(url, body, headers = {}) {
  const r = await fetch(url, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body),
                               headers: { 'content-type': 'application/json', ...headers } });
  const text = await r.text();
  return { status: r.status, headers: r.headers, text, json: (() => { try { return JSON.parse(text); } catch { return null; } })() };
}

// A Prometheus sample's value from /metrics text ("name" or 'name{labels}').
export function metric(text, name) {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    if (line.slice(0, at) === name) return Number(line.slice(at + 1));
  }
  return undefined;
}
