/** A resource as the API returns it (only the parts the CLI reads are typed). */
export interface Resource {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    scope?: string;
    creationTimestamp?: string;
    [key: string]: unknown;
  };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
  [key: string]: unknown;
}

/** Age as kubectl prints it: 5s, 3m, 2h, 4d, 1y. */
export function formatAge(timestamp: string | undefined, now: number = Date.now()): string {
  if (!timestamp) return '<unknown>';
  const t = Date.parse(timestamp);
  if (Number.isNaN(t)) return '<unknown>';
  const seconds = Math.floor((now - t) / 1000);
  // A little clock skew between client and server must not show as an error.
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours}h`;
  if (hours < 24 * 365) return `${Math.floor(hours / 24)}d`;
  return `${Math.floor(hours / 24 / 365)}y`;
}

/** Left-aligned columns separated by three spaces, like kubectl's tabwriter output. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('   ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

/** The STATE of a resource: `status.state`, or for a Task its `status.status`. */
export function resourceState(r: Resource): string {
  const s = r.status ?? {};
  const state = r.kind === 'Task' ? (s.status ?? s.state) : (s.state ?? s.status);
  return typeof state === 'string' && state ? state : '<none>';
}

/** Rows of `wegent get` in table form; NAMESPACE first when listing across namespaces. */
export function resourceTable(items: Resource[], withNamespace: boolean): string {
  const headers = withNamespace ? ['NAMESPACE', 'NAME', 'SCOPE', 'STATE', 'AGE'] : ['NAME', 'SCOPE', 'STATE', 'AGE'];
  const now = Date.now();
  const rows = items.map((r) => {
    const row = [r.metadata?.name ?? '', r.metadata?.scope ?? '<none>', resourceState(r), formatAge(r.metadata?.creationTimestamp, now)];
    return withNamespace ? [r.metadata?.namespace ?? '', ...row] : row;
  });
  return formatTable(headers, rows);
}

/** `<kind in lower case>/<name>`, the way results are named in command output; `<document N>` when unnamed. */
export function objectRef(kind: string | undefined, name: string | undefined, index?: number): string {
  const doc = `<document ${index !== undefined ? index + 1 : '?'}>`;
  return `${kind ? kind.toLowerCase() : 'unknown'}/${name ?? doc}`;
}
