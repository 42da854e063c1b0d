/**
 * Builds the executor root file system from programs already on this host (sandbox.md §14.2):
 * programs with the shared libraries `ldd` reports, the running Node and the compiled agent under
 * /opt/wegent, and a few /etc files. The folder is named by the content hash of the staged tree.
 */
import { createHash, randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import { createReadStream, existsSync } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, readFile, readdir, readlink, realpath, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const PACKAGE_DIR = fileURLToPath(new URL('../../', import.meta.url));
/** Only system folders: /usr/local/bin may hold unrelated tools (a Docker client, say). */
const SEARCH_PATH = ['/usr/bin', '/bin', '/usr/sbin', '/sbin'];

export interface ImageManifest {
  programs: string[];
  optionalPrograms: string[];
  dirs: Record<string, string[]>;
  files: string[];
  pythonExclude: string[];
}

export interface ExecutorRootfs {
  /** sha256 of the sorted (path, mode, content sha256) list of the tree. */
  hash: string;
  dir: string;
  nodeVersion: string;
  tools: string[];
}

interface StagedFile { from: string; to: string }

/** Reads `packages/sandbox/image/manifest.json`. */
export async function readImageManifest(path = join(PACKAGE_DIR, 'image/manifest.json')): Promise<ImageManifest> {
  return JSON.parse(await readFile(path, 'utf8')) as ImageManifest;
}

async function findProgram(name: string): Promise<string | undefined> {
  for (const d of SEARCH_PATH) {
    const p = join(d, name);
    try {
      if ((await stat(p)).isFile()) return p;
    } catch { /* next */ }
  }
  return undefined;
}

/** Shared libraries (and the loader) an ELF file needs; nothing for scripts. */
async function sharedLibraries(path: string): Promise<string[]> {
  try {
    const { stdout } = await run('ldd', [path], { env: { PATH: '/usr/bin:/bin', LANG: 'C' } });
    const libs: string[] = [];
    for (const line of stdout.split('\n')) {
      const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
      if (m?.[1]) libs.push(m[1]);
    }
    return libs;
  } catch {
    return [];
  }
}

/** The destination keeps the name asked for, in the real folder (so /lib → /usr/lib links work). */
async function canonicalDest(path: string): Promise<string> {
  return join(await realpath(dirname(path)), path.slice(path.lastIndexOf('/') + 1));
}

async function walkFiles(dir: string, exclude: string[] = []): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (exclude.some((x) => (x.endsWith('*') ? e.name.startsWith(x.slice(0, -1)) : e.name === x))) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...await walkFiles(p, exclude));
    else if (e.isFile() || e.isSymbolicLink()) out.push(p);
  }
  return out;
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) { const i = next++; out[i] = await fn(items[i] as T); }
  }));
  return out;
}

/** A python3 whose prefix is a system folder (a version manager under /root or /home is not copied). */
async function findPython(): Promise<{ exe: string; dirs: string[] } | undefined> {
  const py = await findProgram('python3');
  if (!py) return undefined;
  try {
    const { stdout } = await run(py, ['-c', 'import sys,sysconfig,json;p=sysconfig.get_paths();print(json.dumps([sys.executable,p["stdlib"],p["platstdlib"]]))'], { env: { PATH: '/usr/bin:/bin' } });
    const [exe, stdlib, platstdlib] = JSON.parse(stdout) as string[];
    if (!exe || !stdlib || /^\/(root|home)\//.test(exe)) return undefined;
    return { exe, dirs: [...new Set([stdlib, platstdlib ?? stdlib])] };
  } catch {
    return undefined;
  }
}

async function collectPrograms(manifest: ImageManifest): Promise<{ wanted: string[]; tools: string[] }> {
  const wanted: string[] = [];
  const tools: string[] = [];
  for (const name of manifest.programs) {
    const p = await findProgram(name);
    if (!p) throw new Error(`the executor image needs '${name}', which is not installed on this host`);
    wanted.push(p); tools.push(name);
  }
  for (const name of manifest.optionalPrograms) {
    if (name === 'python3') {
      const py = await findPython();
      if (!py) continue;
      wanted.push(py.exe, join(dirname(py.exe), 'python3'));
      for (const d of py.dirs) wanted.push(...await walkFiles(d, manifest.pythonExclude));
      tools.push(name);
      continue;
    }
    const p = await findProgram(name);
    if (!p) continue;
    wanted.push(p); tools.push(name);
    for (const d of manifest.dirs[name] ?? []) if (existsSync(d)) wanted.push(...await walkFiles(d));
  }
  for (const f of manifest.files) if (existsSync(f)) wanted.push(f);
  return { wanted, tools };
}

async function withLibraries(wanted: string[]): Promise<StagedFile[]> {
  const nodeLibs = await sharedLibraries(process.execPath);
  const libs = nodeLibs.length === 0 ? [] : [nodeLibs];
  libs.push(...await mapLimit(wanted, 8, (p) => (/\.so(\.|$)|\/(s?bin|git-core)\//.test(p) ? sharedLibraries(p) : Promise.resolve([]))));
  const all = new Set([...wanted, ...libs.flat()]);
  const files: StagedFile[] = [];
  for (const p of all) files.push({ from: await realpath(p), to: await canonicalDest(p) });
  files.sort((a, b) => a.to.localeCompare(b.to));
  return files;
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Content hash of a staged tree: sha256 over sorted (path, mode, content-or-link sha256). */
export async function hashTree(root: string): Promise<string> {
  const entries: string[] = [];
  async function walk(dir: string): Promise<void> {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      const st = await lstat(p);
      const rel = '/' + relative(root, p);
      if (e.isDirectory()) { entries.push(`${rel}\0${st.mode.toString(8)}\0dir`); await walk(p); }
      else if (e.isSymbolicLink()) entries.push(`${rel}\0${st.mode.toString(8)}\0${createHash('sha256').update(await readlink(p)).digest('hex')}`);
      else entries.push(`${rel}\0${st.mode.toString(8)}\0${await sha256File(p)}`);
    }
  }
  await walk(root);
  entries.sort();
  return createHash('sha256').update(entries.join('\n')).digest('hex');
}

/** Compiles the agent to one CommonJS file (Node built-ins only). */
export async function compileAgent(): Promise<string> {
  const { build } = await import('esbuild');
  const out = await build({
    entryPoints: [join(PACKAGE_DIR, 'src/agent/main.ts')],
    bundle: true, platform: 'node', format: 'cjs', target: 'node20', write: false, logLevel: 'silent',
  });
  const file = out.outputFiles[0];
  if (!file) throw new Error('agent compilation produced no output');
  return file.text;
}

const ETC: Record<string, string> = {
  'etc/passwd': 'root:x:0:0::/nonexistent:/usr/sbin/nologin\nwegent:x:1000:1000::/workspace/.home:/bin/bash\n',
  'etc/group': 'root:x:0:\nwegent:x:1000:\n',
  'etc/nsswitch.conf': 'passwd: files\ngroup: files\nhosts: files\n',
  'etc/hosts': '127.0.0.1 localhost sandbox\n::1 localhost\n',
};

async function stage(root: string, files: StagedFile[], agentJs: string): Promise<void> {
  // Keep the host's merged-/usr links so that the loader's paths resolve the same way.
  for (const top of ['bin', 'sbin', 'lib', 'lib64']) {
    try {
      const target = await readlink(join('/', top));
      await symlink(target, join(root, top));
    } catch { /* not a link on this host */ }
  }
  // git's helpers are hard links to one binary: copy each inode once, link the other names to it.
  const byInode = new Map<string, string>();
  for (const f of files) {
    const dest = join(root, f.to);
    await mkdir(dirname(dest), { recursive: true });
    const st = await stat(f.from);
    const first = byInode.get(`${st.dev}:${st.ino}`);
    if (first !== undefined && first !== f.to) { await symlink(first, dest); continue; }
    byInode.set(`${st.dev}:${st.ino}`, f.to);
    await copyFile(f.from, dest);
    const mode = (await stat(f.from)).mode;
    await chmod(dest, mode & 0o111 ? 0o755 : 0o644); // never setuid/setgid, never writable
  }
  await mkdir(join(root, 'opt/wegent/bin'), { recursive: true });
  await mkdir(join(root, 'opt/wegent/agent'), { recursive: true });
  await copyFile(process.execPath, join(root, 'opt/wegent/bin/node'));
  await chmod(join(root, 'opt/wegent/bin/node'), 0o755);
  await writeFile(join(root, 'opt/wegent/agent/main.js'), agentJs, { mode: 0o644 });
  await mkdir(join(root, 'usr/local/bin'), { recursive: true });
  await symlink('/opt/wegent/bin/node', join(root, 'usr/local/bin/node'));
  for (const [p, text] of Object.entries(ETC)) {
    await mkdir(dirname(join(root, p)), { recursive: true });
    await writeFile(join(root, p), text, { mode: 0o644 });
  }
  for (const d of ['workspace', 'run/wegent', 'proc', 'dev', 'tmp']) await mkdir(join(root, d), { recursive: true, mode: 0o755 });
  await chmod(join(root, 'tmp'), 0o1777);
}

async function sourcesUnchanged(sources: [string, number, number][]): Promise<boolean> {
  for (const [p, size, mtime] of sources) {
    const st = await stat(p).catch(() => undefined);
    if (!st || st.size !== size || st.mtimeMs !== mtime) return false;
  }
  return true;
}

/** Builds (or finds) the executor rootfs under `<dataDir>/sandbox/rootfs/<hash>/`. */
export async function buildExecutorRootfs(opts: { dataDir: string; manifest?: ImageManifest }): Promise<ExecutorRootfs> {
  const manifest = opts.manifest ?? await readImageManifest();
  const base = join(opts.dataDir, 'sandbox', 'rootfs');
  await mkdir(base, { recursive: true });
  const { wanted, tools } = await collectPrograms(manifest);
  const agentJs = await compileAgent();

  // Staging and hashing ~200 MB takes seconds: a record of the last build's sources (with their size
  // and mtime) finds a current tree at once; any changed source gives a new build.
  const key = createHash('sha256').update(JSON.stringify(manifest)).update(agentJs).update(process.version).update(wanted.join('\n')).digest('hex');
  const keyFile = join(base, `inputs-${key.slice(0, 32)}.json`);
  const known = await readFile(keyFile, 'utf8').then((t) => JSON.parse(t) as { hash: string; sources: [string, number, number][] }).catch(() => undefined);
  if (known && existsSync(join(base, known.hash, 'opt/wegent/manifest.json')) && await sourcesUnchanged(known.sources)) {
    return { hash: known.hash, dir: join(base, known.hash), nodeVersion: process.version, tools };
  }
  const files = await withLibraries(wanted);
  const sources = await Promise.all([...files.map((f) => f.from), process.execPath].map(async (p) => { const st = await stat(p); return [p, st.size, st.mtimeMs] as [string, number, number]; }));

  const staging = join(base, `.staging-${randomUUID()}`);
  try {
    await mkdir(staging, { mode: 0o755 });
    await stage(staging, files, agentJs);
    const hash = await hashTree(staging);
    // The manifest names the hash, so it is written after hashing and outside the hashed content.
    await writeFile(join(staging, 'opt/wegent/manifest.json'), JSON.stringify({ hash, nodeVersion: process.version, tools, claudeCli: false }) + '\n', { mode: 0o644 });
    const dir = join(base, hash);
    if (existsSync(join(dir, 'opt/wegent/manifest.json'))) await rm(staging, { recursive: true, force: true });
    else { await rm(dir, { recursive: true, force: true }); await rename(staging, dir); }
    await writeFile(keyFile, JSON.stringify({ hash, sources }));
    return { hash, dir, nodeVersion: process.version, tools };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
