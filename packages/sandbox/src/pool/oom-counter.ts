/**
 * The `oom_kill` counter of a sandbox's memory cgroup, read on the host (sandbox.md §9): a command
 * killed by the OOM killer while the sandbox survives is found by comparing it before and after.
 * Driver-neutral: the cgroup is found from any host pid of the sandbox (`/proc/<pid>/cgroup`, read
 * in the host's cgroup namespace), so it serves docker containers and bwrap cgroups alike.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

interface MemoryHierarchy { version: 1 | 2; mount: string }

let hierarchy: MemoryHierarchy | null | undefined;

function memoryHierarchy(): MemoryHierarchy | null {
  if (hierarchy !== undefined) return hierarchy;
  hierarchy = null;
  let v2: string | undefined;
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const point = pre.split(' ')[4];
    const [fstype, , opts] = post.split(' ');
    if (!point) continue;
    if (fstype === 'cgroup' && (opts ?? '').split(',').includes('memory')) { hierarchy = { version: 1, mount: point }; return hierarchy; }
    if (fstype === 'cgroup2') v2 ??= point;
  }
  if (v2) hierarchy = { version: 2, mount: v2 };
  return hierarchy;
}

/** The file holding the memory cgroup's `oom_kill` line for the cgroup of `pid`; undefined when unknown. */
export async function oomEventsFile(pid: number): Promise<string | undefined> {
  const h = memoryHierarchy();
  if (!h) return undefined;
  const text = await readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const [, ctrls, path] = line.split(':');
    if (ctrls === undefined || path === undefined) continue;
    if (h.version === 1 && ctrls.split(',').includes('memory')) return join(h.mount, path, 'memory.oom_control');
    if (h.version === 2 && ctrls === '') return join(h.mount, path, 'memory.events');
  }
  return undefined;
}

/** The counter's value; undefined when the file cannot be read (the sandbox is gone). */
export async function readOomKills(file: string): Promise<number | undefined> {
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const m = /^oom_kill (\d+)$/m.exec(text);
  return m?.[1] ? Number(m[1]) : 0;
}
