import { lookup as dnsLookup } from 'node:dns/promises';
import {
  classifyIp,
  formatIp,
  matchesHostPatterns,
  normalizeHostname,
  parseHostPatterns,
  parseIp,
  type AddressClass,
  type HostPattern,
  type IpBytes,
} from './ip-address.js';

/**
 * Which addresses an outbound connection a user controls may reach (runtime.md §3.5, §6.2): one rule
 * for Model endpoints, `web_fetch` and (later) MCP servers and git clones.
 */
export interface AddressPolicy {
  /** Loopback, private, link-local and other non-public addresses are allowed (trusted Models). */
  allowNonPublic: boolean;
  /** `WEGENT_PRIVATE_HOSTS_ALLOW` entries: exempt from the non-public refusal. */
  allow: readonly HostPattern[];
  /** `WEGENT_FETCH_DENY_HOSTS` entries: refused even when public. */
  deny: readonly HostPattern[];
}

export interface AddressPolicyInput {
  allowNonPublic?: boolean;
  privateHostsAllow?: readonly string[];
  denyHosts?: readonly string[];
}

/** Builds a policy from config lists (comma lists or arrays of entries). */
export function addressPolicy(input: AddressPolicyInput = {}): AddressPolicy {
  return {
    allowNonPublic: input.allowNonPublic ?? false,
    allow: parseHostPatterns(input.privateHostsAllow ?? []),
    deny: parseHostPatterns(input.denyHosts ?? []),
  };
}

/** A resolved address of a host name. */
export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Resolves a host name to all its addresses (the system resolver unless a test injects one). */
export type HostResolver = (hostname: string) => Promise<ResolvedAddress[]>;

export const systemResolver: HostResolver = async (hostname) => {
  const answers = await dnsLookup(hostname, { all: true, verbatim: true });
  return answers.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

/** Why an address was refused. */
export type RefusalReason = 'metadata' | 'non-public' | 'denied' | 'scheme' | 'userinfo';

export class AddressRefusedError extends Error {
  override readonly name = 'AddressRefusedError';
  constructor(
    readonly reason: RefusalReason,
    readonly host: string,
    readonly addressClass?: AddressClass,
  ) {
    super(refusalMessage(reason, host));
  }
}

function refusalMessage(reason: RefusalReason, host: string): string {
  switch (reason) {
    case 'metadata':
      return `this address is not allowed (${host} is a cloud metadata endpoint)`;
    case 'non-public':
      return `private or local address not allowed (${host})`;
    case 'denied':
      return `this host is not allowed (${host})`;
    case 'scheme':
      return 'only http and https URLs are allowed';
    case 'userinfo':
      return 'URLs with user names or passwords are not allowed';
  }
}

const METADATA_NAMES = new Set(['metadata.google.internal', 'metadata.goog', 'metadata']);

/** Judges one address of a host against a policy; returns the refusal reason or null. */
export function judgeAddress(policy: AddressPolicy, hostname: string, ip: IpBytes): { reason: RefusalReason; cls: AddressClass } | null {
  const cls = classifyIp(ip);
  if (cls === 'metadata') return { reason: 'metadata', cls };
  if (matchesHostPatterns(policy.deny, hostname, ip)) return { reason: 'denied', cls };
  if (cls === 'public' || policy.allowNonPublic) return null;
  if (matchesHostPatterns(policy.allow, hostname, ip)) return null;
  return { reason: 'non-public', cls };
}

/** Refusals decided by the name alone (before any lookup). */
export function judgeHostname(policy: AddressPolicy, hostname: string): RefusalReason | null {
  const name = normalizeHostname(hostname);
  if (METADATA_NAMES.has(name)) return 'metadata';
  if (matchesHostPatterns(policy.deny, name)) return 'denied';
  const isLocalName = name === 'localhost' || name.endsWith('.localhost');
  if (isLocalName && !policy.allowNonPublic && !matchesHostPatterns(policy.allow, name)) return 'non-public';
  return null;
}

/**
 * Resolves a host and checks every address (runtime.md §6.2 step 1). Returns the checked addresses;
 * connect only to one of them (step 2). Throws `AddressRefusedError` when any address is refused.
 */
export async function resolveAllowedAddresses(policy: AddressPolicy, hostname: string, resolver: HostResolver = systemResolver): Promise<ResolvedAddress[]> {
  const name = normalizeHostname(hostname);
  const nameRefusal = judgeHostname(policy, name);
  if (nameRefusal) throw new AddressRefusedError(nameRefusal, name);
  const literal = parseIp(name);
  const addresses: ResolvedAddress[] = literal
    ? [{ address: formatIp(literal), family: literal.length === 4 ? 4 : 6 }]
    : await resolver(name);
  if (addresses.length === 0) throw Object.assign(new Error(`no address found for ${name}`), { code: 'ENOTFOUND' });
  for (const a of addresses) {
    const ip = parseIp(a.address);
    if (!ip) throw new AddressRefusedError('non-public', name);
    const verdict = judgeAddress(policy, name, ip);
    if (verdict) throw new AddressRefusedError(verdict.reason, name, verdict.cls);
  }
  return addresses;
}

/** The policy for a Model endpoint (runtime.md §3.5). */
export function modelAddressPolicy(trustedOwner: boolean, network: { privateHostsAllow?: readonly string[]; modelAllowPrivate?: boolean } = {}): AddressPolicy {
  return addressPolicy({
    allowNonPublic: trustedOwner || (network.modelAllowPrivate ?? false),
    privateHostsAllow: network.privateHostsAllow,
  });
}

export type EndpointCheck = { ok: true; addresses: ResolvedAddress[] } | { ok: false; code: 'MODEL_UNREACHABLE'; message: string };

/**
 * Checks a Model's base URL against the address rules (runtime.md §3.5), resolving its host now.
 * The runtime repeats the check at connect time; the server may call this for "test connection" and
 * Workspace git hosts.
 */
export async function checkModelEndpoint(
  baseUrl: string,
  options: { trustedOwner: boolean; privateHostsAllow?: readonly string[]; modelAllowPrivate?: boolean; resolver?: HostResolver },
): Promise<EndpointCheck> {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    return { ok: false, code: 'MODEL_UNREACHABLE', message: `'${baseUrl}' is not a URL` };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return { ok: false, code: 'MODEL_UNREACHABLE', message: 'only http and https URLs are allowed' };
  const policy = modelAddressPolicy(options.trustedOwner, options);
  try {
    return { ok: true, addresses: await resolveAllowedAddresses(policy, url.hostname, options.resolver) };
  } catch (err) {
    return { ok: false, code: 'MODEL_UNREACHABLE', message: modelRefusalText(err) };
  }
}

/** The §3.5 wording of a refused Model address; other errors as their message. */
export function modelRefusalText(err: unknown): string {
  if (err instanceof AddressRefusedError) {
    if (err.reason === 'non-public') return 'private address not allowed for this Model; ask an admin to allow the host';
    return 'this address is not allowed';
  }
  return err instanceof Error ? err.message : String(err);
}
