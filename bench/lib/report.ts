import os from 'node:os';

/** The machine a run happened on, as printed beside every figure. */
export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
  os: string;
}

export function describeMachine(): Machine {
  const cpus = os.cpus();
  return {
    cpu: (cpus[0]?.model ?? 'unknown CPU').trim(),
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    node: process.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
  };
}

export function machineLine(m: Machine): string {
  return `${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB RAM, Node ${m.node}, ${m.os}`;
}

/** A table of figures, printed to stdout as text and written to docs/benchmarks.md as Markdown. */
export interface Table {
  title: string;
  columns: string[];
  rows: string[][];
  /** Columns (by index) to align right; numbers by default. */
  right?: number[];
}

export function textTable(t: Table): string {
  const all = [t.columns, ...t.rows];
  const widths = t.columns.map((_, i) => Math.max(...all.map((r) => [...(r[i] ?? '')].length)));
  const right = new Set(t.right ?? []);
  const line = (r: string[]) => r.map((c, i) => (right.has(i) ? (c ?? '').padStart(widths[i]!) : (c ?? '').padEnd(widths[i]!))).join('  ');
  return [t.title, line(t.columns), widths.map((w) => '-'.repeat(w)).join('  '), ...t.rows.map(line)].join('\n');
}

export function markdownTable(t: Table): string {
  const right = new Set(t.right ?? []);
  const esc = (c: string) => c.replace(/\|/g, '\\|');
  return [
    `| ${t.columns.map(esc).join(' | ')} |`,
    `| ${t.columns.map((_, i) => (right.has(i) ? '---:' : '---')).join(' | ')} |`,
    ...t.rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

/** The opening of every benchmark section after its prose: the limits it set, then its targets table. */
export function limitsAndTargets(limits: readonly string[], targets: Table): string[] {
  return ['**Limits set by this benchmark**', '', ...limits.map((l) => `- ${l}`), '', '### Targets', '', markdownTable(targets), ''];
}

const OPEN = /<!-- bench:([A-Za-z0-9_-]+) -->/g;

/** The sections of docs/benchmarks.md, each delimited by `<!-- bench:id -->` … `<!-- /bench:id -->`, in file order. */
export function parseSections(doc: string): Map<string, string> {
  const sections = new Map<string, string>();
  for (const m of doc.matchAll(OPEN)) {
    const id = m[1]!;
    const close = `<!-- /bench:${id} -->`;
    const end = doc.indexOf(close, m.index);
    if (end < 0) continue;
    sections.set(id, doc.slice(m.index, end + close.length));
  }
  return sections;
}

/** Wraps a section body in its delimiters. */
export function section(id: string, body: string): string {
  return `<!-- bench:${id} -->\n${body.trim()}\n<!-- /bench:${id} -->`;
}

/**
 * The new docs/benchmarks.md: a regenerated preamble, then every section of `old` in its place with those
 * in `fresh` replaced, then the fresh sections the file did not have yet.
 */
export function rewriteDocument(old: string, preamble: string, fresh: Map<string, string>): string {
  const sections = parseSections(old);
  for (const [id, text] of fresh) sections.set(id, text);
  return `${preamble.trim()}\n\n${[...sections.values()].join('\n\n')}\n`;
}

export const fmt = {
  int: (n: number) => Math.round(n).toLocaleString('en-US'),
  ms: (n: number) => (n === 0 ? '<1 ms' : Number.isInteger(n) || n >= 100 ? `${Math.round(n)} ms` : `${n.toFixed(n >= 10 ? 1 : 2)} ms`),
  us: (n: number) => (n >= 100 ? `${Math.round(n)} µs` : `${n.toFixed(1)} µs`),
  pct: (n: number) => `${(n * 100).toFixed(0)}%`,
  ratio: (n: number) => `${(n * 100).toFixed(1)}%`,
  bytes: (n: number) => (n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`),
};
