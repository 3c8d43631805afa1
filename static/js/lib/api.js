// Every call to reel's API goes through here: one place for headers (the sign-in token) and
// one translation of errors into plain words.

import { authHeaders, signInNeeded } from './session.js';

export const API = '/api/v1/videos';
export const TERMINAL = new Set(['ready', 'failed', 'canceled']);

const CONNECTION_LOST = 'Can’t reach the server. Check your connection and try again.';
// nginx answers some of these itself, so the status stands in for a missing JSON code.
const CODE_BY_STATUS = {
  413: 'payload_too_large', 415: 'unsupported_media_type', 503: 'queue_full', 507: 'insufficient_storage',
};

/** An API refusal: `message` is for people, `code` for the page's logic. */
export class ApiError extends Error {
  constructor(message, { status = 0, code = null } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

export const videoUrl = (id) => `${API}/${encodeURIComponent(id)}`;

function retryAfterSeconds(header) {
  if (!header) return null;
  const secs = Number(header);
  if (Number.isFinite(secs)) return Math.max(1, Math.ceil(secs));
  const at = Date.parse(header); // Retry-After may also be an HTTP date
  return Number.isNaN(at) ? null : Math.max(1, Math.ceil((at - Date.now()) / 1000));
}

/** Turns an error answer into an ApiError whose message a person can act on. */
export function errorFrom(status, bodyText, retryAfter) {
  let err = null;
  try { err = JSON.parse(bodyText).error || null; } catch { /* not JSON */ }
  const code = (err && err.code) || CODE_BY_STATUS[status] || null;
  const say = (message) => new ApiError(message, { status, code });
  switch (code) {
    case 'payload_too_large': return say('This file is too big for the server to accept.');
    case 'unsupported_media_type':
      return say('This doesn’t look like a video file reel can read. Try an MP4, MOV, MKV or WebM file.');
    case 'insufficient_storage': return say('The server’s disk is full, so it can’t take new videos right now.');
    case 'empty_body': return say('The file is empty. Please choose another one.');
    case 'unauthorized': return say('Please sign in to see and upload your videos.');
    case 'invalid_token': return say('Your sign-in has expired or is not valid. Please sign in again.');
    case 'forbidden': return say('Your account may not do this.');
    case 'queue_full': {
      const secs = retryAfterSeconds(retryAfter);
      return say(`The server is busy right now. Please try again ${secs ? `in ${secs} s` : 'in a moment'}.`);
    }
    default:
  }
  if (err && err.message) return say(err.message);
  if (status >= 502 && status <= 504) return say('The server can’t be reached right now. Please try again shortly.');
  return say(`Something went wrong on the server (HTTP ${status}). Please try again.`);
}

async function call(url, { method = 'GET', body, okStatuses = [] } = {}) {
  const headers = { Accept: 'application/json', ...authHeaders() };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(CONNECTION_LOST);
  }
  if (res.status === 401) signInNeeded();
  if (!res.ok && !okStatuses.includes(res.status)) {
    throw errorFrom(res.status, await res.text(), res.headers.get('Retry-After'));
  }
  return res;
}

/** One page of videos, newest first: `{ items, next_cursor }`. */
export async function listVideos({ cursor, q, status, limit = 24 } = {}) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (cursor) query.set('cursor', cursor);
  if (q) query.set('q', q);
  if (status) query.set('status', status);
  return (await call(`${API}?${query}`)).json();
}

/** The video, or null when there is no such video (any more). */
export async function getVideo(id) {
  const res = await call(videoUrl(id), { okStatuses: [404] });
  return res.status === 404 ? null : res.json();
}

/** Changes the title; resolves the changed video. */
export async function setTitle(id, title) {
  return (await call(videoUrl(id), { method: 'PATCH', body: { title } })).json();
}

/** Deletes the video; one that is already gone counts as deleted. */
export async function deleteVideo(id) {
  await call(videoUrl(id), { method: 'DELETE', okStatuses: [404] });
}

export { CONNECTION_LOST };
