// A reproducible initramfs (newc cpio, gzip) holding a static busybox and an /init
// that mounts /proc, /sys and /dev and starts a shell on the console.
// Reproducible: entries sorted, mtime 0, uid/gid 0, inode numbers from the order,
// and gzip with a zero header mtime (Node's zlib writes none), so the same busybox
// gives the same bytes. newc is written here directly: the format is a 110-byte
// ASCII header per entry, and no maintained npm package writes it.
import { gzipSync } from 'node:zlib';

const INIT = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "firmament initramfs: busybox $(busybox | head -n 1 | cut -d' ' -f2) shell"
exec /bin/sh
`;

function header(fields) {
  const hex = (n) => n.toString(16).padStart(8, '0');
  return '070701' + fields.map(hex).join('');
}

/** entries: [{ path, mode, data (Uint8Array) }] in any order; directories have no data. */
export function newcArchive(entries) {
  const chunks = [];
  let size = 0;
  const push = (b) => {
    chunks.push(b);
    size += b.length;
  };
  const pad4 = () => {
    if (size % 4) push(new Uint8Array(4 - (size % 4)));
  };
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  [...sorted, { path: 'TRAILER!!!', mode: 0, data: new Uint8Array(0) }].forEach((e, i) => {
    const name = new TextEncoder().encode(e.path + '\0');
    const data = e.data ?? new Uint8Array(0);
    const isDir = (e.mode & 0o170000) === 0o040000;
    // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check
    push(new TextEncoder().encode(header([e.path === 'TRAILER!!!' ? 0 : i + 1, e.mode, 0, 0, isDir ? 2 : 1, 0, data.length, 0, 0, 0, 0, name.length, 0])));
    push(name);
    pad4();
    push(data);
    pad4();
  });
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** The initramfs for a static busybox binary: /init, /bin/busybox, /bin/sh, and the empty mount points. */
export function busyboxInitramfs(busybox) {
  const dir = (path) => ({ path, mode: 0o040755 });
  const cpio = newcArchive([
    dir('bin'),
    dir('dev'),
    dir('proc'),
    dir('sys'),
    dir('tmp'),
    { path: 'bin/busybox', mode: 0o100755, data: busybox },
    { path: 'bin/sh', mode: 0o120777, data: new TextEncoder().encode('busybox') },
    { path: 'init', mode: 0o100755, data: new TextEncoder().encode(INIT) },
  ]);
  return gzipSync(cpio, { level: 9 });
}
