/**
 * Live-update blackout alone: the `npm run bench` live-update rows (1 and 4 idle VMs), N times.
 * `npx tsx bench/live-update-blackout.ts [N]`
 */
import { PROJECT_ROOT } from '../machine/cpu/unicorn/locate.js';
import { join } from 'node:path';
import { liveUpdateRows } from './live-update.js';

const n = Number(process.argv[2] ?? 1);
for (let i = 0; i < n; i++) for (const r of await liveUpdateRows(join(PROJECT_ROOT, 'images/build/guests/uptick.elf'))) console.log(JSON.stringify(r));
