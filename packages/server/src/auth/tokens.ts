import { createSecretKey, randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT, jwtVerify } from 'jose';

export const JWT_ISSUER = 'wegent';

/** The claims of a Wegent access token (api.md §3.2). */
export interface AccessClaims {
  sub: string;
  role: 'admin' | 'user';
  /** The user's token version when the token was issued. */
  tv: number;
  jti: string;
  iat: number;
  exp: number;
}

export interface IssuedToken {
  accessToken: string;
  jti: string;
  /** Unix seconds. */
  exp: number;
  expiresIn: number;
}

const VERIFIED_CACHE_MAX = 10_000;

/**
 * Signs and verifies HS256 access tokens with jose. Verified tokens are remembered until their expiry
 * (a signature cannot become invalid), which keeps per-request cost to a map lookup; revocation and
 * user state are checked separately on every request.
 */
export class AccessTokens {
  private readonly key: KeyObject;
  private readonly verified = new Map<string, AccessClaims>();

  constructor(
    secret: Buffer,
    readonly lifetimeSeconds: number,
  ) {
    this.key = createSecretKey(secret);
  }

  /** Issues a token for a user at its current token version. */
  async issue(user: { id: string; role: 'admin' | 'user'; tokenVersion: number }): Promise<IssuedToken> {
    const jti = randomUUID();
    const iat = Math.floor(Date.now() / 1000);
    const exp = iat + this.lifetimeSeconds;
    const accessToken = await new SignJWT({ role: user.role, tv: user.tokenVersion })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(user.id)
      .setJti(jti)
      .setIssuer(JWT_ISSUER)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .sign(this.key);
    return { accessToken, jti, exp, expiresIn: this.lifetimeSeconds };
  }

  /** The claims of a token whose signature, issuer and expiry are good; undefined otherwise. */
  async verify(token: string): Promise<AccessClaims | undefined> {
    const nowSeconds = Date.now() / 1000;
    const cached = this.verified.get(token);
    if (cached) {
      if (cached.exp > nowSeconds) return cached;
      this.verified.delete(token);
      return undefined;
    }
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, this.key, { issuer: JWT_ISSUER, algorithms: ['HS256'], requiredClaims: ['sub', 'jti', 'iat', 'exp'] }));
    } catch {
      return undefined;
    }
    const { sub, role, tv, jti, iat, exp } = payload;
    if (typeof sub !== 'string' || (role !== 'admin' && role !== 'user') || typeof tv !== 'number' || typeof jti !== 'string' || typeof iat !== 'number' || typeof exp !== 'number') {
      return undefined;
    }
    const claims: AccessClaims = { sub, role, tv, jti, iat, exp };
    if (this.verified.size >= VERIFIED_CACHE_MAX) {
      const oldest = this.verified.keys().next().value;
      if (oldest !== undefined) this.verified.delete(oldest);
    }
    this.verified.set(token, claims);
    return claims;
  }
}
