import type { Command } from 'commander';
import { resolveServer, WegentClient } from '../client.js';
import { configPath, writeConfig } from '../config-store.js';
import { UsageError } from '../errors.js';
import { promptLine, promptSecret, type CliIO } from '../io.js';
import { readAll } from '../manifest-source.js';

interface LoginBody {
  accessToken: string;
  user?: { username?: string };
}

/** `wegent login`: POST /api/v1/auth/login and store {server, token} in the config file. */
export function registerLogin(program: Command, io: CliIO): void {
  program
    .command('login')
    .description('sign in to a Wegent server and store the token for later commands')
    .option('--username <name>', 'user name or email (asked for on a terminal when missing)')
    .option('--password-stdin', 'read the password from standard input (the first line, without the newline)')
    .addHelpText(
      'after',
      `
The server URL and the token are stored in <config dir>/wegent/config.json (mode 0600), where the
config dir is $XDG_CONFIG_HOME, else ~/.config. Without a terminal, every missing value is an error.

Examples:
  wegent login --server https://wegent.example.com
  echo "$PASSWORD" | wegent login --username alice --password-stdin`,
    )
    .action(async (opts: { username?: string; passwordStdin?: boolean }, cmd: Command) => {
      const server = resolveServer(cmd.optsWithGlobals<{ server?: string }>().server, io.env);
      let username = opts.username;
      let password: string | undefined;
      if (opts.passwordStdin) {
        if (!username) throw new UsageError('--password-stdin needs --username');
        password = (await readAll(io.stdin)).replace(/\r?\n$/, '');
        if (!password) throw new UsageError('no password on standard input');
      }
      if (!username) {
        if (!io.interactive) throw new UsageError('no --username given and no terminal to ask for it');
        username = (await promptLine(io, 'Username: ')).trim();
        if (!username) throw new UsageError('a username is required');
      }
      if (password === undefined) {
        if (!io.interactive) throw new UsageError('no password given: use --password-stdin, or run on a terminal to be asked');
        password = await promptSecret(io, 'Password: ');
        if (!password) throw new UsageError('a password is required');
      }
      const client = new WegentClient(server, undefined);
      const res = await client.request('POST', '/api/v1/auth/login', { json: { username, password }, auth: false });
      const body = res.body as LoginBody;
      if (!body || typeof body.accessToken !== 'string') throw new Error('the server answered the login without an access token');
      writeConfig(io.env, { server, token: body.accessToken });
      io.stdout(`Logged in to ${server} as ${body.user?.username ?? username}.\n`);
      io.stderr(`Token stored in ${configPath(io.env)}\n`);
    });
}
