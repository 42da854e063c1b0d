import { randomBytes } from 'node:crypto';
import { hash, verify, parseOptions, type Algorithm, type Options } from '@node-rs/argon2';
import { isCommonPassword } from '@wegent/core';

/** argon2id parameters of api.md §3.2 (OWASP's minimum: 19 MiB, 2 passes, 1 lane; 16-byte salt). */
export const ARGON2_OPTIONS = {
  algorithm: 2 as Algorithm, // Algorithm.Argon2id (a const enum, which isolatedModules cannot read)
  memoryCost: 19456,
  timeCost: 2,
  parallelism: 1,
} satisfies Options;

/**
 * The first rule of the password policy (api.md §3.2) that `password` breaks, as a message for the
 * `password` cause, or undefined when it passes.
 */
export function passwordPolicyViolation(password: string, username: string): string | undefined {
  const length = [...password].length;
  if (length < 8) return 'must be at least 8 characters long';
  if (length > 128) return 'must be at most 128 characters long';
  if (!/\p{L}/u.test(password) || !/\p{Nd}/u.test(password)) return 'must contain at least one letter and one digit';
  if (username && password.toLowerCase().includes(username.toLowerCase())) return 'must not contain the username';
  if (isCommonPassword(password)) return 'is one of the most common passwords; choose a less predictable one';
  return undefined;
}

/** Hashes a password with the current argon2id parameters. */
export function hashPassword(password: string): Promise<string> {
  return hash(password, ARGON2_OPTIONS);
}

/** Checks a password against a stored hash; a malformed hash never matches. */
export async function verifyPassword(stored: string, password: string): Promise<boolean> {
  try {
    return await verify(stored, password);
  } catch {
    return false;
  }
}

/** True when a stored hash was made with other parameters than today's (re-hash at the next login). */
export function needsRehash(stored: string): boolean {
  try {
    const o = parseOptions(stored);
    return o.algorithm !== ARGON2_OPTIONS.algorithm || o.memoryCost !== ARGON2_OPTIONS.memoryCost || o.timeCost !== ARGON2_OPTIONS.timeCost || o.parallelism !== ARGON2_OPTIONS.parallelism || o.saltLen < 16;
  } catch {
    return true;
  }
}

let dummyHash: Promise<string> | undefined;

/** Makes the dummy hash ahead of the first login, so that the first unknown user costs no extra time. */
export async function warmUpDummyHash(): Promise<void> {
  dummyHash ??= hashPassword(randomBytes(18).toString('base64url'));
  await dummyHash;
}

/**
 * Does the same hashing work as a real verification, against a hash of a random password, so that
 * login takes as long for an unknown user as for a wrong password.
 */
export async function verifyAgainstDummy(password: string): Promise<false> {
  dummyHash ??= hashPassword(randomBytes(18).toString('base64url'));
  await verifyPassword(await dummyHash, password);
  return false;
}
