/**
 * The model gateway's TCP door inside the sandbox (sandbox.md §11): 127.0.0.1:4000 in the sandbox's
 * own network namespace, each connection carried to the gateway socket the pool serves.
 */
import { connect, createServer, type Server } from 'node:net';

export const GATEWAY_PORT = 4000;

export function startGatewayForwarder(gatewaySocket: string, port = GATEWAY_PORT): Server {
  const server = createServer((client) => {
    const upstream = connect(gatewaySocket);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.on('error', (err) => { process.stderr.write(`wegent agent: the model gateway forwarder could not listen on 127.0.0.1:${port}: ${err.message}\n`); });
  server.listen(port, '127.0.0.1');
  return server;
}
