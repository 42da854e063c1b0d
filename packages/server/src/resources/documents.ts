import { API_VERSION, collectSecrets, mapSecrets, maskSecret, type KindName } from '@wegent/core';
import type { SecretBox } from '../secrets/keyring.js';
import { PUBLIC_OWNER, type ResourceRecord } from './store.js';

type Obj = Record<string, unknown>;

/** The API form of a stored resource: server metadata added, secrets masked (resources.md §3, §9.3). */
export function toApiDocument(r: ResourceRecord, box: SecretBox, owner?: { id: string; username: string }): Obj {
  const metadata: Obj = { name: r.name, namespace: r.namespace };
  if (r.displayName !== undefined) metadata.displayName = r.displayName;
  metadata.labels = r.labels;
  metadata.annotations = r.annotations;
  metadata.uid = r.uid;
  metadata.resourceVersion = String(r.resourceVersion);
  metadata.generation = r.generation;
  metadata.creationTimestamp = r.createdAt;
  metadata.updateTimestamp = r.updatedAt;
  metadata.scope = r.ownerId === PUBLIC_OWNER ? 'public' : 'user';
  if (owner) metadata.owner = owner;
  return { apiVersion: API_VERSION, kind: r.kind, metadata, spec: maskSpec(r.kind, r.spec, box), status: r.status };
}

/** Replaces every stored secret of a spec by its mask. */
export function maskSpec(kind: KindName, storedSpec: Obj, box: SecretBox): Obj {
  return mapSecrets(kind, storedSpec, (v) => maskSecret(box.decrypt(v)));
}

/** The spec with its secrets in clear (for comparison, merge patches and provider calls). */
export function clearSpec(kind: KindName, storedSpec: Obj, box: SecretBox): Obj {
  return mapSecrets(kind, storedSpec, (v) => box.decrypt(v));
}

export function encryptSpec(kind: KindName, spec: Obj, box: SecretBox): Obj {
  return mapSecrets(kind, spec, (v) => box.encrypt(v));
}

export function clearSecretsByPath(kind: KindName, storedSpec: Obj, box: SecretBox): Map<string, string> {
  const out = new Map<string, string>();
  for (const [path, v] of collectSecrets(kind, storedSpec)) out.set(path, box.decrypt(v));
  return out;
}

/** JSON with sorted keys, for "unchanged" comparisons. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const sorted: Obj = {};
      for (const key of Object.keys(v).sort()) sorted[key] = (v as Obj)[key];
      return sorted;
    }
    return v;
  });
}

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const base: Obj = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Obj) } : {};
  for (const [k, v] of Object.entries(patch as Obj)) {
    if (v === null) delete base[k];
    else base[k] = mergePatch(base[k], v);
  }
  return base;
}
