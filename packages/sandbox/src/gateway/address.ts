/**
 * Address rules for outbound connections the sandbox's users control (runtime.md §3.5, applied by the
 * model gateway and the git clone): cloud metadata endpoints are always refused; loopback, private and
 * link-local addresses only when allowed (an admin's or public Model, `WEGENT_PRIVATE_HOSTS_ALLOW`, or
 * the pool's `allowPrivateTargets` option). The check runs on the addresses resolved at connect time.
 */
import { lookup as dnsLookup } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';

export const METADATA_HOSTS: readonly string[] = ['169.254.169.254', 'fd00:ec2::254', '100.100.100.200', 'metadata.google.internal'];

export interface AddressRules {
  /** Loopback, private and link-local addresses are allowed. */
  allowPrivate: boolean;
  /** Host names, IPs or CIDRs exempt from the non-public refusal (WEGENT_PRIVATE_HOSTS_ALLOW). */
  privateHostsAllow?: readonly string[];
}

export class AddressRefusedError extends Error {
  constructor(readonly reason: 'metadata' | 'non-public', message: string) {
    super(message);
    this.name = 'AddressRefusedError';
  }
}

const nonPublic = new BlockList();
for (const [net, prefix] of [['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 3]] as const) nonPublic.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8]] as const) nonPublic.addSubnet(net, prefix, 'ipv6');

function v4Mapped(ip: string): string | undefined {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m?.[1];
}

function normalizeHost(host: string): string {
  return host.replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase();
}

/** Whether `host` (a name) or `ip` is exempted by an allow-list entry. */
function allowListed(host: string, ip: string, entries: readonly string[]): boolean {
  for (const raw of entries) {
    const e = raw.trim().toLowerCase();
    if (!e) continue;
    if (e === host || e === ip) return true;
    const cidr = /^(.+)\/(\d+)$/.exec(e);
    if (cidr?.[1] && isIP(cidr[1]) && isIP(ip) === isIP(cidr[1])) {
      const b = new BlockList();
      b.addSubnet(cidr[1], Number(cidr[2]), isIP(ip) === 6 ? 'ipv6' : 'ipv4');
      if (b.check(ip, isIP(ip) === 6 ? 'ipv6' : 'ipv4')) return true;
    }
  }
  return false;
}

/** Throws AddressRefusedError when `ip` (resolved for `host`) may not be reached under `rules`. */
export function checkAddress(host: string, ip: string, rules: AddressRules): void {
  const h = normalizeHost(host);
  const addr = v4Mapped(ip) ?? ip;
  if (METADATA_HOSTS.includes(h) || METADATA_HOSTS.includes(addr.toLowerCase())) throw new AddressRefusedError('metadata', 'this address is not allowed');
  const family = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
  if (!nonPublic.check(addr, family)) return;
  if (rules.allowPrivate || allowListed(h, addr, rules.privateHostsAllow ?? [])) return;
  throw new AddressRefusedError('non-public', 'private address not allowed for this Model; ask an admin to allow the host');
}

/** A `lookup` for http(s).request that refuses addresses the rules forbid, after resolving. */
export function guardedLookup(rules: AddressRules): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) { callback(err, '', 0); return; }
      const list = addresses as unknown as { address: string; family: number }[];
      try {
        for (const a of list) checkAddress(hostname, a.address, rules);
      } catch (refused) { callback(refused as NodeJS.ErrnoException, '', 0); return; }
      if ((options as { all?: boolean }).all) (callback as unknown as (e: null, a: typeof list) => void)(null, list);
      else { const first = list[0]; callback(null, first?.address ?? '', first?.family ?? 4); }
    });
  };
}
