// The web page in a real headless Chromium (one browser for every spec here), against a real
// reel behind the project's nginx config (the browser's own HLS) and a real reel alone,
// started from another folder with its built-in page (hls.js): upload, the library card's
// progress to ready, the watch page (poster, play, quality, copy link and embed code, edit
// title, download, delete by keyboard), a refused upload, search and filter, a portrait
// video on a phone, the embed page in another site's iframe, an axe-core scan of each page,
// and screenshots of each at desktop and phone width (target/test-artifacts/).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { ensureVendor, freePort, getJson, makeClip, request, startNginx, startReel, tempDir, waitForStatus } from './helpers.mjs';
import { axeViolations, launchBrowser, openPage, pictureBox, playFor, screenshot } from './page-helpers.mjs';

let work;
let reel; // behind nginx
let edge;
let bare; // alone, started in another folder, serving its built-in page
let browser;
let clips;
let portrait; // a ready portrait video on `reel`
let city; // a ready landscape video on `reel`

before(async () => {
  ensureVendor();
  work = tempDir('page-test');
  clips = {
    beach: makeClip(work, { seconds: 6, name: 'beach-day.mp4' }),
    portrait: makeClip(work, { seconds: 4, size: '360x640', name: 'portrait-walk.mp4' }),
    notVideo: path.join(work, 'notes.mp4'),
  };
  fs.writeFileSync(clips.notVideo, 'just some notes...\n'); // 19 bytes, as in the issue
  const elsewhere = tempDir('elsewhere');
  [reel, bare] = await Promise.all([
    startReel({ mediaDir: path.join(work, 'media') }),
    startReel({ mediaDir: path.join(work, 'bare-media'), staticDir: null, cwd: elsewhere, accelRedirect: false }),
  ]);
  edge = await startNginx({ upstream: `127.0.0.1:${reel.port}`, mediaDir: reel.mediaDir });
  browser = await launchBrowser();
  for (const [file, title] of [[clips.portrait, 'Portrait walk'], [clips.beach, 'City night']]) {
    const res = await fetch(`${edge.url}/api/v1/videos`, {
      method: 'POST',
      headers: { 'Content-Type': 'video/mp4', 'X-Title': title, 'X-Filename': path.basename(file) },
      body: fs.readFileSync(file),
    });
    assert.equal(res.status, 202, await res.text());
  }
  const { items } = await getJson(`${edge.url}/api/v1/videos`);
  [city, portrait] = await Promise.all(items.map((v) => waitForStatus(edge.url, v)));
  assert.equal(portrait.status, 'ready', JSON.stringify(portrait.error));
  assert.equal(city.status, 'ready', JSON.stringify(city.error));
});

after(async () => {
  await browser?.close().catch(() => {});
  await edge?.stop();
  await reel?.stop();
  await bare?.stop();
});

/** Upload → card to ready → watch: play, quality, copy, edit, download → delete. */
async function studioFlow(t, { base, mode, title, shots }) {
  const { context, page, problems, failed } = await openPage(browser, { hlsJs: mode === 'hls.js', origin: base });
  await page.goto(`${base}/`);
  await page.setInputFiles('#file-input', clips.beach);
  await page.fill('#title-input', title);
  await page.click('#upload-button');

  const card = page.locator('.video-card').filter({ has: page.getByRole('link', { name: title, exact: true }) });
  await card.waitFor({ timeout: 15_000 });
  const seen = [];
  const deadline = Date.now() + 60_000;
  for (;;) {
    const [status, value] = await card.evaluate((n) => [n.dataset.status, n.querySelector('progress')?.value]);
    if (seen.at(-1)?.join() !== [status, value].join()) seen.push([status, value]);
    if (shots && status === 'processing' && value > 0 && !seen.shot) {
      seen.shot = true;
      t.diagnostic(`screenshot: ${await screenshot(page, 'library-processing')}`);
    }
    if (status === 'ready' || status === 'failed') break;
    assert.ok(Date.now() < deadline, `the card never finished: ${JSON.stringify(seen)}`);
    await page.waitForTimeout(40);
  }
  t.diagnostic(`card states: ${seen.map(([s, v]) => `${s}${v === undefined ? '' : ` ${Math.round(v)}%`}`).join(', ')}`);
  assert.notEqual(seen[0][0], 'ready', 'the card showed the video before it was ready');
  assert.equal(seen.at(-1)[0], 'ready');
  await card.locator('img').evaluate((img) => img.decode());
  assert.ok(await card.locator('img').evaluate((img) => img.naturalWidth > 0), 'the poster shows');
  assert.match(await card.locator('.duration').innerText(), /^0:06/);
  assert.ok(await page.locator('#upload-status').isHidden(), 'no upload line is left behind');
  if (shots) t.diagnostic(`screenshot: ${await screenshot(page, 'library-desktop')}`);

  await card.getByRole('link', { name: title }).click();
  await page.waitForURL(/\/watch\/[0-9a-f-]{36}$/);
  const id = page.url().split('/').pop();
  await page.locator('#video-title', { hasText: title }).waitFor();
  assert.equal(await page.title(), `${title} · reel`);
  assert.match(await page.locator('#video-meta').innerText(), /^Uploaded .+ · 0:06 · 360p · \d+(\.\d)? [kM]B$/);
  assert.equal(await page.getAttribute('#player', 'poster'), `/hls/${id}/poster.jpg`, 'poster before play');

  await playFor(page);
  assert.equal(await page.getAttribute('#player', 'data-mode'), mode);
  if (mode === 'hls.js') assert.match(await page.$eval('#player', (v) => v.src), /^blob:/);
  const now = page.locator('#quality-now');
  await page.waitForFunction(() => /^Playing \d+p$/.test(document.querySelector('#quality-now').textContent));
  const first = await now.innerText();
  const target = first === 'Playing 240p' ? '360p' : '240p';
  assert.match(await page.locator('#quality-select option').first().innerText(), new RegExp(`^Auto \\(${first.slice(8)}\\)$`));
  await page.selectOption('#quality-select', { label: target });
  await page.waitForFunction((want) => document.querySelector('#quality-now').textContent === `Playing ${want}`, target, { timeout: 15_000 });
  assert.equal(await page.$eval('#player', (v) => `${v.videoHeight}p`), target, 'the indicator tells what is on screen');
  t.diagnostic(`${mode}: ${first} → Playing ${target}`);
  if (shots) t.diagnostic(`screenshot: ${await screenshot(page, 'watch-desktop')}`);

  await page.click('#copy-link');
  await page.locator('#share-status', { hasText: 'Link copied.' }).waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), `${base}/watch/${id}`);
  await page.click('#copy-embed');
  await page.locator('#share-status', { hasText: 'Embed code copied.' }).waitFor();
  const code = await page.evaluate(() => navigator.clipboard.readText());
  assert.match(code, new RegExp(`^<iframe src="${base}/embed/${id}" title="${title}" width="640" height="360" `));

  const edited = `${title} (edited)`;
  await page.click('#edit-title');
  await page.fill('#title-field', edited);
  await page.press('#title-field', 'Enter');
  await page.locator('#video-title', { hasText: edited }).waitFor();
  assert.equal((await getJson(`${base}/api/v1/videos/${id}`)).title, edited);
  assert.equal(await page.title(), `${edited} · reel`);

  const href = await page.getAttribute('#download', 'href');
  const download = await page.evaluate(async (url) => {
    const res = await fetch(url);
    return { status: res.status, size: (await res.arrayBuffer()).byteLength, disposition: res.headers.get('content-disposition') };
  }, href);
  assert.deepEqual(download, { status: 200, size: fs.statSync(clips.beach).size, disposition: 'attachment; filename="beach-day.mp4"; filename*=UTF-8\'\'beach-day.mp4' });

  // Delete, by keyboard only: the dialog opens on "Keep it"; Tab, Enter confirms.
  await page.focus('#delete');
  await page.keyboard.press('Enter');
  await page.locator('#delete-dialog[open]').waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Keep it');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'delete-confirm');
  await page.keyboard.press('Enter');
  await page.waitForURL(`${base}/`);
  await page.locator('#flash', { hasText: `Deleted “${edited}”.` }).waitFor();
  assert.equal((await request(`${base}/api/v1/videos/${id}`)).status, 404);
  assert.equal(await page.getByRole('link', { name: edited }).count(), 0);

  assert.deepEqual(problems, [], 'no script errors or CSP violations');
  assert.deepEqual(failed, [], 'no failed requests');
  await context.close();
}

test('through nginx, with the browser’s own HLS: upload to ready, watch, switch quality, share, edit, delete', { timeout: 120_000 }, (t) => (
  studioFlow(t, { base: edge.url, mode: 'native', title: 'Beach day', shots: true })));

test('reel alone, started elsewhere with its built-in page, with hls.js: the same', { timeout: 120_000 }, (t) => (
  studioFlow(t, { base: bare.url, mode: 'hls.js', title: 'Harbour at dusk' })));

test('a refused upload says why in plain words, with no progress line left above it', { timeout: 30_000 }, async () => {
  const { context, page, problems } = await openPage(browser, { allowFailed: /\/api\/v1\/videos$/ });
  await page.goto(`${edge.url}/`);
  await page.setInputFiles('#file-input', clips.notVideo);
  await page.click('#upload-button');
  const error = page.locator('#upload-error');
  await error.waitFor();
  assert.equal(await error.innerText(), 'The upload didn’t work: This doesn’t look like a video file reel can read. Try an MP4, MOV, MKV or WebM file.');
  assert.ok(await page.locator('#upload-status').isHidden());
  assert.doesNotMatch(await page.locator('main').innerText(), /19 B of 19 B|checking the file|waiting for the server/);
  // Choosing another file clears the old outcome.
  await page.setInputFiles('#file-input', clips.portrait);
  assert.ok(await error.isHidden());
  assert.deepEqual(problems, []);
  await context.close();
});

test('search and status filter are answered by the server and kept in the address', { timeout: 30_000 }, async () => {
  const { context, page, problems, failed } = await openPage(browser);
  await page.goto(`${edge.url}/`);
  const titles = () => page.locator('.video-title').allInnerTexts();
  await page.locator('.video-title', { hasText: 'Portrait walk' }).waitFor();
  await page.fill('#search', 'PORTRAIT');
  await page.waitForFunction(() => document.querySelectorAll('.video-card').length === 1);
  assert.deepEqual(await titles(), ['Portrait walk']);
  assert.match(page.url(), /\?q=PORTRAIT$/);
  await page.selectOption('#status-filter', 'failed');
  await page.locator('#list-empty', { hasText: 'No failed videos match “PORTRAIT”.' }).waitFor();
  await page.reload();
  assert.equal(await page.inputValue('#search'), 'PORTRAIT');
  assert.equal(await page.inputValue('#status-filter'), 'failed');
  await page.selectOption('#status-filter', '');
  await page.fill('#search', '');
  await page.locator('.video-title', { hasText: 'City night' }).waitFor();
  const all = await titles();
  assert.ok(all.indexOf('City night') >= 0 && all.indexOf('City night') < all.indexOf('Portrait walk'), `newest first: ${all}`);
  assert.deepEqual([problems, failed], [[], []]);
  await context.close();
});

test('hovering and dragging the watch page’s seek bar shows the storyboard’s thumbnail of that moment', { timeout: 60_000 }, async (t) => {
  const { context, page, problems, failed } = await openPage(browser);
  const video = await getJson(`${edge.url}/api/v1/videos/${city.id}`);
  assert.equal(video.links.storyboard, `/hls/${city.id}/storyboard.vtt`);
  await page.goto(`${edge.url}/watch/${city.id}`);
  await page.locator('#scrubber:not([hidden])').waitFor();
  const seek = page.locator('#seek');
  const box = await seek.boundingBox();
  // Once the track has loaded, hovering at 50 % of a 6 s video shows the thumbnail of 0:03.
  await page.locator('#scrubber[data-thumbnails="6"]').waitFor({ timeout: 15_000 });
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  const preview = page.locator('#seek-preview');
  await preview.waitFor({ state: 'visible' });
  const hovered = await page.evaluate(async () => {
    const thumb = document.querySelector('#seek-thumb');
    const sheet = new Image();
    sheet.src = thumb.dataset.sheet;
    await sheet.decode();
    const rect = thumb.getBoundingClientRect();
    return {
      sheet: new URL(thumb.dataset.sheet).pathname, xywh: thumb.dataset.xywh.split(',').map(Number),
      size: [sheet.naturalWidth, sheet.naturalHeight], shown: [rect.width, rect.height],
      time: document.querySelector('#seek-time').textContent, at: Number(document.querySelector('#seek-preview').dataset.time),
    };
  });
  t.diagnostic(`hover: ${JSON.stringify(hovered)}`);
  assert.equal(hovered.sheet, `/hls/${city.id}/storyboard/sprite_0.jpg`);
  assert.ok(Math.abs(hovered.at - 3) < 0.2, `the preview is of ${hovered.at} s`);
  assert.equal(hovered.time, '0:03');
  const [x, y, w, h] = hovered.xywh;
  assert.deepEqual([x, y, w, h], [480, 0, 160, 90], 'the fourth thumbnail, one a second');
  assert.ok(x + w <= hovered.size[0] && y + h <= hovered.size[1], `inside the ${hovered.size} sheet`);
  assert.deepEqual(hovered.shown, [w, h]);
  t.diagnostic(`screenshot: ${await screenshot(page, 'watch-seek-preview')}`);

  // Dragging: the preview follows the thumb, and letting go seeks there.
  await page.mouse.move(box.x + box.width * 0.2, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.85, box.y + box.height / 2, { steps: 5 });
  assert.ok(await preview.isVisible(), 'the preview shows while dragging');
  const dragged = Number(await preview.getAttribute('data-time'));
  assert.ok(dragged > 4 && dragged <= 6, `dragged to ${dragged} s`);
  assert.match(await page.locator('#seek-thumb').getAttribute('data-xywh'), /^(640|800),0,160,90$/);
  await page.mouse.up();
  await page.waitForFunction(() => document.querySelector('#player').currentTime > 4, null, { timeout: 10_000 });
  await page.mouse.move(box.x + box.width / 2, box.y - 200);
  await preview.waitFor({ state: 'hidden' });
  assert.deepEqual([problems, failed], [[], []]);
  await context.close();
});

test('a portrait video fills most of a phone’s width', { timeout: 60_000 }, async (t) => {
  const { context, page, problems } = await openPage(browser, { phone: true });
  await page.goto(`${edge.url}/watch/${portrait.id}`);
  await playFor(page);
  const picture = await pictureBox(page);
  t.diagnostic(`picture ${Math.round(picture.width)}x${Math.round(picture.height)} in a 390x844 viewport`);
  assert.ok(picture.width >= 0.9 * 390, `the picture is ${picture.width} px wide`);
  assert.ok(picture.height <= 844, 'and fits the screen');
  await page.evaluate(() => document.querySelector('#player').pause());
  t.diagnostic(`screenshot: ${await screenshot(page, 'watch-phone')}`);
  await page.goto(`${edge.url}/`);
  await page.locator('.video-card img').first().evaluate((img) => img.decode());
  t.diagnostic(`screenshot: ${await screenshot(page, 'library-phone')}`);
  assert.deepEqual(problems, []);
  await context.close();
});

test('the embed page plays in an iframe on another site; the watch page refuses to be framed', { timeout: 60_000 }, async (t) => {
  const port = await freePort();
  const site = http.createServer((req, res) => {
    const phone = req.url.includes('phone');
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    res.end(`<!doctype html><html lang="en"><meta name="viewport" content="width=device-width, initial-scale=1">
      <title>A blog</title><body style="margin:16px;font-family:sans-serif"><h1>My trip</h1>
      <iframe id="embed" src="${edge.url}/embed/${city.id}" title="City night" width="${phone ? 358 : 640}" height="${phone ? 201 : 360}" style="border:0" allowfullscreen></iframe>
      <p>The watch page may not be framed:</p>
      <iframe id="watch" src="${edge.url}/watch/${city.id}" title="framed watch page" width="320" height="180"></iframe></body></html>`);
  });
  await new Promise((resolve) => site.listen(port, '127.0.0.1', resolve));
  try {
    for (const phone of [false, true]) {
      const { context, page, problems } = await openPage(browser, { phone });
      await page.goto(`http://127.0.0.1:${port}/${phone ? 'phone' : ''}`); // another origin: another port
      const embed = page.frame({ url: `${edge.url}/embed/${city.id}` });
      assert.ok(embed, 'the embed frame loaded');
      await playFor(embed);
      assert.equal(await embed.title(), 'City night · reel');
      assert.deepEqual(await embed.evaluate(() => [...document.body.querySelectorAll('a, button, h1')].length), 0, 'nothing but the player');
      const watch = await (await page.$('#watch')).contentFrame();
      assert.equal(watch.url(), 'chrome-error://chromewebdata/', 'the watch page did not load in the frame');
      assert.deepEqual(problems.map((p) => p.replace(/'http:[^']+'/, 'SITE').trim()), [
        'console: Framing SITE violates the following Content Security Policy directive: "frame-ancestors \'none\'". The request has been blocked.',
      ], 'the watch page, and only it, was refused');
      await embed.evaluate(() => document.querySelector('#player').pause());
      t.diagnostic(`screenshot: ${await screenshot(page, phone ? 'embed-phone' : 'embed-desktop')}`);
      await context.close();
    }
  } finally {
    await new Promise((resolve) => site.close(resolve));
  }
});

test('axe-core finds no serious or critical problem on the library, watch and embed pages', { timeout: 60_000 }, async (t) => {
  const { context, page } = await openPage(browser);
  const scans = {};
  await page.goto(`${edge.url}/`);
  await page.locator('.video-card img').first().waitFor();
  scans.library = await axeViolations(page);
  await page.goto(`${edge.url}/watch/${city.id}`);
  await page.locator('#quality-select option').first().waitFor({ state: 'attached' });
  scans.watch = await axeViolations(page);
  await page.click('#edit-title');
  scans['watch, editing the title'] = await axeViolations(page);
  await page.click('#title-cancel');
  await page.click('#delete');
  scans['watch, delete dialog'] = await axeViolations(page);
  await page.keyboard.press('Escape');
  await page.goto(`${edge.url}/embed/${city.id}`);
  await page.locator('#player:not([hidden])').waitFor();
  scans.embed = await axeViolations(page);
  await page.goto(`${edge.url}/watch/01900000-0000-7000-8000-000000000000`);
  await page.locator('#stage-text', { hasText: 'doesn’t exist' }).waitFor();
  scans['watch, unknown video'] = await axeViolations(page);
  t.diagnostic(`scanned: ${Object.keys(scans).join(', ')}`);
  assert.deepEqual(Object.entries(scans).filter(([, v]) => v.length), []);
  await context.close();
});
