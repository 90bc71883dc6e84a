/** Host-side traffic for the gateway guest (guests/gateway): frames into COM1 and COM2. */
import type { Vm } from '../../../hypervisor/vm.js';

/** An NMEA-style frame as the gateway expects it: '>' payload '*' XOR '\n'. */
export function frame(payload: string): Uint8Array {
  let x = 0;
  for (const c of payload) x ^= c.charCodeAt(0);
  return new TextEncoder().encode(`>${payload}*${x.toString(16).toUpperCase().padStart(2, '0')}\n`);
}

/** Calls `onLine` for each COM1 line the VM prints (a rolling buffer: a flooding guest must not make this quadratic). */
export function onLines(vm: Vm, onLine: (line: string) => void): void {
  let line = '';
  vm.onSerial = (t) => {
    for (const ch of t) {
      if (ch === '\n') {
        onLine(line);
        line = '';
      } else if (line.length < 256) line += ch;
    }
  };
}

/** Field traffic: with each status line, a frame into COM1 and one into COM2 (the gateway forwards them). */
export function feedTraffic(vm: Vm, onLine: (line: string) => void = () => {}): void {
  let n = 0;
  onLines(vm, (line) => {
    if (line.startsWith('gateway: t=')) {
      n++;
      vm.uart.receive(frame(`SENSOR,${n},21.5`));
      vm.com2.receive(frame(`CMD,${n},LED=ON`));
    }
    onLine(line);
  });
}
