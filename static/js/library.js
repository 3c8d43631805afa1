// The library page (the creator's studio): upload, then every video with live progress.

import { $, announcer, flash, showMessage } from './lib/dom.js';
import { setUpLibrary } from './lib/library-view.js';
import { setUpSignIn } from './lib/sign-in.js';
import { setUpUploadForm } from './lib/upload-form.js';

const announce = announcer($('announce'));
const flashed = flash.take();
if (flashed) {
  showMessage($('flash'), flashed);
  announce(flashed);
}
const library = setUpLibrary({ announce });
setUpUploadForm({ announce, onUploaded: () => library.reload() });
setUpSignIn({ onChange: () => library.reload() });
