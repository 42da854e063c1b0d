/** The authenticated caller of a request or socket. */
export interface Principal {
  userId: string;
  username: string;
  role: 'admin' | 'user';
  via: 'jwt' | 'apikey';
  /** JWT id (for logout); absent for API keys. */
  jti?: string;
  /** JWT expiry, Unix seconds. */
  exp?: number;
  /** The token version the JWT carries (`tv`), for re-checks of long-lived connections. */
  tokenVersion?: number;
  /** The public key id of the API key used (`wgt_<keyid>`), absent for JWTs. */
  apiKeyId?: string;
}

/** Who may call a route (api.md §2.3). */
export type RouteAuth = 'anon' | 'user' | 'admin';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
  interface FastifyContextConfig {
    auth?: RouteAuth;
  }
}
