/** A small HTTP client for driving the Wegent API from a benchmark (JSON or YAML bodies, Bearer tokens). */

export interface Call {
  status: number;
  body: unknown;
  text: string;
}

export async function call(base: string, method: string, url: string, opts: { token?: string; json?: unknown; yaml?: string } = {}): Promise<Call> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let body: string | undefined;
  if (opts.json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(opts.json);
  } else if (opts.yaml !== undefined) {
    headers['content-type'] = 'application/yaml';
    body = opts.yaml;
  }
  const res = await fetch(base + url, { method, headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body: parsed, text };
}

/** Awaits the call and throws (naming `what`) unless it answered `status`. */
export async function expectStatus(what: string, p: Promise<Call>, status: number): Promise<Call> {
  const r = await p;
  if (r.status !== status) throw new Error(`${what}: expected HTTP ${status}, got ${r.status}: ${r.text.slice(0, 500)}`);
  return r;
}

/** Logs in with a password and returns the access token. */
export async function login(base: string, username: string, password: string): Promise<string> {
  const r = await expectStatus(`login ${username}`, call(base, 'POST', '/api/v1/auth/login', { json: { username, password } }), 200);
  return (r.body as { accessToken: string }).accessToken;
}

/** Creates a user (role `user`) as the admin and logs it in. */
export async function createUser(base: string, adminToken: string, username: string, password: string): Promise<{ id: string; token: string }> {
  const r = await expectStatus(`create user ${username}`, call(base, 'POST', '/api/v1/admin/users', { token: adminToken, json: { username, email: `${username}@example.com`, password, role: 'user' } }), 201);
  return { id: (r.body as { id: string }).id, token: await login(base, username, password) };
}
