import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import {
  AdminSettings,
  ApiKeyList,
  ChangePasswordRequest,
  CreateApiKeyRequest,
  CreatedApiKey,
  CreateUserRequest,
  LoginRequest,
  OAuthTokenResponse,
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
import type { AppContext } from '../app.js';
import { TooManyRequestsError, UnauthorizedError, UnsupportedMediaTypeError } from '../errors.js';
import type { Principal } from './principal.js';
import type { RateDecision } from './rate-window.js';

const IdParams = z.object({ id: z.string().min(1).max(64) });

function principalOf(request: FastifyRequest): Principal {
  // app.ts's onRequest hook sets it on every 'user'/'admin' route before the handler runs.
  if (!request.principal) throw new UnauthorizedError();
  return request.principal;
}

function isFormRequest(request: FastifyRequest): boolean {
  return (request.headers['content-type'] ?? '').toLowerCase().startsWith('application/x-www-form-urlencoded');
}

/**
 * Applies counted attempts (api.md §2.10): `RateLimit-*` headers from the tightest counter, and 429 with
 * `Retry-After` when any counter is over its limit.
 */
function enforceRate(reply: FastifyReply, decisions: RateDecision[]): void {
  const active = decisions.filter((d) => d.limit > 0);
  if (active.length === 0) return;
  const refused = active.filter((d) => !d.allowed);
  const shown = refused.length
    ? refused.reduce((a, b) => (a.resetSeconds >= b.resetSeconds ? a : b))
    : active.reduce((a, b) => (a.remaining <= b.remaining ? a : b));
  reply.header('RateLimit-Limit', String(shown.limit));
  reply.header('RateLimit-Remaining', String(shown.remaining));
  reply.header('RateLimit-Reset', String(shown.resetSeconds));
  if (refused.length) throw new TooManyRequestsError(shown.resetSeconds);
}

/** First-run setup, register/login/refresh/logout, own account, API keys, admin users and settings (api.md §3). */
export async function registerAuthRoutes(fastify: FastifyInstance, ctx: AppContext): Promise<void> {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  const accounts = ctx.accounts;
  const loginAttempt = (request: FastifyRequest, reply: FastifyReply, username: string) =>
    enforceRate(reply, [accounts.limits.loginPerUser.hit(`${request.ip}\n${username.toLowerCase()}`), accounts.limits.loginPerIp.hit(request.ip)]);

  // ---- first-run setup (§3.3)

  app.get(
    '/api/v1/setup',
    { config: { auth: 'anon' }, schema: { tags: ['setup'], summary: 'Whether first-run setup is still to do', security: [], response: { 200: SetupState } } },
    async (request) => accounts.setupState(request),
  );

  app.post(
    '/api/v1/setup',
    {
      config: { auth: 'anon' },
      schema: { tags: ['setup'], summary: 'Create the first administrator and sign in', security: [], body: SetupRequest, response: { 201: TokenResponse } },
    },
    async (request, reply) => {
      enforceRate(reply, [accounts.limits.setup.hit(request.ip)]);
      const result = await accounts.setup(request, request.body);
      return reply.code(201).send(result);
    },
  );

  // ---- register, login, refresh, logout (§3.4)

  app.post(
    '/api/v1/auth/register',
    { config: { auth: 'anon' }, schema: { tags: ['auth'], summary: 'Register a user account (when registration is open)', security: [], body: RegisterRequest, response: { 201: User } } },
    async (request, reply) => {
      enforceRate(reply, [accounts.limits.register.hit(request.ip)]);
      return reply.code(201).send(await accounts.register(request.body));
    },
  );

  app.post(
    '/api/v1/auth/login',
    {
      config: { auth: 'anon' },
      schema: {
        tags: ['auth'],
        summary: 'Sign in with username (or e-mail) and password; also accepts an OAuth2 password-grant form',
        security: [],
        body: LoginRequest,
        response: { 200: z.union([TokenResponse, OAuthTokenResponse]) },
      },
    },
    async (request, reply) => {
      loginAttempt(request, reply, request.body.username);
      const result = await accounts.login(request.body.username, request.body.password);
      if (isFormRequest(request)) return { access_token: result.accessToken, token_type: result.tokenType, expires_in: result.expiresIn, user: result.user };
      return result;
    },
  );

  // Refresh and logout take no body: an empty one is accepted with any Content-Type (api.md §2.2).
  await app.register(async (scope) => {
    const noBody = scope.withTypeProvider<ZodTypeProvider>();
    noBody.addContentTypeParser('*', { parseAs: 'buffer' }, (request, body, done) => {
      if ((body as Buffer).length === 0) done(null, undefined);
      else done(new UnsupportedMediaTypeError(`content type '${request.headers['content-type'] ?? '(none)'}' is not accepted here`), undefined);
    });

    noBody.post(
      '/api/v1/auth/refresh',
      { config: { auth: 'user' }, schema: { tags: ['auth'], summary: 'A fresh access token for the current one', response: { 200: TokenResponse } } },
      async (request) => accounts.refresh(principalOf(request)),
    );

    noBody.post(
      '/api/v1/auth/logout',
      { config: { auth: 'user' }, schema: { tags: ['auth'], summary: 'Revoke the current access token', response: { 204: z.null() } } },
      async (request, reply) => {
        await accounts.logout(principalOf(request));
        return reply.code(204).send(null);
      },
    );
  });

  // ---- own account (§3.5)

  app.get(
    '/api/v1/auth/me',
    { config: { auth: 'user' }, schema: { tags: ['auth'], summary: 'The signed-in user', response: { 200: User } } },
    async (request) => accounts.getMe(principalOf(request)),
  );

  app.patch(
    '/api/v1/auth/me',
    { config: { auth: 'user' }, schema: { tags: ['auth'], summary: 'Change display name, e-mail, default model or locale', body: UpdateMeRequest, response: { 200: User } } },
    async (request) => accounts.updateMe(principalOf(request), request.body),
  );

  app.post(
    '/api/v1/auth/me/password',
    {
      config: { auth: 'user' },
      schema: { tags: ['auth'], summary: 'Change the password; every earlier token stops working', body: ChangePasswordRequest, response: { 200: TokenResponse } },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      loginAttempt(request, reply, principal.username);
      return accounts.changePassword(principal, request.body);
    },
  );

  // ---- API keys (§3.6)

  app.get(
    '/api/v1/auth/api-keys',
    { config: { auth: 'user' }, schema: { tags: ['auth'], summary: 'Your API keys (never their secrets)', response: { 200: ApiKeyList } } },
    async (request) => accounts.listApiKeys(principalOf(request)),
  );

  app.post(
    '/api/v1/auth/api-keys',
    { config: { auth: 'user' }, schema: { tags: ['auth'], summary: 'Create an API key; the key is shown only in this answer', body: CreateApiKeyRequest, response: { 201: CreatedApiKey } } },
    async (request, reply) => reply.code(201).send(await accounts.createApiKey(principalOf(request), request.body)),
  );

  app.delete(
    '/api/v1/auth/api-keys/:id',
    { config: { auth: 'user' }, schema: { tags: ['auth'], summary: 'Revoke an API key', params: IdParams, response: { 204: z.null() } } },
    async (request, reply) => {
      await accounts.revokeApiKey(principalOf(request), request.params.id);
      return reply.code(204).send(null);
    },
  );

  // ---- admin: users (§3.7)

  app.get(
    '/api/v1/admin/users',
    { config: { auth: 'admin' }, schema: { tags: ['admin'], summary: 'List users', querystring: UserListQuery, response: { 200: UserList } } },
    async (request) => accounts.listUsers(request.query),
  );

  app.post(
    '/api/v1/admin/users',
    { config: { auth: 'admin' }, schema: { tags: ['admin'], summary: 'Create a user', body: CreateUserRequest, response: { 201: User } } },
    async (request, reply) => reply.code(201).send(await accounts.createUser(request.body)),
  );

  app.get(
    '/api/v1/admin/users/:id',
    { config: { auth: 'admin' }, schema: { tags: ['admin'], summary: 'Read a user', params: IdParams, response: { 200: User } } },
    async (request) => accounts.getUser(request.params.id),
  );

  app.patch(
    '/api/v1/admin/users/:id',
    {
      config: { auth: 'admin' },
      schema: { tags: ['admin'], summary: 'Change role, activity, display name, e-mail or password of a user', params: IdParams, body: UpdateUserRequest, response: { 200: User } },
    },
    async (request) => accounts.updateUser(request.params.id, request.body),
  );

  // ---- admin: settings (§3.8)

  app.get(
    '/api/v1/admin/settings',
    { config: { auth: 'admin' }, schema: { tags: ['admin'], summary: 'Registration mode and system default model', response: { 200: AdminSettings } } },
    async () => accounts.getSettings(),
  );

  app.patch(
    '/api/v1/admin/settings',
    { config: { auth: 'admin' }, schema: { tags: ['admin'], summary: 'Change registration mode or system default model', body: UpdateAdminSettingsRequest, response: { 200: AdminSettings } } },
    async (request) => accounts.updateSettings(request.body),
  );
}
