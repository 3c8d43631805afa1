// The page's resumable uploads in a real headless Chromium, through a proxy in front of the
// project's nginx that slows uploads down and can cut them: a cut connection is retried and
// said so ("Connection lost — retrying"); pause and resume; several files queued one after
// the other; an upload cut short by a reload resumes when its file is chosen again. Each time
// the PATCH that completes the upload starts where the previous one stopped (resumed, never
// started over) and the video's source is the file, byte for byte.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { ensureVendor, getJson, startNginx, startReel, tempDir, waitForStatus } from './helpers.mjs';
import { launchBrowser, openPage } from './page-helpers.mjs';
import { makeBigClip, sameSource, startProxy } from './tus-helpers.mjs';

const RATE = 2 * 1024 * 1024; // bytes per second through the proxy

let work;
let reel;
let edge;
let browser;
let clips;

before(async () => {
  ensureVendor();
  work = tempDir('tus-page');
  clips = {
    first: makeBigClip(work, { mib: 12, seconds: 6, name: 'harbour.mp4' }),
    second: makeBigClip(work, { mib: 6, seconds: 4, name: 'market.mp4' }),
  };
  reel = await startReel({ mediaDir: path.join(work, 'media'), maxUpload: '100MiB' });
  edge = await startNginx({ upstream: `127.0.0.1:${reel.port}`, mediaDir: reel.mediaDir, vars: { REEL_MAX_UPLOAD_BYTES: '100m' } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await edge?.stop();
  await reel?.stop();
});

/** Opens the library through `proxy`; records every text an upload item shows, reloads too. */
async function openLibrary(proxy) {
  const opened = await openPage(browser, { allowFailed: /\/api\/v1\/uploads/ });
  opened.page.on('dialog', (dialog) => dialog.accept()); // "leave the page?" on reload
  await opened.page.addInitScript(() => {
    window.seenTexts = new Set();
    document.addEventListener('DOMContentLoaded', () => {
      new MutationObserver(() => {
        for (const node of document.querySelectorAll('.upload-item .status-text')) window.seenTexts.add(node.textContent);
      }).observe(document.body, { subtree: true, childList: true, characterData: true });
    });
  });
  // Every answered PATCH: which upload, from which offset, with which status.
  opened.patches = [];
  opened.page.on('response', (res) => {
    const req = res.request();
    if (req.method() !== 'PATCH') return;
    opened.patches.push({ upload: req.url(), offset: Number(req.headers()['upload-offset']), status: res.status() });
  });
  await opened.page.goto(`${proxy.url}/`);
  return opened;
}

/** The offsets of the PATCHes of `upload` that the server took (204). */
const accepted = (patches, upload) => patches.filter((p) => p.upload === upload && p.status === 204).map((p) => p.offset);

async function newestVideo(title) {
  const { items } = await getJson(`${reel.url}/api/v1/videos?q=${encodeURIComponent(title)}`);
  assert.equal(items.length, 1, `one video titled ${title}`);
  return waitForStatus(reel.url, items[0]);
}

/** Waits until the queue is empty; the last upload must have succeeded. */
async function waitForDone(page, timeout = 60_000) {
  await page.waitForFunction(() => document.querySelector('#upload-status').hidden, null, { timeout });
  assert.ok(await page.locator('#upload-done').isVisible(), await page.locator('#upload-error').innerText());
}

test('a cut connection is retried, said so, and the upload resumes where it stopped', { timeout: 90_000 }, async () => {
  const proxy = await startProxy(`127.0.0.1:${edge.port}`, { rate: RATE, cutAfter: 4 * 1024 * 1024, cuts: 1 });
  const { context, page, problems, patches } = await openLibrary(proxy);
  try {
    await page.setInputFiles('#file-input', clips.first);
    await page.fill('#title-input', 'Harbour cut once');
    await page.click('#upload-button');
    await waitForDone(page);
    const seen = await page.evaluate(() => [...window.seenTexts]);
    assert.ok(seen.some((t) => /^Connection lost — retrying/.test(t)), `said so: ${seen.join(' | ')}`);
    assert.equal(proxy.stats.cuts, 1);
    const [upload] = new Set(patches.map((p) => p.upload));
    const offsets = accepted(patches, upload);
    assert.equal(offsets.length, 1, JSON.stringify(patches));
    assert.ok(offsets[0] > 0, `the PATCH that finished resumed at ${offsets[0]}`);
    const video = await newestVideo('Harbour cut once');
    assert.equal(video.status, 'ready');
    assert.ok(sameSource(reel.mediaDir, video.id, clips.first));
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
    await proxy.close();
  }
});

test('two files queue one after the other; the first pauses and resumes', { timeout: 90_000 }, async () => {
  const proxy = await startProxy(`127.0.0.1:${edge.port}`, { rate: RATE });
  const { context, page, problems, patches } = await openLibrary(proxy);
  try {
    await page.setInputFiles('#file-input', [clips.first, clips.second]);
    assert.match(await page.locator('#file-name').innerText(), /^2 files/);
    await page.click('#upload-button');
    const items = page.locator('.upload-item');
    await page.waitForFunction(() => document.querySelector('.upload-item progress')?.value > 5);
    assert.equal(await items.count(), 2);
    assert.equal(await items.nth(1).locator('.status-text').innerText(), 'Waiting…');
    await items.first().getByRole('button', { name: 'Pause' }).click();
    await items.first().locator('.status-text', { hasText: /^Paused at / }).waitFor();
    const paused = await items.first().locator('progress').evaluate((p) => p.value);
    await page.waitForTimeout(1500);
    assert.equal(await items.first().locator('progress').evaluate((p) => p.value), paused, 'nothing moves while paused');
    assert.equal(await items.nth(1).locator('.status-text').innerText(), 'Waiting…', 'the next waits its turn');
    await items.first().getByRole('button', { name: 'Resume' }).click();
    await page.locator('.upload-item .upload-item-name', { hasText: 'market.mp4' }).waitFor();
    await page.waitForFunction(() => document.querySelectorAll('.upload-item').length === 1, null, { timeout: 60_000 });
    await waitForDone(page);
    for (const [file, title] of [[clips.first, 'harbour.mp4'], [clips.second, 'market.mp4']]) {
      const video = await newestVideo(title);
      assert.ok(sameSource(reel.mediaDir, video.id, file), `${title} is the file`);
    }
    const [first, second] = new Set(patches.map((p) => p.upload));
    assert.ok(accepted(patches, first).length >= 1, JSON.stringify(patches));
    assert.ok(accepted(patches, first).every((offset) => offset > 0), `the paused upload resumed: ${JSON.stringify(patches)}`);
    assert.deepEqual(accepted(patches, second), [0], 'the second went in one piece');
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
    await proxy.close();
  }
});

test('an upload cut short by a reload resumes when its file is chosen again', { timeout: 90_000 }, async () => {
  const proxy = await startProxy(`127.0.0.1:${edge.port}`, { rate: RATE / 2 });
  const { context, page, problems, patches } = await openLibrary(proxy);
  try {
    await page.setInputFiles('#file-input', clips.second);
    await page.fill('#title-input', 'Market after a reload');
    await page.click('#upload-button');
    await page.waitForFunction(() => document.querySelector('.upload-item progress')?.value > 40);
    // A reload aborts the request, but what the browser already handed to the kernel would
    // still arrive (loopback buffers hold megabytes): the network drops with it here, so the
    // server really has only part of the file.
    proxy.cutAll();
    await page.reload();
    const notice = page.locator('#upload-unfinished');
    await notice.waitFor();
    assert.match(await notice.innerText(), /Unfinished upload: market\.mp4 .* Choose the same file again to resume it\./);
    await page.setInputFiles('#file-input', clips.second);
    await page.fill('#title-input', 'Market after a reload');
    await page.click('#upload-button');
    await waitForDone(page);
    const seen = await page.evaluate(() => [...window.seenTexts]);
    assert.ok(seen.includes('Resuming where it stopped…'), `said so: ${seen.join(' | ')}`);
    const uploads = new Set(patches.map((p) => p.upload));
    assert.equal(uploads.size, 1, 'the same upload before and after the reload');
    const offsets = accepted(patches, [...uploads][0]);
    assert.ok(offsets.length >= 1 && offsets.every((offset) => offset > 0), `resumed after the reload: ${JSON.stringify(patches)}`);
    const { items } = await getJson(`${reel.url}/api/v1/videos?q=${encodeURIComponent('Market after a reload')}`);
    assert.equal(items.length, 1);
    assert.ok(sameSource(reel.mediaDir, items[0].id, clips.second));
    assert.ok(await notice.isHidden(), 'nothing is left unfinished');
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
    await proxy.close();
  }
});
