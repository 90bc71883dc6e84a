#!/usr/bin/env node
// The `firmament` CLI. Runs the compiled JavaScript in dist/ (built by `npm install` or
// `npm run build:js`) while it matches the TypeScript sources, else the sources through tsx.
import v8 from 'node:v8';
import { freshDistEntry } from './build-js.mjs';

// Our JavaScript is the control plane around native emulation: device models and exits that run
// thousands of times a second for microseconds each. With V8's default tiering budget, TurboFan
// compiles ~35 of those functions within the first second of an idle guest (~60 ms of compile
// CPU, more than the idling itself). Four times the budget leaves them in baseline code until they
// are really hot: an idle 1 kHz guest costs ~3-4% of a core instead of ~6-8% in a fresh process,
// and boots and compute guests measured the same (bench/, docs/hypervisor.md "Idling").
// Set before any of our modules load, so every function gets the larger budget.
v8.setFlagsFromString('--interrupt-budget=270336');

// FIRMAMENT_TSX=1 forces the sources (e.g. to compare); a stale or missing dist/ falls back silently.
const dist = process.env['FIRMAMENT_TSX'] === '1' ? { entry: null } : freshDistEntry();
let main;
if (dist.entry) {
  // Stack traces name the TypeScript lines (dist/ has linked source maps) only when asked: enabling
  // them costs start-up.
  if (process.env['FIRMAMENT_SOURCE_MAPS'] === '1') process.setSourceMapsEnabled(true);
  ({ main } = await import(dist.entry));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('./cli/main.ts'));
}
process.exitCode = await main(process.argv.slice(2));
