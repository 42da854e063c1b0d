export { buildProgram, run } from './program.js';
export type { CliIO } from './io.js';
export { WegentClient } from './client.js';
