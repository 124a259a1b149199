// Sizes the tiles so that all of them fit the call area without scrolling, as large as
// possible: for n tiles of aspect 4:3 in a W x H area, try every column count and keep the one
// that gives the widest tile. The result is the grid's `--tile-w` (CSS does the rest); below
// MIN_TILE_W the grid scrolls instead. In the stage layout the strip has its own size (CSS).
//
// Phones (a call area at most PHONE_MAX_W wide) with three tiles or more: two columns of
// portrait-leaning tiles (between 4:3 and 3:4, as tall as the height allows) instead of one
// narrow column; the grid's `data-columns="2"` and `--tile-h` carry it to CSS. In the speaker
// view (speakerview.js: `data-view="speaker"`) the strip has its own size too.

const ASPECT = 4 / 3;
const MIN_TILE_W = 160;
const PHONE_MAX_W = 600;
const PHONE_TWO_COLUMNS_FROM = 3;

/**
 * The phone grid for `n` tiles in `width` x `height` (px) with `gap`: {w, h} of each tile in
 * two columns, or null when the area is wider than a phone or holds fewer than 3 tiles.
 */
export function phoneTileSize(n, width, height, gap) {
  if (width > PHONE_MAX_W || n < PHONE_TWO_COLUMNS_FROM || width <= 0 || height <= 0) return null;
  const w = Math.floor((width - gap) / 2);
  const rows = Math.ceil(n / 2);
  const fit = Math.floor((height - gap * (rows - 1)) / rows);
  const h = Math.max(Math.round((w * 3) / 4), Math.min(Math.round((w * 4) / 3), fit));
  return { w, h };
}

/** The widest tile width for `n` tiles in `width` x `height` with `gap` between them. */
export function bestTileWidth(n, width, height, gap) {
  if (n <= 0 || width <= 0 || height <= 0) return 0;
  let best = 0;
  for (let cols = 1; cols <= n; cols += 1) {
    const rows = Math.ceil(n / cols);
    const w = Math.min((width - gap * (cols - 1)) / cols, ((height - gap * (rows - 1)) / rows) * ASPECT);
    if (w > best) best = w;
  }
  return Math.floor(best);
}

export class GridLayout {
  /**
   * @param {HTMLElement} area  the call area (#call-main), whose size the tiles share
   * @param {HTMLElement} grid  the tiles' list (#grid)
   */
  constructor(area, grid) {
    this.area = area;
    this.grid = grid;
    this.frame = 0;
    const schedule = () => this.schedule();
    new ResizeObserver(schedule).observe(area);
    new MutationObserver(schedule).observe(grid, { childList: true });
    new MutationObserver(schedule).observe(area, { attributes: true, attributeFilter: ['data-layout', 'data-view'] });
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.update();
    });
  }

  update() {
    if (
      this.area.dataset.layout !== 'grid' ||
      this.area.dataset.view === 'speaker' ||
      this.area.offsetParent === null
    ) {
      this.grid.style.removeProperty('--tile-w');
      this.grid.style.removeProperty('--tile-h');
      delete this.grid.dataset.columns;
      return;
    }
    const style = getComputedStyle(this.area);
    const padX = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
    const padY = parseFloat(style.paddingTop) + parseFloat(style.paddingBottom);
    const gap = parseFloat(getComputedStyle(this.grid).columnGap) || 0;
    const n = this.grid.children.length;
    // 4 px of slack for the tiles' borders and rounding.
    const width = this.area.clientWidth - padX - 4;
    const height = this.area.clientHeight - padY - 4;
    const phone = phoneTileSize(n, width, height, gap);
    if (phone) {
      this.grid.dataset.columns = '2';
      this.grid.style.setProperty('--tile-w', `${phone.w}px`);
      this.grid.style.setProperty('--tile-h', `${phone.h}px`);
      return;
    }
    delete this.grid.dataset.columns;
    this.grid.style.removeProperty('--tile-h');
    const w = bestTileWidth(n, width, height, gap);
    this.grid.style.setProperty('--tile-w', `${Math.max(w, Math.min(MIN_TILE_W, this.area.clientWidth - padX))}px`);
  }
}
