import type { Command } from 'commander';
import { printYaml } from '@wegent/core';
import { stringify } from 'yaml';
import { clientFor, type WegentClient } from '../client.js';
import { ServerRefusedError } from '../errors.js';
import { resourceState, type Resource } from '../format.js';
import type { CliIO } from '../io.js';
import { resolveKind, resourcePath } from '../resource-paths.js';

interface Message {
  seq?: number;
  role?: string;
  status?: string;
  content?: string;
  visible?: boolean;
  sender?: { type?: string; username?: string; memberName?: string; bot?: { name?: string } };
}

const indent = (text: string, by = '  ') =>
  text
    .split('\n')
    .map((l) => (l ? by + l : l))
    .join('\n');

/** The Status section: state and message, then any kind-specific status fields. */
function statusSection(r: Resource): string {
  const status = { ...(r.status ?? {}) };
  const isTask = r.kind === 'Task';
  const message = isTask ? (status.errorMessage ?? status.statusReason) : status.message;
  let out = `Status:\n  State:    ${resourceState(r)}\n  Message:  ${typeof message === 'string' && message ? message : '<none>'}\n`;
  for (const k of ['state', 'message', 'warnings', ...(isTask ? ['status', 'errorMessage'] : [])]) delete status[k];
  if (Object.keys(status).length) out += indent(stringify(status, { lineWidth: 0 }));
  return out;
}

function warningsSection(r: Resource): string {
  const warnings = Array.isArray(r.status?.warnings) ? (r.status.warnings as unknown[]) : [];
  if (!warnings.length) return 'Warnings: <none>\n';
  return 'Warnings:\n' + warnings.map((w) => `  - ${String(w)}\n`).join('');
}

/** The latest turns of a task (api.md §5.2), one short line each. */
async function turnsSection(client: WegentClient, taskId: string): Promise<string> {
  let items: Message[];
  try {
    items = (await client.get<{ items?: Message[] }>(`/api/v1/tasks/${encodeURIComponent(taskId)}/messages`, { limit: '10' })).items ?? [];
  } catch (e) {
    if (e instanceof ServerRefusedError) return `Latest turns: <unavailable: ${e.serverMessage}>\n`;
    throw e;
  }
  if (!items.length) return 'Latest turns: <none>\n';
  const lines = items.map((m) => {
    const who = m.role === 'assistant' ? (m.sender?.memberName ?? m.sender?.bot?.name ?? 'assistant') : (m.sender?.username ?? m.role ?? '?');
    const firstLine = (m.content ?? '').split('\n')[0] ?? '';
    const text = firstLine.length > 100 ? firstLine.slice(0, 99) + '…' : firstLine;
    return `  #${m.seq ?? '?'} ${who}${m.status ? ` [${m.status}]` : ''}: ${text}\n`;
  });
  return 'Latest turns:\n' + lines.join('');
}

/** `wegent describe KIND NAME`: the resource as YAML, then its status and warnings. */
export function registerDescribe(program: Command, io: CliIO): void {
  program
    .command('describe')
    .description('show a resource in detail: its YAML, then its status and warnings (and for a Task its latest turns)')
    .argument('<kind>', 'resource kind or plural, in any case: ghost, Ghosts, teams, ...')
    .argument('<name>', 'resource name')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .addHelpText('after', '\nExample:\n  wegent describe team wegent-chat')
    .action(async (kindArg: string, name: string, opts: { namespace: string }, cmd: Command) => {
      const kind = resolveKind(kindArg);
      const client = clientFor(cmd.optsWithGlobals<{ server?: string }>().server, io.env);
      const resource = await client.get<Resource>(resourcePath(opts.namespace, kind.plural, name));
      const { status: _status, ...rest } = resource;
      let out = printYaml([rest]) + '\n' + statusSection(resource) + warningsSection(resource);
      if (kind.kind === 'Task' && resource.metadata?.uid) out += await turnsSection(client, resource.metadata.uid);
      io.stdout(out);
    });
}
