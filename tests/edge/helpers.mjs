// Shared set-up for the edge tests: a real reel, a real nginx rendered from
// nginx/reel.conf.template, test clips made by ffmpeg, and small HTTP helpers.
// Nothing is mocked; every process started here is killed by stop() (the
// tests call it from after() hooks) and, as a last resort, on process exit.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const REEL_BIN = process.env.REEL_BIN || path.join(REPO, 'target', 'debug', 'reel');
// Debian puts nginx in /usr/sbin, which a non-root PATH may lack.
export const NGINX_BIN = process.env.NGINX_BIN || (fs.existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx');
export const STATIC_DIR = path.join(REPO, 'static');
export const NGINX_DIR = path.join(REPO, 'nginx');
/** The playback secret of the edge specs' reel and nginx (signs private videos' links). */
export const PLAYBACK_SECRET = 'edge-specs-playback-secret-0123456789';
export const ARTIFACTS_DIR = process.env.REEL_ARTIFACTS_DIR || path.join(REPO, 'target', 'test-artifacts');

// ---------- processes ----------

const running = new Set();
const tempDirs = [];

// Last resort if a test crashes before its after() hook: end whatever is left. Then remove
// the temp folders, unless something failed (their logs tell why) or REEL_KEEP_TEMP is set.
process.on('exit', (code) => {
  for (const child of running) killGroup(child, 'SIGKILL');
  if (code || process.exitCode || process.env.REEL_KEEP_TEMP) {
    if (tempDirs.length) process.stderr.write(`edge test folders kept: ${tempDirs.join(' ')}\n`);
    return;
  }
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal); // the child leads its own process group (detached)
  } catch {
    try { child.kill(signal); } catch { /* already gone */ }
  }
}

function track(child) {
  running.add(child);
  child.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    });
  });
  return child;
}

/** Ends a child (and its process group): `signal` first, SIGKILL after `graceMs`. */
export async function stopProcess(child, signal = 'SIGTERM', graceMs = 5000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  killGroup(child, signal);
  // An unref'd timer: a child that exits at once must not keep the test process alive.
  const done = await Promise.race([child.exited, sleep(graceMs, null, { ref: false })]);
  if (!done) {
    killGroup(child, 'SIGKILL');
    await child.exited;
  }
}

function tail(file, lines = 40) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

// ---------- files and ports ----------

export function tempDir(label) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `reel-edge-${label}-`));
  tempDirs.push(dir);
  return dir;
}

export function freePort(host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Copies hls.js and tus-js-client into static/vendor/ the way the install step does, when missing or stale. */
export function ensureVendor() {
  let hls;
  for (const [pkg, file] of [['hls.js', 'hls.min.js'], ['tus-js-client', 'tus.min.js']]) {
    const from = path.join(REPO, 'node_modules', pkg, 'dist', file);
    const to = path.join(STATIC_DIR, 'vendor', file);
    hls ??= to;
    if (!fs.existsSync(from)) throw new Error(`${from} is missing: run \`npm ci\` first`);
    const wanted = fs.readFileSync(from);
    if (fs.existsSync(to) && fs.readFileSync(to).equals(wanted)) continue;
    fs.mkdirSync(path.dirname(to), { recursive: true });
    fs.writeFileSync(to, wanted);
  }
  return hls;
}

/**
 * A small H.264/AAC MP4 made by ffmpeg's test sources; 640x360 gives two rungs (240p, 360p),
 * and so does a portrait 360x640.
 */
export function makeClip(dir, { seconds = 4, size = '640x360', name = `clip-${seconds}s.mp4` } = {}) {
  const out = path.join(dir, name);
  const result = spawnSync('ffmpeg', [
    '-v', 'error', '-nostdin', '-y',
    '-f', 'lavfi', '-i', `testsrc2=size=${size}:rate=30:duration=${seconds}`,
    '-f', 'lavfi', '-i', `sine=frequency=440:duration=${seconds}`,
    '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p',
    '-c:a', 'aac', '-shortest', '-movflags', '+faststart', out,
  ], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ffmpeg failed: ${result.stderr || result.error}`);
  return out;
}

/** Every regular file below `dir`, recursively. */
export function listFiles(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(full));
    else out.push(full);
  }
  return out;
}

// ---------- reel ----------

/**
 * Starts `reel serve` on a free port with its own media dir; resolves once /healthz answers.
 * `staticDir: null` serves the page built into the binary; `cwd` is where reel starts;
 * `accelRedirect: false` for a reel with no nginx in front.
 * Returns { url, port, host, mediaDir, log, child, stop() }.
 */
/** A fresh database on the PostgreSQL cluster at `adminUrl` (scripts/pg-cluster); its URL. */
export function createDatabase(adminUrl, name) {
  const result = spawnSync('psql', [adminUrl, '-qc', `CREATE DATABASE ${name}`], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`CREATE DATABASE: ${result.stderr}`);
  return `${adminUrl.slice(0, adminUrl.lastIndexOf('/'))}/${name}`;
}

export async function startReel({
  mediaDir = tempDir('media'),
  host = '127.0.0.1',
  port,
  maxUpload = '50MiB',
  staticDir = STATIC_DIR,
  cwd,
  accelRedirect = true,
  role = 'serve',
  encoders = 1,
  preset = 'ultrafast',
  extraArgs = [],
} = {}) {
  if (!fs.existsSync(REEL_BIN)) throw new Error(`${REEL_BIN} is missing: run \`cargo build\` (or set REEL_BIN)`);
  port ??= await freePort(host);
  const log = path.join(path.dirname(mediaDir), `${path.basename(mediaDir)}-reel.log`);
  const fd = fs.openSync(log, 'a');
  const serving = role === 'serve';
  const args = [
    role,
    '--listen', `${host}:${port}`,
    '--media-dir', mediaDir,
    ...(staticDir && serving ? ['--static-dir', staticDir] : []),
    '--max-upload-bytes', maxUpload,
    '--min-free-bytes', '0',
    ...(accelRedirect && serving ? ['--accel-redirect'] : []),
    '--x264-preset', preset,
    '--encoders', String(encoders),
    ...(serving ? ['--playback-secret', PLAYBACK_SECRET] : []),
    ...extraArgs,
  ];
  const env = { ...process.env, NO_COLOR: '1', RUST_LOG: process.env.RUST_LOG || 'info,sqlx=warn' };
  for (const key of Object.keys(env)) if (key.startsWith('REEL_') && key !== 'REEL_BIN') delete env[key];
  const child = track(spawn(REEL_BIN, args, { stdio: ['ignore', fd, fd], detached: true, env, cwd }));
  fs.closeSync(fd);
  const url = `http://${host}:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`reel exited with ${child.exitCode}:\n${tail(log)}`);
    try {
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      await stopProcess(child);
      throw new Error(`reel did not become healthy within 20 s:\n${tail(log)}`);
    }
    await sleep(100);
  }
  return { url, port, host, mediaDir, log, child, stop: () => stopProcess(child, 'SIGTERM', 8000) };
}

// ---------- nginx ----------

/** Renders nginx/reel.conf.template with nginx/render; throws with render's message on failure. */
export function renderTemplate(vars, outFile) {
  const args = outFile ? [outFile] : [];
  const env = { PATH: process.env.PATH, ...vars };
  // A different template (e.g. a deliberately broken copy, to see a test catch it).
  if (process.env.REEL_NGINX_TEMPLATE) env.REEL_NGINX_TEMPLATE = process.env.REEL_NGINX_TEMPLATE;
  const result = spawnSync(path.join(NGINX_DIR, 'render'), args, { env, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`nginx/render failed: ${result.stderr || result.error}`);
  return outFile ? fs.readFileSync(outFile, 'utf8') : result.stdout;
}

/**
 * Lays out a prefix (conf/, logs/, temp/) with nginx/nginx.conf and the rendered template.
 * `vars` override the test defaults below.
 */
export function preparePrefix(vars = {}, extraConf = '') {
  const prefix = tempDir('nginx');
  for (const dir of ['conf', 'logs', 'temp']) fs.mkdirSync(path.join(prefix, dir));
  fs.copyFileSync(path.join(NGINX_DIR, 'nginx.conf'), path.join(prefix, 'conf', 'nginx.conf'));
  const all = {
    NGINX_RESOLVER: '127.0.0.1 valid=10s', // never asked: the test upstreams are IP literals
    REEL_STATIC_DIR: STATIC_DIR,
    REEL_MAX_UPLOAD_BYTES: '50m',
    REEL_PLAYBACK_SECRET: PLAYBACK_SECRET,
    NGINX_UPLOAD_RATE: '30r/m',
    NGINX_UPLOAD_BURST: '10',
    ...vars,
  };
  renderTemplate(all, path.join(prefix, 'conf', 'reel.conf'));
  // http-level additions, e.g. an `upstream` block that REEL_UPSTREAM names.
  if (extraConf) fs.appendFileSync(path.join(prefix, 'conf', 'reel.conf'), `\n${extraConf}\n`);
  return {
    prefix,
    conf: path.join(prefix, 'conf', 'nginx.conf'),
    errorLog: path.join(prefix, 'logs', 'error.log'),
    accessLog: path.join(prefix, 'logs', 'access.log'),
    bodyTemp: path.join(prefix, 'temp', 'client_body'),
    vars: all,
  };
}

/**
 * Global directives for -g. As root, nginx would run its workers as `nobody`, which cannot
 * enter the tests' private (0700) temp dirs; the deployment runs them as reel's own user,
 * so run them as the user that owns the media dir here too.
 */
function globalDirectives() {
  const extra = process.getuid && process.getuid() === 0 ? ' user root root;' : '';
  return `daemon off;${extra}`;
}

/** `nginx -t` on a prefix made by preparePrefix(); returns { ok, output }. */
export function nginxConfigTest(layout) {
  const result = spawnSync(NGINX_BIN, [
    '-t', '-p', layout.prefix, '-c', layout.conf, '-e', layout.errorLog, '-g', globalDirectives(),
  ], { encoding: 'utf8' });
  return { ok: result.status === 0, output: `${result.stdout}${result.stderr}` };
}

/**
 * Starts nginx in the foreground on a free port in front of `upstream` (host:port); with
 * `tls: { cert, key }` it listens with TLS (docs/tls.md's edge) and `url` is https.
 * Returns { url, port, prefix, errorLog, bodyTemp, child, stop() }.
 */
export async function startNginx({ upstream, mediaDir, vars = {}, extraConf = '', tls }) {
  const port = await freePort();
  const tlsConf = tls ? `ssl_certificate ${tls.cert};\nssl_certificate_key ${tls.key};\nssl_protocols TLSv1.2 TLSv1.3;` : '';
  const layout = preparePrefix({
    NGINX_LISTEN: tls ? `127.0.0.1:${port} ssl` : `127.0.0.1:${port}`,
    REEL_UPSTREAM: upstream,
    REEL_MEDIA_DIR: mediaDir,
    ...vars,
  }, [extraConf, tlsConf].filter(Boolean).join('\n'));
  const out = fs.openSync(path.join(layout.prefix, 'logs', 'stderr.log'), 'a');
  const child = track(spawn(NGINX_BIN, [
    '-p', layout.prefix, '-c', layout.conf, '-e', layout.errorLog, '-g', globalDirectives(),
  ], { stdio: ['ignore', out, out], detached: true }));
  fs.closeSync(out);
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`nginx exited with ${child.exitCode}:\n${tail(layout.errorLog)}\n${tail(path.join(layout.prefix, 'logs', 'stderr.log'))}`);
    }
    try {
      if (tls) {
        // Listening is enough: the test's own client checks the certificate.
        await new Promise((resolve, reject) => {
          const socket = net.connect(port, '127.0.0.1', () => { socket.end(); resolve(); });
          socket.on('error', reject);
        });
        break;
      }
      const res = await fetch(`${url}/style.css`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      await stopProcess(child);
      throw new Error(`nginx did not answer within 10 s:\n${tail(layout.errorLog)}`);
    }
    await sleep(50);
  }
  return { ...layout, url, port, child, stop: () => stopProcess(child, 'SIGTERM', 5000) };
}

// ---------- HTTP ----------

/**
 * A plain HTTP/1.1 request with node:http (no path normalisation, any header allowed).
 * Resolves { status, headers, body: Buffer }.
 */
export function request(url, { method = 'GET', headers = {}, body, path: rawPath, timeout = 30_000 } = {}) {
  const target = new URL(url);
  if (body && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-length')) {
    // node:http only adds it by itself for methods that usually carry a body.
    headers = { ...headers, 'Content-Length': Buffer.byteLength(body) };
  }
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: target.hostname,
      port: target.port,
      method,
      path: rawPath ?? `${target.pathname}${target.search}`,
      headers,
      timeout,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${method} ${url}`)));
    req.on('error', reject);
    if (body) req.end(body);
    else req.end();
  });
}

export async function getJson(url) {
  const res = await fetch(url, { headers: { Accept: 'application/json' } });
  if (!res.ok) throw new Error(`GET ${url}: ${res.status} ${await res.text()}`);
  return res.json();
}

/** Uploads `file` as a raw body; resolves the 202 JSON (throws otherwise). */
export async function upload(baseUrl, file, { filename = path.basename(file), type = 'video/mp4' } = {}) {
  const res = await fetch(`${baseUrl}/api/v1/videos`, {
    method: 'POST',
    headers: { 'Content-Type': type, 'X-Filename': filename, Accept: 'application/json' },
    body: fs.readFileSync(file),
  });
  const text = await res.text();
  if (res.status !== 202) throw new Error(`upload: ${res.status} ${text}`);
  return JSON.parse(text);
}

/** Polls the video until it is terminal; resolves the resource. */
export async function waitForStatus(baseUrl, video, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const current = await getJson(`${baseUrl}${video.links.self}`);
    if (['ready', 'failed', 'canceled'].includes(current.status)) return current;
    if (Date.now() > deadline) throw new Error(`video ${video.id} still ${current.status} after ${timeoutMs} ms`);
    await sleep(200);
  }
}

/**
 * Reads a Server-Sent Events stream until it ends (or `timeoutMs`), stamping each event
 * with its arrival time. Resolves { status, headers, events: [{ event, id, data, at }] }.
 */
export function readEvents(url, { timeoutMs = 60_000, headers = {} } = {}) {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const events = [];
    let buffer = '';
    let current = {};
    const req = http.get({
      host: target.hostname, port: target.port, path: `${target.pathname}${target.search}`,
      // A browser offers compression; an SSE stream must not take it (gzip buffers).
      headers: { Accept: 'text/event-stream', 'Accept-Encoding': 'gzip, deflate, br', ...headers },
    }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        const at = performance.now();
        buffer += chunk;
        let newline;
        while ((newline = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, newline).replace(/\r$/, '');
          buffer = buffer.slice(newline + 1);
          if (line === '') {
            if (current.event || current.data) events.push({ ...current, at });
            current = {};
          } else if (line.startsWith(':')) {
            // comment (keep-alive)
          } else {
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'data') current.data = current.data ? `${current.data}\n${value}` : value;
            else if (field === 'event' || field === 'id') current[field] = value;
          }
        }
      });
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode, headers: res.headers, events });
      });
      res.on('error', reject);
    });
    const timer = setTimeout(() => req.destroy(new Error(`SSE stream ${url} did not end within ${timeoutMs} ms; got ${events.map((e) => e.event).join(',')}`)), timeoutMs);
    req.on('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

/** Sum of `reel_uploads_total` over all outcomes, read from reel directly (not through nginx). */
export async function uploadsSeenByReel(reelUrl) {
  const text = await (await fetch(`${reelUrl}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    const match = /^reel_uploads_total(?:\{[^}]*\})?\s+([0-9.e+]+)$/.exec(line.trim());
    if (match) total += Number(match[1]);
  }
  return total;
}
