/**
 * The one line of the i8042 keyboard controller that kernels need from a VM:
 * command 0xFE on port 0x64 pulses the CPU reset line (Linux's reboot=kbd,
 * its fallback after ACPI). QEMU with -no-reboot then exits; here `onReset`
 * decides. There is no keyboard behind it: reads of 0x60/0x64 stay open bus
 * (0xFF), so a kernel probing for a controller finds none, as before.
 */
import type { AccessSize, PortIoDevice, PortRange } from './device.js';
import { checkVersion, type StateRecord } from '../state.js';
import { allOnes } from './dev-util.js';

const CMD_PULSE_RESET = 0xfe;
const STATE_VERSION = 1;

export class I8042ResetLine implements PortIoDevice {
  readonly name = 'i8042-reset';
  readonly snapshotId = 'i8042-reset';
  readonly stateVersion = STATE_VERSION;
  readonly ports: readonly PortRange[] = [{ base: 0x64, length: 1 }];

  constructor(private readonly onReset: () => void) {}

  ioRead(_port: number, size: AccessSize): number {
    return allOnes(size);
  }

  ioWrite(_port: number, _size: AccessSize, value: number): void {
    if ((value & 0xff) === CMD_PULSE_RESET) this.onReset();
  }

  saveState(): StateRecord {
    return { version: STATE_VERSION };
  }

  restoreState(state: StateRecord): void {
    checkVersion(state, STATE_VERSION, this.snapshotId);
  }
}
