import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Reads `<dataDir>/secrets/<file>`, or generates `bytes` random bytes there once (dir 0700, file 0600). */
export function loadOrCreateSecretFile(dataDir: string, file: string, bytes: number): Buffer {
  const dir = path.join(dataDir, 'secrets');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const full = path.join(dir, file);
  if (existsSync(full)) return Buffer.from(readFileSync(full, 'utf8').trim(), 'base64');
  const value = randomBytes(bytes);
  writeFileSync(full, value.toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
  return value;
}

const PREFIX = 'enc:v1:';

/** AES-256-GCM encryption of secret values at rest (resources.md §9.2). */
export class SecretBox {
  readonly keyId: string;

  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new Error('the encryption key must be 32 bytes');
    this.keyId = createHash('sha256').update(key).digest('hex').slice(0, 8);
  }

  /** A check value stored with the data so that a different key is detected at start. */
  keyCheck(): string {
    return createHmac('sha256', this.key).update('wegent-encryption-key-check').digest('base64url');
  }

  matches(check: string): boolean {
    const mine = Buffer.from(this.keyCheck());
    const theirs = Buffer.from(check);
    return mine.length === theirs.length && timingSafeEqual(mine, theirs);
  }

  static isEncrypted(value: string): boolean {
    return value.startsWith(PREFIX);
  }

  encrypt(plain: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return `${PREFIX}${this.keyId}:${iv.toString('base64url')}:${body.toString('base64url')}`;
  }

  decrypt(stored: string): string {
    if (!stored.startsWith(PREFIX)) return stored;
    const [keyId, ivText, bodyText] = stored.slice(PREFIX.length).split(':');
    if (keyId !== this.keyId || !ivText || !bodyText) throw new Error('secret was written with another encryption key');
    const body = Buffer.from(bodyText, 'base64url');
    const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(ivText, 'base64url'));
    decipher.setAuthTag(body.subarray(body.length - 16));
    return Buffer.concat([decipher.update(body.subarray(0, body.length - 16)), decipher.final()]).toString('utf8');
  }
}
