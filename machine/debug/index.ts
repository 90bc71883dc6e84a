/** The debugger and the session protocol shared by the TUI and the monitor socket. */
export * from './debugger.js';
export * from './specs.js';
export * from './listeners.js';
export * from './session.js';
export * from './protocol.js';
export * from './ndjson.js';
