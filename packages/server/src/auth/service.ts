import type { FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { ServerConfig } from '../config.js';
import type { Storage } from '../storage/database.js';
import type { ResourceService } from '../resources/service.js';
import type { Principal } from './principal.js';

/** Accounts: users, passwords, tokens, API keys, first-run setup (api.md §3). PLACEHOLDER being written. */
export class AccountService {
  constructor(
    readonly storage: Storage,
    readonly config: ServerConfig,
    readonly jwtSecret: Buffer,
    readonly log: Logger,
    readonly resources: ResourceService,
  ) {}

  async authenticate(_request: FastifyRequest): Promise<Principal | null> {
    return null;
  }

  async prepareFirstRun(): Promise<void> {}
}
