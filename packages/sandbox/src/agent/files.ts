/**
 * File endpoints of the agent (sandbox.md §10, §14.1): every path is resolved with `realpath` and
 * must stay inside /workspace or /tmp, symbolic links included.
 */
import { lstat, mkdir, open, readdir, realpath, stat, writeFile, appendFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';

export const DEFAULT_READ_BYTES = 1024 * 1024;
export const MAX_READ_BYTES = 10 * 1024 * 1024;
export const MAX_WRITE_BYTES = 10 * 1024 * 1024;
export const DEFAULT_LIST_ENTRIES = 1000;
export const MAX_LIST_ENTRIES = 10_000;

/** An error the server turns into `{error: {code, message}}` with an HTTP status. */
export class AgentError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) { super(message); }
}

export interface FileRoots {
  /** Relative paths are resolved against this (normally /workspace). */
  base: string;
  /** Allowed roots (normally /workspace and /tmp). */
  allowed: string[];
}

function inside(path: string, roots: string[]): boolean {
  return roots.some((r) => path === r || path.startsWith(r.endsWith(sep) ? r : r + sep));
}

function outside(path: string): AgentError {
  return new AgentError(403, 'PATH_OUTSIDE_WORKSPACE', `'${path}' is outside the workspace`);
}

/**
 * The real path of `p` (which need not exist): the nearest existing ancestor is resolved with
 * realpath and the rest appended. Refused unless the result is under an allowed root.
 */
export async function confine(p: unknown, roots: FileRoots): Promise<string> {
  if (typeof p !== 'string' || p.length === 0) throw new AgentError(400, 'BAD_REQUEST', 'path must be a non-empty string');
  if (p.includes('\0')) throw new AgentError(400, 'BAD_REQUEST', 'path contains a NUL byte');
  const abs = isAbsolute(p) ? resolve(p) : resolve(roots.base, p);
  const realRoots = await Promise.all(roots.allowed.map((r) => realpath(r).catch(() => r)));
  if (!inside(abs, roots.allowed) && !inside(abs, realRoots)) throw outside(p);
  let existing = abs;
  const rest: string[] = [];
  for (;;) {
    try {
      const real = await realpath(existing);
      const full = rest.length ? join(real, ...rest.reverse()) : real;
      if (!inside(full, realRoots)) throw outside(p);
      return full;
    } catch (err) {
      if (err instanceof AgentError) throw err;
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') throw new AgentError(400, 'BAD_PATH', `'${p}': ${(err as Error).message}`);
      // A dangling symbolic link: refuse rather than guess where it would point.
      if (await lstat(existing).then((s) => s.isSymbolicLink(), () => false)) throw outside(p);
      const parent = dirname(existing);
      if (parent === existing) throw outside(p);
      rest.push(basename(existing));
      existing = parent;
    }
  }
}

function displayPath(real: string, roots: FileRoots): string {
  const rel = relative(roots.base, real);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : rel === '' ? '.' : real;
}

function isBinary(buf: Buffer): boolean {
  if (buf.includes(0)) return true;
  try { new TextDecoder('utf-8', { fatal: true }).decode(buf); return false; } catch { return true; }
}

export async function readFileEndpoint(body: Record<string, unknown>, roots: FileRoots): Promise<unknown> {
  const real = await confine(body.path, roots);
  const maxBytes = Math.min(typeof body.maxBytes === 'number' && body.maxBytes > 0 ? body.maxBytes : DEFAULT_READ_BYTES, MAX_READ_BYTES);
  const st = await stat(real).catch(() => { throw new AgentError(404, 'NOT_FOUND', `'${String(body.path)}' does not exist`); });
  if (!st.isFile()) throw new AgentError(400, 'NOT_A_FILE', `'${String(body.path)}' is not a regular file`);
  const fh = await open(real, 'r');
  let buf: Buffer;
  try {
    const len = Math.min(st.size, maxBytes);
    buf = Buffer.alloc(len);
    const { bytesRead } = await fh.read(buf, 0, len, 0);
    buf = buf.subarray(0, bytesRead);
  } finally { await fh.close(); }
  let truncated = st.size > buf.length;
  if (isBinary(buf)) {
    return { path: displayPath(real, roots), content: buf.toString('base64'), encoding: 'base64', binary: true, size: st.size, truncated, totalLines: null };
  }
  let text = buf.toString('utf8');
  const lines = text.split('\n');
  const totalLines = text.endsWith('\n') ? lines.length - 1 : lines.length;
  const offset = typeof body.offset === 'number' && body.offset > 0 ? Math.floor(body.offset) : 0;
  const limit = typeof body.limit === 'number' && body.limit > 0 ? Math.floor(body.limit) : undefined;
  if (offset > 0 || limit !== undefined) {
    const end = limit === undefined ? totalLines : Math.min(offset + limit, totalLines);
    text = lines.slice(offset, end).join('\n') + (end > offset && (end < lines.length - 1 || text.endsWith('\n')) ? '\n' : '');
    truncated = truncated || end < totalLines;
  }
  return { path: displayPath(real, roots), content: text, encoding: 'utf8', binary: false, size: st.size, truncated, totalLines };
}

export async function writeFileEndpoint(body: Record<string, unknown>, roots: FileRoots): Promise<unknown> {
  const real = await confine(body.path, roots);
  if (typeof body.content !== 'string') throw new AgentError(400, 'BAD_REQUEST', 'content must be a string');
  const encoding = body.encoding ?? 'utf8';
  if (encoding !== 'utf8' && encoding !== 'base64') throw new AgentError(400, 'BAD_REQUEST', "encoding must be 'utf8' or 'base64'");
  const data = Buffer.from(body.content, encoding);
  if (data.length > MAX_WRITE_BYTES) throw new AgentError(413, 'TOO_LARGE', `content exceeds ${MAX_WRITE_BYTES} bytes`);
  const st = await lstat(real).catch(() => undefined);
  if (st && !st.isFile()) throw new AgentError(400, 'NOT_A_FILE', `'${String(body.path)}' is not a regular file`);
  await mkdir(dirname(real), { recursive: true });
  // The parent may have been swapped for a link meanwhile: check it again after creating it.
  await confine(dirname(real), roots);
  if (body.append === true) await appendFile(real, data, { flag: 'a' });
  else await writeFile(real, data);
  return { path: displayPath(real, roots), bytesWritten: data.length };
}

export async function listFilesEndpoint(body: Record<string, unknown>, roots: FileRoots): Promise<unknown> {
  const real = await confine(body.path ?? '.', roots);
  const maxEntries = Math.min(typeof body.maxEntries === 'number' && body.maxEntries > 0 ? body.maxEntries : DEFAULT_LIST_ENTRIES, MAX_LIST_ENTRIES);
  const st = await stat(real).catch(() => { throw new AgentError(404, 'NOT_FOUND', `'${String(body.path)}' does not exist`); });
  if (!st.isDirectory()) throw new AgentError(400, 'NOT_A_DIRECTORY', `'${String(body.path)}' is not a directory`);
  const entries: { path: string; type: 'file' | 'dir' | 'symlink' | 'other'; size: number }[] = [];
  let truncated = false;
  const walk = async (dir: string): Promise<void> => {
    const names = (await readdir(dir)).sort();
    for (const name of names) {
      if (entries.length >= maxEntries) { truncated = true; return; }
      const p = join(dir, name);
      const s = await lstat(p).catch(() => undefined);
      if (!s) continue;
      const type = s.isSymbolicLink() ? 'symlink' : s.isDirectory() ? 'dir' : s.isFile() ? 'file' : 'other';
      entries.push({ path: relative(real, p), type, size: s.isFile() ? s.size : 0 });
      if (type === 'dir' && body.recursive === true) await walk(p);
    }
  };
  await walk(real);
  return { path: displayPath(real, roots), entries, truncated };
}
