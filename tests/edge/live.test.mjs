// Watch while it encodes: real Chromium (hls.js) through the real nginx plays a 40 s upload
// from its start while it is still `processing` (opened well into the encode), keeps playing across the switch to the
// finished ladder without a stall, offers the rungs in the quality menu all along, and says
// why when the video is deleted under it or its encode fails.

import assert from 'node:assert/strict';
import fs from 'node:fs';
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

async function uploadClip(baseUrl, title) {
  const res = await fetch(`${baseUrl}/api/v1/videos`, {
    method: 'POST',
    headers: { 'Content-Type': 'video/mp4', 'X-Title': title, 'X-Filename': path.basename(clip) },
    body: fs.readFileSync(clip),
  });
  const text = await res.text();
  assert.equal(res.status, 202, text);
  return JSON.parse(text);
}

async function waitPlayable(baseUrl, video, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const current = await getJson(`${baseUrl}${video.links.self}`);
    if (current.playable_at) return current;
    assert.ok(Date.now() < deadline, `never playable: ${JSON.stringify(current)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Records in the page what the player does, in wall-clock milliseconds (Date.now(), the clock
 * the spec's own timestamps use too): the <video>'s events with its position, a sample of its
 * position every 100 ms, and hls.js's errors (the non-fatal ones too: bufferStalledError on
 * every `waiting` once playback moved) and the ends of its stalls (hlsStallResolved).
 */
function recordPlayback(context) {
  return context.addInitScript(() => {
    const log = { media: [], samples: [], hls: [] };
    window.playbackLog = log;
    const types = ['loadedmetadata', 'play', 'playing', 'waiting', 'stalled', 'seeking', 'seeked', 'pause', 'ended', 'error', 'emptied'];
    for (const type of types) {
      // Media events do not bubble, but a capturing listener on the document sees them.
      document.addEventListener(type, (e) => {
        if (e.target.id === 'player') log.media.push({ type, t: Date.now(), pos: e.target.currentTime });
      }, true);
    }
    setInterval(() => {
      const v = document.getElementById('player');
      if (v) log.samples.push({ t: Date.now(), pos: v.currentTime, paused: v.paused });
    }, 100);
    // hls.min.js assigns window.Hls: wrap attachMedia to listen to every instance's errors.
    let Hls;
    Object.defineProperty(window, 'Hls', {
      configurable: true,
      get: () => Hls,
      set(value) {
        Hls = value;
        const attach = value.prototype.attachMedia;
        value.prototype.attachMedia = function attachMedia(media) {
          this.on(value.Events.ERROR, (_event, data) => log.hls.push({ t: Date.now(), details: data.details, fatal: data.fatal }));
          this.on(value.Events.STALL_RESOLVED, () => log.hls.push({ t: Date.now(), details: 'stallResolved' }));
          return attach.call(this, media);
        };
      },
    });
  });
}

/** Stalls in `log` between `from` and `to` (ms): waits over `limit` ms, frozen positions. */
function stallsBetween(log, from, to, limit = 1000) {
  const found = [];
  for (const waiting of log.media.filter((e) => e.type === 'waiting' && e.t >= from && e.t <= to)) {
    const resumed = log.samples.find((s) => s.t > waiting.t && s.pos > waiting.pos + 0.05);
    const lasted = (resumed ? resumed.t : Infinity) - waiting.t;
    if (lasted > limit) found.push(`waiting at ${waiting.pos.toFixed(2)} s for ${lasted} ms`);
  }
  const window = log.samples.filter((s) => s.t >= from && s.t <= to);
  let moved = window[0];
  for (const sample of window) {
    if (sample.pos > moved.pos) moved = sample;
    else if (sample.t - moved.t > limit) {
      found.push(`position stuck at ${moved.pos.toFixed(2)} s from ${moved.t - from} ms for ${sample.t - moved.t} ms (paused: ${sample.paused})`);
      moved = sample;
    }
  }
  for (const stall of log.hls.filter((e) => e.t >= from && e.t <= to && e.details === 'bufferStalledError')) {
    const resolved = log.hls.find((e) => e.t >= stall.t && e.details === 'stallResolved');
    const lasted = (resolved ? resolved.t : to) - stall.t;
    if (lasted > limit) found.push(`hls.js stalled at ${stall.t - from} ms for ${lasted} ms${resolved ? '' : ' (unresolved)'}`);
  }
  return found;
}

/** The quality menu as a viewer sees it: shown or not, and its option labels. */
function qualityMenu(page) {
  return page.evaluate(() => ({
    hidden: document.querySelector('#quality').hidden,
    options: [...document.querySelectorAll('#quality-select option')].map((o) => o.textContent),
  }));
}

/** Waits until the media playlist `uri` of `video` lists `count` segments; resolves its text. */
async function waitListed(baseUrl, video, uri, count, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await request(`${baseUrl}/hls/${video.id}/${uri}`);
    const text = res.body.toString();
    if (res.status === 200 && (text.match(/^#EXTINF:/gm) || []).length >= count) return text;
    assert.ok(Date.now() < deadline, `${uri} never listed ${count} segments: ${res.status} ${text}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A wall-clock time (ms) for a readEvents `at` (node's performance.now()). */
const wallClock = (at) => performance.timeOrigin + at;

test('the watch page plays a video from its start while it encodes and on into the finished ladder without a stall', async () => {
  const video = await uploadClip(edge.url, 'Long walk');
  const stream = readEvents(`${edge.url}${video.links.events}`, { timeoutMs: 180_000 });
  const { context, page, problems, failed } = await openPage(browser, { hlsJs: true });
  await recordPlayback(context);
  try {
    // Open the page once the ladder reaches past where a player joining a live stream starts
    // (3 target durations from its end), so starting at the beginning is the page's doing.
    const playable = await waitPlayable(edge.url, video);
    assert.equal(playable.status, 'processing');
    await waitListed(edge.url, video, '240p/index.m3u8', 5);
    assert.equal((await getJson(`${edge.url}${video.links.self}`)).status, 'processing', 'opened while it encodes');
    await page.goto(`${edge.url}/watch/${video.id}`);
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
    // The quality menu lists the rungs while the ladder grows.
    const growingMenu = await qualityMenu(page);
    assert.deepEqual({ ...growingMenu, options: growingMenu.options.slice(1) }, { hidden: false, options: ['360p', '240p'] });
    assert.equal((await getJson(`${edge.url}${video.links.self}`)).status, 'processing', 'looked while it grew');

    const { events } = await stream;
    const names = events.map((e) => e.event);
    const ready = events.find((e) => e.event === 'ready');
    assert.ok(ready, `ready came: ${names}`);
    assert.ok(names.indexOf('playable') >= 0 && names.indexOf('playable') < names.indexOf('ready'), `${names}`);
    assert.ok(playedAt < ready.at, 'playback advanced before the ready event');
    // Across the switch to VOD: three more seconds of the picture moving after ready.
    const readyAt = wallClock(ready.at);
    const atReady = await page.evaluate(() => document.querySelector('#player').currentTime);
    await page.waitForFunction((t) => document.querySelector('#player').currentTime > t + 3, atReady, { timeout: 30_000 });
    const log = await page.evaluate(() => window.playbackLog);
    const firstPlaying = log.media.find((e) => e.type === 'playing');
    assert.ok(firstPlaying, JSON.stringify(log.media));
    assert.ok(firstPlaying.pos < 0.5, `playback started at the beginning, not at ${firstPlaying.pos} s`);
    const firstMoving = log.samples.find((s) => s.pos > 0);
    assert.ok(firstMoving && firstMoving.t < readyAt, 'the picture moved before ready');
    const stalls = stallsBetween(log, firstPlaying.t, Date.now());
    assert.deepEqual(stalls, [], `no stall from the first picture to after ready (ready at ${Math.round(readyAt - firstPlaying.t)} ms): ${JSON.stringify(log.media)}`);

    // After ready: the same rungs in the menu, and choosing one plays it.
    const readyMenu = await qualityMenu(page);
    assert.deepEqual({ ...readyMenu, options: readyMenu.options.slice(1) }, { hidden: false, options: ['360p', '240p'] });
    assert.match(readyMenu.options[0], /^Auto( \(\d+p\))?$/);
    await page.selectOption('#quality-select', { label: '240p' });
    await page.waitForFunction(() => document.querySelector('#quality-now').textContent === 'Playing 240p', null, { timeout: 15_000 });
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
  const video = await uploadClip(edge.url, 'Short-lived');
  const { context, page, problems } = await openPage(browser, { hlsJs: true, allowFailed: /\/hls\// });
  try {
    await page.goto(`${edge.url}/watch/${video.id}`);
    await waitPlayable(edge.url, video);
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

/** Pids of the ffmpeg processes working in `mediaDir` (their command lines name it). */
function ffmpegsOf(mediaDir) {
  const pids = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv;
    try {
      argv = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // gone meanwhile
    }
    if (/(^|\/)ffmpeg$/.test(argv[0]) && argv.some((arg) => arg.includes(mediaDir))) pids.push(Number(entry));
  }
  return pids;
}

test('a video whose encode fails while the page plays it: the player stops and the page says why', async () => {
  // Its own reel: a frozen encoder is stopped after 5 s here (the default waits 2 minutes).
  const own = await startReel({
    mediaDir: path.join(tempDir('live-fail'), 'media'),
    preset: 'medium',
    extraArgs: ['--segment-seconds', '2', '--stall-timeout-secs', '5'],
  });
  const front = await startNginx({ upstream: `127.0.0.1:${own.port}`, mediaDir: own.mediaDir });
  const { context, page, problems } = await openPage(browser, { hlsJs: true, allowFailed: /\/hls\// });
  const hlsRequests = [];
  page.on('request', (req) => { if (req.url().includes('/hls/')) hlsRequests.push(Date.now()); });
  try {
    const video = await uploadClip(front.url, 'Doomed');
    await page.goto(`${front.url}/watch/${video.id}`);
    await waitPlayable(front.url, video);
    await playFor(page, 0.5, 60_000);
    // Freeze the encoder: reel stops it after the stall timeout and fails the job.
    const frozen = ffmpegsOf(own.mediaDir);
    assert.ok(frozen.length > 0, 'the encoder runs');
    for (const pid of frozen) process.kill(pid, 'SIGSTOP');
    await page.waitForFunction(
      () => /Playback stopped/.test(document.querySelector('#stage-text').textContent),
      null,
      { timeout: 30_000 },
    );
    const stoppedAt = Date.now();
    const failedVideo = await getJson(`${front.url}${video.links.self}`);
    assert.equal(failedVideo.status, 'failed');
    assert.equal(failedVideo.error.code, 'encode_stalled');
    const shown = await page.evaluate(() => {
      const v = document.querySelector('#player');
      return {
        text: document.querySelector('#stage-text').textContent,
        message: !document.querySelector('#stage-message').hidden,
        progress: !document.querySelector('#stage-progress').hidden,
        player: !v.hidden,
        controls: !document.querySelector('#quality').hidden || !document.querySelector('#scrubber').hidden,
        // hls.js detached: no source, nothing loading (Chromium keeps a stale currentSrc).
        source: v.getAttribute('src'),
        network: v.networkState === HTMLMediaElement.NETWORK_EMPTY ? 'empty' : v.networkState,
      };
    });
    assert.deepEqual(shown, {
      text: `Playback stopped. We couldn’t process this video: ${failedVideo.error.message}`,
      message: true,
      progress: false,
      player: false,
      controls: false,
      source: null,
      network: 'empty',
    });
    // The player stays stopped: no more requests for the ladder that is gone.
    const position = await page.evaluate(() => document.querySelector('#player').currentTime);
    await page.waitForTimeout(2000);
    assert.equal(await page.evaluate(() => document.querySelector('#player').currentTime), position);
    assert.deepEqual(hlsRequests.filter((t) => t > stoppedAt), [], 'nothing asked of /hls/ after it stopped');
    assert.equal(await page.evaluate(() => document.querySelector('#stage-text').textContent), shown.text);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
    await front.stop();
    await own.stop();
  }
});
