// The quality menu under the player: "Auto" or one rung, and a line saying which rung is on
// screen right now ("Playing 360p", or "Playing 720p · switching to 240p" until it shows).

import { h } from './dom.js';

/**
 * Fills the menu for `player` (from attachPlayer); returns { show(rung|null) } for its events
 * and `refresh()` for when its renditions change (a growing ladder became the finished one).
 */
export function setUpQuality({ box, select, now }, player) {
  let chosen = -1;
  let onScreen = null;

  function fill() {
    // Highest first, as video sites list them.
    const order = player.renditions.map((r, i) => i).reverse();
    select.replaceChildren(
      h('option', { value: '-1' }, 'Auto'),
      ...order.map((i) => h('option', { value: String(i) }, player.renditions[i].name)),
    );
    select.value = String(chosen);
    box.hidden = player.renditions.length === 0;
  }

  function render() {
    const auto = select.options[0];
    auto.textContent = chosen < 0 && onScreen ? `Auto (${onScreen.name})` : 'Auto';
    const target = chosen >= 0 ? player.renditions[chosen] : null;
    if (!onScreen) now.textContent = '';
    else if (target && target.name !== onScreen.name) now.textContent = `Playing ${onScreen.name} · switching to ${target.name}`;
    else now.textContent = `Playing ${onScreen.name}`;
    box.dataset.playing = onScreen ? onScreen.name : '';
  }

  select.addEventListener('change', () => {
    chosen = Number(select.value);
    player.select(chosen);
    render();
  });
  fill();
  return {
    show(rendition) {
      onScreen = rendition;
      render();
    },
    refresh() {
      // The same rung stays chosen (by name) in the new list.
      const name = chosen >= 0 ? select.options[select.selectedIndex].textContent : null;
      chosen = name == null ? -1 : player.renditions.findIndex((r) => r.name === name);
      fill();
      onScreen = player.onScreen();
      render();
    },
  };
}
