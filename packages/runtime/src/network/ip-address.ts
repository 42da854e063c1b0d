/**
 * IP address parsing and classification for outbound address rules (runtime.md §3.5, §6.2).
 * Addresses are handled as byte arrays so that every textual form (dotted, decimal, octal, hex,
 * compressed IPv6, IPv4-in-IPv6) lands in one representation before it is judged.
 */

export type IpBytes = Uint8Array; // 4 bytes (IPv4) or 16 bytes (IPv6)

/** Why an address is not a public one; `public` when it is. */
export type AddressClass =
  | 'public'
  | 'metadata'
  | 'loopback'
  | 'private'
  | 'link-local'
  | 'cgnat'
  | 'unspecified'
  | 'multicast'
  | 'reserved'
  | 'benchmarking';

/**
 * Parses an IPv4 address in any form `inet_aton` (and the WHATWG URL parser) accepts: 1 to 4 parts,
 * each decimal, octal (leading 0) or hex (0x); the last part fills the remaining bytes.
 */
export function parseIPv4(text: string): IpBytes | null {
  if (text === '' || text.length > 64) return null;
  const parts = text.split('.');
  if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop(); // a trailing dot is allowed
  if (parts.length === 0 || parts.length > 4) return null;
  const values: number[] = [];
  for (const part of parts) {
    const value = parseIPv4Part(part);
    if (value === null) return null;
    values.push(value);
  }
  const last = values.pop()!;
  for (const v of values) if (v > 255) return null;
  const restBytes = 4 - values.length;
  if (last >= 2 ** (8 * restBytes)) return null;
  const out = new Uint8Array(4);
  values.forEach((v, i) => (out[i] = v));
  for (let i = 3, rest = last; i >= values.length; i--, rest = Math.floor(rest / 256)) out[i] = rest % 256;
  return out;
}

function parseIPv4Part(part: string): number | null {
  if (part === '') return null;
  let digits = part;
  let radix = 10;
  if (/^0[xX]/.test(part)) {
    digits = part.slice(2);
    radix = 16;
    if (digits === '') return 0;
    if (!/^[0-9a-fA-F]+$/.test(digits)) return null;
  } else if (part.length > 1 && part.startsWith('0')) {
    digits = part.slice(1);
    radix = 8;
    if (!/^[0-7]+$/.test(digits)) return null;
  } else if (!/^[0-9]+$/.test(digits)) {
    return null;
  }
  const value = parseInt(digits, radix);
  return Number.isSafeInteger(value) && value <= 0xffffffff ? value : null;
}

/** Parses an IPv6 address (optionally in brackets, with an embedded IPv4 tail; zone ids are refused). */
export function parseIPv6(text: string): IpBytes | null {
  let s = text;
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  if (!s.includes(':') || s.includes('%') || s.length > 64) return null;
  const words: number[] = [];
  let tail: IpBytes | null = null;
  const lastColon = s.lastIndexOf(':');
  const after = s.slice(lastColon + 1);
  if (after.includes('.')) {
    tail = parseDottedIPv4Strict(after);
    if (!tail) return null;
    s = s.slice(0, lastColon + 1) + '0:0';
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const parseWords = (part: string): number[] | null => {
    if (part === '') return [];
    const out: number[] = [];
    for (const w of part.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(w)) return null;
      out.push(parseInt(w, 16));
    }
    return out;
  };
  const head = parseWords(halves[0]!);
  if (!head) return null;
  if (halves.length === 2) {
    const rest = parseWords(halves[1]!);
    if (!rest || head.length + rest.length > 7) return null;
    words.push(...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest);
  } else {
    if (head.length !== 8) return null;
    words.push(...head);
  }
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[i * 2] = w >> 8;
    out[i * 2 + 1] = w & 0xff;
  });
  if (tail) out.set(tail, 12);
  return out;
}

function parseDottedIPv4Strict(text: string): IpBytes | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return null;
    out[i] = Number(p);
  }
  return out;
}

/** Parses an IP literal of either family (IPv4 in any inet_aton form). */
export function parseIp(text: string): IpBytes | null {
  return parseIPv6(text) ?? parseIPv4(text);
}

/** Canonical text of an address: dotted IPv4, or IPv6 as eight hex words. */
export function formatIp(ip: IpBytes): string {
  if (ip.length === 4) return Array.from(ip).join('.');
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((ip[i]! << 8) | ip[i + 1]!).toString(16));
  return words.join(':');
}

/** The IPv4 address inside an IPv6 one (IPv4-mapped, IPv4-compatible, NAT64, 6to4), if any. */
export function embeddedIPv4(ip: IpBytes): IpBytes | null {
  if (ip.length !== 16) return null;
  const zeroUpTo = (n: number) => ip.subarray(0, n).every((b) => b === 0);
  // ::ffff:a.b.c.d (mapped)
  if (zeroUpTo(10) && ip[10] === 0xff && ip[11] === 0xff) return ip.slice(12);
  // ::a.b.c.d (compatible, deprecated) — but not :: or ::1
  if (zeroUpTo(12) && !(ip[12] === 0 && ip[13] === 0 && ip[14] === 0 && (ip[15] === 0 || ip[15] === 1))) return ip.slice(12);
  // 64:ff9b::/96 (NAT64)
  if (ip[0] === 0x00 && ip[1] === 0x64 && ip[2] === 0xff && ip[3] === 0x9b && ip.subarray(4, 12).every((b) => b === 0)) return ip.slice(12);
  // 2002:aabb:ccdd::/48 (6to4)
  if (ip[0] === 0x20 && ip[1] === 0x02) return ip.slice(2, 6);
  return null;
}

/** Whether `ip` lies in the prefix `net/bits` (same family). */
export function inPrefix(ip: IpBytes, net: IpBytes, bits: number): boolean {
  if (ip.length !== net.length) return false;
  let remaining = bits;
  for (let i = 0; i < ip.length && remaining > 0; i++, remaining -= 8) {
    const mask = remaining >= 8 ? 0xff : (0xff << (8 - remaining)) & 0xff;
    if ((ip[i]! & mask) !== (net[i]! & mask)) return false;
  }
  return true;
}

const V4_RANGES: Array<[string, number, AddressClass]> = [
  ['169.254.169.254', 32, 'metadata'],
  ['100.100.100.200', 32, 'metadata'],
  ['0.0.0.0', 8, 'unspecified'],
  ['127.0.0.0', 8, 'loopback'],
  ['10.0.0.0', 8, 'private'],
  ['172.16.0.0', 12, 'private'],
  ['192.168.0.0', 16, 'private'],
  ['169.254.0.0', 16, 'link-local'],
  ['100.64.0.0', 10, 'cgnat'],
  ['198.18.0.0', 15, 'benchmarking'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved'],
];
const V6_RANGES: Array<[string, number, AddressClass]> = [
  ['fd00:ec2::254', 128, 'metadata'],
  ['::', 128, 'unspecified'],
  ['::1', 128, 'loopback'],
  ['fc00::', 7, 'private'],
  ['fe80::', 10, 'link-local'],
  ['ff00::', 8, 'multicast'],
];
const PARSED_V4 = V4_RANGES.map(([net, bits, cls]) => [parseIPv4(net)!, bits, cls] as const);
const PARSED_V6 = V6_RANGES.map(([net, bits, cls]) => [parseIPv6(net)!, bits, cls] as const);

/** Classifies an address; IPv6 forms that carry an IPv4 address are judged by that address. */
export function classifyIp(ip: IpBytes): AddressClass {
  if (ip.length === 16) {
    for (const [net, bits, cls] of PARSED_V6) if (inPrefix(ip, net, bits)) return cls;
    const inner = embeddedIPv4(ip);
    return inner ? classifyIp(inner) : 'public';
  }
  for (const [net, bits, cls] of PARSED_V4) if (inPrefix(ip, net, bits)) return cls;
  return 'public';
}

/** A parsed allow- or deny-list entry: a host name, an IP, or a CIDR. */
export type HostPattern = { kind: 'name'; name: string } | { kind: 'net'; net: IpBytes; bits: number };

/** Parses comma-list entries (`WEGENT_PRIVATE_HOSTS_ALLOW`, `WEGENT_FETCH_DENY_HOSTS`); blank entries are skipped. */
export function parseHostPatterns(entries: readonly string[]): HostPattern[] {
  const out: HostPattern[] = [];
  for (const raw of entries.flatMap((e) => e.split(','))) {
    const entry = raw.trim().toLowerCase();
    if (entry === '') continue;
    const slash = entry.lastIndexOf('/');
    if (slash > 0) {
      const net = parseIp(entry.slice(0, slash));
      const bits = Number(entry.slice(slash + 1));
      if (net && Number.isInteger(bits) && bits >= 0 && bits <= net.length * 8) {
        out.push({ kind: 'net', net, bits });
        continue;
      }
    }
    const ip = parseIp(entry);
    if (ip) out.push({ kind: 'net', net: ip, bits: ip.length * 8 });
    else out.push({ kind: 'name', name: entry.replace(/\.$/, '') });
  }
  return out;
}

/** Whether a host name or one of its addresses matches a pattern list. */
export function matchesHostPatterns(patterns: readonly HostPattern[], hostname: string, ip?: IpBytes): boolean {
  const name = normalizeHostname(hostname);
  for (const p of patterns) {
    if (p.kind === 'name') {
      if (p.name === name) return true;
    } else if (ip) {
      if (inPrefix(ip, p.net, p.bits)) return true;
      const inner = embeddedIPv4(ip);
      if (inner && inPrefix(inner, p.net, p.bits)) return true;
    }
  }
  return false;
}

/** Lower-cased host name without brackets or a trailing dot. */
export function normalizeHostname(hostname: string): string {
  let h = hostname.toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  return h.replace(/\.$/, '');
}
