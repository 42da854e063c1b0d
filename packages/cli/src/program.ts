import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { registerApply } from './commands/apply.js';
import { registerChat } from './commands/chat.js';
import { registerDelete } from './commands/delete.js';
import { registerDescribe } from './commands/describe.js';
import { registerGet } from './commands/get.js';
import { registerLogin } from './commands/login.js';
import { CliError, EXIT } from './errors.js';
import { processIO, type CliIO } from './io.js';

const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Builds the `wegent` commander program; output goes to `io`, and errors throw instead of exiting. */
export function buildProgram(io: CliIO = processIO()): Command {
  const program = new Command('wegent')
    .description('Command-line client for a Wegent server: sign in, manage resources (Ghosts, Models, Shells, Bots, Teams, ...) and chat with Teams')
    .version(VERSION, '-V, --version', 'print the version')
    .option('--server <url>', 'Wegent server URL (default: $WEGENT_SERVER, else the one stored by login, else http://127.0.0.1:8000)')
    .helpOption('-h, --help', 'show help')
    .helpCommand('help [command]', 'show help for a command')
    // Set before the commands are added, so that every command inherits them.
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout(s), writeErr: (s) => io.stderr(s) })
    .showHelpAfterError('(add --help for usage)')
    .addHelpText(
      'after',
      `
Credentials: $WEGENT_TOKEN (a JWT or a wgt_ API key) overrides the token stored by 'wegent login'.
Exit codes: 0 success, 1 the server refused the request (or a chat answer failed), 2 usage error
or no credentials, 3 the server could not be reached, 130 interrupted (Ctrl-C).`,
    );
  registerLogin(program, io);
  registerApply(program, io);
  registerGet(program, io);
  registerDescribe(program, io);
  registerDelete(program, io);
  registerChat(program, io);
  return program;
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function run(argv: string[], io: CliIO = processIO()): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander has already printed its message (or the help); only the exit code is ours.
      return e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (e instanceof CliError) {
      if (e.message) io.stderr(e.message.endsWith('\n') ? e.message : e.message + '\n');
      return e.exitCode;
    }
    io.stderr(`error: ${(e as Error)?.message ?? String(e)}\n`);
    return EXIT.refused;
  }
}
