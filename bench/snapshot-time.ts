/**
 * Snapshot save and restore alone (the `npm run bench` rows without QEMU): a 64 MiB dirtier
 * guest saved into an empty store and restored, several times. `npx tsx bench/snapshot-time.ts`
 */
import { join } from 'node:path';
import { PROJECT_ROOT } from '../machine/cpu/unicorn/locate.js';
import { oursSaveRestore } from './vm-state.js';

const r = await oursSaveRestore(join(PROJECT_ROOT, 'images/build/guests/dirtier.elf'));
console.log(JSON.stringify(r));
