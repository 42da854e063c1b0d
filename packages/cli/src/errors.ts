/** Exit codes of the `wegent` command (api.md §12). */
export const EXIT = { ok: 0, refused: 1, usage: 2, unreachable: 3, interrupted: 130 } as const;

/** An error that ends the command with a message on stderr and a given exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/** Ends the command with an exit code only: whatever had to be said is already on stderr. */
export class ExitError extends CliError {
  constructor(exitCode: number) {
    super('', exitCode);
  }
}

/** Bad arguments, unreadable input files, missing values without a terminal: exit 2. */
export class UsageError extends CliError {
  constructor(message: string) {
    super(`error: ${message}`, EXIT.usage);
  }
}

/** No token for the chosen server: exit 2, pointing at `wegent login`. */
export class NoCredentialsError extends CliError {
  constructor(server: string) {
    super(
      `error: not logged in to ${server}; run 'wegent login' (or set WEGENT_TOKEN to a token or API key)`,
      EXIT.usage,
    );
  }
}

/** The server could not be reached at all: exit 3. */
export class UnreachableError extends CliError {
  constructor(server: string, cause: string) {
    super(`cannot reach the Wegent server at ${server}: ${cause}`, EXIT.unreachable);
  }
}

/** A Kubernetes-style Status body, as every failing request answers (api.md §2.4). */
export interface StatusBody {
  kind: 'Status';
  message: string;
  reason: string;
  code: number;
  details?: { name?: string; kind?: string; causes?: Array<{ field: string; reason: string; message: string }>; [key: string]: unknown };
  [key: string]: unknown;
}

export function isStatusBody(body: unknown): body is StatusBody {
  return typeof body === 'object' && body !== null && (body as { kind?: unknown }).kind === 'Status' && typeof (body as { message?: unknown }).message === 'string';
}

/** The field-level causes of a Status, one indented line each (at most 20). */
function causeLines(body: unknown): string {
  if (!isStatusBody(body) || !Array.isArray(body.details?.causes)) return '';
  const causes = body.details.causes;
  const lines = causes.slice(0, 20).map((c) => `\n  ${c.field ? `${c.field}: ` : ''}${c.message}`);
  if (causes.length > 20) lines.push(`\n  ... and ${causes.length - 20} more`);
  return lines.join('');
}

/** The server answered with an error status: exit 1, its Status message (and causes) on stderr. */
export class ServerRefusedError extends CliError {
  constructor(
    readonly httpStatus: number,
    readonly reason: string,
    readonly serverMessage: string,
    /** The parsed response body (a Status when the server follows the spec). */
    readonly body: unknown,
    opts: { showCauses?: boolean; hint?: string } = {},
  ) {
    super(
      `Error from server (${reason}): ${serverMessage}` +
        (opts.showCauses === false ? '' : causeLines(body)) +
        (opts.hint ? `\nhint: ${opts.hint}` : ''),
      EXIT.refused,
    );
  }
}
