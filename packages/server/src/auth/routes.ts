import type { FastifyInstance } from 'fastify';
import type { AppContext } from '../app.js';

export async function registerAuthRoutes(_app: FastifyInstance, _ctx: AppContext): Promise<void> {}
