// The web page in a real headless Chromium, served by nginx in front of a
// real reel: choose a clip, upload it, watch it transcode, play it.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

import { ARTIFACTS_DIR, ensureVendor, makeClip, startNginx, startReel, tempDir } from './helpers.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

let work;
let reel;
let edge;
let browser;
let clip;

before(async () => {
  ensureVendor();
  work = tempDir('browser-test');
  clip = makeClip(work, { seconds: 4, name: 'beach-day.mp4' });
  reel = await startReel({ mediaDir: path.join(work, 'media') });
  edge = await startNginx({ upstream: `127.0.0.1:${reel.port}`, mediaDir: reel.mediaDir });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic',
    ],
    timeout: 30_000,
  });
});

after(async () => {
  await browser?.close().catch(() => {});
  await edge?.stop();
  await reel?.stop();
});

test('upload, live progress and playback through nginx', { timeout: 120_000 }, async (t) => {
  const context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy|Refused to/i.test(msg.text())) problems.push(`console: ${msg.text()}`);
  });
  const failed = [];
  page.on('response', (res) => {
    if (res.status() >= 400 && !res.url().endsWith('/favicon.ico')) failed.push(`${res.status()} ${res.url()}`);
  });

  await page.goto(`${edge.url}/`, { waitUntil: 'load' });
  assert.equal(await page.evaluate(() => typeof window.Hls), 'function', 'hls.js loaded from /vendor/hls.min.js');

  const support = await page.evaluate(() => ({
    mse: typeof MediaSource !== 'undefined',
    h264High: typeof MediaSource !== 'undefined' && MediaSource.isTypeSupported('video/mp4; codecs="avc1.64001e"'),
    h264Baseline: typeof MediaSource !== 'undefined' && MediaSource.isTypeSupported('video/mp4; codecs="avc1.42c01e,mp4a.40.2"'),
    aac: typeof MediaSource !== 'undefined' && MediaSource.isTypeSupported('audio/mp4; codecs="mp4a.40.2"'),
    nativeHls: document.createElement('video').canPlayType('application/vnd.apple.mpegurl'),
    userAgent: navigator.userAgent,
  }));
  t.diagnostic(`browser: ${support.userAgent}`);
  t.diagnostic(`MSE H.264 High ${support.h264High}, H.264 Baseline+AAC ${support.h264Baseline}, AAC ${support.aac}, native HLS "${support.nativeHls}"`);

  await page.setInputFiles('#file-input', clip);
  await page.fill('#title-input', 'Beach day');
  await page.click('#upload-button');

  // The transcode bar moves before the end: sample it while the job runs.
  const seenProgress = new Set();
  const sampler = setInterval(() => {
    page.evaluate(() => document.querySelector('#transcode-progress').value).then((v) => seenProgress.add(v), () => {});
  }, 50);
  try {
    await page.waitForSelector('body[data-state=ready]', { timeout: 60_000 });
  } catch (err) {
    const state = await page.evaluate(() => ({
      state: document.body.dataset.state, error: document.querySelector('#error').textContent,
    }));
    throw new Error(`page never became ready: ${JSON.stringify(state)}; failed requests: ${failed.join(', ')}`, { cause: err });
  } finally {
    clearInterval(sampler);
  }
  t.diagnostic(`transcode bar values seen: ${[...seenProgress].map((v) => Math.round(v)).sort((a, b) => a - b).join(', ')}`);

  assert.equal(await page.$eval('#transcode-progress', (el) => el.value), 100);
  assert.equal(await page.$eval('#upload-progress', (el) => el.value), 100);
  assert.equal(await page.$eval('#player-heading', (el) => el.textContent), 'Beach day');
  const renditions = await page.$$eval('.rendition', (els) => els.map((el) => el.dataset.name));
  assert.ok(renditions.length >= 2, `at least two renditions listed: ${renditions}`);
  t.diagnostic(`renditions: ${renditions.join(', ')}`);

  // Muted, so autoplay rules do not stand in the way.
  const played = await page.evaluate(() => {
    const v = document.querySelector('#player');
    v.muted = true;
    return v.play().then(() => 'playing', (err) => `play() rejected: ${err.name}: ${err.message}`);
  });
  let playback;
  try {
    await page.waitForFunction(() => document.querySelector('#player').currentTime > 0.5, null, { timeout: 15_000 });
  } catch {
    playback = await page.evaluate(() => {
      const v = document.querySelector('#player');
      return { currentTime: v.currentTime, readyState: v.readyState, error: v.error && v.error.message,
        message: document.querySelector('#player-message').textContent };
    });
  }
  const mode = await page.evaluate(() => (window.Hls && document.querySelector('#player').src.startsWith('blob:') ? 'hls.js' : 'native'));
  t.diagnostic(`player: ${mode}, play(): ${played}`);

  fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
  // Let a frame render so the screenshot shows the video, not a black box.
  await page.waitForTimeout(300);
  const shot = path.join(ARTIFACTS_DIR, 'browser.png');
  await page.screenshot({ path: shot, fullPage: true });
  t.diagnostic(`screenshot: ${shot}`);

  assert.equal(played, 'playing');
  assert.equal(playback, undefined,
    `the video did not play: ${JSON.stringify(playback)} (MSE H.264 support: ${support.h264Baseline})`);

  // The list shows the video as ready, with its download link going through X-Accel-Redirect.
  const row = page.locator('.video-row').first();
  await row.locator('.badge.status-ready').waitFor({ timeout: 5_000 });
  const href = await row.locator('a', { hasText: 'Download original' }).getAttribute('href');
  const download = await page.evaluate(async (url) => {
    const res = await fetch(url);
    return { status: res.status, size: (await res.arrayBuffer()).byteLength, disposition: res.headers.get('content-disposition') };
  }, href);
  assert.equal(download.status, 200);
  assert.equal(download.size, fs.statSync(clip).size);
  assert.match(download.disposition, /filename="beach-day\.mp4"/);

  assert.deepEqual(problems, [], 'no script errors or CSP violations');
  assert.deepEqual(failed, [], 'no failed requests');
  await context.close();
});

test('the same ladder plays through hls.js, as in browsers without native HLS', { timeout: 60_000 }, async (t) => {
  const context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
  // Chromium now plays HLS natively, so the page would never load hls.js; hide that.
  await context.addInitScript(() => {
    const canPlayType = HTMLMediaElement.prototype.canPlayType;
    HTMLMediaElement.prototype.canPlayType = function (type) {
      return /mpegurl/i.test(type) ? '' : canPlayType.call(this, type);
    };
  });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy|Refused to/i.test(msg.text())) problems.push(`console: ${msg.text()}`);
  });
  const segments = [];
  page.on('response', (res) => {
    if (/\.m4s$/.test(res.url())) segments.push(`${res.status()} ${res.headers()['content-type']}`);
  });

  await page.goto(`${edge.url}/`, { waitUntil: 'load' });
  // The video from the first test is in the list.
  await page.locator('.video-row .button.primary', { hasText: 'Play' }).first().click();
  await page.waitForSelector('.rendition');
  const played = await page.evaluate(() => {
    const v = document.querySelector('#player');
    v.muted = true;
    return v.play().then(() => 'playing', (err) => `play() rejected: ${err.name}: ${err.message}`);
  });
  assert.equal(played, 'playing');
  await page.waitForFunction(() => document.querySelector('#player').currentTime > 0.5, null, { timeout: 15_000 });
  const src = await page.$eval('#player', (v) => v.src);
  assert.match(src, /^blob:/, 'played through MediaSource (hls.js)');
  assert.ok(segments.length >= 1, 'hls.js fetched segments');
  assert.ok(segments.every((s) => s === '200 video/iso.segment'), segments.join(', '));

  // Picking a rung pins hls.js to it.
  await page.locator('.rendition', { hasText: '240p' }).click();
  assert.equal(await page.locator('.rendition', { hasText: '240p' }).getAttribute('aria-pressed'), 'true');
  t.diagnostic(`hls.js fetched ${segments.length} segment(s)`);
  assert.deepEqual(problems, [], 'no script errors or CSP violations (hls.js uses a blob: worker)');
  await context.close();
});

test('the page served by reel alone, under reel\'s own CSP, plays through hls.js', { timeout: 60_000 }, async (t) => {
  const context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
  await context.addInitScript(() => {
    const canPlayType = HTMLMediaElement.prototype.canPlayType;
    HTMLMediaElement.prototype.canPlayType = function (type) {
      return /mpegurl/i.test(type) ? '' : canPlayType.call(this, type);
    };
  });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy|Refused to/i.test(msg.text())) problems.push(`console: ${msg.text()}`);
  });

  const response = await page.goto(`${reel.url}/`, { waitUntil: 'load' });
  const csp = response.headers()['content-security-policy'] || '';
  assert.match(csp, /frame-ancestors 'self'/, `reel's page CSP: ${csp}`);
  assert.match(csp, /script-src 'self'/);
  assert.equal(response.headers()['x-content-type-options'], 'nosniff');
  assert.equal(await page.evaluate(() => typeof window.Hls), 'function', 'hls.js loaded under the CSP');

  await page.locator('.video-row .button.primary', { hasText: 'Play' }).first().click();
  await page.waitForSelector('.rendition');
  const played = await page.evaluate(() => {
    const v = document.querySelector('#player');
    v.muted = true;
    return v.play().then(() => 'playing', (err) => `play() rejected: ${err.name}: ${err.message}`);
  });
  assert.equal(played, 'playing');
  await page.waitForFunction(() => document.querySelector('#player').currentTime > 0.5, null, { timeout: 15_000 });
  assert.match(await page.$eval('#player', (v) => v.src), /^blob:/, 'played through MediaSource (hls.js)');
  t.diagnostic(`CSP: ${csp}`);
  assert.deepEqual(problems, [], 'no script errors or CSP violations');
  await context.close();
});
