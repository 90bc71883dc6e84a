/**
 * The Firmament TUI: one blessed screen with eight panes, a status line and
 * a prompt, driven by the keyboard (and the mouse for focus and scrolling).
 *
 * Refresh never blocks the guest: the screen is redrawn at most 10 times a
 * second; while the machine runs only the cheap views (timeline, consoles,
 * events, vCPUs) are fetched every tick and the CPU-state views twice a
 * second; while it is paused nothing is fetched until something changes.
 */
import blessed from 'blessed';
import type { AnomalyNotice, SessionSnapshot } from '../machine/debug/protocol.js';
import type { SnapshotPart, SnapshotRequest } from '../machine/inspect/snapshot.js';
import { parseAddress } from '../machine/inspect/hex.js';
import type { TuiTarget } from './target.js';
import { computeLayout, type Rect } from './layout.js';
import { KEY_BINDINGS, helpLines, type Action } from './keys.js';
import { PANES } from './panes/index.js';
import { memoryRowBytes } from './panes/memory-pane.js';
import { PANE_IDS, PANE_TITLES, initialUiState, type PaneId, type UiState } from './ui-state.js';
import { esc, fit, shortHex, visibleLength } from './text.js';

const TICK_MS = 100;
/** CPU-state views refresh every this many ticks while the machine runs. */
const HEAVY_EVERY = 5;
const LIGHT_PARTS: SnapshotPart[] = ['timeline', 'consoles', 'events', 'vcpus'];
const HEAVY_PARTS: SnapshotPart[] = ['cpu', 'disassembly', 'memory', 'pageWalk'];

export interface TuiOptions {
  target: TuiTarget;
  /** Called once the user quits (after the screen is torn down). */
  onQuit: () => void;
  /** CPU selected at start (e.g. the first guest vCPU when running a kernel). */
  initialCpu?: number;
  screen?: blessed.Widgets.Screen;
}

interface PromptState {
  label: string;
  text: string;
  submit: (text: string) => Promise<void> | void;
}

export class TuiApp {
  readonly ui: UiState = initialUiState();
  private readonly screen: blessed.Widgets.Screen;
  private readonly boxes = {} as Record<PaneId, blessed.Widgets.BoxElement>;
  private readonly statusBar: blessed.Widgets.BoxElement;
  private readonly help: blessed.Widgets.BoxElement;
  private snap: SessionSnapshot | null = null;
  private layout: Record<PaneId, Rect>;
  private prompt: PromptState | null = null;
  private timer: NodeJS.Timeout | null = null;
  private inFlight = false;
  private dirtyHeavy = true;
  private dirtyLight = true;
  private ticks = 0;
  private closed = false;
  /** The monitor connection went away: the last screen stays, nothing is fetched any more. */
  private disconnected = false;
  private readonly target: TuiTarget;

  constructor(private readonly opts: TuiOptions) {
    this.target = opts.target;
    this.ui.cpu = opts.initialCpu ?? 0;
    // Draw borders with UTF-8 box characters, not the DEC line-drawing set (which tmux capture shows as 'qqqx').
    process.env['NCURSES_NO_UTF8_ACS'] ??= '1';
    this.screen = opts.screen ?? blessed.screen({ smartCSR: true, fullUnicode: true, forceUnicode: true, title: 'firmament', autoPadding: false, warnings: false });
    this.layout = computeLayout(this.cols, this.rows);
    PANE_IDS.forEach((id, i) => {
      const box = blessed.box({ parent: this.screen, border: { type: 'line' }, tags: true, wrap: false, label: ` ${i + 1} ${PANE_TITLES[id]} `, style: { border: { fg: 'gray' }, label: { fg: 'white' } } });
      box.on('click', () => this.setFocus(id));
      box.on('wheelup', () => this.scrollPane(id, -3));
      box.on('wheeldown', () => this.scrollPane(id, 3));
      this.boxes[id] = box;
    });
    this.statusBar = blessed.box({ parent: this.screen, bottom: 0, left: 0, height: 1, width: '100%', tags: true, style: { bg: 'blue', fg: 'white' } });
    this.help = blessed.box({ parent: this.screen, top: 'center', left: 'center', width: '100%-4', height: '100%-3', border: { type: 'line' }, tags: true, hidden: true, label: ' Keys (arrows scroll, any other key closes) ', scrollable: true, style: { bg: 'black', border: { fg: 'yellow' } } });
    this.help.setContent(helpLines().join('\n'));
    this.screen.on('keypress', (ch: string | undefined, key: blessed.Widgets.Events.IKeyEventArg) => this.onKey(ch, key));
    this.screen.on('resize', () => {
      this.applyLayout();
      this.render();
    });
    this.target.onEvent((ev) => {
      if (ev.event === 'stop') {
        this.ui.message = { text: ev.data.message, error: false };
        this.dirtyHeavy = true;
        this.ui.scroll.disasm = undefined;
        void this.refresh(true);
      } else if (ev.event === 'resumed') {
        this.dirtyHeavy = true;
      } else if (ev.event === 'anomaly') {
        this.addAnomalies([ev.data]);
      }
      this.dirtyLight = true;
    });
    this.target.onClose((why) => {
      if (this.closed) return;
      this.disconnected = true;
      this.ui.message = { text: `connection lost: ${why}`, error: true };
      this.render();
    });
  }

  private get cols(): number {
    return (this.screen.width as number) || 80;
  }

  private get rows(): number {
    return (this.screen.height as number) || 24;
  }

  start(): void {
    this.applyLayout();
    this.render();
    void this.refresh(true);
    this.timer = setInterval(() => void this.tick(), TICK_MS);
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.screen.destroy();
  }

  // ------------------------------------------------------------------ data
  private async tick(): Promise<void> {
    if (this.disconnected) return;
    this.ticks++;
    const state = this.snap?.status.state ?? 'running';
    if (state === 'running') {
      this.dirtyLight = true;
      if (this.ticks % HEAVY_EVERY === 0) this.dirtyHeavy = true;
    }
    if (this.dirtyLight || this.dirtyHeavy) await this.refresh(false);
  }

  private snapshotRequest(heavy: boolean): SnapshotRequest {
    const mem = this.layout.memory;
    const rowBytes = memoryRowBytes(Math.max(10, mem.width - 2));
    const memRows = Math.max(4, (this.ui.zoom ? this.rows : mem.height) - 2);
    const disasmRows = Math.max(8, (this.ui.zoom && this.ui.focus === 'disasm' ? this.rows : this.layout.disasm.height) - 2);
    const before = Math.min(8, Math.floor(disasmRows / 3));
    return {
      cpu: this.ui.cpu,
      parts: heavy ? [...LIGHT_PARTS, ...HEAVY_PARTS] : LIGHT_PARTS,
      memory: { space: this.ui.memory.space, address: `0x${this.ui.memory.address.toString(16)}`, length: rowBytes * memRows },
      disassembly: { ...(this.ui.disasmAddress !== null ? { address: `0x${this.ui.disasmAddress.toString(16)}` } : {}), count: disasmRows - before + 4, before },
      pageWalk: this.ui.walkAddress !== null ? { address: `0x${this.ui.walkAddress.toString(16)}` } : null,
      events: { limit: 300 },
      consoles: { tailBytes: 32 * 1024 },
      timeline: { limit: 512 },
    };
  }

  /** Fetches a snapshot (all views when `force` or CPU state is stale) and redraws. */
  private async refresh(force: boolean): Promise<void> {
    if (this.inFlight || this.closed) {
      if (force) this.dirtyHeavy = true;
      return;
    }
    const heavy = force || this.dirtyHeavy;
    this.inFlight = true;
    this.dirtyLight = false;
    if (heavy) this.dirtyHeavy = false;
    try {
      const next = await this.target.call('snapshot', this.snapshotRequest(heavy));
      // A stop that happened before the TUI subscribed (e.g. --break post:0x01) still gets shown.
      if (!this.snap && !this.ui.message && next.status.lastStop) this.ui.message = { text: next.status.lastStop.message, error: false };
      // A run-state change seen by a light fetch (a stop event we raced) needs the CPU views too.
      if (!heavy && this.snap && next.status.state !== this.snap.status.state) this.dirtyHeavy = true;
      // Views not fetched this time keep their last value.
      this.snap = this.snap && !heavy ? { ...this.snap, ...next, cpu: this.snap.cpu, disassembly: this.snap.disassembly, memory: this.snap.memory, pageWalk: this.snap.pageWalk, errors: { ...pick(this.snap.errors, HEAVY_PARTS), ...next.errors } } : next;
    } catch (e) {
      this.ui.message = { text: (e as Error).message, error: true };
    } finally {
      this.inFlight = false;
    }
    await this.fetchAnomalies();
    this.render();
  }

  /** New anomalies for the Security pane (events bring them too; this catches up after attaching). */
  private async fetchAnomalies(): Promise<void> {
    const s = this.ui.security;
    if (s.unavailable !== null || this.closed) return;
    try {
      const { anomalies } = await this.target.call('anomalies', { since: s.anomalies.at(-1)?.id ?? 0 });
      this.addAnomalies(anomalies);
    } catch (e) {
      s.unavailable = (e as Error).message;
    }
  }

  private addAnomalies(list: readonly AnomalyNotice[]): void {
    const s = this.ui.security;
    const last = s.anomalies.at(-1)?.id ?? 0;
    for (const a of list) if (a.id > last && !s.anomalies.some((b) => b.id === a.id)) s.anomalies.push(a);
    s.anomalies.sort((a, b) => a.id - b.id);
    this.dirtyLight = true;
  }

  /** Enter on the Security pane: the anomaly's VM becomes the selected CPU (its first vCPU) and console. */
  private jumpToVm(): void {
    const s = this.ui.security;
    const a = s.anomalies[s.selected < 0 ? s.anomalies.length - 1 : s.selected];
    if (this.ui.focus !== 'security' || !a) return;
    const vm = this.snap?.vcpus?.vms.find((v) => v.name === a.vm);
    const cpu = vm?.vcpus[0];
    if (!cpu) {
      this.ui.message = { text: `VM ${a.vm} is not on this machine`, error: true };
      return;
    }
    this.ui.cpu = cpu.index;
    const console = `vm:${a.vm}:com1`;
    if (this.snap?.consoles?.consoles.some((c) => c.id === console)) this.ui.consoleId = console;
    this.ui.scroll.console = undefined;
    this.ui.disasmAddress = null;
    this.ui.message = { text: `VM ${a.vm}: ${a.description}`, error: false };
    this.setFocus('cpu');
    void this.refresh(true);
  }

  // ------------------------------------------------------------------ drawing
  private applyLayout(): void {
    this.layout = computeLayout(this.cols, this.rows, this.ui.zoom ? this.ui.focus : null);
    for (const id of PANE_IDS) {
      const r = this.layout[id];
      const box = this.boxes[id];
      if (r.width < 3 || r.height < 3) {
        box.hide();
        continue;
      }
      box.show();
      box.left = r.left;
      box.top = r.top;
      box.width = r.width;
      box.height = r.height;
    }
  }

  private render(): void {
    if (this.closed) return;
    PANE_IDS.forEach((id, i) => {
      const r = this.layout[id];
      if (r.width < 3 || r.height < 3) return;
      const innerW = r.width - 2;
      const innerH = r.height - 2;
      const content = PANES[id].render(this.snap, this.ui, innerW);
      const natural = content.follow === 'tail' ? content.lines.length - innerH : content.follow === 'anchor' ? (content.anchor ?? 0) - Math.floor(innerH / 3) : 0;
      const maxTop = Math.max(0, content.lines.length - innerH);
      const top = Math.max(0, Math.min(maxTop, this.ui.scroll[id] ?? natural));
      const box = this.boxes[id];
      box.setContent(content.lines.slice(top, top + innerH).map((l) => fit(l, innerW)).join('\n'));
      const focused = this.ui.focus === id;
      const more = content.lines.length > innerH ? ` ${top + 1}-${Math.min(content.lines.length, top + innerH)}/${content.lines.length}` : '';
      box.setLabel(fit(` ${i + 1} ${esc(content.title)}${more} `, Math.max(4, r.width - 4)));
      box.style.border = { fg: focused ? 'yellow' : 'gray' };
    });
    this.statusBar.setContent(this.statusLine());
    this.screen.render();
  }

  private statusLine(): string {
    const width = this.cols;
    if (this.prompt) return fit(`{bold}${esc(this.prompt.label)}>{/bold} ${esc(this.prompt.text)}_   {gray-fg}Enter: ok, Esc: cancel{/gray-fg}`, width);
    const st = this.snap?.status;
    const badge = this.disconnected ? '{red-bg}{white-fg} DISCONNECTED {/white-fg}{/red-bg}' : !st ? '{black-bg} ...... {/black-bg}' : st.state === 'running' ? '{green-bg}{black-fg} RUNNING {/black-fg}{/green-bg}' : st.state === 'paused' ? '{yellow-bg}{black-fg} PAUSED {/black-fg}{/yellow-bg}' : '{red-bg}{white-fg} EXITED {/white-fg}{/red-bg}';
    const cpu = this.snap?.cpu;
    const where = cpu ? `cpu${this.ui.cpu} ${cpu.mode} ${shortHex(cpu.linearRip)}` : `cpu${this.ui.cpu}`;
    const post = this.snap?.timeline?.last ? `POST ${this.snap.timeline.last.hex} ${this.snap.timeline.last.name}` : 'POST --';
    const t = st ? `${st.nowMs.toFixed(3)}ms` : '';
    const counts = st ? `bp:${st.breakpoints.length} w:${st.watches.length}${st.modeSwitchArmed ? ' modebp' : ''}` : '';
    const msg = this.ui.message ? (this.ui.message.error ? `{red-fg}${esc(this.ui.message.text)}{/red-fg}` : esc(this.ui.message.text)) : st?.exit ? esc(`exit: ${st.exit.reason} code ${st.exit.code}`) : '';
    const left = `${badge} ${esc(where)} | ${esc(post)} | ${t} | ${counts} | ${msg}`;
    const right = ' ? help  q quit ';
    const shown = fit(left, Math.max(10, width - right.length));
    return shown + ' '.repeat(Math.max(0, width - right.length - visibleLength(shown))) + right;
  }

  // ------------------------------------------------------------------ input
  private onKey(ch: string | undefined, key: blessed.Widgets.Events.IKeyEventArg): void {
    if (this.closed) return;
    if (this.prompt) return this.promptKey(ch, key);
    if (!this.help.hidden) {
      // The help may not fit a small terminal: arrows and pages scroll it, anything else closes it.
      const scroll: Record<string, number> = { up: -1, k: -1, down: 1, j: 1, pageup: -10, pagedown: 10 };
      const delta = scroll[key.full];
      if (delta !== undefined) this.help.scroll(delta);
      else this.help.hide();
      this.render();
      return;
    }
    if (key.full === 'escape') {
      if (this.ui.zoom) this.dispatch('zoom', key.full);
      this.ui.message = null;
      this.render();
      return;
    }
    const binding = KEY_BINDINGS.find((b) => b.keys.includes(key.full));
    if (binding) this.dispatch(binding.action, key.full);
  }

  private dispatch(action: Action, keyName: string): void {
    const run = (p: Promise<unknown>): void => {
      p.then(() => void this.refresh(true)).catch((e: Error) => {
        this.ui.message = { text: e.message, error: true };
        this.render();
      });
    };
    const state = this.snap?.status.state;
    switch (action) {
      case 'help':
        this.help.show();
        this.help.setFront();
        this.render();
        return;
      case 'quit':
        this.destroy();
        this.opts.onQuit();
        return;
      case 'redraw':
        this.screen.realloc();
        this.render();
        return;
      case 'focus-next':
      case 'focus-prev': {
        const i = PANE_IDS.indexOf(this.ui.focus);
        const n = PANE_IDS.length;
        this.setFocus(PANE_IDS[(i + (action === 'focus-next' ? 1 : n - 1)) % n]!);
        return;
      }
      case 'focus-pane':
        this.setFocus(PANE_IDS[Number(keyName) - 1] ?? this.ui.focus);
        return;
      case 'zoom':
        this.ui.zoom = !this.ui.zoom;
        this.applyLayout();
        this.dirtyHeavy = true;
        void this.refresh(true);
        return;
      case 'jump-to-vm':
        this.jumpToVm();
        this.render();
        return;
      case 'toggle-run':
        run(this.target.call(state === 'running' ? 'pause' : 'resume', {}));
        return;
      case 'pause':
        run(this.target.call('pause', {}));
        return;
      case 'continue':
        this.ui.message = null;
        run(this.target.call('resume', {}));
        return;
      case 'step':
      case 'step-10':
        run(this.target.call('step', { cpu: this.ui.cpu, count: action === 'step' ? 1 : 10 }).then((s) => void (this.ui.message = { text: s.message, error: false })));
        this.ui.disasmAddress = null;
        return;
      case 'mode-run':
        this.ui.message = { text: 'running to the next mode switch...', error: false };
        run(this.target.call('run-to-mode-switch', {}));
        return;
      case 'break':
        this.ask('break (0xADDR | phys 0xADDR | post 0x33)', async (t) => {
          const bp = await this.target.call('break', { spec: t });
          this.ui.message = { text: `breakpoint ${bp.id}: ${bp.text}${bp.resolved ? ` [${bp.resolved.join(', ') || 'no mapping yet'}]` : ''}`, error: false };
        });
        return;
      case 'delete-break':
        this.ask('delete breakpoint (id | all)', async (t) => {
          const ids = t.trim() === 'all' ? (this.snap?.status.breakpoints ?? []).map((b) => b.id) : [Number(t)];
          for (const id of ids) await this.target.call('delete', { id });
          this.ui.message = { text: `deleted ${ids.length} breakpoint(s)`, error: false };
        });
        return;
      case 'watch':
        this.ask('watch (0xADDR [len])', async (t) => {
          const w = await this.target.call('watch', { spec: t });
          this.ui.message = { text: `watch ${w.id}: ${w.address} +${w.length}`, error: false };
        });
        return;
      case 'delete-watch':
        this.ask('delete watch (id | all)', async (t) => {
          const ids = t.trim() === 'all' ? (this.snap?.status.watches ?? []).map((w) => w.id) : [Number(t)];
          for (const id of ids) await this.target.call('unwatch', { id });
          this.ui.message = { text: `deleted ${ids.length} watch(es)`, error: false };
        });
        return;
      case 'goto-memory':
        this.ask(`memory goto (${this.ui.memory.space}; p 0x.. | v 0x..)`, (t) => {
          const m = /^\s*([pv])\s+(.+)$/i.exec(t);
          if (m) this.ui.memory.space = m[1]!.toLowerCase() === 'p' ? 'physical' : 'virtual';
          this.ui.memory.address = parseAddress(m ? m[2]! : t);
          this.ui.scroll.memory = undefined;
        });
        return;
      case 'toggle-space':
        this.ui.memory.space = this.ui.memory.space === 'physical' ? 'virtual' : 'physical';
        void this.refresh(true);
        return;
      case 'translate':
        this.ask('translate virtual address', (t) => {
          this.ui.walkAddress = parseAddress(t);
          this.setFocus('pagewalk');
        });
        return;
      case 'goto-disasm':
        this.ask('disassemble at (empty: follow RIP)', (t) => {
          this.ui.disasmAddress = t.trim() === '' ? null : parseAddress(t);
          this.ui.scroll.disasm = undefined;
        });
        return;
      case 'follow-rip':
        this.ui.disasmAddress = null;
        this.ui.scroll.disasm = undefined;
        void this.refresh(true);
        return;
      case 'prev-cpu':
      case 'next-cpu': {
        const n = (this.snap?.vcpus?.cpus.length ?? 1) + (this.snap?.vcpus?.vms.reduce((k, vm) => k + vm.vcpus.length, 0) ?? 0);
        this.ui.cpu = (this.ui.cpu + (action === 'next-cpu' ? 1 : n - 1)) % Math.max(1, n);
        void this.refresh(true);
        return;
      }
      case 'next-console': {
        const ids = (this.snap?.consoles?.consoles ?? []).map((c) => c.id);
        this.ui.consoleId = ids[(ids.indexOf(this.ui.consoleId) + 1) % Math.max(1, ids.length)] ?? 'com1';
        this.ui.scroll.console = undefined;
        this.render();
        return;
      }
      case 'serial-input':
        this.ask('type into COM1 (Enter sends CR)', async (t) => {
          await this.target.call('serial-input', { text: `${t}\r` });
        });
        return;
      case 'scroll-up':
      case 'scroll-down':
      case 'page-up':
      case 'page-down':
      case 'scroll-home':
      case 'scroll-end':
        this.scrollAction(action);
        return;
    }
  }

  private scrollAction(action: 'scroll-up' | 'scroll-down' | 'page-up' | 'page-down' | 'scroll-home' | 'scroll-end'): void {
    const id = this.ui.focus;
    const page = Math.max(1, this.layout[id].height - 3);
    if (id === 'security') {
      // The Security pane moves its selection (Enter jumps to that anomaly's VM).
      const s = this.ui.security;
      const n = s.anomalies.length;
      if (n === 0) return;
      const cur = s.selected < 0 ? n - 1 : s.selected;
      const steps = Math.max(1, Math.floor(page / 3));
      const next = { 'scroll-up': cur - 1, 'scroll-down': cur + 1, 'page-up': cur - steps, 'page-down': cur + steps, 'scroll-home': 0, 'scroll-end': n - 1 }[action];
      s.selected = Math.max(0, Math.min(n - 1, next));
      this.render();
      return;
    }
    if (id === 'memory') {
      // The memory pane moves its address instead of scrolling a fixed buffer.
      const row = BigInt(memoryRowBytes(Math.max(10, this.layout.memory.width - 2)));
      const delta = { 'scroll-up': -row, 'scroll-down': row, 'page-up': -row * BigInt(page), 'page-down': row * BigInt(page), 'scroll-home': 0n, 'scroll-end': 0n }[action];
      const next = this.ui.memory.address + delta;
      this.ui.memory.address = next < 0n ? 0n : next;
      void this.refresh(true);
      return;
    }
    // End: the bottom (a log then follows its tail again); render() clamps the huge offset.
    if (action === 'scroll-end') this.ui.scroll[id] = PANES[id].render(this.snap, this.ui, 80).follow === 'tail' ? undefined : Number.MAX_SAFE_INTEGER;
    else if (action === 'scroll-home') this.ui.scroll[id] = 0;
    else this.scrollPane(id, { 'scroll-up': -1, 'scroll-down': 1, 'page-up': -page, 'page-down': page }[action]);
    this.render();
  }

  private scrollPane(id: PaneId, delta: number): void {
    const r = this.layout[id];
    const content = PANES[id].render(this.snap, this.ui, r.width - 2);
    const innerH = r.height - 2;
    const natural = content.follow === 'tail' ? content.lines.length - innerH : content.follow === 'anchor' ? (content.anchor ?? 0) - Math.floor(innerH / 3) : 0;
    const maxTop = Math.max(0, content.lines.length - innerH);
    const current = Math.max(0, Math.min(maxTop, this.ui.scroll[id] ?? natural));
    const next = Math.max(0, Math.min(maxTop, current + delta));
    // Scrolling back to the bottom of a log follows it again.
    this.ui.scroll[id] = content.follow === 'tail' && next >= maxTop ? undefined : next;
    this.render();
  }

  private setFocus(id: PaneId): void {
    this.ui.focus = id;
    if (this.ui.zoom) this.applyLayout();
    this.render();
  }

  private ask(label: string, submit: PromptState['submit']): void {
    this.prompt = { label, text: '', submit };
    this.render();
  }

  private promptKey(ch: string | undefined, key: blessed.Widgets.Events.IKeyEventArg): void {
    const p = this.prompt!;
    if (key.full === 'escape' || key.full === 'C-c') {
      this.prompt = null;
    } else if (key.full === 'enter' || key.full === 'return') {
      this.prompt = null;
      Promise.resolve()
        .then(() => p.submit(p.text))
        .then(() => this.refresh(true))
        .catch((e: Error) => {
          this.ui.message = { text: e.message, error: true };
          this.render();
        });
    } else if (key.full === 'backspace') {
      p.text = p.text.slice(0, -1);
    } else if (ch && ch.length === 1 && ch >= ' ' && ch !== '\x7f') {
      p.text += ch;
    }
    this.render();
  }
}

function pick<T extends object>(o: T, keys: readonly string[]): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([k]) => keys.includes(k))) as Partial<T>;
}
