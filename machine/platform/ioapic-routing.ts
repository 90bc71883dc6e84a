/**
 * The APIC bus for I/O APIC messages: fixed to every LAPIC the destination
 * names, lowest-priority to the one of those with the lowest task priority
 * (first by APIC ID on a tie), NMI and INIT as their IPI counterparts.
 * ExtINT through the I/O APIC is not modelled: the 8259 reaches the BSP
 * through LINT0, which is how Linux and our firmware use it.
 */
import { deliverIpi, type IpiMessage, type LocalApic } from '../devices/lapic.js';
import type { IoApicMessage } from '../devices/ioapic.js';

export function routeIoApicMessage(lapics: readonly LocalApic[], msg: IoApicMessage): void {
  const ipi: IpiMessage = { source: -1, destination: msg.destination, destinationMode: msg.destinationMode, destinationShorthand: 'none', mode: msg.mode, vector: msg.vector, level: true, trigger: msg.trigger };
  if (msg.mode === 'lowest-priority') {
    let best: LocalApic | null = null;
    for (const l of lapics) if (l.accepts(ipi) && (best === null || l.taskPriority() < best.taskPriority())) best = l;
    if (best) best.acceptIpi(msg.vector, msg.trigger);
    return;
  }
  deliverIpi(lapics, ipi);
}
