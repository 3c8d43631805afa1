// The grid of the creator's videos: search and status filter (answered by the server),
// newest first, "Show more" paging, and live progress on cards that are still processing.

import { listVideos } from './api.js';
import { $, h, showMessage } from './dom.js';
import {
  STATUS_LABELS, displayName, formatBytes, formatDate, formatDuration, jobOf, progressText, resolutionLabel,
  spokenDuration,
} from './format.js';
import { follow } from './live.js';

const SEARCH_DELAY_MS = 250;

/** Wires the library section; returns `{ reload }` for the upload form to call. */
export function setUpLibrary({ announce }) {
  const el = {
    grid: $('video-grid'), empty: $('list-empty'), error: $('list-error'), more: $('load-more'),
    filters: $('filters'), search: $('search'), status: $('status-filter'),
  };
  const following = new Map(); // video id → stop()
  let cursor = null;
  let seq = 0;
  let searchTimer = null;

  const params = new URLSearchParams(location.search);
  el.search.value = params.get('q') || '';
  el.status.value = [...el.status.options].some((o) => o.value === params.get('status')) ? params.get('status') : '';

  const filters = () => ({ q: el.search.value.trim(), status: el.status.value });

  function rememberFilters() {
    const { q, status } = filters();
    const query = new URLSearchParams();
    if (q) query.set('q', q);
    if (status) query.set('status', status);
    const url = query.toString() ? `?${query}` : location.pathname;
    history.replaceState(null, '', url);
  }

  async function load(append) {
    const mine = ++seq;
    const { q, status } = filters();
    el.more.disabled = true;
    try {
      const page = await listVideos({ cursor: append ? cursor : null, q, status });
      if (mine !== seq) return; // a newer search has started
      showMessage(el.error, '');
      if (!append) clear();
      for (const video of page.items || []) {
        if (!el.grid.querySelector(`[data-id="${video.id}"]`)) el.grid.append(card(video));
      }
      cursor = page.next_cursor || null;
      el.more.hidden = !cursor;
      updateEmpty(q, status);
      if (!append && (q || status)) announce(resultsText(el.grid.children.length, cursor));
    } catch (err) {
      if (mine !== seq) return;
      el.error.replaceChildren(`Couldn’t load your videos. ${err.message}`,
        h('button', { type: 'button', class: 'button small', onclick: () => load(append) }, 'Try again'));
      el.error.hidden = false;
    } finally {
      if (mine === seq) el.more.disabled = false;
    }
  }

  function clear() {
    for (const stop of following.values()) stop();
    following.clear();
    el.grid.replaceChildren();
  }

  function updateEmpty(q, status) {
    const empty = el.grid.children.length === 0;
    el.empty.hidden = !empty;
    if (!empty) return;
    if (q || status) {
      const which = status ? ` ${STATUS_LABELS[status].toLowerCase()}` : '';
      el.empty.textContent = q ? `No${which} videos match “${q}”.` : `No${which} videos.`;
    } else {
      el.empty.textContent = 'No videos yet. Upload your first one above.';
    }
  }

  /** One video's card; cards of unfinished videos follow their progress. */
  function card(video) {
    const node = h('li', { class: 'video-card', dataset: { id: video.id, status: video.status } });
    fillCard(node, video);
    if (video.status === 'queued' || video.status === 'processing') {
      following.set(video.id, follow(video, {
        onUpdate: (job) => updateProgress(node, job),
        onEnd: (final) => {
          following.delete(video.id);
          if (!final) {
            node.remove();
            updateEmpty(filters().q, filters().status);
            return;
          }
          fillCard(node, final);
          if (final.status === 'ready') announce(`“${displayName(final)}” is ready to watch.`);
          if (final.status === 'failed') announce(`“${displayName(final)}” could not be processed.`);
        },
      }));
    }
    return node;
  }

  el.filters.addEventListener('submit', (e) => {
    e.preventDefault();
    clearTimeout(searchTimer);
    rememberFilters();
    load(false);
  });
  el.search.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { rememberFilters(); load(false); }, SEARCH_DELAY_MS);
  });
  el.status.addEventListener('change', () => { rememberFilters(); load(false); });
  el.more.addEventListener('click', () => load(true));

  load(false);
  return { reload: () => load(false) };
}

function resultsText(count, more) {
  if (count === 0) return 'No videos match.';
  return `${count}${more ? '+' : ''} video${count === 1 ? '' : 's'} found.`;
}

function fillCard(node, video) {
  node.dataset.status = video.status;
  const name = displayName(video);
  const duration = video.source ? formatDuration(video.source.duration) : '';
  const unfinished = video.status === 'processing' || video.status === 'queued';
  const thumb = h('div', { class: 'thumb' },
    video.status === 'ready' && video.links.poster
      ? h('img', { src: video.links.poster, alt: '', loading: 'lazy', decoding: 'async' })
      : h('div', { class: 'thumb-placeholder' },
        h('span', { class: 'thumb-text' }, placeholderText(video)),
        unfinished ? h('progress', { max: '100', value: '0', 'aria-label': `Processing ${name}` }) : null),
    duration ? h('span', { class: 'duration' },
      h('span', { 'aria-hidden': 'true' }, duration),
      h('span', { class: 'visually-hidden' }, `Duration ${spokenDuration(video.source.duration)}`)) : null);
  const meta = [resolutionLabel(video), video.source ? formatBytes(video.source.size) : '', formatDate(video.created_at)]
    .filter(Boolean);
  node.replaceChildren(
    thumb,
    h('h3', { class: 'video-title' }, h('a', { href: `/watch/${video.id}` }, name)),
    h('p', { class: 'video-meta' },
      video.status === 'ready' ? null : h('span', { class: `badge status-${video.status}` }, STATUS_LABELS[video.status] || video.status),
      ...meta.map((text) => h('span', {}, text))),
  );
  if (video.status === 'failed' && video.error) node.append(h('p', { class: 'video-error' }, video.error.message));
  if (unfinished) updateProgress(node, jobOf(video));
}

function placeholderText(video) {
  switch (video.status) {
    case 'failed': return 'Couldn’t process this video';
    case 'canceled': return 'Canceled';
    case 'ready': return 'No poster';
    default: return 'Processing…';
  }
}

function updateProgress(node, job) {
  const state = node.dataset; // the last known value of each field: events carry only some
  if (job.status) state.status = job.status;
  if (job.step) state.step = job.step;
  if (typeof job.percent === 'number') state.percent = String(job.percent);
  if ('queue_position' in job) state.queue = job.queue_position ?? '';
  if ('eta_seconds' in job) state.eta = job.eta_seconds ?? '';
  const percent = Math.max(0, Math.min(100, Number(state.percent) || 0));
  const text = progressText({
    status: state.status,
    step: state.step,
    percent,
    queue_position: Number(state.queue) || null,
    eta_seconds: state.eta ? Number(state.eta) : null,
  });
  const bar = node.querySelector('progress');
  if (bar) {
    bar.value = percent;
    bar.setAttribute('aria-valuetext', text);
  }
  const label = node.querySelector('.thumb-text');
  if (label) label.textContent = text;
  const badge = node.querySelector('.badge');
  if (badge) {
    badge.className = `badge status-${state.status}`;
    badge.textContent = STATUS_LABELS[state.status] || state.status;
  }
}
