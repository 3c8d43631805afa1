// The page as served by reel itself: started from another folder with no --static-dir, it
// serves the copy built into the binary, with the security headers of each page, the video's
// title and link preview filled in, an embed page framable as --embed-frame-ancestors says,
// and a favicon. (page.test.mjs drives the same reel build in a browser.)

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { REEL_BIN, STATIC_DIR, makeClip, request, startReel, tempDir, waitForStatus } from './helpers.mjs';

const TITLE = 'Tom & Jerry <b>"live"</b>';
let work;
let reel;
let video; // ready, titled TITLE

before(async () => {
  work = tempDir('pages-test');
  const clip = makeClip(work, { seconds: 2 });
  const elsewhere = tempDir('cwd');
  reel = await startReel({
    mediaDir: path.join(work, 'media'),
    staticDir: null,
    cwd: elsewhere,
    extraArgs: ['--embed-frame-ancestors', "'self'  https://blog.example"],
  });
  const res = await fetch(`${reel.url}/api/v1/videos`, {
    method: 'POST',
    headers: { 'Content-Type': 'video/mp4', 'X-Title': encodeURIComponent(TITLE) },
    body: fs.readFileSync(clip),
  });
  assert.equal(res.status, 202);
  video = await waitForStatus(reel.url, await res.json());
  assert.equal(video.status, 'ready');
});

after(async () => {
  await reel?.stop();
});

const csp = (res) => res.headers['content-security-policy'] || '';

test('started in another folder, reel serves its built-in page, modules, styles and icons', async () => {
  const page = await request(`${reel.url}/`);
  assert.equal(page.status, 200);
  assert.equal(page.headers['content-type'], 'text/html; charset=utf-8');
  assert.ok(page.body.equals(fs.readFileSync(path.join(STATIC_DIR, 'index.html'))), 'the page is the one in static/');
  for (const [url, type] of [
    ['/style.css', 'text/css; charset=utf-8'],
    ['/css/watch.css', 'text/css; charset=utf-8'],
    ['/js/library.js', 'text/javascript; charset=utf-8'],
    ['/js/lib/player.js', 'text/javascript; charset=utf-8'],
    ['/favicon.ico', 'image/x-icon'],
    ['/favicon.svg', 'image/svg+xml'],
  ]) {
    const res = await request(`${reel.url}${url}`);
    assert.equal(res.status, 200, url);
    assert.equal(res.headers['content-type'], type, url);
    assert.equal(res.headers['x-content-type-options'], 'nosniff', url);
    assert.equal(res.headers['cache-control'], 'no-cache', url);
    assert.ok(res.body.equals(fs.readFileSync(path.join(STATIC_DIR, url))), `${url} is the file in static/`);
    const etag = res.headers.etag;
    assert.match(etag, /^"[0-9a-f]{24}"$/, url);
    const again = await request(`${reel.url}${url}`, { headers: { 'If-None-Match': etag } });
    assert.equal(again.status, 304, `${url} revalidates`);
    assert.equal(again.body.length, 0);
  }
  const head = await request(`${reel.url}/js/library.js`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
});

test('the library and watch pages may not be framed; the embed page by the configured sites only', async () => {
  for (const url of ['/', `/watch/${video.id}`]) {
    const res = await request(`${reel.url}${url}`);
    assert.equal(res.status, 200, url);
    assert.match(csp(res), /frame-ancestors 'none'$/, url);
    assert.match(csp(res), /script-src 'self';/, url);
    assert.equal(res.headers['x-frame-options'], 'DENY', url);
    assert.equal(res.headers['referrer-policy'], 'same-origin', url);
  }
  const embed = await request(`${reel.url}/embed/${video.id}`);
  assert.equal(embed.status, 200);
  assert.match(csp(embed), /frame-ancestors 'self' https:\/\/blog\.example$/);
  assert.equal(embed.headers['x-frame-options'], undefined);
  assert.match(embed.body.toString(), /<script type="module" src="\/js\/embed\.js">/);
});

test('watch and embed pages carry the video’s title and a link preview, escaped', async () => {
  const html = (await request(`${reel.url}/watch/${video.id}`, { headers: { Host: 'videos.example' } })).body.toString();
  const escaped = 'Tom &amp; Jerry &lt;b&gt;&quot;live&quot;&lt;/b&gt;';
  assert.ok(html.includes(`<title>${escaped} · reel</title>`), html.slice(0, 600));
  assert.ok(html.includes(`<meta property="og:title" content="${escaped}">`));
  assert.ok(html.includes(`<meta property="og:url" content="http://videos.example/watch/${video.id}">`));
  assert.ok(html.includes(`<meta property="og:image" content="http://videos.example/hls/${video.id}/poster.jpg">`));
  assert.ok(!html.includes('<b>'), 'no markup from the title');
  const embed = (await request(`${reel.url}/embed/${video.id}`)).body.toString();
  assert.ok(embed.includes(`<title>${escaped} · reel</title>`));
});

test('an unknown video gets the page with a 404; unknown files are plain 404s', async () => {
  for (const url of ['/watch/01900000-0000-7000-8000-000000000000', '/watch/nope', '/embed/01900000-0000-7000-8000-000000000000']) {
    const res = await request(`${reel.url}${url}`);
    assert.equal(res.status, 404, url);
    assert.match(res.headers['content-type'], /^text\/html/, url);
    assert.match(res.body.toString(), /<title>reel<\/title>/, `${url}: the page, which says so in words`);
  }
  for (const url of ['/index.html', '/watch.html', '/embed.html', '/app.js', '/js/missing.js', '/reel.db', '/media/reel.db',
    '/js/.hidden.js', '/Cargo.toml', '/css/../index.html', '/%2e%2e/Cargo.toml']) {
    const res = await request(`${reel.url}/`, { path: url });
    assert.equal(res.status, 404, url);
    assert.doesNotMatch(res.body.toString(), /<html|\[package\]|SQLite/, url);
  }
});

test('a frame-ancestors setting that would break the policy stops start-up with a clear message', () => {
  for (const bad of ["* ; script-src 'unsafe-inline'", "'none' https://a.example", '']) {
    const result = spawnSync(REEL_BIN, ['serve', '--listen', '127.0.0.1:0', '--media-dir', tempDir('bad-flag'), '--embed-frame-ancestors', bad], {
      encoding: 'utf8', timeout: 10_000, env: { PATH: process.env.PATH },
    });
    assert.notEqual(result.status, 0, bad);
    assert.match(result.stderr, /--embed-frame-ancestors/, result.stderr);
    assert.doesNotMatch(result.stderr, /panicked/);
  }
});
