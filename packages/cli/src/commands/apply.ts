import type { Command } from 'commander';
import { clientFor } from '../client.js';
import type { CliIO } from '../io.js';
import { readManifests } from '../manifest-source.js';
import { batchPath } from '../resource-paths.js';
import { printBatchResults, withBatchResults, type BatchResult } from './batch-results.js';

/** Collects a repeatable option's values. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** `wegent apply -f ...`: one atomic request to the apply route (api.md §4.8). */
export function registerApply(program: Command, io: CliIO): void {
  program
    .command('apply')
    .description('create or update resources from manifests, all in one atomic request')
    .option('-f, --filename <path>', "manifest file, folder (its *.yaml, *.yml, *.json in name order, not recursive) or '-' for stdin; repeatable", collect, [])
    .option('-n, --namespace <ns>', 'namespace for documents that name none (and the only one they may name)')
    .option('--dry-run', 'run every check and report what would happen, without storing anything')
    .option('--public', 'write public resources (admins only)')
    .addHelpText(
      'after',
      `
Prints one line per document: <kind>/<name> created|configured|unchanged|skipped.
If any document is invalid, nothing is applied: the failing ones print "<kind>/<name> error: <message>"
and the command exits with code 1.

Examples:
  wegent apply -f team.yaml
  wegent apply -f manifests/ --dry-run
  cat team.yaml | wegent apply -f - -n dev`,
    )
    .action(async (opts: { filename: string[]; namespace?: string; dryRun?: boolean; public?: boolean }, cmd: Command) => {
      const body = await readManifests(opts.filename, io.stdin);
      const client = clientFor(cmd.optsWithGlobals<{ server?: string }>().server, io.env);
      const dryRun = Boolean(opts.dryRun);
      const res = await withBatchResults(io, dryRun, () =>
        client.request('POST', batchPath('apply', opts.namespace), {
          text: body,
          contentType: 'application/yaml',
          query: { dryRun: dryRun ? 'true' : undefined, scope: opts.public ? 'public' : undefined },
        }),
      );
      const result = res.body as { results?: BatchResult[]; dryRun?: boolean };
      printBatchResults(io, result.results ?? [], dryRun || result.dryRun === true);
    });
}
