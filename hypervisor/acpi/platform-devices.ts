/**
 * The devices behind a VM's FADT, added to its board: the PM block (power off
 * through \_S5) and the i8042 reset line (Linux's reboot fallback). Either one
 * ends the VM as QEMU with -no-reboot ends: a stop, code 0. Snapshots from
 * before they existed leave them at reset.
 */
import { AcpiPm } from '../../machine/devices/acpi-pm.js';
import { I8042ResetLine } from '../../machine/devices/i8042-reset.js';
import type { Vm } from '../vm.js';
import { ACPI_GPE0, ACPI_PM_BASE } from './tables.js';

export function addAcpiPlatformDevices(vm: Vm): void {
  const pm = new AcpiPm({ clock: vm.clock, pmBase: ACPI_PM_BASE, gpe0Base: ACPI_GPE0, onPowerOff: () => vm.stop({ reason: 'stopped', code: 0, detail: 'ACPI power off (PM1a_CNT SLP_EN, S5)' }) });
  const reset = new I8042ResetLine(() => vm.stop({ reason: 'stopped', code: 0, detail: 'reset through the i8042 (port 0x64 command 0xFE)' }));
  vm.board.addDevice(pm, { optionalInRecords: true });
  vm.board.addDevice(reset, { optionalInRecords: true });
}
