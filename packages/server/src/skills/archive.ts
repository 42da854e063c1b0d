import type { Readable } from 'node:stream';
import yauzl from 'yauzl';

/** Limits of a skill package (resources.md §15.2). */
export interface ArchiveLimits {
  /** Total uncompressed bytes of every entry. */
  maxTotalBytes: number;
  maxEntries: number;
  /** Entries larger than `ratioFloorBytes` uncompressed may inflate at most `maxRatio` times. */
  maxRatio: number;
  ratioFloorBytes: number;
  maxPathBytes: number;
  maxSkillMdBytes: number;
}

export const ARCHIVE_LIMITS: ArchiveLimits = {
  maxTotalBytes: 50 * 1024 * 1024,
  maxEntries: 1000,
  maxRatio: 100,
  ratioFloorBytes: 1024 * 1024,
  maxPathBytes: 255,
  maxSkillMdBytes: 256 * 1024,
};

/** A check the archive failed; becomes one 422 cause naming it. */
export class ArchiveProblem extends Error {}

/** One regular file of the package, its path relative to the package root. */
export interface PackageFile {
  path: string;
  size: number;
}

/** What a valid archive holds. */
export interface InspectedArchive {
  /** The folder that holds SKILL.md (`''` or `<top>/`). */
  root: string;
  /** Regular files under the root, sorted by path (byte order). */
  files: PackageFile[];
  /** SKILL.md's bytes. */
  skillMd: Buffer;
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const UNIX_HOSTS = new Set([3, 19]); // Unix, OS X: the high 16 bits of the external attributes are st_mode.
const MACOS_METADATA = '__MACOSX/';

const byteOrder = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Refuses names that could leave the package folder or that differ across file systems. */
function checkPath(name: string, limits: ArchiveLimits): void {
  const shown = name.length > 80 ? `${name.slice(0, 80)}…` : name;
  if (name === '') throw new ArchiveProblem('an entry has an empty name');
  if (Buffer.byteLength(name) > limits.maxPathBytes) throw new ArchiveProblem(`entry '${shown}' has a path longer than ${limits.maxPathBytes} bytes`);
  // eslint-disable-next-line no-control-regex -- control characters are what this refuses
  if (/[\u0000-\u001f\u007f]/.test(name)) throw new ArchiveProblem(`entry '${shown.replace(/[\u0000-\u001f\u007f]/g, '?')}' has a control character in its path`);
  if (name.includes('\\')) throw new ArchiveProblem(`entry '${shown}' has a backslash in its path`);
  if (name.startsWith('/')) throw new ArchiveProblem(`entry '${shown}' has an absolute path`);
  if (/^[A-Za-z]:/.test(name)) throw new ArchiveProblem(`entry '${shown}' has a drive letter`);
  const segments = (name.endsWith('/') ? name.slice(0, -1) : name).split('/');
  if (segments.includes('..')) throw new ArchiveProblem(`entry '${shown}' escapes the archive root`);
  if (segments.some((s) => s === '' || s === '.')) throw new ArchiveProblem(`entry '${shown}' has an empty or '.' path segment`);
}

/** The file type an entry declares: Unix mode bits when the archive was made on Unix, else by its name. */
function entryType(entry: yauzl.Entry, name: string): 'file' | 'dir' | 'symlink' | 'special' {
  const mode = UNIX_HOSTS.has(entry.versionMadeBy >> 8) ? (entry.externalFileAttributes >>> 16) & S_IFMT : 0;
  if (mode === S_IFLNK) return 'symlink';
  if (mode !== 0 && mode !== S_IFREG && mode !== S_IFDIR) return 'special';
  if (mode === S_IFDIR || name.endsWith('/')) return 'dir';
  return 'file';
}

/**
 * Counts an entry's bytes as they inflate and stops at the first limit crossed: the sizes in the
 * headers are never trusted (yauzl also refuses an entry that inflates past its declared size).
 */
async function drain(stream: Readable, name: string, compressedSize: number, total: { bytes: number }, limits: ArchiveLimits, keep: boolean): Promise<{ size: number; data?: Buffer }> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      size += chunk.length;
      total.bytes += chunk.length;
      if (total.bytes > limits.maxTotalBytes) throw new ArchiveProblem(`the archive inflates to more than ${limits.maxTotalBytes / (1024 * 1024)} MiB`);
      if (size > limits.ratioFloorBytes && size > limits.maxRatio * Math.max(compressedSize, 1)) {
        throw new ArchiveProblem(`compression ratio of '${name}' exceeds ${limits.maxRatio}:1`);
      }
      if (keep) {
        if (size > limits.maxSkillMdBytes) throw new ArchiveProblem(`SKILL.md is larger than ${limits.maxSkillMdBytes / 1024} KiB`);
        chunks.push(chunk);
      }
    }
  } catch (e) {
    stream.destroy();
    if (e instanceof ArchiveProblem) throw e;
    const message = (e as Error).message ?? '';
    if (/too many bytes|not enough bytes/.test(message)) throw new ArchiveProblem(`entry '${name}' does not inflate to the size its header declares`);
    throw new ArchiveProblem(`entry '${name}' cannot be inflated (${message.split('\n')[0]})`);
  }
  return keep ? { size, data: Buffer.concat(chunks) } : { size };
}

function zipError(e: unknown): ArchiveProblem {
  if (e instanceof ArchiveProblem) return e;
  const message = ((e as Error).message ?? String(e)).split('\n')[0]!;
  return new ArchiveProblem(`not a valid ZIP archive (${message})`);
}

/**
 * Reads a skill package from memory and checks it entry by entry (resources.md §15.2): names, types,
 * encryption, counts and inflated sizes. Every entry is inflated and counted; nothing touches the disk.
 * Throws `ArchiveProblem` naming the first check that failed.
 */
export async function inspectSkillArchive(archive: Buffer, limits: ArchiveLimits = ARCHIVE_LIMITS): Promise<InspectedArchive> {
  if (archive.length === 0) throw new ArchiveProblem('the archive is empty');
  let zip: yauzl.ZipFile;
  try {
    zip = await yauzl.fromBufferPromise(archive, { lazyEntries: true, decodeStrings: false, validateEntrySizes: true, strictFileNames: true });
  } catch (e) {
    throw zipError(e);
  }
  try {
    if (zip.entryCount > limits.maxEntries) throw new ArchiveProblem(`the archive has more than ${limits.maxEntries} entries`);
    const seen = new Map<string, string>();
    const files: Array<{ name: string; size: number }> = [];
    const skillMd = new Map<string, Buffer>();
    const total = { bytes: 0 };
    let count = 0;
    for await (const entry of zip.eachEntry()) {
      if (++count > limits.maxEntries) throw new ArchiveProblem(`the archive has more than ${limits.maxEntries} entries`);
      const name = yauzl.getFileNameLowLevel(entry.generalPurposeBitFlag, entry.fileNameRaw, entry.extraFields, true);
      checkPath(name, limits);
      const folded = (name.endsWith('/') ? name.slice(0, -1) : name).toLowerCase();
      const clash = seen.get(folded);
      if (clash !== undefined) throw new ArchiveProblem(clash === name ? `entry '${name}' appears twice` : `entries '${clash}' and '${name}' differ only by case`);
      seen.set(folded, name);
      const type = entryType(entry, name);
      if (type === 'symlink') throw new ArchiveProblem(`entry '${name}' is a symbolic link; only regular files and folders are allowed`);
      if (type === 'special') throw new ArchiveProblem(`entry '${name}' is a device, FIFO or socket; only regular files and folders are allowed`);
      if (entry.isEncrypted()) throw new ArchiveProblem(`entry '${name}' is encrypted`);
      if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) throw new ArchiveProblem(`entry '${name}' uses compression method ${entry.compressionMethod}; only stored and deflated entries are supported`);
      // The declared sizes may only refuse sooner; the bytes are counted while inflating either way.
      if (total.bytes + entry.uncompressedSize > limits.maxTotalBytes) throw new ArchiveProblem(`the archive inflates to more than ${limits.maxTotalBytes / (1024 * 1024)} MiB`);
      if (entry.uncompressedSize > limits.ratioFloorBytes && entry.uncompressedSize > limits.maxRatio * Math.max(entry.compressedSize, 1)) {
        throw new ArchiveProblem(`compression ratio of '${name}' exceeds ${limits.maxRatio}:1`);
      }
      const isSkillMd = type === 'file' && /^([^/]+\/)?SKILL\.md$/.test(name);
      if (isSkillMd && entry.uncompressedSize > limits.maxSkillMdBytes) throw new ArchiveProblem(`SKILL.md is larger than ${limits.maxSkillMdBytes / 1024} KiB`);
      let stream: Readable;
      try {
        stream = await zip.openReadStreamPromise(entry);
      } catch (e) {
        throw zipError(e);
      }
      const { size, data } = await drain(stream, name, entry.compressedSize, total, limits, isSkillMd);
      if (type === 'dir') continue;
      if (data) skillMd.set(name, data);
      files.push({ name, size });
    }

    // SKILL.md at the root, or inside the one top-level folder (macOS metadata folders aside).
    let root: string;
    if (skillMd.has('SKILL.md')) root = '';
    else {
      const tops = new Set([...seen.values()].filter((n) => !n.startsWith(MACOS_METADATA)).map((n) => (n.includes('/') ? n.slice(0, n.indexOf('/') + 1) : n)));
      const only = tops.size === 1 ? [...tops][0]! : undefined;
      if (!only || !only.endsWith('/') || !skillMd.has(`${only}SKILL.md`)) throw new ArchiveProblem('SKILL.md missing');
      root = only;
    }
    const packageFiles = files
      .filter((f) => f.name.startsWith(root) && !f.name.startsWith(MACOS_METADATA))
      .map((f) => ({ path: f.name.slice(root.length), size: f.size }))
      .sort((a, b) => byteOrder(a.path, b.path));
    return { root, files: packageFiles, skillMd: skillMd.get(`${root}SKILL.md`)! };
  } catch (e) {
    throw zipError(e);
  } finally {
    zip.close();
  }
}

/** The regular files under `root` of an archive that passed `inspectSkillArchive`, with their bytes. */
export async function readPackageFiles(archive: Buffer, root: string): Promise<Array<{ path: string; data: Buffer }>> {
  const zip = await yauzl.fromBufferPromise(archive, { lazyEntries: true, decodeStrings: false, validateEntrySizes: true, strictFileNames: true });
  const out: Array<{ path: string; data: Buffer }> = [];
  try {
    for await (const entry of zip.eachEntry()) {
      const name = yauzl.getFileNameLowLevel(entry.generalPurposeBitFlag, entry.fileNameRaw, entry.extraFields, true);
      if (name.endsWith('/') || !name.startsWith(root) || name.startsWith(MACOS_METADATA)) continue;
      const chunks: Buffer[] = [];
      for await (const chunk of (await zip.openReadStreamPromise(entry)) as AsyncIterable<Buffer>) chunks.push(chunk);
      out.push({ path: name.slice(root.length), data: Buffer.concat(chunks) });
    }
  } finally {
    zip.close();
  }
  return out.sort((a, b) => byteOrder(a.path, b.path));
}
