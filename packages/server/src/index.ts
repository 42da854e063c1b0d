export { startServer, createLogger, VERSION, type RunningServer } from './server.js';
export { loadConfig, type ServerConfig } from './config.js';
