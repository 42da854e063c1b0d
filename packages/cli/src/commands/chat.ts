import type { Command } from 'commander';
import { resolveServer, resolveToken, WegentClient } from '../client.js';
import { ChatConnection, describeAckError, type AckErrorBody } from '../chat/connection.js';
import { LineReader } from '../chat/line-reader.js';
import { ChatOutput } from '../chat/output.js';
import type { RunOutcome } from '../chat/run-view.js';
import { ChatSession } from '../chat/session.js';
import { CliError, EXIT, ExitError, NoCredentialsError, UnreachableError, UsageError } from '../errors.js';
import type { CliIO } from '../io.js';
import { resourcePath } from '../resource-paths.js';

interface ChatOptions {
  task?: string;
  message?: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `ns#name` or `name` (namespace `default`), as `chat:send` takes it (chat-protocol.md §5.1). */
function parseTeam(team: string): { namespace: string; name: string } {
  const i = team.indexOf('#');
  return i < 0 ? { namespace: 'default', name: team } : { namespace: team.slice(0, i) || 'default', name: team.slice(i + 1) };
}

/**
 * Whether the team has several members, so that each answer is headed by its member's name. Only a
 * hint: an unreachable server is reported here already, but any refusal is left to `chat:send`, which
 * says it in the chat protocol's terms (and a second member showing up in a run turns the names on).
 */
async function hasSeveralMembers(client: WegentClient, team: string, taskId: string | undefined): Promise<boolean> {
  try {
    let ref = parseTeam(team);
    if (taskId) {
      const task = await client.get<{ spec?: { teamRef?: { name?: string; namespace?: string } } }>(`/api/v1/tasks/${encodeURIComponent(taskId)}`);
      const teamRef = task?.spec?.teamRef;
      if (teamRef?.name) ref = { name: teamRef.name, namespace: teamRef.namespace ?? 'default' };
    }
    const doc = await client.get<{ spec?: { members?: unknown[] } }>(resourcePath(ref.namespace, 'teams', ref.name));
    return Array.isArray(doc?.spec?.members) && doc.spec.members.length > 1;
  } catch (e) {
    if (e instanceof UnreachableError || e instanceof NoCredentialsError) throw e;
    return false;
  }
}

/** Ack errors after which another message cannot do better: the task or team is gone, or the credential. */
function isFatal(error: AckErrorBody, hasTask: boolean): boolean {
  if (['NOT_FOUND', 'TEAM_DELETED', 'UNAUTHENTICATED'].includes(error.code)) return true;
  const causes = Array.isArray(error.details?.causes) ? error.details.causes : [];
  return error.code === 'VALIDATION_FAILED' && !hasTask && causes.some((c) => c.field === 'team' || c.field === 'teamRef');
}

/** `wegent chat TEAM [--task ID] [-m MESSAGE]`: chat:send over Socket.IO, the answer streamed to stdout. */
export function registerChat(program: Command, io: CliIO): void {
  program
    .command('chat')
    .description('chat with a Team: send a message and stream the answer (interactive without -m)')
    .argument('<team>', "the Team, as 'namespace#name' or 'name' (namespace default); yours, else a public one. With --task, the task's own team answers")
    .option('--task <id>', 'continue an existing task (conversation) instead of starting a new one')
    .option('-m, --message <text>', 'send this one message, print the answer and exit')
    .addHelpText(
      'after',
      `
With -m, the answer is streamed to stdout as it is written, followed by a newline; a team with
several members prints each member's name on its own line before its answer. The exit code is 0 when
the answer completed and 1 when it failed or the server refused the message (the error, as
'Error: <code>: <message>', goes to stderr). stderr also names the task, to continue it with --task.

Without -m, each line read from stdin is sent as a message of the same task (the first line starts the
task unless --task is given) and answered in turn; on a terminal the prompt 'you> ' is shown on stderr.
End of input (Ctrl-D) exits with 0.

Ctrl-C while an answer is being written cancels it: the text so far stays on stdout, '^C cancelled'
goes to stderr, and the command returns to the prompt (with -m: exits with 130). A second Ctrl-C
exits at once (130). A dropped connection is re-established and the answer resumes exactly where it
stopped.

Examples:
  wegent chat wegent-chat -m "Summarise RFC 9110 in three sentences"
  wegent chat team-a#reviewers
  wegent chat wegent-chat --task 0198f3c2-7d1e-7a40-9c55-3b2f4e6a1d20 -m "And in one?"`,
    )
    .action(async (team: string, opts: ChatOptions, cmd: Command) => {
      const server = resolveServer(cmd.optsWithGlobals<{ server?: string }>().server, io.env);
      if (!team.trim()) throw new UsageError('the team name is empty');
      if (opts.task !== undefined && !UUID.test(opts.task)) throw new UsageError(`--task needs a task id (a UUID), not '${opts.task}'`);
      if (opts.message !== undefined && !opts.message.trim()) throw new UsageError('the message given with -m is empty');
      const token = resolveToken(server, io.env);
      if (!token) throw new NoCredentialsError(server);

      const output = new ChatOutput(io.stdout, io.stderr);
      let session: ChatSession | undefined;
      let reader: LineReader | undefined;
      let abort!: (err: Error) => void;
      const aborted = new Promise<never>((_, reject) => (abort = reject));
      aborted.catch(() => undefined);
      const race = <T>(p: Promise<T>): Promise<T> => Promise.race([p, aborted]);

      const onInterrupt = () => {
        if (!session || session.interrupt() === 'exit') {
          if (reader && !session?.busy) io.stderr('\n');
          abort(new ExitError(EXIT.interrupted));
        }
      };
      const stopInterrupts = io.onInterrupt?.(onInterrupt);
      let conn: ChatConnection | undefined;
      try {
        const multiMember = await race(hasSeveralMembers(new WegentClient(server, token), team, opts.task));
        conn = await race(
          ChatConnection.open(server, token, {
            onConnectionChange: (state) => output.notice(state === 'lost' ? '(connection lost; reconnecting...)' : '(reconnected)'),
          }),
        );
        conn.onFatal((err) => abort(err));
        session = new ChatSession(conn, output, { team, taskId: opts.task, multiMember });

        if (opts.message !== undefined) {
          const result = await race(session.send(opts.message));
          if (result.kind === 'refused') {
            output.notice(describeAckError(result.error));
            throw new ExitError(EXIT.refused);
          }
          const code = reportOutcome(result.outcome, output, session.cancelledByUser);
          if (code !== EXIT.ok) throw new ExitError(code);
          return;
        }

        reader = new LineReader(io, onInterrupt);
        for (;;) {
          reader.prompt();
          const line = await race(reader.next());
          if (line === undefined) break;
          if (!line.trim()) continue;
          reader.pauseForAnswer();
          let result;
          try {
            result = await race(session.send(line));
          } finally {
            reader.resumeAfterAnswer();
          }
          if (result.kind === 'refused') {
            output.notice(describeAckError(result.error));
            if (isFatal(result.error, session.taskId !== undefined)) throw new ExitError(EXIT.refused);
          } else {
            reportOutcome(result.outcome, output, session.cancelledByUser);
          }
        }
        if (io.interactive) io.stderr('\n');
      } catch (e) {
        if (e instanceof CliError) throw e;
        throw new CliError(`error: ${(e as Error)?.message ?? String(e)}`, EXIT.refused);
      } finally {
        stopInterrupts?.();
        reader?.close();
        conn?.close();
        const taskId = session?.acceptedTaskId;
        if (taskId) output.notice(`(task ${taskId}; continue with --task ${taskId})`);
      }
    });
}

/** Says how a run ended (the turns' own errors are already printed) and returns the exit code for -m. */
function reportOutcome(o: RunOutcome, output: ChatOutput, cancelledByUser: boolean): number {
  switch (o.status) {
    case 'COMPLETED':
      return EXIT.ok;
    case 'PENDING_CONFIRMATION':
      output.notice('(the pipeline waits for confirmation: send a message to revise this stage, or confirm it in the web app)');
      return EXIT.ok;
    case 'CANCELLED':
      return cancelledByUser ? EXIT.interrupted : EXIT.refused;
    default:
      if (!o.errorReported) output.notice(describeAckError({ code: o.statusReason ?? 'FAILED', message: o.errorMessage || 'the answer failed' }));
      return EXIT.refused;
  }
}
