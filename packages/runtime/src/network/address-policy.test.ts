import { describe, expect, it } from 'vitest';
import { addressPolicy, checkModelEndpoint, resolveAllowedAddresses, type HostResolver } from './address-policy.js';
import { classifyIp, formatIp, parseIp, parseIPv4 } from './ip-address.js';

const cls = (text: string) => classifyIp(parseIp(text)!);

describe('IP literal parsing', () => {
  it('normalises decimal, octal, hex and shortened IPv4 forms', () => {
    for (const form of ['127.0.0.1', '2130706433', '0177.0.0.1', '0x7f.0.0.1', '0x7f000001', '127.1', '127.0.1', '017700000001', '0x7F.1']) {
      expect(formatIp(parseIPv4(form)!), form).toBe('127.0.0.1');
    }
    expect(formatIp(parseIPv4('0xa9.0xfe.0xa9.0xfe')!)).toBe('169.254.169.254');
    expect(parseIPv4('256.1.1.1')).toBeNull();
    expect(parseIPv4('1.2.3.4.5')).toBeNull();
    expect(parseIPv4('08.1.1.1')).toBeNull();
    expect(parseIPv4('example.com')).toBeNull();
    expect(parseIPv4('4294967296')).toBeNull();
  });

  it('parses IPv6 with compression, brackets and an IPv4 tail', () => {
    expect(formatIp(parseIp('[::1]')!)).toBe('0:0:0:0:0:0:0:1');
    expect(formatIp(parseIp('::ffff:127.0.0.1')!)).toBe('0:0:0:0:0:ffff:7f00:1');
    expect(formatIp(parseIp('fd00:ec2::254')!)).toBe('fd00:ec2:0:0:0:0:0:254');
    expect(parseIp('1::2::3')).toBeNull();
    expect(parseIp('fe80::1%eth0')).toBeNull();
  });
});

describe('address classes', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['169.254.1.1', 'link-local'],
    ['169.254.169.254', 'metadata'],
    ['100.100.100.200', 'metadata'],
    ['100.64.0.1', 'cgnat'],
    ['100.127.255.255', 'cgnat'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['240.0.0.1', 'reserved'],
    ['255.255.255.255', 'reserved'],
    ['198.18.0.1', 'benchmarking'],
    ['198.19.255.255', 'benchmarking'],
    ['::1', 'loopback'],
    ['::', 'unspecified'],
    ['fc00::1', 'private'],
    ['fd12:3456::1', 'private'],
    ['fe80::1', 'link-local'],
    ['ff02::1', 'multicast'],
    ['fd00:ec2::254', 'metadata'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['::ffff:169.254.169.254', 'metadata'],
    ['::127.0.0.1', 'loopback'],
    ['::10.0.0.1', 'private'],
    ['64:ff9b::10.0.0.1', 'private'],
    ['64:ff9b::a9fe:a9fe', 'metadata'],
    ['2002:7f00:1::', 'loopback'],
    ['8.8.8.8', 'public'],
    ['172.32.0.1', 'public'],
    ['100.128.0.1', 'public'],
    ['2001:4860:4860::8888', 'public'],
    ['::ffff:8.8.8.8', 'public'],
  ])('%s is %s', (ip, expected) => {
    expect(cls(ip)).toBe(expected);
  });
});

const fixedResolver =
  (answers: Record<string, string[]>): HostResolver =>
  async (host) => {
    const ips = answers[host];
    if (!ips) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return ips.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };

describe('resolveAllowedAddresses', () => {
  const strict = addressPolicy();
  const resolver = fixedResolver({
    'public.test': ['93.184.216.34'],
    'mixed.test': ['93.184.216.34', '10.0.0.5'],
    'internal.test': ['10.0.0.5'],
    'v6local.test': ['::1'],
  });

  it('allows names whose every address is public', async () => {
    await expect(resolveAllowedAddresses(strict, 'public.test', resolver)).resolves.toEqual([{ address: '93.184.216.34', family: 4 }]);
  });

  it('refuses a name when any of its addresses is private', async () => {
    await expect(resolveAllowedAddresses(strict, 'mixed.test', resolver)).rejects.toMatchObject({ name: 'AddressRefusedError', reason: 'non-public' });
    await expect(resolveAllowedAddresses(strict, 'v6local.test', resolver)).rejects.toMatchObject({ reason: 'non-public' });
  });

  it('refuses loopback literals in every spelling', async () => {
    for (const host of ['127.0.0.1', '2130706433', '0x7f.1', '::1', '[::1]', '::ffff:127.0.0.1']) {
      await expect(resolveAllowedAddresses(strict, host, resolver), host).rejects.toMatchObject({ reason: 'non-public' });
    }
  });

  it('refuses localhost names and metadata names without looking them up', async () => {
    const never: HostResolver = async () => {
      throw new Error('looked up');
    };
    await expect(resolveAllowedAddresses(strict, 'localhost', never)).rejects.toMatchObject({ reason: 'non-public' });
    await expect(resolveAllowedAddresses(strict, 'api.localhost', never)).rejects.toMatchObject({ reason: 'non-public' });
    await expect(resolveAllowedAddresses(strict, 'metadata.google.internal', never)).rejects.toMatchObject({ reason: 'metadata' });
  });

  it('lets the allow-list exempt names, IPs and CIDRs, but never metadata endpoints', async () => {
    const allow = addressPolicy({ privateHostsAllow: ['internal.test', '127.0.0.1', '192.168.0.0/16,fd00::/8', '169.254.0.0/16'] });
    await expect(resolveAllowedAddresses(allow, 'internal.test', resolver)).resolves.toHaveLength(1);
    await expect(resolveAllowedAddresses(allow, '127.0.0.1', resolver)).resolves.toHaveLength(1);
    await expect(resolveAllowedAddresses(allow, '192.168.7.7', resolver)).resolves.toHaveLength(1);
    await expect(resolveAllowedAddresses(allow, 'fd12::1', resolver)).resolves.toHaveLength(1);
    await expect(resolveAllowedAddresses(allow, '127.0.0.2', resolver)).rejects.toMatchObject({ reason: 'non-public' });
    await expect(resolveAllowedAddresses(allow, '169.254.169.254', resolver)).rejects.toMatchObject({ reason: 'metadata' });
  });

  it('applies the deny-list to public hosts', async () => {
    const deny = addressPolicy({ denyHosts: ['public.test'] });
    await expect(resolveAllowedAddresses(deny, 'public.test', resolver)).rejects.toMatchObject({ reason: 'denied' });
    await expect(resolveAllowedAddresses(addressPolicy({ denyHosts: ['93.184.0.0/16'] }), 'public.test', resolver)).rejects.toMatchObject({ reason: 'denied' });
  });
});

describe('checkModelEndpoint', () => {
  it('refuses cloud metadata endpoints even for trusted Models', async () => {
    for (const url of ['http://169.254.169.254/v1', 'http://[fd00:ec2::254]/', 'http://100.100.100.200/', 'http://metadata.google.internal/']) {
      await expect(checkModelEndpoint(url, { trustedOwner: true }), url).resolves.toEqual({ ok: false, code: 'MODEL_UNREACHABLE', message: 'this address is not allowed' });
    }
  });

  it("refuses an ordinary user's private endpoint unless the host is allowed", async () => {
    const refused = await checkModelEndpoint('http://127.0.0.1:11434/v1', { trustedOwner: false });
    expect(refused).toEqual({ ok: false, code: 'MODEL_UNREACHABLE', message: 'private address not allowed for this Model; ask an admin to allow the host' });
    await expect(checkModelEndpoint('http://127.0.0.1:11434/v1', { trustedOwner: false, privateHostsAllow: ['127.0.0.1'] })).resolves.toMatchObject({ ok: true });
    await expect(checkModelEndpoint('http://127.0.0.1:11434/v1', { trustedOwner: false, modelAllowPrivate: true })).resolves.toMatchObject({ ok: true });
    await expect(checkModelEndpoint('http://localhost:11434/v1', { trustedOwner: true, resolver: fixedResolver({ localhost: ['127.0.0.1'] }) })).resolves.toMatchObject({ ok: true });
  });

  it('catches a DNS name that resolves to a private address', async () => {
    const resolver = fixedResolver({ 'sneaky.test': ['10.1.1.1'] });
    await expect(checkModelEndpoint('https://sneaky.test/v1', { trustedOwner: false, resolver })).resolves.toMatchObject({ ok: false, code: 'MODEL_UNREACHABLE' });
  });
});
