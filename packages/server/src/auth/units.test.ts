import { describe, expect, it } from 'vitest';
import { hash } from '@node-rs/argon2';
import { COMMON_PASSWORDS } from '@wegent/core';
import { ARGON2_OPTIONS, hashPassword, needsRehash, passwordPolicyViolation, verifyPassword } from './passwords.js';
import { FixedWindowCounter } from './rate-window.js';
import { isLoopbackAddress, isLoopbackRequest } from './loopback.js';
import { apiKeySecretMatches, generateApiKey, parseApiKey } from './api-keys.js';
import { AccessTokens } from './tokens.js';
import { SignJWT } from 'jose';

describe('password policy', () => {
  it.each([
    ['short1', 'must be at least 8 characters long'],
    ['a1'.repeat(65), 'must be at most 128 characters long'],
    ['onlyletters', 'must contain at least one letter and one digit'],
    ['1234567890', 'must contain at least one letter and one digit'],
    ['xxbobby99xx', 'must not contain the username'],
    ['XXBOBBY99XX', 'must not contain the username'],
    ['password1', 'is one of the most common passwords; choose a less predictable one'],
    ['PassWord1', 'is one of the most common passwords; choose a less predictable one'],
    ['qwerty123', 'is one of the most common passwords; choose a less predictable one'],
  ])('refuses %j: %s', (password, message) => {
    expect(passwordPolicyViolation(password, 'bobby99')).toBe(message);
  });

  it('accepts a long-enough password with a letter and a digit', () => {
    expect(passwordPolicyViolation('correct-horse-7', 'bobby')).toBeUndefined();
    expect(passwordPolicyViolation('ä'.repeat(7) + '1', 'bobby')).toBeUndefined();
  });

  it('counts characters, not UTF-16 units', () => {
    expect(passwordPolicyViolation('😀😀😀1abc', 'bobby')).toBe('must be at least 8 characters long');
  });

  it('ships the thousand most common passwords', () => {
    expect(COMMON_PASSWORDS.size).toBeGreaterThanOrEqual(990);
    expect(COMMON_PASSWORDS.has('123456')).toBe(true);
    expect(COMMON_PASSWORDS.has('trustno1')).toBe(true);
  });
});

describe('password hashing', () => {
  it('hashes with argon2id at 19 MiB, 2 passes, 1 lane and verifies', async () => {
    const stored = await hashPassword('correct-horse-7');
    expect(stored).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    expect(await verifyPassword(stored, 'correct-horse-7')).toBe(true);
    expect(await verifyPassword(stored, 'correct-horse-8')).toBe(false);
    expect(needsRehash(stored)).toBe(false);
  });

  it('asks for a re-hash of hashes made with older parameters', async () => {
    const old = await hash('correct-horse-7', { ...ARGON2_OPTIONS, memoryCost: 4096, timeCost: 3 });
    expect(needsRehash(old)).toBe(true);
    expect(needsRehash('not a hash')).toBe(true);
  });

  it('never matches a malformed stored hash', async () => {
    expect(await verifyPassword('garbage', 'anything1')).toBe(false);
  });
});

describe('fixed-window counter', () => {
  it('allows the limit per window, then refuses with the time to the reset', () => {
    let now = 1_000_000;
    const c = new FixedWindowCounter(2, 60_000, () => now);
    expect(c.hit('a').allowed).toBe(true);
    expect(c.hit('a')).toMatchObject({ allowed: true, remaining: 0 });
    expect(c.hit('b').allowed).toBe(true);
    now += 15_000;
    expect(c.hit('a')).toMatchObject({ allowed: false, resetSeconds: 45 });
    now += 45_000;
    expect(c.hit('a')).toMatchObject({ allowed: true, remaining: 1 });
  });

  it('is off with a limit of 0', () => {
    const c = new FixedWindowCounter(0, 60_000);
    for (let i = 0; i < 100; i++) expect(c.hit('a').allowed).toBe(true);
  });
});

describe('loopback rule', () => {
  it('treats 127.0.0.0/8 and ::1 as loopback, and nothing else', () => {
    for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) expect(isLoopbackAddress(a)).toBe(true);
    for (const a of ['10.0.0.1', '192.168.1.2', '::ffff:10.0.0.1', 'fe80::1', '128.0.0.1', undefined]) expect(isLoopbackAddress(a)).toBe(false);
  });

  it('does not count a proxied request as loopback', () => {
    expect(isLoopbackRequest({ socket: { remoteAddress: '127.0.0.1' }, headers: {} })).toBe(true);
    expect(isLoopbackRequest({ socket: { remoteAddress: '127.0.0.1' }, headers: { 'x-forwarded-for': '203.0.113.9' } })).toBe(false);
    expect(isLoopbackRequest({ socket: { remoteAddress: '::1' }, headers: { forwarded: 'for=203.0.113.9' } })).toBe(false);
    expect(isLoopbackRequest({ socket: { remoteAddress: '203.0.113.9' }, headers: {} })).toBe(false);
  });
});

describe('API key format', () => {
  it('is wgt_ + 10-character id + _ + 43-character secret, and only the hash matches', () => {
    const k = generateApiKey();
    expect(k.key).toMatch(/^wgt_[A-Za-z0-9]{10}_[A-Za-z0-9_-]{43}$/);
    const parsed = parseApiKey(k.key)!;
    expect(parsed.keyId).toBe(k.keyId);
    expect(k.secretHash).toMatch(/^[0-9a-f]{64}$/);
    expect(k.secretHash).not.toContain(parsed.secret);
    expect(apiKeySecretMatches(parsed.secret, k.secretHash)).toBe(true);
    expect(apiKeySecretMatches(parsed.secret.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')), k.secretHash)).toBe(false);
    expect(parseApiKey('wgt_short_abc')).toBeUndefined();
  });
});

describe('access tokens', () => {
  const secret = Buffer.alloc(64, 7);

  it('carries sub, role, tv, jti, iat, exp and iss wegent', async () => {
    const tokens = new AccessTokens(secret, 3600);
    const issued = await tokens.issue({ id: 'u1', role: 'admin', tokenVersion: 3 });
    const claims = await tokens.verify(issued.accessToken);
    expect(claims).toMatchObject({ sub: 'u1', role: 'admin', tv: 3, jti: issued.jti, exp: issued.exp });
    expect(claims!.exp - claims!.iat).toBe(3600);
    const payload = JSON.parse(Buffer.from(issued.accessToken.split('.')[1]!, 'base64url').toString());
    expect(payload.iss).toBe('wegent');
  });

  it('refuses another secret, another issuer, an expired token and tampering', async () => {
    const tokens = new AccessTokens(secret, 3600);
    const other = new AccessTokens(Buffer.alloc(64, 8), 3600);
    const issued = await other.issue({ id: 'u1', role: 'user', tokenVersion: 1 });
    expect(await tokens.verify(issued.accessToken)).toBeUndefined();
    const now = Math.floor(Date.now() / 1000);
    const foreign = await new SignJWT({ role: 'user', tv: 1 }).setProtectedHeader({ alg: 'HS256' }).setSubject('u1').setJti('j').setIssuer('someone').setIssuedAt(now).setExpirationTime(now + 60).sign(secret);
    expect(await tokens.verify(foreign)).toBeUndefined();
    const expired = await new SignJWT({ role: 'user', tv: 1 }).setProtectedHeader({ alg: 'HS256' }).setSubject('u1').setJti('j').setIssuer('wegent').setIssuedAt(now - 120).setExpirationTime(now - 60).sign(secret);
    expect(await tokens.verify(expired)).toBeUndefined();
    const good = (await tokens.issue({ id: 'u1', role: 'user', tokenVersion: 1 })).accessToken;
    const [h, p, s] = good.split('.');
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), role: 'admin' })).toString('base64url');
    expect(await tokens.verify(`${h}.${forged}.${s}`)).toBeUndefined();
  });
});
