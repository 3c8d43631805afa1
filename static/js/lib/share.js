// Copying links and the embed code.

/** Copies `text`; resolves false when the browser would not (the page then shows it). */
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch { /* denied: try the old way */ }
  // http:// on a LAN address is not a secure context, so there is no clipboard API there.
  const area = document.createElement('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.style.position = 'fixed';
  area.style.opacity = '0';
  document.body.append(area);
  area.select();
  let copied = false;
  try { copied = document.execCommand('copy'); } catch { copied = false; }
  area.remove();
  return copied;
}

const escapeAttr = (text) => text.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');

/** An <iframe> for other sites, sized to the video's shape (640 px on its long side). */
export function embedCode(embedUrl, title, aspect) {
  const ratio = aspect || 16 / 9;
  const [width, height] = ratio >= 1 ? [640, Math.round(640 / ratio)] : [Math.round(640 * ratio), 640];
  return `<iframe src="${escapeAttr(embedUrl)}" title="${escapeAttr(title)}" width="${width}" height="${height}" `
    + `style="border:0;max-width:100%;height:auto;aspect-ratio:${width}/${height}" `
    + 'allow="fullscreen; picture-in-picture" allowfullscreen></iframe>';
}
