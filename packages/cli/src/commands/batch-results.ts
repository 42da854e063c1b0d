import { isStatusBody, ServerRefusedError } from '../errors.js';
import { objectRef } from '../format.js';
import type { CliIO } from '../io.js';

/** One entry of `results` in an ApplyResult / DeleteResult, or of a failed batch's Status (api.md §4.8, §4.9). */
export interface BatchResult {
  index?: number;
  kind?: string;
  namespace?: string;
  name?: string;
  action?: string;
  warnings?: string[];
  error?: { message?: string; reason?: string } | string;
  message?: string;
}

/** The `results` of a failed batch: the spec puts them on the Status; accept `details.results` too. */
export function resultsOfFailure(err: ServerRefusedError): BatchResult[] | undefined {
  const body = err.body;
  if (!isStatusBody(body)) return undefined;
  const direct = (body as { results?: unknown }).results;
  if (Array.isArray(direct)) return direct as BatchResult[];
  const nested = body.details?.results;
  if (Array.isArray(nested)) return nested as BatchResult[];
  return undefined;
}

function errorMessage(r: BatchResult): string {
  if (typeof r.error === 'string') return r.error;
  return r.error?.message ?? r.message ?? 'failed';
}

/** Words for the actions in output; anything else is printed as the server named it. */
const ACTION_WORDS: Record<string, string> = { notFound: 'not found', notApplied: 'not applied' };

/**
 * Prints one line per result on stdout (`ghost/reviewer-ghost created`, `bot/x error: <message>`)
 * and each warning on stderr as `Warning: <text>`.
 */
export function printBatchResults(io: CliIO, results: BatchResult[], dryRun: boolean): void {
  for (const r of results) {
    const ref = objectRef(r.kind, r.name, r.index);
    if (r.action === 'error') io.stdout(`${ref} error: ${errorMessage(r)}\n`);
    else {
      const action = ACTION_WORDS[r.action ?? ''] ?? r.action ?? 'unknown';
      const suffix = dryRun && r.action !== 'notApplied' ? ' (dry run)' : '';
      io.stdout(`${ref} ${action}${suffix}\n`);
    }
    for (const w of r.warnings ?? []) io.stderr(`Warning: ${w}\n`);
  }
}

/** Runs a batch request; on failure prints the per-document results before the error is reported. */
export async function withBatchResults<T>(io: CliIO, dryRun: boolean, send: () => Promise<T>): Promise<T> {
  try {
    return await send();
  } catch (e) {
    if (e instanceof ServerRefusedError) {
      const results = resultsOfFailure(e);
      if (results) {
        printBatchResults(io, results, dryRun);
        // The per-document lines already say what each cause says.
        throw new ServerRefusedError(e.httpStatus, e.reason, e.serverMessage, e.body, { showCauses: false });
      }
    }
    throw e;
  }
}
