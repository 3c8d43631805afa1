// Shared by the page specs: one headless Chromium, pages that record script errors, CSP
// violations and failed requests, an axe-core scan, screenshots, and the video on screen.

import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import { chromium } from 'playwright-core';

import { ARTIFACTS_DIR } from './helpers.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const AXE_SOURCE = fs.readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

export const DESKTOP = { width: 1280, height: 860 };
export const PHONE = { width: 390, height: 844 };

export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic', '--autoplay-policy=no-user-gesture-required',
    ],
    timeout: 30_000,
  });
}

/**
 * A new context and page. `hlsJs: true` hides the browser's own HLS, so the page falls back
 * to hls.js as in browsers without it; `phone: true` is a 390x844 touch screen.
 * Returns { context, page, problems, failed }: script errors and CSP violations, and
 * responses with status >= 400 (except those matching `allowFailed`).
 */
export async function openPage(browser, { hlsJs = false, phone = false, allowFailed = null, origin } = {}) {
  const context = await browser.newContext({
    viewport: phone ? PHONE : DESKTOP,
    ...(phone ? { isMobile: true, hasTouch: true, deviceScaleFactor: 2 } : {}),
  });
  if (origin) await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
  if (hlsJs) {
    await context.addInitScript(() => {
      const canPlayType = HTMLMediaElement.prototype.canPlayType;
      HTMLMediaElement.prototype.canPlayType = function (type) {
        return /mpegurl/i.test(type) ? '' : canPlayType.call(this, type);
      };
    });
  }
  const page = await context.newPage();
  const problems = [];
  const failed = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy|Refused to/i.test(msg.text())) problems.push(`console: ${msg.text()}`);
  });
  page.on('response', (res) => {
    if (res.status() >= 400 && !(allowFailed && allowFailed.test(res.url()))) failed.push(`${res.status()} ${res.url()}`);
  });
  return { context, page, problems, failed };
}

/** axe-core's serious and critical violations on the page as it is now (axe is injected). */
export async function axeViolations(page) {
  // page.evaluate runs outside the page's CSP, which would refuse an injected script tag.
  await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`);
}

/** Saves a full-page screenshot under target/test-artifacts/; returns its path. */
export async function screenshot(page, name) {
  fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const file = path.join(ARTIFACTS_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** Starts the <video> muted (autoplay rules aside) and waits until it has played `seconds`. */
export async function playFor(frame, seconds = 0.5, timeout = 15_000) {
  // The page sets the player's source once it has read the video: play after that, or the new
  // load interrupts play() (AbortError).
  await frame.waitForFunction(() => {
    const v = document.querySelector('#player');
    return v && v.currentSrc && v.readyState >= 1;
  }, null, { timeout });
  const played = await frame.evaluate(() => {
    const v = document.querySelector('#player');
    v.muted = true;
    return v.play().then(() => 'playing', (err) => `play() rejected: ${err.name}: ${err.message}`);
  });
  if (played !== 'playing') throw new Error(played);
  try {
    await frame.waitForFunction((s) => document.querySelector('#player').currentTime > s, seconds, { timeout });
  } catch (err) {
    const state = await frame.evaluate(() => {
      const v = document.querySelector('#player');
      return { currentTime: v.currentTime, readyState: v.readyState, error: v.error && v.error.message, src: v.currentSrc };
    });
    throw new Error(`the video did not play: ${JSON.stringify(state)}`, { cause: err });
  }
}

/** The size of the picture as shown: the element's box less its letterbox bars. */
export function pictureBox(frame) {
  return frame.evaluate(() => {
    const v = document.querySelector('#player');
    const box = v.getBoundingClientRect();
    if (!v.videoWidth || !v.videoHeight) return { width: 0, height: 0, box: { width: box.width, height: box.height } };
    const scale = Math.min(box.width / v.videoWidth, box.height / v.videoHeight);
    return { width: v.videoWidth * scale, height: v.videoHeight * scale, box: { width: box.width, height: box.height } };
  });
}
