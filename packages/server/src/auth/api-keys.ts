import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';

/** API key format (api.md §3.6): `wgt_` + 10-character key id + `_` + 43-character base64url secret. */
const API_KEY_PATTERN = /^wgt_([A-Za-z0-9]{10})_([A-Za-z0-9_-]{43})$/;
const KEY_ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

export const API_KEY_PREFIX = 'wgt_';
export const MAX_API_KEYS_PER_USER = 50;

export interface NewApiKey {
  keyId: string;
  /** The full key, shown to its owner once. */
  key: string;
  secretHash: string;
}

/** Makes a new key; only `keyId` and `secretHash` are ever stored. */
export function generateApiKey(): NewApiKey {
  let keyId = '';
  for (let i = 0; i < 10; i++) keyId += KEY_ID_ALPHABET[randomInt(KEY_ID_ALPHABET.length)];
  const secret = randomBytes(32).toString('base64url');
  return { keyId, key: `${API_KEY_PREFIX}${keyId}_${secret}`, secretHash: hashApiKeySecret(secret) };
}

/** Splits a presented key into its id and secret; undefined when it is not shaped like a key. */
export function parseApiKey(presented: string): { keyId: string; secret: string } | undefined {
  const m = API_KEY_PATTERN.exec(presented);
  return m ? { keyId: m[1]!, secret: m[2]! } : undefined;
}

export function hashApiKeySecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Compares a presented secret with a stored hash in constant time. */
export function apiKeySecretMatches(secret: string, storedHash: string): boolean {
  const a = Buffer.from(hashApiKeySecret(secret), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The public, non-secret part shown in lists: `wgt_<keyid>`. */
export function apiKeyPrefix(keyId: string): string {
  return `${API_KEY_PREFIX}${keyId}`;
}
