/**
 * Listener chaining for PcMachine's single-slot callbacks (onSerial,
 * onPostCode, onEvent). The debugger and the monitor add their listeners
 * without clobbering the owner's, and an owner that assigns its callback
 * later (boot() does, after handing out the machine) does not clobber ours:
 * the slot becomes an accessor whose setter replaces only the owner's callback.
 */
import type { PcMachine } from '../platform/pc.js';

type SlotName = 'onSerial' | 'onPostCode' | 'onEvent';
type Listener<K extends SlotName> = NonNullable<PcMachine[K]>;

interface Slot {
  owner: ((...args: never[]) => void) | undefined;
  extra: Set<(...args: never[]) => void>;
}

const slots = new WeakMap<PcMachine, Map<SlotName, Slot>>();

/** Adds `listener` after the owner's callback in `machine[key]`; returns a function that removes it. */
export function chainListener<K extends SlotName>(machine: PcMachine, key: K, listener: Listener<K>): () => void {
  let perMachine = slots.get(machine);
  if (!perMachine) slots.set(machine, (perMachine = new Map()));
  let slot = perMachine.get(key);
  if (!slot) {
    const s: Slot = { owner: machine[key] as Slot['owner'], extra: new Set() };
    const dispatch = (...args: never[]): void => {
      s.owner?.(...args);
      for (const l of s.extra) l(...args);
    };
    Object.defineProperty(machine, key, {
      configurable: true,
      enumerable: true,
      get: () => dispatch,
      set: (v: Slot['owner']) => {
        s.owner = v;
      },
    });
    perMachine.set(key, (slot = s));
  }
  const added = listener as unknown as (...args: never[]) => void;
  slot.extra.add(added);
  const theSlot = slot;
  return () => {
    theSlot.extra.delete(added);
    if (theSlot.extra.size > 0) return;
    // Last chained listener gone: put the owner's plain callback back.
    delete (machine as unknown as Record<string, unknown>)[key];
    (machine as unknown as Record<string, unknown>)[key] = theSlot.owner;
    perMachine!.delete(key);
  };
}
