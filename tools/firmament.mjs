#!/usr/bin/env node
// The `firmament` CLI. TypeScript sources run through tsx, so there is no build step.
import v8 from 'node:v8';
import { register } from 'tsx/esm/api';

// Our JavaScript is the control plane around native emulation: device models and exits that run
// thousands of times a second for microseconds each. With V8's default tiering budget, TurboFan
// compiles ~35 of those functions within the first second of an idle guest (~60 ms of compile
// CPU, more than the idling itself). Four times the budget leaves them in baseline code until they
// are really hot: an idle 1 kHz guest costs ~3-4% of a core instead of ~6-8% in a fresh process,
// and boots and compute guests measured the same (bench/, docs/hypervisor.md "Idling").
// Set before any of our modules load, so every function gets the larger budget.
v8.setFlagsFromString('--interrupt-budget=270336');

register();
const { main } = await import('./cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
