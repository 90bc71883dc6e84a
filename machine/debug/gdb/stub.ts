/**
 * One gdb connection: the remote protocol's packets executed against a
 * GdbTarget (docs/gdb.md). Transport-free: feed it the bytes gdb sends, and
 * it writes its answers through `send`. All-stop mode: a stop anywhere stops
 * the target (the machine, or the one VM), and gdb hears about it once.
 */
import type { X86Cpu } from '../../cpu/x86-cpu.js';
import type { StopInfo } from '../debugger.js';
import { parseBreakpointSpec } from '../specs.js';
import { pageWalkView } from '../../inspect/page-walk-view.js';
import { cpuLocation, cpuView } from '../../inspect/cpu-view.js';
import { formatRows } from '../../inspect/memory-view.js';
import { hex } from '../../inspect/hex.js';
import { escapeBinary, framePacket, fromHex, MAX_PACKET_BYTES, PacketError, PacketReader, parseHexNumber, toHex, unescapeBinary, type Received } from './packets.js';
import { readRegisterHex, registerBytes, registerContext, registersFor, targetXml, writeRegister, type GdbArch, type GdbRegister } from './registers.js';
import { readVirtual, type GdbTarget, type GdbThread } from './target.js';

/** gdb's signal numbers (gdb/signals.def), which stop replies carry. */
const SIG = { INT: 2, TRAP: 5, SEGV: 11, KILL: 9 } as const;

/** Most bytes one `m` packet returns (hex doubles them). */
const MAX_MEMORY_REPLY = (MAX_PACKET_BYTES - 16) >> 1;

type Action = { kind: 'c' | 's'; thread: number | 'all' };

interface GdbBreakpoint {
  type: 0 | 1;
  address: bigint;
  id: number;
}

interface GdbWatch {
  /** Z2 write, Z3 read, Z4 access. */
  type: 2 | 3 | 4;
  address: bigint;
  length: number;
  /** The Debugger's access watch. */
  id: number;
}

const WATCH_KINDS = { 2: 'write', 3: 'read', 4: 'access' } as const;
/** The stop-reply key gdb expects for each watchpoint type. */
const WATCH_REPLY = { 2: 'watch', 3: 'rwatch', 4: 'awatch' } as const;

export interface StubOptions {
  send(bytes: Buffer): void;
  /** Register layout gdb expects (default x86-64). */
  arch?: GdbArch;
  /** gdb detached or killed: the transport should close the connection. */
  end(): void;
  /** `monitor` commands beyond the built-in ones (e.g. the machine-wide pause in a per-VM stub). */
  log?(line: string): void;
}

export class GdbStub {
  private readonly reader = new PacketReader();
  private noAck = false;
  /** Thread for register and memory access (Hg) and for legacy step/continue (Hc). */
  private gThread = 1;
  private cThread = 1;
  /** gdb waits for a stop reply (after c, s, vCont). */
  private running = false;
  private readonly breakpoints = new Map<string, GdbBreakpoint>();
  private readonly watches = new Map<string, GdbWatch>();
  /** Debugger breakpoints added with `monitor post`. */
  private readonly postBreaks = new Set<number>();
  private readonly unsubscribe: () => void;
  /** The thread a stop is reported on, remembered for `?`. */
  private lastStopReply: string | null = null;
  private ended = false;
  private exitReported = false;
  private readonly arch: GdbArch;
  private readonly regs: readonly GdbRegister[];

  constructor(
    readonly target: GdbTarget,
    private readonly opts: StubOptions,
  ) {
    this.arch = opts.arch ?? 'x86-64';
    this.regs = registersFor(this.arch);
    this.unsubscribe = target.debugger.onStop((stop) => this.onStop(stop));
    // Like QEMU, attaching stops the target: gdb starts by asking where it is.
    if (!target.exit) target.debugger.pause();
  }

  /** Bytes from gdb. */
  receive(chunk: Uint8Array): void {
    for (const r of this.reader.feed(chunk)) this.dispatch(r);
  }

  /** The connection is gone: drop what this client set and let the target run on. */
  close(): void {
    if (this.ended) return;
    this.ended = true;
    this.unsubscribe();
    this.removeAll();
    const d = this.target.debugger;
    if (!this.target.exit && d.state === 'paused') d.resume();
  }

  private dispatch(r: Received): void {
    if (this.ended) return;
    switch (r.kind) {
      case 'ack':
        return;
      case 'nak':
        // We do not keep a resend buffer: gdb retransmits its request on timeout instead.
        return;
      case 'interrupt':
        this.interrupt();
        return;
      case 'bad':
        this.opts.log?.(`gdb: bad packet (${r.reason})`);
        if (!this.noAck) this.opts.send(Buffer.from('-'));
        return;
      case 'packet': {
        if (!this.noAck) this.opts.send(Buffer.from('+'));
        const text = r.payload.toString('latin1');
        let reply: string | Buffer | null;
        try {
          reply = this.handle(text, r.payload);
        } catch (e) {
          this.opts.log?.(`gdb: '${text.slice(0, 40)}': ${(e as Error).message}`);
          reply = e instanceof PacketError ? 'E01' : `E.${(e as Error).message}`;
        }
        if (reply !== null) this.reply(reply);
      }
    }
  }

  private reply(payload: string | Buffer): void {
    this.opts.send(framePacket(payload));
  }

  /** Handles one packet; null means "no reply now" (the stop reply comes later). */
  private handle(p: string, raw: Buffer): string | Buffer | null {
    const head = p[0];
    switch (head) {
      case '?':
        return this.stopReplyNow();
      case 'q':
        return this.query(p);
      case 'Q':
        if (p === 'QStartNoAckMode') {
          this.reply('OK');
          this.noAck = true;
          return null;
        }
        return '';
      case 'H': {
        const t = this.parseThread(p.slice(2));
        // An unknown thread is refused (QEMU answers E22), never silently replaced by another.
        if (t !== 'all' && !this.thread(t, false)) return 'E22';
        if (p[1] === 'g') this.gThread = t === 'all' ? this.firstThread() : t;
        else this.cThread = t === 'all' ? this.firstThread() : t;
        return 'OK';
      }
      case 'T':
        return this.thread(this.parseThread(p.slice(1)) as number, false) ? 'OK' : 'E01';
      case 'g':
        return this.readAllRegisters();
      case 'G':
        return this.writeAllRegisters(p.slice(1));
      case 'p':
        return this.withRegisters((c) => readRegisterHex(this.regs, c, Number(parseHexNumber(p.slice(1), 'register number'))));
      case 'P': {
        const [n, v] = p.slice(1).split('=');
        return this.withRegisters((c) => {
          writeRegister(this.regs, c, Number(parseHexNumber(n ?? '', 'register number')), fromHex(v ?? '', 'register value'));
          return 'OK';
        });
      }
      case 'm':
        return this.readMemory(p.slice(1));
      case 'M':
        return this.writeMemory(p.slice(1), null);
      case 'X': {
        const colon = raw.indexOf(0x3a);
        if (colon < 0) throw new PacketError('X packet without data');
        return this.writeMemory(p.slice(1, colon), unescapeBinary(raw.subarray(colon + 1)));
      }
      case 'Z':
      case 'z':
        return this.breakpoint(p);
      case 'c':
      case 'C':
        return this.resume([{ kind: 'c', thread: 'all' }]);
      case 's':
      case 'S':
        return this.resume([{ kind: 's', thread: this.cThread }]);
      case 'v':
        return this.vPacket(p);
      case 'D':
        this.reply('OK');
        this.detach();
        return null;
      case 'k':
        this.target.kill('killed from gdb');
        this.exitReported = true;
        this.close();
        this.opts.end();
        return null;
      default:
        return '';
    }
  }

  // ------------------------------------------------------------ queries
  private query(p: string): string | Buffer {
    if (p.startsWith('qSupported')) return `PacketSize=${MAX_PACKET_BYTES.toString(16)};qXfer:features:read+;QStartNoAckMode+;swbreak+;hwbreak+;vContSupported+`;
    if (p.startsWith('qXfer:features:read:')) return this.xferFeatures(p.slice('qXfer:features:read:'.length));
    if (p === 'qAttached' || p.startsWith('qAttached:')) return '1';
    if (p === 'qC') return `QC${this.currentThread().toString(16)}`;
    if (p === 'qfThreadInfo') return `m${this.target.threads().map((t) => t.id.toString(16)).join(',')}`;
    if (p === 'qsThreadInfo') return 'l';
    if (p.startsWith('qThreadExtraInfo,')) {
      const t = this.thread(Number(parseHexNumber(p.slice(17), 'thread id')), true)!;
      return toHex(Buffer.from(this.threadText(t)));
    }
    if (p.startsWith('qRcmd,')) return this.monitor(fromHex(p.slice(6), 'monitor command').toString('utf8'));
    if (p === 'qSymbol::') return 'OK';
    if (p === 'qOffsets') return '';
    return '';
  }

  private xferFeatures(args: string): string {
    const m = /^([^:]+):([0-9a-fA-F]+),([0-9a-fA-F]+)$/.exec(args);
    if (!m) throw new PacketError(`qXfer:features:read: bad arguments '${args}'`);
    if (m[1] !== 'target.xml') return 'E00';
    const xml = targetXml(this.arch);
    const off = Number.parseInt(m[2]!, 16);
    const len = Number.parseInt(m[3]!, 16);
    const part = xml.slice(off, off + len);
    return (off + len >= xml.length ? 'l' : 'm') + escapeBinary(Buffer.from(part, 'latin1')).toString('latin1');
  }

  private threadText(t: GdbThread): string {
    try {
      const loc = cpuLocation(t.cpu);
      return `${t.name} ${loc.mode} ${t.cpu.state}`;
    } catch {
      return t.name;
    }
  }

  // ------------------------------------------------------------ threads
  private firstThread(): number {
    return this.target.threads()[0]?.id ?? 1;
  }

  private currentThread(): number {
    return this.thread(this.gThread, false) ? this.gThread : this.firstThread();
  }

  /** `-1` and `0` mean any/all threads; otherwise hex. */
  private parseThread(text: string): number | 'all' {
    if (text === '-1' || text === '0' || text === '') return 'all';
    if (text.startsWith('p')) throw new PacketError(`multiprocess thread id '${text}': this stub serves one process (use --gdb-vm to pick a VM)`);
    return Number(parseHexNumber(text, 'thread id'));
  }

  private thread(id: number, required: true): GdbThread;
  private thread(id: number, required: false): GdbThread | undefined;
  private thread(id: number, required: boolean): GdbThread | undefined {
    const t = this.target.threads().find((x) => x.id === id);
    if (!t && required) throw new PacketError(`no thread ${id} (threads: ${this.target.threads().map((x) => x.id).join(', ')})`);
    return t;
  }

  private debuggerIndex(cpu: X86Cpu): number {
    return this.target.threads().findIndex((t) => t.cpu === cpu);
  }

  // ------------------------------------------------------------ registers and memory
  private withRegisters<T>(f: (c: ReturnType<typeof registerContext>) => T): T {
    return f(registerContext(this.thread(this.currentThread(), true).cpu));
  }

  private readAllRegisters(): string {
    return this.withRegisters((c) => this.regs.map((_, i) => readRegisterHex(this.regs, c, i)).join(''));
  }

  private writeAllRegisters(hexText: string): string {
    const bytes = fromHex(hexText.replace(/x/g, '0'), 'G packet');
    return this.withRegisters((c) => {
      let off = 0;
      this.regs.forEach((r, i) => {
        const n = registerBytes(this.regs, i);
        const slice = bytes.subarray(off, off + n);
        off += n;
        // Registers we cannot write (selectors) are skipped when gdb sends them back unchanged.
        if (slice.length === n && r.write) writeRegister(this.regs, c, i, Buffer.from(slice));
      });
      return 'OK';
    });
  }

  private parseAddrLen(text: string): { addr: bigint; len: number } {
    const [a, l] = text.split(',');
    const addr = parseHexNumber(a ?? '', 'address');
    const len = Number(parseHexNumber(l ?? '', 'length'));
    return { addr, len };
  }

  private readMemory(args: string): string {
    const { addr, len } = this.parseAddrLen(args);
    const cpu = this.thread(this.currentThread(), true).cpu;
    const bytes = readVirtual(cpu, addr, Math.min(len, MAX_MEMORY_REPLY));
    // gdb accepts a short read; nothing readable at all is an error.
    const n = bytes.indexOf(null);
    const ok = (n < 0 ? bytes : bytes.slice(0, n)) as number[];
    if (ok.length === 0 && len > 0) return 'E14';
    return Buffer.from(ok).toString('hex');
  }

  private writeMemory(args: string, binary: Buffer | null): string {
    const colon = args.indexOf(':');
    const { addr, len } = this.parseAddrLen(colon >= 0 ? args.slice(0, colon) : args);
    const data = binary ?? fromHex(args.slice(colon + 1), 'memory data');
    if (data.length !== len) throw new PacketError(`memory write: length ${len} but ${data.length} bytes of data`);
    const cpu = this.thread(this.currentThread(), true).cpu;
    // Page by page: each page goes through the CPU's tables (and the EPT for a vCPU).
    let done = 0;
    while (done < len) {
      const va = addr + BigInt(done);
      const n = Math.min(len - done, 4096 - Number(va & 0xfffn));
      const w = cpu.translate(va, 'read');
      if (!w.ok) return 'E14';
      this.target.writePhysical(w.paddr, data.subarray(done, done + n));
      done += n;
    }
    return 'OK';
  }

  // ------------------------------------------------------------ breakpoints and watchpoints
  private breakpoint(p: string): string {
    const insert = p[0] === 'Z';
    const [typeText, addrText, kindText] = p.slice(1).split(/[,;]/);
    const type = Number(typeText);
    const address = parseHexNumber(addrText ?? '', 'breakpoint address');
    const key = `${type}:${address}`;
    const d = this.target.debugger;
    if (type === 0 || type === 1) {
      // Both are code hooks on the linear address: nothing is written into guest memory.
      if (insert) {
        if (!this.breakpoints.has(key)) this.breakpoints.set(key, { type: type as 0 | 1, address, id: d.addBreakpoint({ kind: 'linear', address }).id });
      } else {
        const bp = this.breakpoints.get(key);
        if (bp) d.removeBreakpoint(bp.id);
        this.breakpoints.delete(key);
      }
      return 'OK';
    }
    if (type === 2 || type === 3 || type === 4) {
      // Exact: a memory hook on the linear range stops the CPU right after the accessing instruction.
      const length = Number(parseHexNumber(kindText ?? '', 'watch length'));
      if (length < 1 || length > 1 << 20) throw new PacketError(`watch length ${length}: expected 1 byte to 1 MiB`);
      const wkey = `${key}:${length}`;
      if (insert) {
        if (!this.watches.has(wkey)) this.watches.set(wkey, { type, address, length, id: d.addAccessWatch({ linear: address, length, kind: WATCH_KINDS[type], pieces: this.watchPieces(address, length) }).id });
      } else {
        const w = this.watches.get(wkey);
        if (w) d.removeAccessWatch(w.id);
        this.watches.delete(wkey);
      }
      return 'OK';
    }
    return '';
  }

  /** Host-physical pieces of [address, +length), translated now (virtual -> physical -> host-physical). */
  private watchPieces(address: bigint, length: number): { linear: bigint; hostPhysical: bigint; length: number }[] {
    const cpu = this.thread(this.currentThread(), true).cpu;
    const pieces: { linear: bigint; hostPhysical: bigint; length: number }[] = [];
    let done = 0;
    while (done < length) {
      const va = address + BigInt(done);
      const n = Math.min(length - done, 4096 - Number(va & 0xfffn));
      const w = cpu.translate(va, 'read');
      const hpa = w.ok ? this.target.hostPhysical(cpu, w.paddr) : null;
      if (hpa === null) throw new PacketError(`watch at ${hex(va)}: not mapped for thread ${this.currentThread()}`);
      pieces.push({ linear: va, hostPhysical: hpa, length: n });
      done += n;
    }
    return pieces;
  }

  private removeAll(): void {
    const d = this.target.debugger;
    for (const bp of this.breakpoints.values()) d.removeBreakpoint(bp.id);
    for (const w of this.watches.values()) d.removeAccessWatch(w.id);
    for (const id of this.postBreaks) d.removeBreakpoint(id);
    this.breakpoints.clear();
    this.watches.clear();
    this.postBreaks.clear();
  }

  // ------------------------------------------------------------ run control
  private vPacket(p: string): string | null {
    if (p === 'vCont?') return 'vCont;c;C;s;S';
    if (p.startsWith('vCont;')) {
      const actions: Action[] = p
        .slice(6)
        .split(';')
        .map((a) => {
          const [act, th] = a.split(':');
          const kind = act?.[0];
          if (kind !== 'c' && kind !== 'C' && kind !== 's' && kind !== 'S') throw new PacketError(`vCont action '${a}' is not supported (all-stop: c, C, s, S)`);
          return { kind: kind === 'C' ? 'c' : kind === 'S' ? 's' : kind, thread: th === undefined ? 'all' : this.parseThread(th) };
        });
      return this.resume(actions);
    }
    if (p === 'vMustReplyEmpty') return '';
    if (p.startsWith('vKill')) {
      this.target.kill('killed from gdb');
      this.exitReported = true;
      this.reply('OK');
      this.close();
      this.opts.end();
      return null;
    }
    return '';
  }

  /** c / s / vCont: a step steps one thread alone (as QEMU does); otherwise the target runs. */
  private resume(actions: Action[]): string | null {
    const exit = this.target.exit;
    if (exit) return this.exitReply(exit);
    const d = this.target.debugger;
    const step = actions.find((a) => a.kind === 's');
    if (step) {
      const id = step.thread === 'all' ? this.currentThread() : step.thread;
      const t = this.thread(id, true);
      this.running = true;
      // The step's stop (or whatever it ran into) comes back through onStop.
      d.step(this.debuggerIndex(t.cpu), 1);
      return null;
    }
    this.running = true;
    if (this.armModeSwitch) {
      this.armModeSwitch = false;
      d.runToModeSwitch();
    } else d.resume();
    return null;
  }

  private interrupt(): void {
    if (this.target.exit) return;
    const d = this.target.debugger;
    if (d.state === 'running') d.pause();
    else if (this.running) this.sendStop(`T${hex2(SIG.INT)}thread:${this.currentThread().toString(16)};`);
  }

  private detach(): void {
    this.close();
    this.opts.end();
  }

  /** Stops of the debugger: reported once to a gdb waiting for one. */
  private onStop(stop: StopInfo): void {
    if (this.ended) return;
    if (stop.reason === 'exit') {
      const exit = this.target.exit;
      if (!exit) return;
      if (exit.reason === 'triple-fault') {
        // Kept for inspection: gdb sees a SIGSEGV stop with the state at the fault.
        this.sendStop(`T${hex2(SIG.SEGV)}thread:${this.currentThread().toString(16)};`);
      } else if (this.running) {
        this.exitReported = true;
        this.sendStop(this.exitReply(exit));
      }
      return;
    }
    const thread = this.stopThread(stop);
    if (thread !== null) this.gThread = thread;
    const t = (thread ?? this.currentThread()).toString(16);
    let reply: string;
    switch (stop.reason) {
      case 'pause':
        reply = `T${hex2(SIG.INT)}thread:${t};`;
        break;
      case 'breakpoint': {
        const hw = [...this.breakpoints.values()].find((b) => b.id === stop.breakpoint)?.type === 1;
        reply = `T${hex2(SIG.TRAP)}thread:${t};${hw ? 'hwbreak' : 'swbreak'}:;`;
        break;
      }
      case 'access-watch': {
        const w = [...this.watches.values()].find((x) => x.id === stop.watch);
        // gdb finds its watchpoint by the address: report one inside the range.
        const at = w ? (BigInt(stop.address) > w.address ? BigInt(stop.address) : w.address) : 0n;
        reply = `T${hex2(SIG.TRAP)}thread:${t};${w ? `${WATCH_REPLY[w.type]}:${at.toString(16)};` : ''}`;
        break;
      }
      default:
        reply = `T${hex2(SIG.TRAP)}thread:${t};`;
    }
    this.lastStopReply = reply;
    if (stop.reason === 'post-code' || stop.reason === 'mode-switch') this.opts.log?.(stop.message);
    if (this.running) this.sendStop(reply);
  }

  private stopThread(stop: StopInfo): number | null {
    if (stop.cpu === null) return null;
    const cpus = this.target.threads();
    return cpus[stop.cpu]?.id ?? null;
  }

  private sendStop(reply: string): void {
    this.running = false;
    this.lastStopReply = reply;
    this.reply(reply);
  }

  private stopReplyNow(): string {
    const exit = this.target.exit;
    if (exit && exit.reason !== 'triple-fault') return this.exitReply(exit);
    if (exit) return `T${hex2(SIG.SEGV)}thread:${this.currentThread().toString(16)};`;
    return this.lastStopReply ?? `T${hex2(SIG.TRAP)}thread:${this.currentThread().toString(16)};`;
  }

  private exitReply(exit: { reason: string; code: number }): string {
    this.exitReported = true;
    if (exit.reason === 'triple-fault') return `X${hex2(SIG.SEGV)}`;
    return `W${hex2(exit.code & 0xff)}`;
  }

  /** True once gdb was told the target ended (the transport may close after sending it). */
  get finished(): boolean {
    return this.exitReported;
  }

  // ------------------------------------------------------------ monitor
  private monitor(line: string): string {
    const out: string[] = [];
    try {
      this.monitorCommand(line.trim(), out);
    } catch (e) {
      out.push(`error: ${(e as Error).message}`);
    }
    for (const chunk of out) this.reply(`O${toHex(Buffer.from(`${chunk}\n`))}`);
    return 'OK';
  }

  private monitorCommand(line: string, out: string[]): void {
    const [cmd = '', ...args] = line.split(/\s+/);
    const d = this.target.debugger;
    const cpu = (): X86Cpu => this.thread(this.currentThread(), true).cpu;
    switch (cmd) {
      case '':
      case 'help':
        out.push(MONITOR_HELP);
        return;
      case 'post': {
        if (args.length === 0) {
          const list = d.listBreakpoints().filter((b) => b.kind === 'post');
          out.push(list.length ? list.map((b) => `${b.id}: ${b.text} (hits ${b.hits})`).join('\n') : 'no POST-code breakpoints');
          return;
        }
        if (args[0] === 'delete' || args[0] === 'clear') {
          for (const id of this.postBreaks) d.removeBreakpoint(id);
          this.postBreaks.clear();
          out.push('POST-code breakpoints deleted');
          return;
        }
        const bp = d.addBreakpoint(parseBreakpointSpec(`post ${args.join(' ')}`));
        this.postBreaks.add(bp.id);
        out.push(`breakpoint ${bp.id}: ${bp.text}; continue to run to it`);
        return;
      }
      case 'phys':
      case 'xp': {
        const addr = parseHexNumber((args[0] ?? '').replace(/^0x/i, ''), 'physical address');
        const len = Math.min(Number(args[1] ?? '64'), 4096);
        if (!Number.isInteger(len) || len < 1) throw new Error(`length '${args[1]}': expected 1 to 4096`);
        const bytes = this.target.readPhysical(addr, len);
        out.push(formatRows(addr, bytes).map((r) => `${r.address}  ${r.hex}  ${r.ascii}`).join('\n'));
        return;
      }
      case 'phys-write': {
        const addr = parseHexNumber((args[0] ?? '').replace(/^0x/i, ''), 'physical address');
        const data = fromHex(args.slice(1).join('').replace(/^0x/i, ''), 'bytes');
        this.target.writePhysical(addr, data);
        out.push(`wrote ${data.length} byte(s) at physical ${hex(addr)}`);
        return;
      }
      case 'translate': {
        const va = parseHexNumber((args[0] ?? '').replace(/^0x/i, ''), 'virtual address');
        const v = pageWalkView(cpu(), va);
        const lines = [`${v.virtual} (${v.format}, CR3 ${v.cr3})`];
        for (const l of v.levels) lines.push(`  ${l.level.padEnd(5)} [${String(l.index).padStart(3)}] @${l.entryAddress} = ${l.entry}  ${l.flagText}`);
        if (v.result.ok) lines.push(`  -> physical ${v.result.physical} (${v.result.pageSize}-byte page)`);
        else lines.push(`  fault: ${v.result.reason} (error code ${v.result.errorCode})`);
        if (v.ept) {
          lines.push(`  guest-physical ${v.ept.guestPhysical} through EPT:`);
          for (const l of v.ept.levels) lines.push(`    ${l.level.padEnd(8)} [${String(l.index).padStart(3)}] @${l.entryAddress} = ${l.entry}  ${l.flagText}`);
          lines.push(v.ept.hostPhysical ? `  -> host-physical ${v.ept.hostPhysical}` : `  EPT fault: ${v.ept.fault ?? 'unmapped'}`);
        }
        out.push(lines.join('\n'));
        return;
      }
      case 'mode-switch':
        out.push('the next continue stops when a CPU changes mode (real / protected / long / compatibility)');
        this.armModeSwitch = true;
        return;
      case 'pause':
        // The whole machine (every VM), not only this target: the rest stays where it is.
        this.target.machine.pause();
        out.push(`machine paused at ${this.target.machine.now()} ns`);
        return;
      case 'resume':
        this.target.machine.resume();
        out.push('machine resumed (this target stays as gdb left it)');
        return;
      case 'snapshot':
      case 'cpu': {
        const v = cpuView(cpu());
        out.push(JSON.stringify({ target: this.target.label, status: d.status(), cpu: v }, null, 2));
        return;
      }
      case 'status': {
        const s = d.status();
        out.push(`${this.target.label}: ${s.state}; breakpoints ${s.breakpoints.length}, watches ${s.watches.length}; virtual time ${s.nowMs} ms${s.lastStop ? `; last stop: ${s.lastStop.message}` : ''}`);
        for (const t of this.target.threads()) out.push(`  thread ${t.id}: ${this.threadText(t)}`);
        return;
      }
      default:
        throw new Error(`unknown monitor command '${cmd}' (try 'monitor help')`);
    }
  }

  private armModeSwitch = false;
}

const MONITOR_HELP = `Firmament monitor commands (gdb: monitor <command>):
  post 0x33 | post MEMTEST_PASS   break when the firmware writes this POST code (then continue)
  post                            list POST-code breakpoints;  post delete: remove them
  phys ADDR [LEN]                 dump physical memory (guest-physical for a VM target)
  phys-write ADDR HEXBYTES        write physical memory
  translate VADDR                 page walk of a virtual address with the selected thread's tables (+ EPT)
  mode-switch                     the next continue stops when a CPU changes mode
  pause | resume                  pause or resume the whole machine (every VM)
  status                          run state, breakpoints, threads
  snapshot                        the selected CPU's full state and the debugger status as JSON`;

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}
