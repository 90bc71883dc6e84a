/** The inspection API: plain JSON views of a PcMachine, shared by the TUI, the monitor socket and `firmament inspect`. */
export * from './hex.js';
export * from './cpu-view.js';
export * from './memory-view.js';
export * from './page-walk-view.js';
export * from './disassembly.js';
export * from './timeline-view.js';
export * from './events-view.js';
export * from './consoles-view.js';
export * from './vcpus-view.js';
export * from './reverse-map.js';
export * from './snapshot.js';
