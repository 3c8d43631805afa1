// The production nginx config in front of a real reel: static page, HLS, the
// API proxy (streamed uploads, SSE, 413, rate limit), X-Accel-Redirect
// downloads and the path allowlist. Everything goes through nginx's port.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  STATIC_DIR, ensureVendor, getJson, listFiles, makeClip, readEvents, request, startNginx, startReel,
  tempDir, upload, uploadsSeenByReel, waitForStatus,
} from './helpers.mjs';

const IMMUTABLE = 'public, max-age=31536000, immutable';

let work;
let reel;
let edge;
let smallClip;
let mediumClip;
let ready; // a video uploaded through nginx and transcoded, for the HLS and download tests

before(async () => {
  ensureVendor();
  work = tempDir('nginx-test');
  smallClip = makeClip(work, { seconds: 4 });
  mediumClip = makeClip(work, { seconds: 20 }); // long enough for several progress events on a fast machine
  reel = await startReel({ mediaDir: path.join(work, 'media') });
  edge = await startNginx({ upstream: `127.0.0.1:${reel.port}`, mediaDir: reel.mediaDir });
  ready = await waitForStatus(edge.url, await upload(edge.url, smallClip));
  assert.equal(ready.status, 'ready', `the fixture video failed: ${JSON.stringify(ready.error)}`);
});

after(async () => {
  await edge?.stop();
  await reel?.stop();
});

describe('allowlist', () => {
  test('the page and its assets are served by nginx from the static folder', async () => {
    const expected = {
      '/': 'text/html',
      '/style.css': 'text/css',
      '/css/library.css': 'text/css',
      '/js/library.js': 'text/javascript',
      '/js/lib/player.js': 'text/javascript',
      '/favicon.ico': 'image/x-icon',
      '/favicon.svg': 'image/svg+xml',
      '/vendor/hls.min.js': 'text/javascript',
    };
    for (const [url, type] of Object.entries(expected)) {
      const res = await request(`${edge.url}${url}`);
      assert.equal(res.status, 200, url);
      assert.ok(res.headers['content-type'].startsWith(type), `${url}: ${res.headers['content-type']}`);
      assert.equal(res.headers['x-content-type-options'], 'nosniff', url);
      assert.ok(res.headers['content-security-policy'], `${url} has a CSP`);
      assert.equal(res.headers.server, 'nginx', `${url}: no version in Server`);
    }
    const page = await request(`${edge.url}/`);
    assert.ok(page.body.equals(fs.readFileSync(path.join(STATIC_DIR, 'index.html'))));
  });

  test('watch and embed pages come from reel, with its framing rules; odd ids get its 404 page', async () => {
    const watch = await request(`${edge.url}/watch/${ready.id}`);
    assert.equal(watch.status, 200);
    assert.match(watch.headers['content-type'], /^text\/html/);
    assert.match(watch.headers['content-security-policy'], /frame-ancestors 'none'$/);
    assert.equal(watch.headers['x-frame-options'], 'DENY');
    // The link preview names the address the client used, port included.
    assert.ok(watch.body.toString().includes(`<meta property="og:url" content="${edge.url}/watch/${ready.id}">`));
    const embed = await request(`${edge.url}/embed/${ready.id}`);
    assert.equal(embed.status, 200);
    assert.match(embed.headers['content-security-policy'], /frame-ancestors \*$/);
    assert.equal(embed.headers['x-frame-options'], undefined);
    const unknown = await request(`${edge.url}/watch/${randomUUID()}`);
    assert.equal(unknown.status, 404);
    assert.match(unknown.body.toString(), /<script type="module" src="\/js\/watch\.js">/, 'reel’s page, which says so in words');
  });

  test('health, readiness and the API pass through to reel', async () => {
    for (const url of ['/healthz', '/readyz', '/api/v1/videos', '/api/v1/openapi.json', ready.links.self]) {
      const res = await request(`${edge.url}${url}`);
      assert.equal(res.status, 200, url);
      assert.match(res.headers['content-type'], /^application\/json/, url);
    }
  });

  test('/metrics is not public: 404 through nginx, while reel itself serves it', async () => {
    const direct = await request(`${reel.url}/metrics`);
    assert.equal(direct.status, 200);
    assert.match(direct.body.toString(), /reel_uploads_total/);
    const res = await request(`${edge.url}/metrics`);
    assert.equal(res.status, 404);
    assert.doesNotMatch(res.body.toString(), /reel_/);
  });

  test('everything else is 404, and odd paths are refused before routing', async () => {
    const id = ready.id;
    const notFound = [
      '/metrics?x=1', '/foo', '/index.htm', '/index.html', '/watch.html', '/app.js', '/static/app.js', '/vendor/',
      '/vendor/other.js', '/js/', '/js/lib/sub/x.js', '/js/Library.js', '/css/x.txt', '/favicon.png', '/watch/',
      `/watch/${id}/x`, `/embed/${id}.html`,
      '/reel.db', `/sources/${id}`, `/_sources/${id}`, '/tmp/', '/hls/', `/hls/${id}/`,
      `/hls/${id}/master.m3u8.bak`, `/hls/${id}/poster.png`, `/hls/${randomUUID()}/master.m3u8`,
      '/api/', '/api/v2/videos', '/openapi.json',
    ];
    for (const url of notFound) {
      const res = await request(`${edge.url}/`, { path: url });
      assert.equal(res.status, 404, url);
    }
    // Dot segments, double slashes and encoded dots or slashes: 400, never proxied.
    const odd = [
      `/hls/${id}/../../reel.db`, `/hls/${id}/%2e%2e/%2e%2e/reel.db`, '/metrics/../api/v1/videos',
      `/api/v1/videos/${id}/..%2f..%2f..%2fmetrics`, '//metrics', '/api/v1//videos', '/.git/config',
      `/hls/${id}/240p/../../../sources/${id}`, '/healthz/%2e%2e/metrics',
    ];
    for (const url of odd) {
      const res = await request(`${edge.url}/`, { path: url });
      assert.equal(res.status, 400, url);
      assert.doesNotMatch(res.body.toString(), /reel_uploads_total|SQLite/, url);
    }
    // A query string is not part of that check.
    const listed = await request(`${edge.url}/`, { path: '/api/v1/videos?limit=5&cursor=..%2F' });
    assert.equal(listed.status, 400, 'reel judges its own query (bad cursor)');
    assert.match(listed.body.toString(), /invalid_cursor/);
  });
});

describe('HLS', () => {
  let files; // { master, playlist, init, segment, poster } as URL paths

  before(async () => {
    const base = `/hls/${ready.id}`;
    const master = (await request(`${edge.url}${base}/master.m3u8`)).body.toString();
    const rung = master.split('\n').find((l) => l && !l.startsWith('#'));
    assert.ok(rung, `a rung in\n${master}`);
    const playlistUrl = `${base}/${rung}`;
    const playlist = (await request(`${edge.url}${playlistUrl}`)).body.toString();
    const init = /#EXT-X-MAP:URI="([^"]+)"/.exec(playlist)?.[1];
    const segment = playlist.split('\n').find((l) => l && !l.startsWith('#'));
    assert.ok(init && segment, `init and segment in\n${playlist}`);
    const dir = path.posix.dirname(playlistUrl);
    files = {
      master: `${base}/master.m3u8`,
      playlist: playlistUrl,
      init: `${dir}/${init}`,
      segment: `${dir}/${segment}`,
      poster: `${base}/poster.jpg`,
    };
  });

  test('MIME types, immutable caching and CORS on playlists, init segments, segments and the poster', async () => {
    const types = {
      master: 'application/vnd.apple.mpegurl',
      playlist: 'application/vnd.apple.mpegurl',
      init: 'video/mp4',
      segment: 'video/iso.segment',
      poster: 'image/jpeg',
    };
    for (const [kind, type] of Object.entries(types)) {
      const res = await request(`${edge.url}${files[kind]}`, { headers: { Origin: 'https://player.example' } });
      assert.equal(res.status, 200, kind);
      assert.equal(res.headers['content-type'], type, kind);
      assert.equal(res.headers['cache-control'], IMMUTABLE, kind);
      assert.equal(res.headers['access-control-allow-origin'], '*', kind);
      assert.match(res.headers['access-control-expose-headers'], /Content-Length/, kind);
      assert.match(res.headers['access-control-expose-headers'], /Content-Range/, kind);
      assert.equal(res.headers['accept-ranges'], 'bytes', kind);
      assert.equal(res.headers['access-control-allow-methods'], undefined, `${kind}: preflight-only header on a GET`);
      const onDisk = fs.readFileSync(path.join(reel.mediaDir, files[kind]));
      assert.ok(res.body.equals(onDisk), `${kind} is the published file`);
    }
  });

  test('Range on a segment: 206 with the right bytes, and a revalidation is a 304', async () => {
    const onDisk = fs.readFileSync(path.join(reel.mediaDir, files.segment));
    const res = await request(`${edge.url}${files.segment}`, { headers: { Range: 'bytes=100-1123' } });
    assert.equal(res.status, 206);
    assert.equal(res.headers['content-range'], `bytes 100-1123/${onDisk.length}`);
    assert.equal(res.headers['content-length'], '1024');
    assert.equal(res.headers['content-type'], 'video/iso.segment');
    assert.equal(res.headers['access-control-allow-origin'], '*');
    assert.ok(res.body.equals(onDisk.subarray(100, 1124)));

    const suffix = await request(`${edge.url}${files.segment}`, { headers: { Range: 'bytes=-10' } });
    assert.equal(suffix.status, 206);
    assert.ok(suffix.body.equals(onDisk.subarray(onDisk.length - 10)));

    const beyond = await request(`${edge.url}${files.segment}`, { headers: { Range: `bytes=${onDisk.length + 10}-` } });
    assert.equal(beyond.status, 416);

    const first = await request(`${edge.url}${files.segment}`, { method: 'HEAD' });
    assert.equal(first.headers['content-length'], String(onDisk.length));
    assert.ok(first.headers.etag);
    const again = await request(`${edge.url}${files.segment}`, { headers: { 'If-None-Match': first.headers.etag } });
    assert.equal(again.status, 304);
  });

  test('CORS preflight for a Range request', async () => {
    const res = await request(`${edge.url}${files.segment}`, {
      method: 'OPTIONS',
      headers: {
        Origin: 'https://player.example',
        'Access-Control-Request-Method': 'GET',
        'Access-Control-Request-Headers': 'range',
      },
    });
    assert.equal(res.status, 204);
    assert.equal(res.headers['access-control-allow-origin'], '*');
    assert.match(res.headers['access-control-allow-methods'], /\bGET\b/);
    assert.match(res.headers['access-control-allow-headers'], /\bRange\b/i);
    assert.ok(Number(res.headers['access-control-max-age']) > 0);
    assert.equal(res.headers['cache-control'], undefined, 'a preflight is not cached for a year');
  });

  test('a missing ladder is a 404 that is neither cached nor opaque to other origins', async () => {
    const res = await request(`${edge.url}/hls/${randomUUID()}/master.m3u8`);
    assert.equal(res.status, 404);
    assert.equal(res.headers['access-control-allow-origin'], '*');
    assert.notEqual(res.headers['cache-control'], IMMUTABLE);
  });
});

describe('uploads', () => {
  test('the body streams through to reel while it is being sent; nginx buffers nothing to disk', async () => {
    const bytes = fs.readFileSync(smallClip);
    const half = Math.floor(bytes.length / 2);
    const reelTmp = path.join(reel.mediaDir, 'tmp');
    const before = new Set(listFiles(reelTmp));
    const bodyTempEvents = [];
    const watcher = fs.watch(edge.bodyTemp, (type, name) => bodyTempEvents.push(`${type} ${name}`));
    const url = new URL(`${edge.url}/api/v1/videos`);
    const req = http.request({
      host: url.hostname, port: url.port, path: url.pathname, method: 'POST',
      headers: { 'Content-Type': 'video/mp4', 'Content-Length': bytes.length, 'X-Filename': 'streamed.mp4' },
    });
    const response = new Promise((resolve, reject) => {
      req.on('response', (r) => {
        const chunks = [];
        r.on('data', (c) => chunks.push(c));
        r.on('end', () => resolve({ status: r.statusCode, body: Buffer.concat(chunks).toString() }));
      });
      req.on('error', reject);
    });
    req.write(bytes.subarray(0, half));
    // Only the first half has been sent: reel must already be writing it.
    const growing = () => {
      for (const file of listFiles(reelTmp)) {
        if (before.has(file)) continue;
        try {
          if (fs.statSync(file).size > 0) return file;
        } catch { /* renamed meanwhile */ }
      }
      return null;
    };
    let partial = null;
    const deadline = Date.now() + 10_000;
    while (!(partial = growing()) && Date.now() < deadline) await sleep(25);
    let partialSize = 0;
    try { partialSize = partial ? fs.statSync(partial).size : 0; } catch { /* renamed meanwhile */ }
    req.end(bytes.subarray(half));
    const res = await response;
    watcher.close();
    assert.ok(partial, 'reel received part of the body while the client was still sending it');
    assert.ok(partialSize <= half, `reel had ${partialSize} of ${half} bytes sent so far`);
    assert.equal(res.status, 202, res.body);
    const video = JSON.parse(res.body);
    assert.equal(video.filename, 'streamed.mp4');
    assert.deepEqual(bodyTempEvents, [], 'nothing was created in client_body_temp_path');
    assert.deepEqual(fs.readdirSync(edge.bodyTemp), []);
    assert.doesNotMatch(fs.readFileSync(edge.errorLog, 'utf8'), /buffered to a temporary file/);
    const stored = path.join(reel.mediaDir, 'sources', video.id);
    assert.ok(fs.readFileSync(stored).equals(bytes), 'reel stored the bytes sent');
    await waitForStatus(edge.url, video);
  });

  test('an upload over client_max_body_size is refused by nginx with 413 before reel sees it', async () => {
    const seenBefore = await uploadsSeenByReel(reel.url);
    const listBefore = (await getJson(`${edge.url}/api/v1/videos?limit=100`)).items.length;
    const declared = 50 * 1024 * 1024 + 1; // reel and nginx both take 50 MiB
    const url = new URL(`${edge.url}/api/v1/videos`);
    const res = await new Promise((resolve, reject) => {
      const req = http.request({
        host: url.hostname, port: url.port, path: url.pathname, method: 'POST',
        headers: { 'Content-Type': 'video/mp4', 'Content-Length': declared },
      }, (r) => {
        const chunks = [];
        r.on('data', (c) => chunks.push(c));
        r.on('end', () => {
          resolve({ status: r.statusCode, headers: r.headers, body: Buffer.concat(chunks).toString() });
          req.destroy();
        });
      });
      req.on('error', (err) => (err.code === 'ECONNRESET' || err.code === 'EPIPE' ? null : reject(err)));
      req.write(fs.readFileSync(smallClip).subarray(0, 64 * 1024));
    });
    assert.equal(res.status, 413);
    assert.match(res.headers['content-type'], /^application\/json/);
    assert.equal(JSON.parse(res.body).error.code, 'payload_too_large');
    assert.match(fs.readFileSync(edge.errorLog, 'utf8'), /client intended to send too large body/);
    assert.equal(await uploadsSeenByReel(reel.url), seenBefore, 'reel counted no upload attempt');
    const listAfter = (await getJson(`${edge.url}/api/v1/videos?limit=100`)).items.length;
    assert.equal(listAfter, listBefore, 'no new video');
    assert.deepEqual(fs.readdirSync(edge.bodyTemp), []);
  });

  test('an upload just under the limit goes through whole, and DELETE through nginx removes it', async () => {
    // A real clip padded with zeros to 1 KiB under the 50 MiB both sides allow.
    const clip = fs.readFileSync(smallClip);
    const body = Buffer.concat([clip, Buffer.alloc(50 * 1024 * 1024 - 1024 - clip.length)]);
    const res = await request(`${edge.url}/api/v1/videos`, {
      method: 'POST', headers: { 'Content-Type': 'video/mp4', 'X-Filename': 'padded.mp4' }, body,
    });
    assert.equal(res.status, 202, res.body.toString());
    const video = JSON.parse(res.body);
    assert.equal(fs.statSync(path.join(reel.mediaDir, 'sources', video.id)).size, body.length);
    assert.deepEqual(fs.readdirSync(edge.bodyTemp), []);
    const deleted = await request(`${edge.url}${video.links.self}`, { method: 'DELETE' });
    assert.equal(deleted.status, 204);
    assert.equal((await request(`${edge.url}${video.links.self}`)).status, 404);
  });
});

describe('Server-Sent Events', () => {
  test('progress events arrive one by one while the job runs, through nginx', async (t) => {
    const video = await upload(edge.url, mediumClip);
    const stream = await readEvents(`${edge.url}${video.links.events}`, { timeoutMs: 90_000 });
    assert.equal(stream.status, 200);
    assert.match(stream.headers['content-type'], /^text\/event-stream/);
    assert.equal(stream.headers['content-length'], undefined);
    assert.ok([undefined, 'identity'].includes(stream.headers['content-encoding']),
      `not compressed (gzip would hold events back): ${stream.headers['content-encoding']}`);
    assert.equal(stream.headers['x-accel-buffering'], undefined, 'nginx consumes X-Accel-* headers');
    const names = stream.events.map((e) => e.event);
    assert.equal(names[0], 'snapshot', names.join(','));
    assert.equal(names.at(-1), 'ready', names.join(','));
    const progress = stream.events.filter((e) => e.event === 'progress');
    assert.ok(progress.length >= 2, `at least two progress events: ${names.join(',')}`);
    const arrivals = progress.map((e) => e.at);
    const spread = Math.max(...arrivals) - Math.min(...arrivals);
    assert.ok(spread >= 300, `progress events spread over ${spread.toFixed(0)} ms, not one burst`);
    const distinct = new Set(arrivals.map((t) => Math.round(t / 100)));
    assert.ok(distinct.size >= 2, 'progress events arrived at different times');
    const end = stream.events.at(-1).at;
    assert.ok(end - Math.min(...arrivals) >= 300, 'the first progress event came well before the end');
    for (const e of stream.events) assert.ok(e.id, `every event has an id (${e.event})`);
    const t0 = stream.events[0].at;
    t.diagnostic(`events (ms after the snapshot): ${stream.events.map((e) => `${e.event}@${Math.round(e.at - t0)}`).join(' ')}`);
  });
});

describe('source download via X-Accel-Redirect', () => {
  test('nginx sends the original, byte for byte, with reel’s headers', async () => {
    const original = fs.readFileSync(smallClip);
    const direct = await request(`${reel.url}${ready.links.source}`);
    assert.equal(direct.status, 200);
    assert.equal(direct.headers['x-accel-redirect'], `/_sources/${ready.id}`, 'reel delegates the bytes');
    assert.equal(direct.body.length, 0);

    const res = await request(`${edge.url}${ready.links.source}`);
    assert.equal(res.status, 200);
    assert.ok(res.body.equals(original), 'byte-identical to the upload');
    assert.equal(res.headers['content-type'], 'video/mp4', 'the type sniffed from the stored bytes');
    assert.equal(res.headers['content-disposition'], 'attachment; filename="clip-4s.mp4"; filename*=UTF-8\'\'clip-4s.mp4');
    assert.equal(res.headers['content-length'], String(original.length));
    assert.equal(res.headers['accept-ranges'], 'bytes');
    assert.equal(res.headers['x-accel-redirect'], undefined);
  });

  test('Range on the download is a 206, and /_sources/ itself is internal', async () => {
    const original = fs.readFileSync(smallClip);
    const res = await request(`${edge.url}${ready.links.source}`, { headers: { Range: 'bytes=1000-1999' } });
    assert.equal(res.status, 206);
    assert.equal(res.headers['content-range'], `bytes 1000-1999/${original.length}`);
    assert.ok(res.body.equals(original.subarray(1000, 2000)));
    assert.match(res.headers['content-disposition'], /^attachment/);

    // RFC 9110: several ranges or an unknown unit give the whole file, never the first range.
    for (const range of ['bytes=0-9,100-199', 'items=0-9']) {
      const whole = await request(`${edge.url}${ready.links.source}`, { headers: { Range: range } });
      assert.equal(whole.status, 200, range);
      assert.ok(whole.body.equals(original), range);
    }
    const past = await request(`${edge.url}${ready.links.source}`, { headers: { Range: `bytes=${original.length}-` } });
    assert.equal(past.status, 416);
    assert.equal(past.headers['content-range'], `bytes */${original.length}`);

    const head = await request(`${edge.url}${ready.links.source}`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(original.length));

    const internal = await request(`${edge.url}/_sources/${ready.id}`);
    assert.equal(internal.status, 404);
    const unknown = await request(`${edge.url}/api/v1/videos/${randomUUID()}/source`);
    assert.equal(unknown.status, 404);
  });
});

describe('media volume permissions', () => {
  // The edge image runs nginx's workers with reel's uid, so this holds there either way. A
  // host install where nginx runs as its own user (www-data) needs the files world- or
  // group-readable: reel writes the originals 0644 for that.
  test('what nginx serves is readable by a user other than reel', () => {
    const unreadable = [];
    for (const dir of ['hls', 'sources']) {
      for (const file of listFiles(path.join(reel.mediaDir, dir))) {
        if (!(fs.statSync(file).mode & 0o004)) unreadable.push(path.relative(reel.mediaDir, file));
      }
    }
    assert.deepEqual(unreadable, []);
  });
});

describe('upload rate limit', () => {
  let strict;
  before(async () => {
    strict = await startNginx({
      upstream: `127.0.0.1:${reel.port}`, mediaDir: reel.mediaDir,
      vars: { NGINX_UPLOAD_RATE: '1r/m', NGINX_UPLOAD_BURST: '1' },
    });
  });
  after(async () => {
    await strict?.stop();
  });

  test('POST /api/v1/videos past the burst gets 429 from nginx; reading the list is never limited', async () => {
    const statuses = [];
    let limited;
    for (let i = 0; i < 4; i++) {
      // Not a video, so reel answers 415 at once and stores nothing.
      const res = await request(`${strict.url}/api/v1/videos`, {
        method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: 'not a video',
      });
      statuses.push(res.status);
      if (res.status === 429) limited = res;
    }
    assert.deepEqual(statuses, [415, 415, 429, 429]);
    assert.equal(JSON.parse(limited.body).error.code, 'rate_limited');
    assert.ok(Number(limited.headers['retry-after']) > 0);
    for (let i = 0; i < 5; i++) {
      const res = await request(`${strict.url}/api/v1/videos`);
      assert.equal(res.status, 200);
    }
  });
});
