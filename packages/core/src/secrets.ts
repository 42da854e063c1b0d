import type { KindName } from './kinds/index.js';

/** Keys whose string values are secrets (resources.md §9.1). */
export const SECRET_KEY_PATTERN = /api[_-]?key|token(?!s)|secret|password|passwd|authorization|credential|private[_-]?key/i;
/** A value that looks like a mask ("******" + up to 4 characters). */
export const MASK_PATTERN = /^\*{6}.{0,4}$/s;

/** The mask a secret is read back as (resources.md §9.3). */
export function maskSecret(secret: string): string {
  return secret.length >= 12 ? `******${secret.slice(-4)}` : '******';
}

export type SecretVisitor = (value: string, path: string) => string | undefined;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Rewrites every string value of `map` (headers maps: all values are secret). */
function visitAllValues(map: unknown, path: string, fn: SecretVisitor): unknown {
  if (!isObj(map)) return map;
  const out: Obj = {};
  for (const [k, v] of Object.entries(map)) out[k] = typeof v === 'string' ? fn(v, `${path}.${k}`) : v;
  return dropUndefined(out);
}

/** Rewrites string values whose key matches the secret pattern, at any depth (upstream env forms). */
function visitDeep(value: unknown, path: string, fn: SecretVisitor): unknown {
  if (Array.isArray(value)) return value.map((v, i) => visitDeep(v, `${path}[${i}]`, fn));
  if (!isObj(value)) return value;
  const out: Obj = {};
  for (const [k, v] of Object.entries(value)) {
    const p = `${path}.${k}`;
    if (typeof v === 'string' && SECRET_KEY_PATTERN.test(k)) out[k] = fn(v, p);
    else if ((k === 'headers' || k === 'custom_headers') && isObj(v)) out[k] = visitAllValues(v, p, fn);
    else out[k] = visitDeep(v, p, fn);
  }
  return dropUndefined(out);
}

function visitMatchingKeys(map: unknown, path: string, fn: SecretVisitor): unknown {
  if (!isObj(map)) return map;
  const out: Obj = {};
  for (const [k, v] of Object.entries(map)) out[k] = typeof v === 'string' && SECRET_KEY_PATTERN.test(k) ? fn(v, `${path}.${k}`) : v;
  return dropUndefined(out);
}

function dropUndefined(o: Obj): Obj {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}

/**
 * Returns a copy of `spec` in which every secret string (resources.md §9.1) is replaced by `fn(value,
 * path)`; returning undefined removes the key. Paths look like `spec.mcpServers.github.env.TOKEN`.
 */
export function mapSecrets(kind: KindName, spec: Obj, fn: SecretVisitor): Obj {
  const out: Obj = { ...spec };
  if (kind === 'Model') {
    if (typeof out.apiKey === 'string') out.apiKey = fn(out.apiKey, 'spec.apiKey');
    if ('headers' in out) out.headers = visitAllValues(out.headers, 'spec.headers', fn);
    if ('modelConfig' in out) out.modelConfig = visitDeep(out.modelConfig, 'spec.modelConfig', fn);
    if ('env' in out) out.env = visitDeep(out.env, 'spec.env', fn);
    if (isObj(out.config) && typeof out.config.apiKey === 'string') {
      out.config = dropUndefined({ ...out.config, apiKey: fn(out.config.apiKey, 'spec.config.apiKey') });
    }
  } else if (kind === 'Ghost' && isObj(out.mcpServers)) {
    const servers: Obj = {};
    for (const [name, server] of Object.entries(out.mcpServers)) {
      if (!isObj(server)) {
        servers[name] = server;
        continue;
      }
      const s: Obj = { ...server };
      if ('env' in s) s.env = visitMatchingKeys(s.env, `spec.mcpServers.${name}.env`, fn);
      if ('headers' in s) s.headers = visitMatchingKeys(s.headers, `spec.mcpServers.${name}.headers`, fn);
      servers[name] = s;
    }
    out.mcpServers = servers;
  } else if (kind === 'Workspace' && isObj(out.credentials)) {
    const c: Obj = { ...out.credentials };
    if (typeof c.token === 'string') c.token = fn(c.token, 'spec.credentials.token');
    if (typeof c.password === 'string') c.password = fn(c.password, 'spec.credentials.password');
    out.credentials = dropUndefined(c);
  }
  return dropUndefined(out);
}

/** Collects the secret values of a spec by path. */
export function collectSecrets(kind: KindName, spec: Obj): Map<string, string> {
  const found = new Map<string, string>();
  mapSecrets(kind, spec, (v, p) => {
    found.set(p, v);
    return v;
  });
  return found;
}
