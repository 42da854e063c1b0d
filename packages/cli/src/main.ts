import { processIO } from './io.js';
import { run } from './program.js';

// `wegent get ... | head` closes the pipe early; that is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

// exitCode (not exit()) lets buffered output reach a pipe before the process ends.
process.exitCode = await run(process.argv.slice(2), processIO());
