// The page with auth on (`--auth jwt`), in real Chromium: it asks for a token, keeps it, sends
// it on every call (API, resumable upload, event stream), shows only the caller's videos, and
// plays a private video through its signed links.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { REEL_BIN, ensureVendor, makeClip, startNginx, startReel, tempDir } from './helpers.mjs';
import { launchBrowser, openPage, playFor, screenshot } from './page-helpers.mjs';

const SECRET = 'sign-in-spec-jwt-secret-0123456789abcdef';

let work;
let reel;
let edge;
let browser;
let clip;

function token(sub) {
  const out = spawnSync(REEL_BIN, ['token', '--sub', sub, '--roles', 'creator', '--ttl', '1h', '--jwt-secret', SECRET], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`reel token: ${out.stderr}`);
  return out.stdout.trim();
}

before(async () => {
  ensureVendor();
  work = tempDir('sign-in');
  clip = makeClip(work, { seconds: 3, name: 'walk.mp4' });
  reel = await startReel({ mediaDir: path.join(work, 'media'), extraArgs: ['--auth', 'jwt', '--jwt-secret', SECRET] });
  edge = await startNginx({ upstream: `127.0.0.1:${reel.port}`, mediaDir: reel.mediaDir });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await edge?.stop();
  await reel?.stop();
});

test('the page asks for a token, then uploads and follows a private video to playback with it', { timeout: 120_000 }, async (t) => {
  // The first call is refused (401): expected, and answered by the sign-in panel.
  const { context, page, problems } = await openPage(browser, { allowFailed: /\/api\/v1\/videos/ });
  await page.goto(`${edge.url}/`);
  await page.locator('#sign-in').waitFor({ state: 'visible', timeout: 10_000 });
  assert.match(await page.locator('.library').innerText(), /sign in/i, 'the library says why it is empty');
  await page.fill('#token-input', token('alice'));
  await page.click('#sign-in-form button[type=submit]');
  await page.locator('#sign-in').waitFor({ state: 'hidden' });
  assert.ok(await page.locator('#sign-out').isVisible(), 'a way to sign out');

  await page.setInputFiles('#file-input', clip);
  await page.fill('#title-input', 'Alice walks');
  await page.click('#upload-button');
  const card = page.locator('.video-card').filter({ hasText: 'Alice walks' });
  await card.waitFor({ timeout: 20_000 });
  await page.waitForFunction(() => document.querySelector('.video-card')?.dataset.status === 'ready', null, { timeout: 60_000 });
  t.diagnostic(`screenshot: ${await screenshot(page, 'library-signed-in')}`);

  // Make it private through the API (with the same token), then watch it: signed links.
  const id = await card.evaluate((n) => n.querySelector('a[href^="/watch/"]').getAttribute('href').split('/').pop());
  const alice = await page.evaluate(() => localStorage.getItem('reel.token'));
  const patched = await fetch(`${edge.url}/api/v1/videos/${id}`, {
    method: 'PATCH',
    headers: { Authorization: `Bearer ${alice}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ visibility: 'private' }),
  });
  assert.equal(patched.status, 200);
  const unsigned = await fetch(`${edge.url}/hls/${id}/master.m3u8`);
  assert.equal(unsigned.status, 403, 'nginx refuses the private ladder without a signature');
  await page.goto(`${edge.url}/watch/${id}`);
  await playFor(page);
  assert.deepEqual(problems, []);

  // Another creator sees none of it.
  await page.goto(`${edge.url}/`);
  await page.evaluate((other) => localStorage.setItem('reel.token', other), token('bob'));
  await page.reload();
  await page.waitForFunction(() => !document.querySelector('.video-card[data-status]') || document.querySelectorAll('.video-card').length === 0, null, { timeout: 10_000 });
  assert.equal(await page.locator('.video-card').count(), 0, "bob's library is empty");
  await page.click('#sign-out');
  await page.locator('#sign-in').waitFor({ state: 'visible', timeout: 10_000 });
  await context.close();
});
