/** Every key of the TUI: the help overlay, docs/tui.md and the dispatcher all read this table. */

export type Action =
  | 'help' | 'quit' | 'redraw'
  | 'focus-next' | 'focus-prev' | 'focus-pane' | 'zoom'
  | 'toggle-run' | 'pause' | 'continue' | 'step' | 'step-10' | 'mode-run'
  | 'break' | 'delete-break' | 'watch' | 'delete-watch'
  | 'goto-memory' | 'toggle-space' | 'translate' | 'goto-disasm' | 'follow-rip'
  | 'prev-cpu' | 'next-cpu' | 'next-console' | 'serial-input'
  | 'scroll-up' | 'scroll-down' | 'page-up' | 'page-down' | 'scroll-home' | 'scroll-end'
  | 'jump-to-vm';

export interface KeyBinding {
  /** blessed key names. */
  keys: string[];
  /** How the key is written in the help. */
  label: string;
  action: Action;
  help: string;
  group: 'Run control' | 'Breakpoints & watches' | 'Views' | 'Panes' | 'General';
}

export const KEY_BINDINGS: readonly KeyBinding[] = [
  { keys: ['space'], label: 'Space', action: 'toggle-run', help: 'pause / resume the machine', group: 'Run control' },
  { keys: ['p'], label: 'p', action: 'pause', help: 'pause', group: 'Run control' },
  { keys: ['c'], label: 'c', action: 'continue', help: 'continue (resume)', group: 'Run control' },
  { keys: ['s'], label: 's', action: 'step', help: 'single-step one instruction on the selected CPU', group: 'Run control' },
  { keys: ['S'], label: 'S', action: 'step-10', help: 'step 10 instructions', group: 'Run control' },
  { keys: ['m'], label: 'm', action: 'mode-run', help: 'run to the next CPU mode switch (real/protected/long)', group: 'Run control' },
  { keys: ['b'], label: 'b', action: 'break', help: 'add breakpoint: 0xADDR (linear), phys 0xADDR, post 0x33 or post MEMTEST_PASS', group: 'Breakpoints & watches' },
  { keys: ['B'], label: 'B', action: 'delete-break', help: 'delete breakpoint by id (or "all")', group: 'Breakpoints & watches' },
  { keys: ['w'], label: 'w', action: 'watch', help: 'watch a physical range for writes: 0xADDR [len]', group: 'Breakpoints & watches' },
  { keys: ['W'], label: 'W', action: 'delete-watch', help: 'delete watch by id (or "all")', group: 'Breakpoints & watches' },
  { keys: ['g'], label: 'g', action: 'goto-memory', help: 'memory: go to address (p 0x.. physical, v 0x.. virtual)', group: 'Views' },
  { keys: ['v'], label: 'v', action: 'toggle-space', help: 'memory: toggle physical / virtual', group: 'Views' },
  { keys: ['t'], label: 't', action: 'translate', help: 'page walk: translate a virtual address', group: 'Views' },
  { keys: ['d'], label: 'd', action: 'goto-disasm', help: 'disassemble at a linear address (empty: follow RIP)', group: 'Views' },
  { keys: ['.'], label: '.', action: 'follow-rip', help: 'disassembly follows RIP again', group: 'Views' },
  { keys: ['['], label: '[', action: 'prev-cpu', help: 'previous CPU', group: 'Views' },
  { keys: [']'], label: ']', action: 'next-cpu', help: 'next CPU (machine CPUs, then guest vCPUs)', group: 'Views' },
  { keys: ['o'], label: 'o', action: 'next-console', help: 'switch console: COM1, debugcon, VM consoles', group: 'Views' },
  { keys: ['i'], label: 'i', action: 'serial-input', help: 'type a line into COM1', group: 'Views' },
  { keys: ['tab'], label: 'Tab', action: 'focus-next', help: 'focus next pane (S-Tab: previous; mouse click focuses)', group: 'Panes' },
  { keys: ['S-tab'], label: 'S-Tab', action: 'focus-prev', help: 'focus previous pane', group: 'Panes' },
  { keys: ['1', '2', '3', '4', '5', '6', '7', '8', '9'], label: '1-9', action: 'focus-pane', help: 'focus pane by number', group: 'Panes' },
  { keys: ['enter'], label: 'Enter', action: 'jump-to-vm', help: 'Security pane: select the VM of the selected anomaly (its vCPU and console); arrows pick the anomaly', group: 'Panes' },
  { keys: ['z'], label: 'z', action: 'zoom', help: 'zoom the focused pane to full screen (again: back)', group: 'Panes' },
  { keys: ['up', 'k'], label: 'Up/k', action: 'scroll-up', help: 'scroll up (memory: previous row)', group: 'Panes' },
  { keys: ['down', 'j'], label: 'Down/j', action: 'scroll-down', help: 'scroll down (memory: next row); mouse wheel scrolls', group: 'Panes' },
  { keys: ['pageup'], label: 'PgUp', action: 'page-up', help: 'scroll a page up', group: 'Panes' },
  { keys: ['pagedown'], label: 'PgDn', action: 'page-down', help: 'scroll a page down', group: 'Panes' },
  { keys: ['home'], label: 'Home', action: 'scroll-home', help: 'top', group: 'Panes' },
  { keys: ['end'], label: 'End', action: 'scroll-end', help: 'bottom / follow again', group: 'Panes' },
  { keys: ['?', 'f1'], label: '? F1', action: 'help', help: 'this help (arrows scroll it, any other key closes)', group: 'General' },
  { keys: ['C-l'], label: 'C-l', action: 'redraw', help: 'redraw the screen', group: 'General' },
  { keys: ['q', 'C-c'], label: 'q C-c', action: 'quit', help: 'quit (detach when attached; the machine keeps running)', group: 'General' },
];

/** The help text, grouped, one key per line. */
export function helpLines(): string[] {
  const out: string[] = [];
  for (const group of ['Run control', 'Breakpoints & watches', 'Views', 'Panes', 'General'] as const) {
    out.push(`{bold}${group}{/bold}`);
    for (const k of KEY_BINDINGS.filter((b) => b.group === group)) out.push(`  ${k.label.padEnd(8)} ${k.help}`);
  }
  out.push('', 'Esc closes a prompt or the zoom. Prompts accept the same forms as the CLI --break/--watch.');
  return out;
}
