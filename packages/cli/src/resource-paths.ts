import { KINDS, KIND_NAMES, lookupKind, type KindInfo } from '@wegent/core';
import type { WegentClient } from './client.js';
import { UsageError } from './errors.js';
import type { Resource } from './format.js';

/** Resolves a KIND argument (kind or plural, any case: ghost, Ghosts, ghosts). */
export function resolveKind(arg: string): KindInfo {
  const kind = lookupKind(arg);
  if (!kind) {
    throw new UsageError(`unknown resource type '${arg}'; expected one of ${KIND_NAMES.map((k) => KINDS[k].plural).join(', ')}`);
  }
  return KINDS[kind];
}

const seg = encodeURIComponent;

/** `/api/v1/namespaces/{ns}/{plural}[/{name}]`. */
export function resourcePath(namespace: string, plural: string, name?: string): string {
  return `/api/v1/namespaces/${seg(namespace)}/${plural}` + (name !== undefined ? `/${seg(name)}` : '');
}

/** The batch routes: `/api/v1/namespaces/{ns}/{verb}` with a namespace, else `/api/v1/{verb}`. */
export function batchPath(verb: 'apply' | 'delete', namespace: string | undefined): string {
  return namespace ? `/api/v1/namespaces/${seg(namespace)}/${verb}` : `/api/v1/${verb}`;
}

interface ListPage {
  apiVersion?: string;
  kind?: string;
  metadata?: { continue?: string };
  items?: Resource[];
}

/** Reads every page of a list by following `metadata.continue` (api.md §2.6). */
export async function listAll(client: WegentClient, path: string, query: Record<string, string | undefined>, kind: string): Promise<{ apiVersion: string; kind: string; metadata: Record<string, never>; items: Resource[] }> {
  const items: Resource[] = [];
  const seen = new Set<string>();
  let token: string | undefined;
  let apiVersion = 'agent.wecode.io/v1';
  for (;;) {
    const page = await client.get<ListPage>(path, { ...query, continue: token });
    if (page.apiVersion) apiVersion = page.apiVersion;
    items.push(...(page.items ?? []));
    token = page.metadata?.continue || undefined;
    if (!token) break;
    // A server that hands out the same token twice would otherwise keep us here forever.
    if (seen.has(token)) throw new Error(`the server repeated a continue token while listing ${path}`);
    seen.add(token);
  }
  return { apiVersion, kind: `${kind}List`, metadata: {}, items };
}
