import type { Machine, Table } from './report.js';

/** What a benchmark hands back to bench/run.ts. */
export interface BenchmarkReport {
  /** Printed to stdout. */
  tables: Table[];
  /** The body of this benchmark's section of docs/benchmarks.md (without the delimiting comments). */
  markdown: string;
  /** One line per target, e.g. 'PASS  GET one ≥ 40% of bare Fastify (measured 55%)'; printed last. */
  verdicts: string[];
  /** Set (to the reason) when the figures are not representative and docs/benchmarks.md must not be rewritten. */
  doNotWrite?: string;
}

/**
 * A benchmark module: a file directly in bench/ that exports `benchmark`. It sets every limit it needs
 * (rate limits, caps, concurrency) itself and prints them beside its figures (DESIGN.md §2).
 */
export interface Benchmark {
  /** The section id in docs/benchmarks.md (`<!-- bench:<id> -->`). */
  id: string;
  title: string;
  run(context: { machine: Machine; log: (message: string) => void }): Promise<BenchmarkReport>;
}
