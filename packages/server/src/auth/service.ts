import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type {
  AdminSettings,
  ApiKey,
  Cause,
  ChangePasswordRequest,
  CreateApiKeyRequest,
  CreatedApiKey,
  CreateUserRequest,
  ModelRef,
  RegisterRequest,
  SetupRequest,
  SetupState,
  TokenResponse,
  UpdateAdminSettingsRequest,
  UpdateMeRequest,
  UpdateUserRequest,
  User,
  UserList,
  UserListQuery,
} from '@wegent/core';
import type { ServerConfig } from '../config.js';
import type { Storage } from '../storage/database.js';
import type { ResourceService } from '../resources/service.js';
import { AlreadyExistsError, ApiError, BadRequestError, ConflictError, ForbiddenError, NotFoundError, UnauthorizedError, ValidationError, invalidMessage } from '../errors.js';
import type { Principal } from './principal.js';
import { AccountStore, SETTING_KEYS, type ApiKeyRow, type UserRow } from './store.js';
import { isUniqueViolation } from '../storage/database.js';
import { hashPassword, needsRehash, passwordPolicyViolation, verifyAgainstDummy, verifyPassword, warmUpDummyHash } from './passwords.js';
import { AccessTokens } from './tokens.js';
import { API_KEY_PREFIX, MAX_API_KEYS_PER_USER, apiKeyPrefix, apiKeySecretMatches, generateApiKey, parseApiKey } from './api-keys.js';
import { TtlCache } from './ttl-cache.js';
import { FixedWindowCounter } from './rate-window.js';
import { isLoopbackRequest } from './loopback.js';

/** The start cannot go on: WEGENT_ADMIN_PASSWORD is weak or the admin cannot be created. */
export class FirstRunError extends Error {}

/** A change after which some of a user's credentials stop working (for the socket gateway). */
export interface CredentialChange {
  userId: string;
  code: 'REVOKED' | 'ACCOUNT_DISABLED';
  /** Set when one logged-out token is concerned. */
  jti?: string;
  /** Set when one revoked API key (its public key id) is concerned. */
  apiKeyId?: string;
}

/** What authentication needs to know about a user, cached for a short while. */
interface AuthUser {
  id: string;
  username: string;
  role: 'admin' | 'user';
  isActive: boolean;
  tokenVersion: number;
}

/**
 * How long user rows, revocations and API keys are trusted without asking storage again. Changes made
 * by this process apply at once; changes from other instances within this time (api.md §2.3: 5 s).
 */
const AUTH_CACHE_TTL_MS = 2000;
const API_KEY_TOUCH_INTERVAL_MS = 60_000;
const HOUR_MS = 3_600_000;

function nowIso(): string {
  return new Date().toISOString();
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function parseModelRef(value: unknown): ModelRef | null {
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value);
    } catch {
      return null;
    }
  }
  if (value && typeof value === 'object') {
    const v = value as Record<string, unknown>;
    if (typeof v.name === 'string' && typeof v.namespace === 'string') return { name: v.name, namespace: v.namespace };
  }
  return null;
}

/** The User object of a row (api.md §3.1); the password hash never leaves here. */
export function toUser(row: UserRow): User {
  return {
    id: row.id,
    username: row.username,
    email: row.email,
    displayName: row.display_name,
    role: row.role === 'admin' ? 'admin' : 'user',
    isActive: Number(row.is_active) === 1,
    defaultModel: parseModelRef(row.default_model),
    locale: row.locale === 'zh-CN' ? 'zh-CN' : 'en',
    createdAt: row.created_at,
    lastLoginAt: row.last_login_at,
  };
}

function toAuthUser(row: UserRow): AuthUser {
  return { id: row.id, username: row.username, role: row.role === 'admin' ? 'admin' : 'user', isActive: Number(row.is_active) === 1, tokenVersion: Number(row.token_version) };
}

function toApiKey(row: ApiKeyRow): ApiKey {
  return { id: row.id, name: row.name, prefix: apiKeyPrefix(row.key_id), createdAt: row.created_at, lastUsedAt: row.last_used_at, expiresAt: row.expires_at };
}

function invalid(kind: string | undefined, name: string | undefined, causes: Cause[]): ValidationError {
  return new ValidationError(invalidMessage(kind, name, causes), causes, kind && name ? { kind, name } : {});
}

function continueHash(query: UserListQuery): string {
  return createHash('sha256')
    .update(JSON.stringify([query.q ?? null, query.role ?? null, query.isActive ?? null]))
    .digest('base64url')
    .slice(0, 12);
}

/** Accounts: users, passwords, tokens, API keys, first-run setup and account settings (api.md §3). */
export class AccountService {
  readonly store: AccountStore;
  readonly tokens: AccessTokens;
  /** Rate limits of the anonymous account routes (api.md §2.10); `limit` may be changed at run time. */
  readonly limits: { loginPerUser: FixedWindowCounter; loginPerIp: FixedWindowCounter; register: FixedWindowCounter; setup: FixedWindowCounter };

  private readonly users = new TtlCache<AuthUser | null>(AUTH_CACHE_TTL_MS);
  private readonly revoked = new TtlCache<boolean>(AUTH_CACHE_TTL_MS);
  private readonly apiKeys = new TtlCache<ApiKeyRow | null>(AUTH_CACHE_TTL_MS);
  private readonly systemDefaultModel = new TtlCache<ModelRef>(AUTH_CACHE_TTL_MS, 1);
  private readonly keyTouchedAt = new Map<string, number>();
  private readonly listeners = new Set<(change: CredentialChange) => void>();
  /** Printed once at start when no admin exists; forgotten after setup and at restart (api.md §3.3). */
  private setupToken: string | undefined;
  private nextRevocationPrune = 0;

  constructor(
    readonly storage: Storage,
    readonly config: ServerConfig,
    readonly jwtSecret: Buffer,
    readonly log: Logger,
    readonly resources: ResourceService,
  ) {
    this.store = new AccountStore(storage.db, storage.dialect);
    this.tokens = new AccessTokens(jwtSecret, config.jwtExpiresInSeconds);
    const login = config.rate.login;
    this.limits = {
      loginPerUser: new FixedWindowCounter(login, 60_000),
      loginPerIp: new FixedWindowCounter(login * 3, 60_000),
      register: new FixedWindowCounter(5, HOUR_MS),
      setup: new FixedWindowCounter(5, HOUR_MS),
    };
  }

  // ---------------------------------------------------------------- authentication

  /**
   * The caller of a request: `Authorization: Bearer <jwt | wgt_ key>` or `X-API-Key: wgt_...`. Null when
   * there is no credential or it does not hold; throws UnauthorizedError('API key expired') for an
   * expired key so that the client learns why.
   */
  async authenticate(request: FastifyRequest): Promise<Principal | null> {
    const header = request.headers.authorization;
    if (typeof header === 'string' && header !== '') {
      const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
      return m ? this.authenticateCredential(m[1]!) : null;
    }
    const key = request.headers['x-api-key'];
    if (typeof key === 'string' && key.startsWith(API_KEY_PREFIX)) return this.authenticateCredential(key.trim());
    return null;
  }

  /** Checks a bare credential (a JWT or an API key), as sent by HTTP clients or Socket.IO handshakes. */
  async authenticateCredential(credential: string): Promise<Principal | null> {
    if (credential.startsWith(API_KEY_PREFIX)) return this.authenticateApiKey(credential);
    const claims = await this.tokens.verify(credential);
    if (!claims) return null;
    const user = await this.authUser(claims.sub);
    if (!user || !user.isActive || user.tokenVersion !== claims.tv) return null;
    if (await this.isRevoked(claims.jti)) return null;
    return { userId: user.id, username: user.username, role: user.role, via: 'jwt', jti: claims.jti, exp: claims.exp, tokenVersion: claims.tv };
  }

  /**
   * Re-checks an earlier principal (long-lived sockets, chat-protocol.md §1): 'ok', or the `auth:error`
   * code to close with. Uses the same short-lived caches as requests.
   */
  async recheckPrincipal(principal: Principal): Promise<'ok' | 'REVOKED' | 'ACCOUNT_DISABLED' | 'TOKEN_EXPIRED'> {
    const user = await this.authUser(principal.userId);
    if (!user) return 'REVOKED';
    if (!user.isActive) return 'ACCOUNT_DISABLED';
    if (principal.via === 'jwt') {
      if (principal.tokenVersion !== undefined && principal.tokenVersion !== user.tokenVersion) return 'REVOKED';
      if (principal.jti && (await this.isRevoked(principal.jti))) return 'REVOKED';
      if (principal.exp !== undefined && principal.exp <= Date.now() / 1000) return 'TOKEN_EXPIRED';
    } else if (principal.apiKeyId) {
      const keyId = principal.apiKeyId;
      const key = await this.apiKeys.get(keyId, async () => (await this.store.findApiKeyByKeyId(keyId)) ?? null);
      if (!key || key.revoked_at !== null || (key.expires_at !== null && Date.parse(key.expires_at) <= Date.now())) return 'REVOKED';
    }
    return 'ok';
  }

  /** Subscribes to credential changes made by this process; returns the unsubscribe function. */
  onCredentialsChanged(listener: (change: CredentialChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private async authenticateApiKey(presented: string): Promise<Principal | null> {
    const parsed = parseApiKey(presented);
    if (!parsed) return null;
    const key = await this.apiKeys.get(parsed.keyId, async () => (await this.store.findApiKeyByKeyId(parsed.keyId)) ?? null);
    if (!key || key.revoked_at !== null || !apiKeySecretMatches(parsed.secret, key.secret_hash)) return null;
    const now = Date.now();
    if (key.expires_at !== null && Date.parse(key.expires_at) <= now) throw new UnauthorizedError('API key expired');
    const user = await this.authUser(key.user_id);
    if (!user || !user.isActive) return null;
    this.touchApiKey(key, now);
    return { userId: user.id, username: user.username, role: user.role, via: 'apikey', apiKeyId: key.key_id };
  }

  /** Records `lastUsedAt` at most once a minute per key (api.md §3.6), off the request's path. */
  private touchApiKey(key: ApiKeyRow, now: number): void {
    const stored = key.last_used_at ? Date.parse(key.last_used_at) : 0;
    const last = Math.max(stored, this.keyTouchedAt.get(key.key_id) ?? 0);
    if (now - last < API_KEY_TOUCH_INTERVAL_MS) return;
    this.keyTouchedAt.set(key.key_id, now);
    if (this.keyTouchedAt.size > 10_000) this.keyTouchedAt.clear();
    this.store.touchApiKey(key.id, new Date(now).toISOString()).catch((err: unknown) => this.log.warn({ err }, 'could not record API key use'));
  }

  private authUser(id: string): Promise<AuthUser | null> {
    return this.users.get(id, async () => {
      const row = await this.store.findUserById(id);
      return row ? toAuthUser(row) : null;
    });
  }

  private isRevoked(jti: string): Promise<boolean> {
    return this.revoked.get(jti, () => this.store.isTokenRevoked(jti));
  }

  private changed(change: CredentialChange): void {
    this.users.delete(change.userId);
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (err) {
        this.log.warn({ err }, 'credential change listener failed');
      }
    }
  }

  // ---------------------------------------------------------------- first run and setup

  /**
   * At start: creates user `admin` from WEGENT_ADMIN_PASSWORD when no admin exists, else prints a one-time
   * setup token; does nothing once an admin exists (api.md §3.3).
   */
  async prepareFirstRun(): Promise<void> {
    await warmUpDummyHash();
    await this.store.ensureAdminsLockRow();
    if ((await this.store.countActiveAdmins()) > 0) return;
    const password = this.config.adminPassword;
    if (password !== undefined && password !== '') {
      const violation = passwordPolicyViolation(password, 'admin');
      if (violation) throw new FirstRunError(`WEGENT_ADMIN_PASSWORD is too weak: it ${violation.replace('the username', "the username 'admin'")}`);
      try {
        await this.createUserRecord({ username: 'admin', email: this.config.adminEmail, password, role: 'admin' }, { setup: true });
      } catch (e) {
        if (e instanceof ApiError) throw new FirstRunError(`cannot create the administrator 'admin' from WEGENT_ADMIN_PASSWORD: ${e.message}`);
        throw e;
      }
      this.log.info({ username: 'admin' }, "created the administrator 'admin' from WEGENT_ADMIN_PASSWORD");
      return;
    }
    this.setupToken = randomBytes(24).toString('base64url');
    const host = ['0.0.0.0', '::', '[::]'].includes(this.config.host) ? 'localhost' : this.config.host.includes(':') ? `[${this.config.host}]` : this.config.host;
    const setupUrl = `http://${host}:${this.config.port}/api/v1/setup`;
    this.log.warn(
      { setupUrl },
      `No administrator exists yet. Create one with: curl -X POST ${setupUrl} -H 'content-type: application/json' -d '{"username":"admin","password":"<a strong password>"}' ` +
        `— from this machine no token is needed; from anywhere else send the setup token ${this.setupToken} as "setupToken" (valid until setup is done or the server restarts). ` +
        'Or restart with WEGENT_ADMIN_PASSWORD set.',
    );
  }

  /** GET /setup: whether setup is still to do, and whether this caller would need the setup token. */
  async setupState(request: FastifyRequest): Promise<SetupState> {
    const setupRequired = (await this.store.countActiveAdmins()) === 0;
    return { setupRequired, setupTokenRequired: setupRequired && !isLoopbackRequest(request) };
  }

  /** POST /setup: creates the first admin and signs it in. */
  async setup(request: FastifyRequest, body: SetupRequest): Promise<TokenResponse> {
    if ((await this.store.countActiveAdmins()) > 0) throw new ConflictError('setup is already complete');
    if (!isLoopbackRequest(request) && !this.setupTokenMatches(body.setupToken)) {
      throw new ForbiddenError(body.setupToken ? 'the setup token is not valid' : 'a setup token is required for setup from this address; it was printed in the server log');
    }
    let row: UserRow;
    try {
      row = await this.createUserRecord({ username: body.username, email: body.email ?? this.config.adminEmail, password: body.password, role: 'admin' }, { setup: true });
    } catch (e) {
      // A concurrent setup that won may have taken the same username first: still "already complete".
      if (e instanceof AlreadyExistsError && (await this.store.countActiveAdmins()) > 0) throw new ConflictError('setup is already complete');
      throw e;
    }
    this.setupToken = undefined;
    this.log.info({ username: row.username, userId: row.id }, 'first-run setup created the administrator');
    return this.signIn(row);
  }

  private setupTokenMatches(presented: string | undefined): boolean {
    if (!this.setupToken || !presented) return false;
    return timingSafeEqual(sha256(this.setupToken), sha256(presented));
  }

  // ---------------------------------------------------------------- register, login, refresh, logout

  /** POST /auth/register: a new `user` when registration is open. */
  async register(body: RegisterRequest): Promise<User> {
    const { registration } = await this.getSettings();
    if (registration !== 'open') throw new ForbiddenError('registration is closed; ask an administrator for an account');
    const row = await this.createUserRecord({ ...body, role: 'user' });
    this.log.info({ username: row.username, userId: row.id }, 'user registered');
    return toUser(row);
  }

  /**
   * POST /auth/login. Unknown users and wrong passwords get the same answer after the same hashing
   * work; "disabled" is told only after a correct password.
   */
  async login(login: string, password: string): Promise<TokenResponse> {
    const row = await this.store.findUserByLogin(login);
    const ok = row ? await verifyPassword(row.password_hash, password) : await verifyAgainstDummy(password);
    if (!row || !ok) throw new UnauthorizedError('incorrect username or password');
    if (Number(row.is_active) !== 1) throw new ForbiddenError('this account is disabled');
    const patch: Partial<UserRow> = { last_login_at: nowIso() };
    if (needsRehash(row.password_hash)) patch.password_hash = await hashPassword(password);
    await this.store.updateUser(row.id, patch);
    return this.signIn({ ...row, ...patch });
  }

  /** POST /auth/refresh: a fresh token for the caller's JWT. */
  async refresh(principal: Principal): Promise<TokenResponse> {
    if (principal.via !== 'jwt') throw new BadRequestError('refresh needs an access token; API keys are not refreshed');
    return this.signIn(await this.requireUser(principal.userId));
  }

  /** POST /auth/logout: revokes the caller's token until its expiry, in storage (survives restarts). */
  async logout(principal: Principal): Promise<void> {
    if (principal.via !== 'jwt' || !principal.jti) throw new BadRequestError('revoke API keys with DELETE /auth/api-keys/{id}');
    const expires = new Date((principal.exp ?? Math.floor(Date.now() / 1000) + this.tokens.lifetimeSeconds) * 1000).toISOString();
    await this.store.revokeToken(principal.jti, expires);
    this.revoked.set(principal.jti, true);
    this.changed({ userId: principal.userId, code: 'REVOKED', jti: principal.jti });
    if (Date.now() >= this.nextRevocationPrune) {
      this.nextRevocationPrune = Date.now() + HOUR_MS;
      this.store.pruneRevokedTokens(nowIso()).catch((err: unknown) => this.log.warn({ err }, 'could not prune revoked tokens'));
    }
  }

  private async signIn(row: UserRow): Promise<TokenResponse> {
    const token = await this.tokens.issue({ id: row.id, role: row.role === 'admin' ? 'admin' : 'user', tokenVersion: Number(row.token_version) });
    return { accessToken: token.accessToken, tokenType: 'bearer', expiresIn: token.expiresIn, user: toUser(row) };
  }

  // ---------------------------------------------------------------- own account

  async getMe(principal: Principal): Promise<User> {
    return toUser(await this.requireUser(principal.userId));
  }

  /** PATCH /auth/me. */
  async updateMe(principal: Principal, body: UpdateMeRequest): Promise<User> {
    const row = await this.requireUser(principal.userId);
    const patch: Partial<UserRow> = {};
    if (body.displayName !== undefined) patch.display_name = body.displayName;
    if (body.locale !== undefined) patch.locale = body.locale;
    if (body.email !== undefined && body.email.toLowerCase() !== row.email_fold) {
      await this.assertIdentityFree(undefined, body.email, row.id);
      patch.email = body.email;
      patch.email_fold = body.email.toLowerCase();
    } else if (body.email !== undefined) {
      patch.email = body.email;
    }
    if (body.defaultModel === null) patch.default_model = null;
    else if (body.defaultModel !== undefined) {
      await this.assertLlmModel(row.id, body.defaultModel, 'defaultModel', 'User', row.username);
      patch.default_model = JSON.stringify({ name: body.defaultModel.name, namespace: body.defaultModel.namespace });
    }
    await this.writeUser(row.id, patch, false);
    return toUser(await this.requireUser(row.id));
  }

  /** POST /auth/me/password: every earlier token of the user stops working; a new one is returned. */
  async changePassword(principal: Principal, body: ChangePasswordRequest): Promise<TokenResponse> {
    const row = await this.requireUser(principal.userId);
    if (!(await verifyPassword(row.password_hash, body.currentPassword))) {
      throw invalid(undefined, undefined, [{ field: 'currentPassword', reason: 'FieldValueInvalid', message: 'incorrect' }]);
    }
    this.assertPasswordPolicy(body.newPassword, row.username, 'newPassword');
    await this.writeUser(row.id, { password_hash: await hashPassword(body.newPassword) }, true);
    this.changed({ userId: row.id, code: 'REVOKED' });
    this.log.info({ userId: row.id }, 'password changed');
    return this.signIn(await this.requireUser(row.id));
  }

  // ---------------------------------------------------------------- API keys

  async listApiKeys(principal: Principal): Promise<{ items: ApiKey[] }> {
    return { items: (await this.store.listApiKeys(principal.userId)).map(toApiKey) };
  }

  /** POST /auth/api-keys: the full key is in this answer only. */
  async createApiKey(principal: Principal, body: CreateApiKeyRequest): Promise<CreatedApiKey> {
    const now = new Date();
    const generated = generateApiKey();
    const row: ApiKeyRow = {
      id: randomUUID(),
      user_id: principal.userId,
      key_id: generated.keyId,
      secret_hash: generated.secretHash,
      name: body.name,
      created_at: now.toISOString(),
      last_used_at: null,
      expires_at: body.expiresInDays ? new Date(now.getTime() + body.expiresInDays * 86_400_000).toISOString() : null,
      revoked_at: null,
    };
    await this.store.transaction(async (tx) => {
      // Lock the owner's row so that concurrent creations count each other.
      await tx.db.updateTable('users').set((eb) => ({ token_version: eb.ref('token_version') })).where('id', '=', principal.userId).execute();
      if ((await tx.countUsableApiKeys(principal.userId, row.created_at)) >= MAX_API_KEYS_PER_USER) {
        throw invalid(undefined, undefined, [
          { field: 'body', reason: 'FieldValueForbidden', message: `a user may hold at most ${MAX_API_KEYS_PER_USER} API keys; revoke one first` },
        ]);
      }
      await tx.insertApiKey(row);
    });
    this.apiKeys.delete(row.key_id);
    this.log.info({ userId: principal.userId, apiKeyId: row.id, prefix: apiKeyPrefix(row.key_id) }, 'API key created');
    return { id: row.id, name: row.name, prefix: apiKeyPrefix(row.key_id), key: generated.key, createdAt: row.created_at, expiresAt: row.expires_at };
  }

  /** DELETE /auth/api-keys/{id}: revoked at once; another user's key is "not found". */
  async revokeApiKey(principal: Principal, id: string): Promise<void> {
    const keyId = await this.store.revokeApiKey(id, principal.userId, nowIso());
    if (!keyId) throw new NotFoundError('API key not found');
    this.apiKeys.delete(keyId);
    this.changed({ userId: principal.userId, code: 'REVOKED', apiKeyId: keyId });
  }

  // ---------------------------------------------------------------- admin: users

  async listUsers(query: UserListQuery): Promise<UserList> {
    const hash = continueHash(query);
    let after: string | undefined;
    if (query.continue !== undefined) {
      try {
        const decoded = JSON.parse(Buffer.from(query.continue, 'base64url').toString('utf8')) as unknown;
        if (!Array.isArray(decoded) || decoded[0] !== hash || typeof decoded[1] !== 'string') throw new Error('mismatch');
        after = decoded[1];
      } catch {
        throw new BadRequestError('invalid continue token');
      }
    }
    const rows = await this.store.listUsers({ q: query.q, role: query.role, isActive: query.isActive, afterUsernameFold: after, limit: query.limit });
    const page = rows.slice(0, query.limit);
    const metadata: UserList['metadata'] = {};
    if (rows.length > query.limit) metadata.continue = Buffer.from(JSON.stringify([hash, page[page.length - 1]!.username_fold])).toString('base64url');
    return { items: page.map(toUser), metadata };
  }

  /** POST /admin/users: admins create users whatever the registration setting. */
  async createUser(body: CreateUserRequest): Promise<User> {
    const row = await this.createUserRecord(body);
    this.log.info({ username: row.username, userId: row.id, role: row.role }, 'user created by an administrator');
    return toUser(row);
  }

  async getUser(id: string): Promise<User> {
    const row = await this.store.findUserById(id);
    if (!row) throw new NotFoundError('user not found');
    return toUser(row);
  }

  /**
   * PATCH /admin/users/{id}. Disabling, demoting and a password reset bump the token version; the last
   * active admin can be neither disabled nor demoted.
   */
  async updateUser(id: string, body: UpdateUserRequest): Promise<User> {
    const row = await this.store.findUserById(id);
    if (!row) throw new NotFoundError('user not found');
    const patch: Partial<UserRow> = {};
    if (body.displayName !== undefined) patch.display_name = body.displayName;
    if (body.email !== undefined) {
      if (body.email.toLowerCase() !== row.email_fold) await this.assertIdentityFree(undefined, body.email, row.id);
      patch.email = body.email;
      patch.email_fold = body.email.toLowerCase();
    }
    if (body.password !== undefined) {
      this.assertPasswordPolicy(body.password, row.username, 'password');
      patch.password_hash = await hashPassword(body.password);
    }
    if (body.role !== undefined) patch.role = body.role;
    if (body.isActive !== undefined) patch.is_active = body.isActive ? 1 : 0;
    const disables = body.isActive === false && Number(row.is_active) === 1;
    const demotes = body.role === 'user' && row.role === 'admin';
    const bump = disables || demotes || body.password !== undefined;

    if (disables || demotes || body.role === 'admin' || body.isActive === true) {
      await this.store.transaction(async (tx) => {
        await tx.lockAdmins();
        const current = await tx.findUserById(id);
        if (!current) throw new NotFoundError('user not found');
        const wasActiveAdmin = current.role === 'admin' && Number(current.is_active) === 1;
        const staysActiveAdmin = (patch.role ?? current.role) === 'admin' && (patch.is_active ?? Number(current.is_active)) === 1;
        if (wasActiveAdmin && !staysActiveAdmin && (await tx.countActiveAdmins(id)) === 0) {
          throw new ConflictError('cannot disable or demote the last active admin');
        }
        await tx.updateUser(id, patch, bump);
      }).catch((e: unknown) => this.rethrowDuplicate(e, undefined, body.email));
    } else {
      await this.writeUser(id, patch, bump);
    }
    this.users.delete(id);
    if (bump) this.changed({ userId: id, code: disables ? 'ACCOUNT_DISABLED' : 'REVOKED' });
    this.log.info({ userId: id, changed: Object.keys(body).filter((k) => k !== 'password').concat(body.password !== undefined ? ['password (reset)'] : []) }, 'user changed by an administrator');
    return toUser(await this.requireUser(id));
  }

  // ---------------------------------------------------------------- admin: settings

  /** The account settings: stored values, else the environment's (api.md §3.8). */
  async getSettings(): Promise<AdminSettings> {
    const registration = await this.store.getSetting(SETTING_KEYS.registration);
    const defaultModel = parseModelRef(await this.store.getSetting(SETTING_KEYS.defaultModel));
    return {
      registration: registration === 'open' || registration === 'closed' ? registration : this.config.registration,
      defaultModel: defaultModel ?? { name: this.config.defaultModel.name, namespace: this.config.defaultModel.namespace },
    };
  }

  /** PATCH /admin/settings; `defaultModel` must be a public llm Model. */
  async updateSettings(body: UpdateAdminSettingsRequest): Promise<AdminSettings> {
    if (body.defaultModel) await this.assertLlmModel(null, body.defaultModel, 'defaultModel', undefined, undefined);
    await this.store.transaction(async (tx) => {
      if (body.registration !== undefined) await tx.putSetting(SETTING_KEYS.registration, body.registration);
      if (body.defaultModel !== undefined) await tx.putSetting(SETTING_KEYS.defaultModel, { name: body.defaultModel.name, namespace: body.defaultModel.namespace });
    });
    this.systemDefaultModel.clear();
    return this.getSettings();
  }

  /** The system default model (resources.md §13.2 step 4), cached for a moment. */
  getSystemDefaultModel(): Promise<ModelRef> {
    return this.systemDefaultModel.get('default', async () => (await this.getSettings()).defaultModel);
  }

  // ---------------------------------------------------------------- shared steps

  private async requireUser(id: string): Promise<UserRow> {
    const row = await this.store.findUserById(id);
    // The caller was authenticated a moment ago; a vanished user is the same as a bad credential.
    if (!row) throw new UnauthorizedError();
    return row;
  }

  private assertPasswordPolicy(password: string, username: string, field: string): void {
    const violation = passwordPolicyViolation(password, username);
    if (violation) throw invalid(undefined, undefined, [{ field, reason: 'FieldValueInvalid', message: violation }]);
  }

  private async assertIdentityFree(username: string | undefined, email: string | undefined, exceptUserId?: string): Promise<void> {
    const taken = await this.store.takenIdentity(username, email, exceptUserId);
    const causes: Cause[] = [];
    if (taken.username && username !== undefined) causes.push({ field: 'username', reason: 'FieldValueDuplicate', message: `username '${username}' is already taken` });
    if (taken.email && email !== undefined) causes.push({ field: 'email', reason: 'FieldValueDuplicate', message: `e-mail '${email}' is already in use` });
    if (causes.length) throw new AlreadyExistsError(causes.map((c) => c.message).join('; '), { kind: 'User', causes });
  }

  /** Maps a unique-key race lost to another writer onto the same 409 the pre-check gives. */
  private async rethrowDuplicate(e: unknown, username: string | undefined, email: string | undefined): Promise<never> {
    if (isUniqueViolation(e)) {
      await this.assertIdentityFree(username, email);
      throw new AlreadyExistsError('the user already exists', { kind: 'User' });
    }
    throw e;
  }

  private async writeUser(id: string, patch: Partial<UserRow>, bumpTokenVersion: boolean): Promise<void> {
    try {
      await this.store.updateUser(id, patch, bumpTokenVersion);
    } catch (e) {
      await this.rethrowDuplicate(e, undefined, patch.email);
    }
    this.users.delete(id);
  }

  /**
   * Creates a user after the policy and uniqueness checks. With `setup`, the "no active admin exists"
   * check and the insert are one transaction under the admins lock (the loser of a race gets 409).
   */
  private async createUserRecord(
    input: { username: string; email: string; password: string; role: 'admin' | 'user'; displayName?: string },
    opts: { setup?: boolean } = {},
  ): Promise<UserRow> {
    this.assertPasswordPolicy(input.password, input.username, 'password');
    await this.assertIdentityFree(input.username, input.email);
    const row: UserRow = {
      id: randomUUID(),
      username: input.username,
      username_fold: input.username.toLowerCase(),
      email: input.email,
      email_fold: input.email.toLowerCase(),
      display_name: input.displayName ?? input.username,
      password_hash: await hashPassword(input.password),
      role: input.role,
      is_active: 1,
      token_version: 1,
      default_model: null,
      locale: 'en',
      created_at: nowIso(),
      last_login_at: null,
    };
    try {
      await this.store.transaction(async (tx) => {
        if (opts.setup || input.role === 'admin') await tx.lockAdmins();
        if (opts.setup && (await tx.countActiveAdmins()) > 0) throw new ConflictError('setup is already complete');
        await tx.insertUser(row);
      });
    } catch (e) {
      await this.rethrowDuplicate(e, input.username, input.email);
    }
    return row;
  }

  /** 422 unless `ref` resolves (for `ownerId`: own or public; for null: public) to an llm Model. */
  private async assertLlmModel(ownerId: string | null, ref: ModelRef, field: string, kind: string | undefined, name: string | undefined): Promise<void> {
    const found = await this.resources.resolveRef(ownerId, 'Model', { name: ref.name, namespace: ref.namespace }, 'default');
    if (!found || (ownerId === null && found.scope !== 'public')) {
      const message = ownerId === null ? `public Model '${ref.name}' not found in namespace '${ref.namespace}'` : `Model '${ref.name}' not found in namespace '${ref.namespace}' (neither yours nor public)`;
      throw invalid(kind, name, [{ field, reason: 'FieldValueNotFound', message }]);
    }
    const modelType = typeof found.spec.modelType === 'string' ? found.spec.modelType.toLowerCase() : 'llm';
    if (modelType !== 'llm') {
      throw invalid(kind, name, [{ field, reason: 'FieldValueInvalid', message: `Model '${ref.name}' has modelType '${found.spec.modelType as string}'; a default model must be an llm Model` }]);
    }
  }
}
