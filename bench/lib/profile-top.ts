/**
 * Summarises a V8 CPU profile (`node --cpu-prof`, e.g. from BENCH_CPU_PROF=<dir> npm run bench):
 *
 *   node --import tsx bench/lib/profile-top.ts <file.cpuprofile> [count] [requests]
 *
 * prints the self time per package (node_modules/<pkg>, packages/<pkg>, node internals), the functions
 * with the most self time, then with the most inclusive ("total") time. Inclusive time stops at `await`:
 * a continuation's stack starts at the microtask queue. With `requests` (the number of requests served
 * while the profile was recorded, printed by bench/api.ts) every line also shows microseconds per request.
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const [file, countArg, requestsArg] = process.argv.slice(2);
if (!file) {
  console.error('usage: profile-top.ts <file.cpuprofile> [count] [requests]');
  process.exit(2);
}
const count = Number(countArg ?? 25);
const requests = requestsArg ? Number(requestsArg.replace(/[,_]/g, '')) : undefined;
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const short = (url: string) => url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, 'node_modules/').replace(/^.*\/(packages|bench)\//, '$1/');
const label = (n: Node) => `${n.callFrame.functionName || '(anonymous)'} ${short(n.callFrame.url)}${n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ''}`;
const pkg = (n: Node) => {
  const u = n.callFrame.url;
  if (!u) return n.callFrame.functionName.startsWith('(') ? n.callFrame.functionName : '(native)';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u) ?? /\/(packages\/[^/]+)\//.exec(u);
  if (m) return m[1]!;
  return u.startsWith('node:') ? 'node internals' : short(u);
};

const stackOf = (id: number) => {
  const out: Node[] = [];
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) out.push(byId.get(cur)!);
  return out;
};

const self = new Map<string, number>();
const total = new Map<string, number>();
const packages = new Map<string, number>();
let all = 0;
profile.samples.forEach((id, i) => {
  const dt = profile.timeDeltas[i] ?? 0;
  all += dt;
  const stack = stackOf(id);
  const leaf = stack[0]!;
  self.set(label(leaf), (self.get(label(leaf)) ?? 0) + dt);
  packages.set(pkg(leaf), (packages.get(pkg(leaf)) ?? 0) + dt);
  for (const l of new Set(stack.map(label))) total.set(l, (total.get(l) ?? 0) + dt);
});

const print = (title: string, m: Map<string, number>, n: number) => {
  console.log(`\n${title}`);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, n)) {
    const per = requests ? `${(v / requests).toFixed(1).padStart(7)} µs/req  ` : '';
    console.log(`${((v / all) * 100).toFixed(1).padStart(5)}%  ${(v / 1000).toFixed(0).padStart(6)} ms  ${per}${k}`);
  }
};
const idle = self.get('(idle) ') ?? 0;
console.log(`${file}: ${(all / 1000).toFixed(0)} ms sampled, ${(idle / 1000).toFixed(0)} ms idle${requests ? `; ${((all - idle) / requests).toFixed(1)} µs busy per request over ${requests} requests` : ''}`);
print('Self time by package', packages, count);
print('Self time by function', self, count);
print('Total (inclusive) time by function', total, count);
