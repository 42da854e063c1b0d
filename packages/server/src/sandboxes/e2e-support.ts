/** Test support for sandboxes end to end: a bare repository to clone, a Code team; the socket clients of testing/chat-client. */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
export { connected, disconnectAll, seenBy, send } from '../testing/chat-client.js';

/** A bare repository with one commit on `main` (README.md and `files`), as a file:// URL. */
export function bareRepository(root: string, files: Record<string, string> = {}): string {
  const work = path.join(root, 'work');
  const bare = path.join(root, 'repo.git');
  const git = (args: string[], cwd?: string) => execFileSync('git', args, { cwd, stdio: 'pipe', env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@e', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@e' } });
  git(['init', '-q', '-b', 'main', work]);
  writeFileSync(path.join(work, 'README.md'), 'hello from the repository\n');
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(work, name)), { recursive: true });
    writeFileSync(path.join(work, name), content);
  }
  git(['add', '.'], work);
  git(['commit', '-q', '-m', 'first'], work);
  git(['clone', '-q', '--bare', work, bare]);
  return `file://${bare}`;
}
