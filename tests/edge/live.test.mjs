// Watch while it encodes: real Chromium (hls.js) through the real nginx plays a 40 s upload
// while it is still `processing`, keeps playing across the switch to the finished ladder, and
// says why when the video is deleted under it.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { ensureVendor, getJson, makeClip, readEvents, request, startNginx, startReel, tempDir } from './helpers.mjs';
import { launchBrowser, openPage, playFor } from './page-helpers.mjs';

let work;
let reel;
let edge;
let browser;
let clip;

before(async () => {
  ensureVendor();
  work = tempDir('live-test');
  clip = makeClip(work, { seconds: 40, name: 'long-walk.mp4' });
  // A slower preset than the specs' default, so the ladder is still encoding while the page plays.
  reel = await startReel({ mediaDir: path.join(work, 'media'), preset: 'medium', extraArgs: ['--segment-seconds', '2'] });
  edge = await startNginx({ upstream: `127.0.0.1:${reel.port}`, mediaDir: reel.mediaDir });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await edge?.stop();
  await reel?.stop();
});

async function uploadClip(title) {
  const res = await fetch(`${edge.url}/api/v1/videos`, {
    method: 'POST',
    headers: { 'Content-Type': 'video/mp4', 'X-Title': title, 'X-Filename': path.basename(clip) },
    body: readFileSync(clip),
  });
  const text = await res.text();
  assert.equal(res.status, 202, text);
  return JSON.parse(text);
}

async function waitPlayable(video, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const current = await getJson(`${edge.url}${video.links.self}`);
    if (current.playable_at) return current;
    assert.ok(Date.now() < deadline, `never playable: ${JSON.stringify(current)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('the watch page plays a video while it encodes and goes on into the finished ladder', async () => {
  const video = await uploadClip('Long walk');
  const stream = readEvents(`${edge.url}${video.links.events}`, { timeoutMs: 180_000 });
  const { context, page, problems, failed } = await openPage(browser, { hlsJs: true });
  try {
    await page.goto(`${edge.url}/watch/${video.id}`);
    const playable = await waitPlayable(video);
    assert.equal(playable.status, 'processing');
    // nginx serves the growing playlists fresh, and the segments as immutable as ever.
    const master = await request(`${edge.url}/hls/${video.id}/master.m3u8`);
    const rung = await request(`${edge.url}/hls/${video.id}/240p/index.m3u8`);
    const segment = await request(`${edge.url}/hls/${video.id}/240p/seg_00000.m4s`);
    assert.equal(master.status, 200);
    assert.match(rung.body.toString(), /#EXT-X-PLAYLIST-TYPE:EVENT/);
    assert.equal(master.headers['cache-control'], 'no-cache');
    assert.equal(rung.headers['cache-control'], 'no-cache');
    assert.match(segment.headers['cache-control'], /immutable/);
    await playFor(page, 1.5, 60_000);
    const playedAt = performance.now();
    const { events } = await stream;
    const names = events.map((e) => e.event);
    const ready = events.find((e) => e.event === 'ready');
    assert.ok(ready, `ready came: ${names}`);
    assert.ok(names.indexOf('playable') >= 0 && names.indexOf('playable') < names.indexOf('ready'), `${names}`);
    assert.ok(playedAt < ready.at, 'playback advanced before the ready event');
    // No stall across the switch to VOD: the picture keeps moving after ready.
    const before = await page.evaluate(() => document.querySelector('#player').currentTime);
    await page.waitForFunction((t) => document.querySelector('#player').currentTime > t + 2, before, { timeout: 30_000 });
    const state = await page.evaluate(() => {
      const v = document.querySelector('#player');
      return { error: v.error && v.error.message, hidden: v.hidden };
    });
    assert.deepEqual(state, { error: null, hidden: false });
    assert.deepEqual(problems, []);
    assert.deepEqual(failed, []);
  } finally {
    await context.close();
  }
});

test('deleting a video that plays while it encodes takes its ladder down and the page says why', async () => {
  const video = await uploadClip('Short-lived');
  const { context, page, problems } = await openPage(browser, { hlsJs: true, allowFailed: /\/hls\// });
  try {
    await page.goto(`${edge.url}/watch/${video.id}`);
    await waitPlayable(video);
    await playFor(page, 0.5, 60_000);
    const res = await fetch(`${edge.url}${video.links.self}`, { method: 'DELETE' });
    assert.equal(res.status, 204);
    const master = await request(`${edge.url}/hls/${video.id}/master.m3u8`);
    assert.equal(master.status, 404);
    await page.waitForFunction(
      () => /Playback stopped/.test(document.querySelector('#stage-text').textContent)
        && !document.querySelector('#stage-message').hidden,
      null,
      { timeout: 20_000 },
    );
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
