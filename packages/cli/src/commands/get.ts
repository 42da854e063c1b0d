import { Option, type Command } from 'commander';
import { printYaml } from '@wegent/core';
import { clientFor } from '../client.js';
import { UsageError } from '../errors.js';
import { resourceTable, type Resource } from '../format.js';
import type { CliIO } from '../io.js';
import { listAll, resolveKind, resourcePath } from '../resource-paths.js';

interface GetOptions {
  namespace: string;
  selector?: string;
  output: 'table' | 'yaml' | 'json';
  allNamespaces?: boolean;
}

/** `wegent get KIND [NAME]`: one resource or a whole list (every page). */
export function registerGet(program: Command, io: CliIO): void {
  program
    .command('get')
    .description('show one resource or list resources (yours and the public ones)')
    .argument('<kind>', 'resource kind or plural, in any case: ghost, Ghosts, teams, ...')
    .argument('[name]', 'resource name; without it, every resource of the kind is listed')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .option('-l, --selector <selector>', 'label selector, e.g. team=docs,tier!=test')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'yaml', 'json']).default('table'))
    .option('-A, --all-namespaces', 'list across all namespaces (yours and the public ones)')
    .addHelpText(
      'after',
      `
The table shows NAME, SCOPE (user or public), STATE and AGE (NAMESPACE first with -A).
-o yaml prints a list as multi-document YAML that can be applied again.

Examples:
  wegent get ghosts
  wegent get team wegent-chat -o yaml
  wegent get bots -l app=review -o json`,
    )
    .action(async (kindArg: string, name: string | undefined, opts: GetOptions, cmd: Command) => {
      const kind = resolveKind(kindArg);
      if (name !== undefined && opts.allNamespaces) throw new UsageError('a resource name cannot be combined with --all-namespaces');
      const client = clientFor(cmd.optsWithGlobals<{ server?: string }>().server, io.env);

      if (name !== undefined) {
        const resource = await client.get<Resource>(resourcePath(opts.namespace, kind.plural, name));
        if (opts.output === 'json') io.stdout(JSON.stringify(resource, null, 2) + '\n');
        else if (opts.output === 'yaml') io.stdout(printYaml([resource]));
        else io.stdout(resourceTable([resource], false));
        return;
      }

      // -A uses the seed-compatible alias, which lists across all namespaces (api.md §4.10).
      const path = opts.allNamespaces ? `/api/v1/kinds/${kind.plural}` : resourcePath(opts.namespace, kind.plural);
      const list = await listAll(client, path, { labelSelector: opts.selector }, kind.kind);
      if (opts.output === 'json') {
        io.stdout(JSON.stringify(list, null, 2) + '\n');
        return;
      }
      if (list.items.length === 0) {
        io.stderr(opts.allNamespaces ? 'No resources found.\n' : `No resources found in ${opts.namespace} namespace.\n`);
        return;
      }
      // kubectl prints a List object here; we print the items as a multi-document stream instead,
      // so that `wegent get ... -o yaml > x.yaml && wegent apply -f x.yaml` works as is.
      if (opts.output === 'yaml') io.stdout(printYaml(list.items));
      else io.stdout(resourceTable(list.items, Boolean(opts.allNamespaces)));
    });
}
