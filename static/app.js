(() => {
  'use strict';

  const API = '/api/v1/videos';
  const PAGE_SIZE = 20;
  const TERMINAL = new Set(['ready', 'failed', 'canceled']);
  const CONNECTION_LOST = 'Connection lost. Check your network and try again.';
  const STEP_LABELS = {
    queued: 'Waiting in queue', probing: 'Reading the file',
    encoding: 'Encoding', publishing: 'Publishing',
  };
  const STATUS_LABELS = {
    queued: 'Queued', processing: 'Processing', ready: 'Ready',
    failed: 'Failed', canceled: 'Canceled',
  };
  // nginx answers some of these itself with an HTML page, so the status code
  // has to stand in for the missing JSON error code.
  const CODE_BY_STATUS = {
    413: 'payload_too_large', 415: 'unsupported_media_type',
    503: 'queue_full', 507: 'insufficient_storage',
  };

  const $ = (id) => document.getElementById(id);
  const el = {
    form: $('upload-form'), fileInput: $('file-input'), fileName: $('file-name'),
    titleInput: $('title-input'), uploadButton: $('upload-button'),
    cancelUpload: $('cancel-upload'), dropZone: $('drop-zone'),
    uploadStatus: $('upload-status'), uploadProgress: $('upload-progress'), uploadText: $('upload-text'),
    transcodeStatus: $('transcode-status'), transcodeProgress: $('transcode-progress'),
    transcodeText: $('transcode-text'), error: $('error'), announce: $('announce'),
    playerSection: $('player-section'), playerHeading: $('player-heading'), player: $('player'),
    playerMessage: $('player-message'), renditions: $('renditions'),
    list: $('video-list'), listError: $('list-error'), listEmpty: $('list-empty'),
    loadMore: $('load-more'), refreshList: $('refresh-list'),
  };

  const app = {
    file: null, xhr: null,            // upload
    video: null, job: {}, es: null, esTimer: null, // current transcode job
    playing: null, mode: null, hls: null,          // player
    cursor: null, listSeq: 0,                      // list paging
  };

  // ---------- small helpers ----------

  function h(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value == null || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'dataset') Object.assign(node.dataset, value);
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : value);
    }
    node.append(...children.filter((c) => c != null && c !== false));
    return node;
  }

  function formatBytes(n) {
    const units = ['B', 'kB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
  }

  function formatBitrate(bps) {
    return bps >= 1e6 ? `${(bps / 1e6).toFixed(1)} Mbps` : `${Math.round(bps / 1e3)} kbps`;
  }

  function formatEta(s) {
    if (typeof s !== 'number' || !Number.isFinite(s) || s < 0) return '';
    if (s < 60) return `about ${Math.max(1, Math.round(s))} s left`;
    const min = Math.round(s / 60);
    return min < 60 ? `about ${min} min left` : `about ${Math.floor(min / 60)} h ${min % 60} min left`;
  }

  const displayName = (v) => v.title || v.filename || v.id;
  const setState = (state) => { document.body.dataset.state = state; };
  const announce = (msg) => { el.announce.textContent = msg; };

  function showMessage(node, msg) {
    node.textContent = msg || '';
    node.hidden = !msg;
  }

  function retryAfterSeconds(header) {
    if (!header) return null;
    const secs = Number(header);
    if (Number.isFinite(secs)) return Math.max(1, Math.ceil(secs));
    const at = Date.parse(header); // Retry-After may also be an HTTP date
    return Number.isNaN(at) ? null : Math.max(1, Math.ceil((at - Date.now()) / 1000));
  }

  function errorMessage(status, bodyText, retryAfter) {
    let err = null;
    try { err = JSON.parse(bodyText).error || null; } catch { /* not JSON */ }
    switch ((err && err.code) || CODE_BY_STATUS[status]) {
      case 'payload_too_large': return 'This file is too big for the server to accept.';
      case 'unsupported_media_type': return 'This doesn’t look like a video file we can read.';
      case 'insufficient_storage': return 'The server’s disk is full, so it can’t take new videos right now.';
      case 'empty_body': return 'The file is empty. Please choose another one.';
      case 'queue_full': {
        const secs = retryAfterSeconds(retryAfter);
        return `The server is busy right now. Please try again ${secs ? `in ${secs} s` : 'in a moment'}.`;
      }
    }
    if (err && err.message) return err.message;
    if (status >= 502 && status <= 504) return 'The server can’t be reached right now. Please try again shortly.';
    return `Something went wrong (HTTP ${status}).`;
  }

  // ---------- API ----------

  async function apiFetch(url, init = {}, okStatuses = []) {
    let res;
    try {
      res = await fetch(url, { ...init, headers: { Accept: 'application/json' } });
    } catch {
      throw new Error(CONNECTION_LOST);
    }
    if (!res.ok && !okStatuses.includes(res.status)) {
      throw new Error(errorMessage(res.status, await res.text(), res.headers.get('Retry-After')));
    }
    return res;
  }

  function listVideos(cursor) {
    const query = `limit=${PAGE_SIZE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    return apiFetch(`${API}?${query}`).then((res) => res.json());
  }

  async function getVideo(url) {
    const res = await apiFetch(url, {}, [404]);
    return res.status === 404 ? null : res.json();
  }

  const deleteVideo = (url) => apiFetch(url, { method: 'DELETE' }, [404]);

  // ---------- upload ----------

  function setFile(file) {
    app.file = file || null;
    el.fileName.textContent = file ? `${file.name} (${formatBytes(file.size)})` : '';
    el.uploadButton.disabled = !file || !!app.xhr;
  }

  function speedMeter() {
    const samples = [];
    return (loaded) => {
      const now = performance.now();
      samples.push([now, loaded]);
      while (samples.length > 2 && now - samples[0][0] > 3000) samples.shift();
      const [t0, b0] = samples[0];
      return now - t0 > 250 ? ((loaded - b0) / (now - t0)) * 1000 : null;
    };
  }

  function renderUpload(loaded, total, bytesPerSec) {
    const pct = total > 0 ? Math.min(100, (loaded / total) * 100) : 0;
    const speed = bytesPerSec != null ? ` · ${(bytesPerSec / 1e6).toFixed(1)} MB/s` : '';
    const text = `${formatBytes(loaded)} of ${formatBytes(total)}${speed}`;
    el.uploadProgress.value = pct;
    el.uploadProgress.setAttribute('aria-valuetext', `${Math.floor(pct)}% uploaded`);
    el.uploadText.textContent = text;
  }

  function startUpload() {
    const file = app.file;
    if (!file || app.xhr) return;
    resetJob();
    setState('uploading');
    el.uploadStatus.hidden = false;
    el.uploadButton.disabled = true;
    el.cancelUpload.hidden = false;
    announce(`Uploading ${file.name}`);

    const xhr = new XMLHttpRequest();
    const speed = speedMeter();
    app.xhr = xhr;
    xhr.open('POST', API);
    xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.setRequestHeader('X-Filename', encodeURIComponent(file.name));
    const title = el.titleInput.value.trim();
    if (title) xhr.setRequestHeader('X-Title', encodeURIComponent(title));

    xhr.upload.addEventListener('progress', (e) => {
      renderUpload(e.loaded, e.lengthComputable ? e.total : file.size, speed(e.loaded));
    });
    xhr.upload.addEventListener('load', () => {
      renderUpload(file.size, file.size, null);
      el.uploadText.textContent += ' · waiting for the server…';
    });
    xhr.addEventListener('load', () => {
      endUpload();
      let video = null;
      try { video = JSON.parse(xhr.responseText); } catch { /* handled below */ }
      if (xhr.status >= 200 && xhr.status < 300 && video && video.links) onUploaded(video, file);
      else failJob(errorMessage(xhr.status, xhr.responseText, xhr.getResponseHeader('Retry-After')));
    });
    xhr.addEventListener('error', () => { endUpload(); failJob(CONNECTION_LOST); });
    xhr.addEventListener('abort', () => {
      endUpload();
      setState('idle');
      el.uploadText.textContent = 'Upload canceled.';
      announce('Upload canceled');
    });

    renderUpload(0, file.size, null);
    xhr.send(file);
  }

  function endUpload() {
    app.xhr = null;
    el.cancelUpload.hidden = true;
    setFile(app.file);
  }

  function onUploaded(video, file) {
    renderUpload(file.size, file.size, null);
    el.uploadText.textContent = `Uploaded ${formatBytes(file.size)}.`;
    // Clear the form so pressing Upload again can't send the same file twice by accident.
    el.form.reset();
    setFile(null);
    el.transcodeStatus.hidden = false;
    applyVideo(video);
    if (!TERMINAL.has(video.status)) openEvents();
    refreshList();
  }

  // ---------- transcode job & events ----------

  function resetJob() {
    closeEvents();
    app.video = null;
    app.job = {};
    showMessage(el.error, '');
    el.uploadProgress.value = 0;
    el.transcodeProgress.value = 0;
    el.uploadText.textContent = '';
    el.transcodeText.textContent = '';
    el.transcodeStatus.hidden = true;
  }

  function failJob(message) {
    setState('failed');
    showMessage(el.error, message);
    announce(message);
  }

  function closeEvents() {
    clearTimeout(app.esTimer);
    app.esTimer = null;
    if (app.es) app.es.close();
    app.es = null;
  }

  function openEvents() {
    closeEvents();
    const es = new EventSource(app.video.links.events);
    app.es = es;
    const on = (name, handler) => es.addEventListener(name, (e) => {
      if (app.es !== es) return; // a late event from a stream we already left
      let data = null;
      try { data = JSON.parse(e.data); } catch { return; }
      handler(data);
    });
    on('snapshot', applyVideo);
    on('progress', renderJob);
    on('status', renderJob);
    on('ready', finishJob);
    on('failed', finishJob);
    on('canceled', (data) => finishJob({ ...app.video, ...data }));
    on('reconnect', () => {
      closeEvents();
      app.esTimer = setTimeout(openEvents, 2000);
    });
    es.addEventListener('error', () => {
      // CONNECTING means the browser retries by itself; CLOSED means it gave up (e.g. 404).
      if (app.es === es && es.readyState === EventSource.CLOSED) {
        closeEvents();
        app.esTimer = setTimeout(recoverEvents, 3000);
      }
    });
  }

  async function recoverEvents() {
    try {
      const video = await getVideo(app.video.links.self);
      if (!video) return finishJob({ ...app.video, status: 'canceled' });
      applyVideo(video);
      if (!TERMINAL.has(video.status)) openEvents();
    } catch {
      app.esTimer = setTimeout(recoverEvents, 5000);
    }
  }

  function applyVideo(video) {
    app.video = video;
    if (TERMINAL.has(video.status)) return finishJob(video);
    renderJob({
      status: video.status, step: video.step, progress: video.progress,
      queue_position: video.queue_position, eta_seconds: null, speed: null,
    });
  }

  function renderJob(update) {
    // Terminal states arrive as their own events, with the full resource.
    if (TERMINAL.has(update.status)) return;
    const job = app.job;
    const previous = job.status;
    if (update.status) job.status = update.status;
    if (update.step) job.step = update.step;
    if (typeof update.percent === 'number') job.percent = update.percent;
    else if (typeof update.progress === 'number') job.percent = update.progress * 100;
    for (const key of ['eta_seconds', 'queue_position', 'speed']) {
      if (key in update) job[key] = update[key];
    }
    const percent = Math.max(0, Math.min(100, job.percent || 0));
    const text = jobText(job, percent);
    el.transcodeProgress.value = percent;
    el.transcodeProgress.setAttribute('aria-valuetext', text);
    el.transcodeText.textContent = text;
    if (job.status && job.status !== previous) {
      setState(job.status);
      announce(job.status === 'queued' ? 'Waiting in queue' : 'Processing started');
    }
    updateRow(app.video.id, job.status, percent);
  }

  function jobText(job, percent) {
    if (job.status === 'queued') {
      return job.queue_position ? `Waiting · #${job.queue_position} in queue` : 'Waiting in queue';
    }
    const parts = [STEP_LABELS[job.step] || 'Processing', `${Math.floor(percent)}%`];
    if (job.speed) parts.push(`${job.speed.toFixed(1)}× speed`);
    const eta = formatEta(job.eta_seconds);
    if (eta) parts.push(eta);
    return parts.join(' · ');
  }

  function finishJob(video) {
    closeEvents();
    app.video = video;
    app.job.status = video.status;
    setState(video.status);
    el.transcodeStatus.hidden = false;
    if (video.status === 'ready') {
      el.transcodeProgress.value = 100;
      el.transcodeText.textContent = 'Ready to play.';
      announce('Your video is ready to play.');
      loadPlayer(video);
    } else if (video.status === 'failed') {
      el.transcodeText.textContent = 'Processing failed.';
      const reason = video.error && video.error.message;
      failJob(reason ? `We couldn’t process this video: ${reason}` : 'We couldn’t process this video.');
    } else {
      el.transcodeText.textContent = 'Processing was canceled.';
      announce('Processing was canceled.');
    }
    el.transcodeProgress.setAttribute('aria-valuetext', el.transcodeText.textContent);
    refreshList();
  }

  // ---------- player ----------

  function destroyPlayer() {
    if (app.hls) app.hls.destroy();
    app.hls = null;
    app.mode = null;
    app.playing = null;
    el.player.removeAttribute('src');
    el.player.removeAttribute('poster');
    el.player.load();
    el.renditions.replaceChildren();
    showMessage(el.playerMessage, '');
  }

  function loadPlayer(video) {
    destroyPlayer();
    app.playing = video;
    el.playerSection.hidden = false;
    el.playerHeading.textContent = displayName(video);
    if (video.links.poster) el.player.poster = video.links.poster;
    const url = video.links.playlist;
    if (el.player.canPlayType('application/vnd.apple.mpegurl')) {
      app.mode = 'native';
      el.player.src = url;
    } else if (window.Hls && window.Hls.isSupported()) {
      app.mode = 'hls';
      app.hls = createHls(url);
    } else {
      showMessage(el.playerMessage, 'This browser cannot play HLS video.');
      return;
    }
    renderRenditions(video);
  }

  function createHls(url) {
    const Hls = window.Hls;
    const hls = new Hls();
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal) return;
      // The two recoverable cases per the hls.js docs; anything else is final.
      if (data.type === Hls.ErrorTypes.NETWORK_ERROR) hls.startLoad();
      else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
      else showMessage(el.playerMessage, 'Playback failed. Please reload the page.');
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_event, data) => markPlayingLevel(data.level));
    hls.loadSource(url);
    hls.attachMedia(el.player);
    return hls;
  }

  function renderRenditions(video) {
    const pick = (index) => () => selectRendition(index);
    const autoButton = h('button', {
      type: 'button', class: 'chip', id: 'rendition-auto', dataset: { name: 'auto' },
      'aria-pressed': 'true', onclick: pick(-1),
    }, 'Auto');
    const buttons = (video.renditions || []).map((r, i) => h('button', {
      type: 'button', class: 'chip rendition', dataset: { name: r.name }, 'aria-pressed': 'false',
      onclick: pick(i),
    }, r.name, h('span', { class: 'chip-detail' },
      `${r.width}×${r.height} · ${formatBitrate(r.average_bandwidth || r.bandwidth)}`)));
    el.renditions.replaceChildren(autoButton, ...buttons);
  }

  function selectRendition(index) {
    const video = app.playing;
    if (!video) return;
    if (app.mode === 'hls') {
      app.hls.currentLevel = index < 0 ? -1 : hlsLevelFor(video.renditions[index], index);
    } else if (app.mode === 'native') {
      const url = index < 0 ? video.links.playlist
        : new URL(video.renditions[index].playlist, new URL(video.links.playlist, location.href)).href;
      switchNativeSource(url);
    }
    [...el.renditions.children].forEach((button, i) => {
      button.setAttribute('aria-pressed', String(i === index + 1));
    });
  }

  // hls.js drops levels it cannot decode, so match by bitrate before trusting the index.
  function hlsLevelFor(rendition, index) {
    const found = app.hls.levels.findIndex((l) => l.bitrate === rendition.bandwidth);
    return found >= 0 ? found : index;
  }

  function markPlayingLevel(level) {
    const lvl = app.hls && app.hls.levels[level];
    const renditions = (app.playing && app.playing.renditions) || [];
    const current = lvl ? renditions.findIndex((r) => r.bandwidth === lvl.bitrate) : -1;
    const index = current >= 0 ? current : level;
    [...el.renditions.querySelectorAll('.rendition')].forEach((button, i) => {
      button.classList.toggle('is-playing', i === index);
    });
    const auto = $('rendition-auto');
    if (auto) auto.textContent = renditions[index] ? `Auto (${renditions[index].name})` : 'Auto';
  }

  function switchNativeSource(url) {
    const player = el.player;
    const time = player.currentTime;
    const resume = !player.paused;
    player.src = url;
    // currentTime can only be restored once the new source knows its duration.
    player.addEventListener('loadedmetadata', () => {
      if (time) player.currentTime = time;
      if (resume) player.play().catch(() => {});
    }, { once: true });
  }

  // ---------- video list ----------

  async function loadList(append) {
    const seq = ++app.listSeq;
    showMessage(el.listError, '');
    try {
      const page = await listVideos(append ? app.cursor : null);
      if (seq !== app.listSeq) return; // a newer load has started
      if (!append) el.list.replaceChildren();
      for (const video of page.items || []) {
        if (!findRow(video.id)) el.list.append(renderRow(video));
      }
      app.cursor = page.next_cursor || null;
      el.loadMore.hidden = !app.cursor;
      updateEmpty();
    } catch (err) {
      if (seq === app.listSeq) showMessage(el.listError, `Couldn’t load your videos. ${err.message}`);
    }
  }

  const refreshList = () => loadList(false);
  const updateEmpty = () => { el.listEmpty.hidden = el.list.children.length > 0; };
  const findRow = (id) => [...el.list.children].find((row) => row.dataset.id === id);

  function renderRow(video) {
    const created = new Date(video.created_at);
    const row = h('li', { class: 'video-row', dataset: { id: video.id } },
      h('div', { class: 'row-main' },
        h('p', { class: 'row-title' }, displayName(video)),
        h('p', { class: 'row-meta' },
          h('span', { class: 'badge' }),
          h('span', { class: 'row-progress' }),
          h('time', { datetime: video.created_at },
            created.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' })))),
      h('div', { class: 'row-actions' },
        video.status === 'ready' ? h('button', {
          type: 'button', class: 'button primary small', onclick: () => playFromList(video),
        }, 'Play') : null,
        h('a', { class: 'button small', href: video.links.source, download: true }, 'Download original'),
        h('button', {
          type: 'button', class: 'button danger small',
          'aria-label': `Delete ${displayName(video)}`,
          onclick: (e) => removeVideo(video, row, e.currentTarget),
        }, 'Delete')));
    updateRow(video.id, video.status, (video.progress || 0) * 100, row);
    return row;
  }

  function updateRow(id, status, percent, row = findRow(id)) {
    if (!row || !status) return;
    const badge = row.querySelector('.badge');
    badge.className = `badge status-${status}`;
    badge.textContent = STATUS_LABELS[status] || status;
    const progress = row.querySelector('.row-progress');
    progress.textContent = status === 'processing' ? `${Math.floor(percent)}%` : '';
    progress.hidden = status !== 'processing';
  }

  function playFromList(video) {
    loadPlayer(video);
    el.playerSection.scrollIntoView({ behavior: 'smooth', block: 'start' });
  }

  async function removeVideo(video, row, button) {
    if (!window.confirm(`Delete “${displayName(video)}”? This cannot be undone.`)) return;
    button.disabled = true;
    try {
      await deleteVideo(video.links.self); // 404 means it was already gone: same outcome
      row.remove();
      updateEmpty();
      if (app.playing && app.playing.id === video.id) {
        destroyPlayer();
        el.playerSection.hidden = true;
      }
      if (app.video && app.video.id === video.id && !TERMINAL.has(app.job.status)) finishJob({ ...app.video, status: 'canceled' });
    } catch (err) {
      button.disabled = false;
      showMessage(el.listError, `Couldn’t delete “${displayName(video)}”. ${err.message}`);
    }
  }

  // ---------- wiring ----------

  function bindDropZone() {
    const zone = el.dropZone;
    let depth = 0; // dragenter/leave fire for every child element
    const setActive = (on) => zone.classList.toggle('is-dragging', on);
    zone.addEventListener('dragenter', (e) => { e.preventDefault(); depth++; setActive(true); });
    zone.addEventListener('dragleave', () => { depth = Math.max(0, depth - 1); if (!depth) setActive(false); });
    zone.addEventListener('dragover', (e) => { e.preventDefault(); e.dataTransfer.dropEffect = 'copy'; });
    zone.addEventListener('drop', (e) => {
      e.preventDefault();
      depth = 0;
      setActive(false);
      const file = e.dataTransfer.files[0];
      if (!file) return;
      try { el.fileInput.files = e.dataTransfer.files; } catch { /* older browsers: keep app.file only */ }
      setFile(file);
    });
    zone.addEventListener('click', (e) => {
      if (e.target === zone || e.target.tagName === 'P') el.fileInput.click();
    });
    // A file dropped beside the zone would otherwise make the browser navigate away to it.
    for (const type of ['dragover', 'drop']) {
      window.addEventListener(type, (e) => {
        if (zone.contains(e.target)) return;
        e.preventDefault();
        if (e.dataTransfer) e.dataTransfer.dropEffect = 'none';
      });
    }
  }

  function init() {
    setState('idle');
    bindDropZone();
    el.fileInput.addEventListener('change', () => setFile(el.fileInput.files[0]));
    el.form.addEventListener('submit', (e) => { e.preventDefault(); startUpload(); });
    el.cancelUpload.addEventListener('click', () => { if (app.xhr) app.xhr.abort(); });
    el.refreshList.addEventListener('click', refreshList);
    el.loadMore.addEventListener('click', () => loadList(true));
    el.player.addEventListener('error', () => {
      if (app.mode === 'native') showMessage(el.playerMessage, 'This video could not be played.');
    });
    window.addEventListener('beforeunload', (e) => {
      if (!app.xhr) return;
      e.preventDefault();
      e.returnValue = ''; // still required by some browsers to show the prompt
    });
    refreshList();
  }

  init();
})();
