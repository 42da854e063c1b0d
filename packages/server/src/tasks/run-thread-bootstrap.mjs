// Entry of a run thread: worker threads do not inherit the TypeScript loader, so register it first.
import { register } from 'tsx/esm/api';

register();
await import('./run-thread-worker.ts');
