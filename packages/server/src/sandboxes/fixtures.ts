/** Test support: a complete sandbox record to insert (sandbox.md §3), with the fields a test cares about. */
import { randomUUID } from 'node:crypto';
import type { SandboxRecord } from '@wegent/sandbox';

export function sandboxRecord(over: Partial<SandboxRecord> = {}): SandboxRecord {
  const now = new Date('2026-01-02T03:04:05.678Z');
  return {
    id: randomUUID(),
    taskId: randomUUID(),
    ownerId: randomUUID(),
    hostId: 'host-a',
    instanceId: 'inst-1',
    driver: 'bwrap',
    state: 'Running',
    stateReason: null,
    message: null,
    image: null,
    limits: { memoryMB: 1024, cpus: 1, pids: 256, tmpMB: 256, diskMB: 2048, nofile: 1024 },
    network: 'none',
    ports: [{ container: 8080, host: 10001, url: 'http://127.0.0.1:10001' }],
    workspaceDir: '/data/sandboxes/x/workspace',
    driverRef: null,
    inUseBy: ['turn-1'],
    createdAt: now,
    readyAt: now,
    lastUsedAt: now,
    endedAt: null,
    deletedAt: null,
    exitCode: null,
    oomKilled: false,
    ...over,
  };
}
