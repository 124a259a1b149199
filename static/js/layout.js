// Sizes the tiles so that all of them fit the call area without scrolling, as large as
// possible: for n tiles of aspect 4:3 in a W x H area, try every column count and keep the one
// that gives the widest tile. The result is the grid's `--tile-w` (CSS does the rest); below
// MIN_TILE_W the grid scrolls instead. In the stage layout the strip has its own size (CSS).

const ASPECT = 4 / 3;
const MIN_TILE_W = 160;

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
    new MutationObserver(schedule).observe(area, { attributes: true, attributeFilter: ['data-layout'] });
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.update();
    });
  }

  update() {
    if (this.area.dataset.layout !== 'grid' || this.area.offsetParent === null) {
      this.grid.style.removeProperty('--tile-w');
      return;
    }
    const style = getComputedStyle(this.area);
    const padX = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
    const padY = parseFloat(style.paddingTop) + parseFloat(style.paddingBottom);
    const gap = parseFloat(getComputedStyle(this.grid).columnGap) || 0;
    const n = this.grid.children.length;
    // 4 px of slack for the tiles' borders and rounding.
    const w = bestTileWidth(n, this.area.clientWidth - padX - 4, this.area.clientHeight - padY - 4, gap);
    this.grid.style.setProperty('--tile-w', `${Math.max(w, Math.min(MIN_TILE_W, this.area.clientWidth - padX))}px`);
  }
}
