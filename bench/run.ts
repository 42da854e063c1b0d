/**
 * `npm run bench [-- <id>...]`: runs every benchmark module in bench/ (each file here that exports
 * `benchmark`), prints its figures and rewrites its section of docs/benchmarks.md. Sections of other
 * benchmarks already in the file are kept. A benchmark reports numbers; the run exits 0 whether its
 * targets pass or not, and non-zero only when a benchmark could not run.
 */
import { readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Benchmark } from './lib/benchmark.js';
import { describeMachine, machineLine, rewriteDocument, section, textTable } from './lib/report.js';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const docPath = path.join(benchDir, '..', 'docs', 'benchmarks.md');

async function discover(): Promise<Benchmark[]> {
  const files = readdirSync(benchDir)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts') && !f.startsWith('.') && f !== 'run.ts')
    .sort();
  const found: Benchmark[] = [];
  for (const f of files) {
    const mod = (await import(pathToFileURL(path.join(benchDir, f)).href)) as { benchmark?: Benchmark };
    if (mod.benchmark) found.push(mod.benchmark);
  }
  return found;
}

const PREAMBLE = `# Benchmarks

Written by \`npm run bench\` (bench/run.ts); do not edit by hand. Each section belongs to one benchmark
module in bench/, is delimited by \`<!-- bench:<id> -->\` … \`<!-- /bench:<id> -->\` and is rewritten only
when that benchmark runs (\`npm run bench -- <id>\` runs one). Every section names the machine, the date and
the limits it ran with. Benchmarks report numbers; they are not tests and do not fail the build.`;

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const all = await discover();
  const unknown = wanted.filter((w) => !all.some((b) => b.id === w));
  if (unknown.length) throw new Error(`unknown benchmark(s): ${unknown.join(', ')}; known: ${all.map((b) => b.id).join(', ')}`);
  const chosen = wanted.length ? all.filter((b) => wanted.includes(b.id)) : all;
  const machine = describeMachine();
  console.log(`Machine: ${machineLine(machine)}`);

  const fresh = new Map<string, string>();
  for (const b of chosen) {
    console.log(`\n== ${b.id}: ${b.title}`);
    const started = Date.now();
    const report = await b.run({ machine, log: (m) => console.log(`[${b.id}] ${m}`) });
    console.log(`[${b.id}] done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    for (const t of report.tables.filter((x) => x.rows.length)) console.log(`\n${textTable(t)}`);
    if (report.verdicts.length) console.log(`\n${report.verdicts.join('\n')}`);
    if (report.doNotWrite) console.log(`\n[${b.id}] not written to docs/benchmarks.md: ${report.doNotWrite}`);
    else fresh.set(b.id, section(b.id, report.markdown));
  }

  if (!fresh.size) return;
  const old = existsSync(docPath) ? readFileSync(docPath, 'utf8') : '';
  writeFileSync(docPath, rewriteDocument(old, PREAMBLE, fresh));
  console.log(`\nWrote ${path.relative(process.cwd(), docPath)} (sections: ${[...fresh.keys()].join(', ')})`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
