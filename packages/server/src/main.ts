#!/usr/bin/env node
import { ConfigError } from './config.js';
import { startServer, StartupError } from './server.js';
import { FirstRunError } from './auth/service.js';

/** `npm start`: runs Wegent until SIGINT/SIGTERM. */
async function main(): Promise<void> {
  let server;
  try {
    server = await startServer();
  } catch (e) {
    if (e instanceof ConfigError || e instanceof StartupError || e instanceof FirstRunError) {
      process.stderr.write(`wegent: ${e.message}\n`);
      process.exit(1);
    }
    throw e;
  }
  server.ctx.log.info({ url: server.url }, `Wegent is listening on ${server.url}`);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    server.ctx.log.info({ signal }, 'shutting down');
    server.ctx.draining = true;
    await server.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

void main();
