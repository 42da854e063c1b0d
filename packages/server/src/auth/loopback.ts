import type { IncomingHttpHeaders } from 'node:http';

/** True for 127.0.0.0/8 and ::1, also in their IPv4-mapped IPv6 form. */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false;
  if (address === '::1' || address === '0:0:0:0:0:0:0:1') return true;
  const v4 = address.toLowerCase().startsWith('::ffff:') ? address.slice(7) : address;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

/**
 * The loopback rule of api.md §3.3 (also used by /metrics): the socket peer is loopback and the request
 * carries no Forwarded / X-Forwarded-For header, since a reverse proxy on the same host would otherwise
 * make every visitor local.
 */
export function isLoopbackRequest(request: { socket: { remoteAddress?: string }; headers: IncomingHttpHeaders }): boolean {
  if (request.headers.forwarded !== undefined || request.headers['x-forwarded-for'] !== undefined) return false;
  return isLoopbackAddress(request.socket.remoteAddress);
}
