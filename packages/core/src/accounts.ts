import { z } from 'zod';
import { Name } from './kinds/fields.js';

/** Account shapes of the REST API (api.md §3): users, tokens, API keys, setup, admin settings. */

export const USERNAME_PATTERN = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{1,30})[A-Za-z0-9]$/;
export const USERNAME_RULE_MESSAGE = "must be 3-32 letters, digits, '.', '_' or '-', starting and ending with a letter or digit";

/** A username (api.md §3.1); unique case-insensitively. */
export const Username = z.string().regex(USERNAME_PATTERN, USERNAME_RULE_MESSAGE);

// The WHATWG (HTML) e-mail syntax: accepts single-label domains such as admin@localhost.
const EMAIL_PATTERN =
  /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** An e-mail address ≤ 254 chars; unique case-insensitively. */
export const Email = z.string().max(254, 'must be at most 254 characters').regex(EMAIL_PATTERN, 'must be a valid e-mail address');

export const DisplayName = z.string().trim().min(1, 'must not be empty').max(100, 'must be at most 100 characters');
export const Role = z.enum(['admin', 'user']);
export type Role = z.infer<typeof Role>;
export const Locale = z.enum(['en', 'zh-CN']);
export type Locale = z.infer<typeof Locale>;

/** A password as sent; the policy (length, letters and digits, common passwords) is checked by the server. */
export const PasswordInput = z.string().max(4096, 'must be at most 128 characters');

/** A reference to a Model in request bodies; `namespace` defaults to `default`. */
export const ModelRefInput = z.strictObject({ name: Name, namespace: Name.default('default') });
/** A reference to a Model as answered. */
export const ModelRef = z.object({ name: z.string(), namespace: z.string() });
export type ModelRef = z.infer<typeof ModelRef>;

/** The User object (api.md §3.1). Passwords are never part of it. */
export const User = z.object({
  id: z.string(),
  username: z.string(),
  email: z.string(),
  displayName: z.string(),
  role: Role,
  isActive: z.boolean(),
  defaultModel: ModelRef.nullable(),
  locale: Locale,
  createdAt: z.string(),
  lastLoginAt: z.string().nullable(),
});
export type User = z.infer<typeof User>;

/** Answer of login, setup, refresh and password change. */
export const TokenResponse = z.object({ accessToken: z.string(), tokenType: z.literal('bearer'), expiresIn: z.number().int(), user: User });
export type TokenResponse = z.infer<typeof TokenResponse>;

/** Answer of a form-encoded login (RFC 6749 §5.1 names). */
export const OAuthTokenResponse = z.object({ access_token: z.string(), token_type: z.literal('bearer'), expires_in: z.number().int(), user: User });
export type OAuthTokenResponse = z.infer<typeof OAuthTokenResponse>;

export const SetupState = z.object({ setupRequired: z.boolean(), setupTokenRequired: z.boolean() });
export type SetupState = z.infer<typeof SetupState>;

export const SetupRequest = z.strictObject({
  username: Username.default('admin'),
  email: Email.optional(),
  password: PasswordInput,
  setupToken: z.string().max(256).optional(),
});
export type SetupRequest = z.infer<typeof SetupRequest>;

export const RegisterRequest = z.strictObject({ username: Username, email: Email, password: PasswordInput, displayName: DisplayName.optional() });
export type RegisterRequest = z.infer<typeof RegisterRequest>;

/** Login body; `username` may be the e-mail. The OAuth2 password-grant extras are accepted and ignored. */
export const LoginRequest = z.strictObject({
  username: z.string().min(1, 'required value').max(254),
  password: z.string().min(1, 'required value').max(4096),
  grant_type: z.string().optional(),
  scope: z.string().optional(),
  client_id: z.string().optional(),
  client_secret: z.string().optional(),
});
export type LoginRequest = z.infer<typeof LoginRequest>;

export const UpdateMeRequest = z.strictObject({
  displayName: DisplayName.optional(),
  email: Email.optional(),
  defaultModel: ModelRefInput.nullable().optional(),
  locale: Locale.optional(),
});
export type UpdateMeRequest = z.infer<typeof UpdateMeRequest>;

export const ChangePasswordRequest = z.strictObject({ currentPassword: z.string().max(4096), newPassword: PasswordInput });
export type ChangePasswordRequest = z.infer<typeof ChangePasswordRequest>;

/** An API key as listed; the secret is never part of it. */
export const ApiKey = z.object({
  id: z.string(),
  name: z.string(),
  prefix: z.string(),
  createdAt: z.string(),
  lastUsedAt: z.string().nullable(),
  expiresAt: z.string().nullable(),
});
export type ApiKey = z.infer<typeof ApiKey>;

export const ApiKeyList = z.object({ items: z.array(ApiKey) });

export const CreateApiKeyRequest = z.strictObject({
  name: z.string().trim().min(1, 'must not be empty').max(100, 'must be at most 100 characters'),
  expiresInDays: z.number().int().min(1).max(3650).optional(),
});
export type CreateApiKeyRequest = z.infer<typeof CreateApiKeyRequest>;

/** Answer of API key creation: the only place the full `key` appears. */
export const CreatedApiKey = z.object({
  id: z.string(),
  name: z.string(),
  prefix: z.string(),
  key: z.string(),
  createdAt: z.string(),
  expiresAt: z.string().nullable(),
});
export type CreatedApiKey = z.infer<typeof CreatedApiKey>;

export const CreateUserRequest = z.strictObject({
  username: Username,
  email: Email,
  password: PasswordInput,
  role: Role.default('user'),
  displayName: DisplayName.optional(),
});
export type CreateUserRequest = z.infer<typeof CreateUserRequest>;

export const UpdateUserRequest = z.strictObject({
  role: Role.optional(),
  isActive: z.boolean().optional(),
  displayName: DisplayName.optional(),
  email: Email.optional(),
  password: PasswordInput.optional(),
});
export type UpdateUserRequest = z.infer<typeof UpdateUserRequest>;

export const UserListQuery = z.object({
  q: z.string().max(200).optional(),
  role: Role.optional(),
  isActive: z
    .enum(['true', 'false'])
    .transform((v) => v === 'true')
    .optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  continue: z.string().max(1000).optional(),
});
export type UserListQuery = z.infer<typeof UserListQuery>;

export const UserList = z.object({ items: z.array(User), metadata: z.object({ continue: z.string().optional() }) });
export type UserList = z.infer<typeof UserList>;

export const Registration = z.enum(['open', 'closed']);

/** System settings an admin changes (api.md §3.8). */
export const AdminSettings = z.object({ registration: Registration, defaultModel: ModelRef });
export type AdminSettings = z.infer<typeof AdminSettings>;

export const UpdateAdminSettingsRequest = z.strictObject({ registration: Registration.optional(), defaultModel: ModelRefInput.optional() });
export type UpdateAdminSettingsRequest = z.infer<typeof UpdateAdminSettingsRequest>;
