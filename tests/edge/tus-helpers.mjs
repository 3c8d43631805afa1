// Shared by the tus specs: a TCP proxy that cuts connections and can slow them down, an
// upload with tus-js-client in Node, a bigger test clip, and reading a video's source back.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import * as tus from 'tus-js-client';

/**
 * A TCP proxy to `upstream` (host:port) on a free port. The first `cuts` connections that
 * carry `cutAfter` bytes from the client are cut there (both sides closed at once, as when a
 * phone loses its network); `rate` (bytes/s) slows client-to-server bytes down.
 * Returns { url, port, stats: { connections, cuts, bytesUp }, close() }.
 */
export async function startProxy(upstream, { cutAfter = Infinity, cuts = 0, rate = Infinity } = {}) {
  const [host, port] = upstream.split(':');
  const stats = { connections: 0, cuts: 0, bytesUp: 0 };
  const sockets = new Set();
  const server = net.createServer((client) => {
    stats.connections += 1;
    const remote = net.connect(Number(port), host);
    sockets.add(client);
    sockets.add(remote);
    let carried = 0;
    const started = Date.now();
    const close = () => { client.destroy(); remote.destroy(); };
    client.on('data', (chunk) => {
      if (carried + chunk.length >= cutAfter && stats.cuts < cuts) {
        stats.cuts += 1;
        remote.write(chunk.subarray(0, cutAfter - carried));
        stats.bytesUp += cutAfter - carried;
        close();
        return;
      }
      carried += chunk.length;
      stats.bytesUp += chunk.length;
      remote.write(chunk);
      if (Number.isFinite(rate)) {
        const due = started + (carried / rate) * 1000;
        const wait = due - Date.now();
        if (wait > 0) {
          client.pause();
          setTimeout(() => client.resume(), wait);
        }
      }
    });
    remote.on('data', (chunk) => client.write(chunk));
    for (const socket of [client, remote]) {
      socket.on('error', close);
      socket.on('close', () => { sockets.delete(socket); close(); });
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: own } = server.address();
  return {
    url: `http://127.0.0.1:${own}`,
    port: own,
    stats,
    /** Cuts every open connection (the network drops), keeps listening. */
    cutAll: () => { for (const socket of sockets) socket.destroy(); },
    close: () => new Promise((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    }),
  };
}

/**
 * Uploads `file` to `base` with tus-js-client (Node); resolves { uploadUrl, video } where
 * `video` is the X-Reel-Video the server answered with, or rejects with tus-js-client's error.
 */
export function tusUpload(base, file, { chunkSize, metadata = {}, retryDelays = [0, 500, 1000, 2000], onRetry } = {}) {
  return new Promise((resolve, reject) => {
    let video = null;
    const upload = new tus.Upload(fs.createReadStream(file), {
      endpoint: `${base}/api/v1/uploads`,
      ...(chunkSize ? { chunkSize } : {}),
      retryDelays,
      metadata: { filename: path.basename(file), ...metadata },
      onShouldRetry: (err, attempt, options) => {
        onRetry?.(err, attempt);
        const status = err.originalResponse ? err.originalResponse.getStatus() : 0;
        return attempt < options.retryDelays.length && (!status || status >= 500 || status === 409 || status === 423);
      },
      onAfterResponse: (req, res) => {
        video = res.getHeader('X-Reel-Video') || video;
      },
      onError: reject,
      onSuccess: () => resolve({ uploadUrl: upload.url, video }),
    });
    upload.start();
  });
}

/** An H.264 MP4 of about `mib` MiB (a high bitrate keeps the encode short). */
export function makeBigClip(dir, { mib = 8, seconds = 8, name = `big-${mib}MiB.mp4` } = {}) {
  const out = path.join(dir, name);
  // Audio takes a little: the video gets the rest.
  const kbits = Math.round((mib * 8 * 1024 * 1024) / seconds / 1000) - 128;
  const result = spawnSync('ffmpeg', [
    '-v', 'error', '-nostdin', '-y',
    '-f', 'lavfi', '-i', `testsrc2=size=640x360:rate=30:duration=${seconds}`,
    '-f', 'lavfi', '-i', `sine=frequency=440:duration=${seconds}`,
    '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p',
    // Constant bitrate with filler, so the file has the size asked for.
    '-b:v', `${kbits}k`, '-minrate', `${kbits}k`, '-maxrate', `${kbits}k`, '-bufsize', `${Math.round(kbits / 2)}k`,
    '-x264-params', 'nal-hrd=cbr',
    '-c:a', 'aac', '-shortest', '-movflags', '+faststart', out,
  ], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ffmpeg failed: ${result.stderr || result.error}`);
  return out;
}

/** The id at the end of a video URL (`/api/v1/videos/<id>`). */
export const videoId = (url) => url.split('/').pop();

/** True when the video's stored source is `file`, byte for byte. */
export function sameSource(mediaDir, id, file) {
  const source = path.join(mediaDir, 'sources', id);
  return fs.existsSync(source) && fs.readFileSync(source).equals(fs.readFileSync(file));
}
