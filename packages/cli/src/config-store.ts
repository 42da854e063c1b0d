import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { UsageError } from './errors.js';

/** What `wegent login` remembers between runs. */
export interface StoredConfig {
  server: string;
  token: string;
}

type Env = Record<string, string | undefined>;

/** `<config dir>/wegent/config.json`, the config dir being $XDG_CONFIG_HOME, else ~/.config. */
export function configPath(env: Env): string {
  const base = env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : path.join(env.HOME || homedir(), '.config');
  return path.join(base, 'wegent', 'config.json');
}

/** Reads the stored config; undefined when there is none yet. */
export function readConfig(env: Env): StoredConfig | undefined {
  const file = configPath(env);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UsageError(`cannot read ${file}: ${(e as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new UsageError(`${file} is not valid JSON; delete it and run 'wegent login' again`);
  }
  const cfg = parsed as Partial<StoredConfig> | null;
  if (!cfg || typeof cfg.server !== 'string' || typeof cfg.token !== 'string') return undefined;
  return { server: cfg.server, token: cfg.token };
}

/**
 * Stores the config with mode 0600 in a directory of mode 0700. The file is written under a temporary
 * name created with 0600 and renamed, so the token is never readable by others, not even briefly.
 */
export function writeConfig(env: Env, cfg: StoredConfig): string {
  const file = configPath(env);
  const dir = path.dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(cfg, null, 2) + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  return file;
}
