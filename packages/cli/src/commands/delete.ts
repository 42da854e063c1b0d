import type { Command } from 'commander';
import { clientFor } from '../client.js';
import { UsageError } from '../errors.js';
import { objectRef } from '../format.js';
import type { CliIO } from '../io.js';
import { readManifests } from '../manifest-source.js';
import { batchPath, resolveKind, resourcePath } from '../resource-paths.js';
import { collect } from './apply.js';
import { printBatchResults, withBatchResults, type BatchResult } from './batch-results.js';

interface DeleteOptions {
  filename: string[];
  namespace?: string;
  dryRun?: boolean;
  public?: boolean;
}

/** `wegent delete KIND NAME` or `wegent delete -f ...` (the atomic batch delete of api.md §4.9). */
export function registerDelete(program: Command, io: CliIO): void {
  program
    .command('delete')
    .description('delete one resource, or every resource named in manifests (atomically)')
    .argument('[kind]', 'resource kind or plural, in any case (without -f)')
    .argument('[name]', 'resource name (without -f)')
    .option('-f, --filename <path>', "manifest file, folder (its *.yaml, *.yml, *.json in name order) or '-' for stdin; repeatable", collect, [])
    .option('-n, --namespace <ns>', 'namespace (default: default; with -f, for documents that name none)')
    .option('--dry-run', 'run every check without deleting anything')
    .option('--public', 'delete public resources (admins only)')
    .addHelpText(
      'after',
      `
Prints <kind>/<name> deleted (or "not found" for a manifest object that does not exist).
A resource still referenced by another one is not deleted (exit code 1).

Examples:
  wegent delete ghost reviewer-ghost
  wegent delete -f team.yaml`,
    )
    .action(async (kindArg: string | undefined, name: string | undefined, opts: DeleteOptions, cmd: Command) => {
      const dryRun = Boolean(opts.dryRun);
      const query = { dryRun: dryRun ? 'true' : undefined, scope: opts.public ? 'public' : undefined };
      if (opts.filename.length > 0) {
        if (kindArg !== undefined) throw new UsageError('give either -f or KIND NAME, not both');
        const body = await readManifests(opts.filename, io.stdin);
        const client = clientFor(cmd.optsWithGlobals<{ server?: string }>().server, io.env);
        const res = await withBatchResults(io, dryRun, () =>
          client.request('POST', batchPath('delete', opts.namespace), { text: body, contentType: 'application/yaml', query }),
        );
        const result = res.body as { results?: BatchResult[]; dryRun?: boolean };
        printBatchResults(io, result.results ?? [], dryRun || result.dryRun === true);
        return;
      }
      if (kindArg === undefined || name === undefined) throw new UsageError('give KIND NAME, or -f FILE|DIR|-');
      const kind = resolveKind(kindArg);
      const client = clientFor(cmd.optsWithGlobals<{ server?: string }>().server, io.env);
      await client.request('DELETE', resourcePath(opts.namespace ?? 'default', kind.plural, name), { query });
      io.stdout(`${objectRef(kind.kind, name)} deleted${dryRun ? ' (dry run)' : ''}\n`);
    });
}
