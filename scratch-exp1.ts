import { readFileSync } from 'node:fs';
import { UnicornEngine } from './machine/cpu/unicorn/engine.js';
import { REG, UC_MODE_16, UC_MODE_64, UC_PROT_ALL } from './machine/cpu/unicorn/constants.js';

const rom = new Uint8Array(readFileSync('/tmp/exp/t1.bin'));
const ram = new Uint8Array(new SharedArrayBuffer(1 << 20));
ram.set(rom, 0xF0000);
const e16 = new UnicornEngine(UC_MODE_16);
e16.writeReg(REG.CS, 0xF000); e16.writeReg(REG.IP, 0xFFF0);
const ctx16 = e16.saveContext();
console.log('ctx size', ctx16.length);
const e = new UnicornEngine(UC_MODE_64);
e.mapHost(0, ram, UC_PROT_ALL);
e.restoreContext(ctx16);


e.onOut((port, size, value) => { console.log('OUT', port.toString(16), value.toString(16)); });
const slice = Buffer.alloc(64); slice.writeBigUInt64LE(1n<<60n, 8);
e.attachSlice(slice);
let rip = e.readReg(REG.RIP);
console.log('cs', e.readReg(REG.CS).toString(16), 'rip', rip.toString(16));
let rc = e.start(rip);
console.log('rc', rc, e.errorText(rc), 'rip', e.readReg(REG.RIP).toString(16), 'ebx', e.readReg(REG.RBX).toString(16), 'units', slice.readBigUInt64LE(0), 'blocks', slice.readBigUInt64LE(24));
rc = e.start(e.readReg(REG.RIP));
console.log('rc', rc, e.errorText(rc), 'rip', e.readReg(REG.RIP).toString(16));
