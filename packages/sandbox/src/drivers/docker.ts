/**
 * The `docker` driver (sandbox.md §4.1): one container per sandbox through the Docker Engine API.
 * Never pulls; no network, read-only root, dropped capabilities, limits set on the container.
 */
import { chown } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import Docker from 'dockerode';
import { baseEnvironment, chargedMemoryBytes } from '../limits.js';
import type { DriverEvent, DriverHandle, DriverInspect, DriverProbe, SandboxDriver, SandboxSpec } from '../types.js';
import { SandboxError } from '../types.js';
import { waitForAgentSocket } from './agent-socket.js';

const LOG_TAIL_LINES = 2000;

export interface DockerDriverOptions {
  docker?: Docker;
  /** This host's id (`wegent.host` label): only its containers are listed and reaped. */
  hostId: string;
  /** The executor image used when a spec names none. */
  defaultImage: string;
}

function imageMissing(image: string): SandboxError {
  return new SandboxError('IMAGE_MISSING', `image '${image}' is not present on this host; images are never pulled — build the executor image with \`npm run sandbox:image\``);
}

function isNotFound(err: unknown): boolean {
  return (err as { statusCode?: number }).statusCode === 404;
}

/** Splits Docker's multiplexed log format (8-byte frame headers) into stdout and stderr. */
function demux(buf: Buffer): { stdout: string; stderr: string } {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let i = 0;
  while (i + 8 <= buf.length) {
    const kind = buf[i];
    const size = buf.readUInt32BE(i + 4);
    (kind === 2 ? err : out).push(buf.subarray(i + 8, i + 8 + size));
    i += 8 + size;
  }
  return { stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
}

/** Runs sandboxes as containers of the local Docker Engine. */
export class DockerDriver implements SandboxDriver {
  readonly name = 'docker' as const;
  readonly docker: Docker;
  /** Run folders of created, not yet started agent sandboxes, by container id. */
  private readonly agentRunDirs = new Map<string, string>();

  constructor(private readonly opts: DockerDriverOptions) {
    this.docker = opts.docker ?? new Docker();
  }

  async probe(): Promise<DriverProbe> {
    const enforces = { memory: true, cpu: true, pids: true, hardDiskQuota: false, noNetwork: true, publishPorts: false };
    try {
      await Promise.race([this.docker.ping(), sleep(1000).then(() => { throw new Error('no answer within 1 s'); })]);
      return { available: true, enforces };
    } catch (err) {
      return { available: false, reason: `the Docker API did not answer: ${(err as Error).message}`, enforces };
    }
  }

  async create(spec: SandboxSpec): Promise<DriverHandle> {
    const image = spec.image ?? this.opts.defaultImage;
    if (spec.network === 'egress') throw new SandboxError('DRIVER_ERROR', 'network egress is not available in this build');
    if (spec.workspaceMode === 'dir') await chown(spec.workspaceDir, 1000, 1000);
    await chown(spec.runDir, 1000, 1000);
    const memory = chargedMemoryBytes(spec.limits, spec.workspaceMode === 'tmpfs');
    const tmpfs: Record<string, string> = { '/tmp': `rw,nosuid,nodev,exec,size=${spec.limits.tmpMB}m,mode=1777` };
    const binds = [`${spec.runDir}:/run/wegent:rw`];
    if (spec.workspaceMode === 'tmpfs') tmpfs['/workspace'] = `rw,nosuid,nodev,exec,size=${spec.limits.diskMB}m,uid=1000,gid=1000,mode=0755`;
    else binds.unshift(`${spec.workspaceDir}:/workspace:rw`);
    const env = { ...baseEnvironment(spec.id), ...spec.env };
    try {
      const c = await this.docker.createContainer({
        name: `wegent-sbx-${spec.id}`,
        Image: image,
        User: '1000:1000',
        Entrypoint: spec.command ?? ['/opt/wegent/bin/node', '/opt/wegent/agent/main.js'],
        Cmd: [],
        WorkingDir: '/workspace',
        Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
        Hostname: 'sandbox',
        Labels: {
          'wegent.sandbox': '1', 'wegent.sandbox.id': spec.id, 'wegent.host': spec.labels.hostId,
          'wegent.instance': spec.labels.instanceId, 'wegent.task': spec.labels.taskId, 'wegent.owner': spec.labels.ownerId,
        },
        NetworkDisabled: spec.network === 'none',
        HostConfig: {
          NetworkMode: 'none',
          ReadonlyRootfs: true,
          Tmpfs: tmpfs,
          Binds: binds,
          Memory: memory,
          MemorySwap: memory,
          NanoCpus: Math.round(spec.limits.cpus * 1e9),
          PidsLimit: spec.limits.pids,
          Ulimits: [{ Name: 'nofile', Soft: spec.limits.nofile, Hard: spec.limits.nofile }, { Name: 'core', Soft: 0, Hard: 0 }],
          CapDrop: ['ALL'],
          SecurityOpt: ['no-new-privileges:true'],
          Init: true,
          Privileged: false,
          IpcMode: 'private',
          AutoRemove: false,
        },
      });
      // A sandbox whose main process is the agent is started once its socket is there (agent-socket.ts).
      if (spec.command === undefined) this.agentRunDirs.set(c.id, spec.runDir);
      return { driver: 'docker', sandboxId: spec.id, ref: c.id, labels: spec.labels };
    } catch (err) {
      // The create call is the image check too (one round trip fewer per start): the Engine never pulls
      // on create and answers 404 "No such image" when the image is not on this host.
      if (isNotFound(err) && /no such image/i.test((err as Error).message)) throw imageMissing(image);
      throw new SandboxError('DRIVER_ERROR', `docker: could not create the container: ${(err as Error).message}`);
    }
  }

  async start(h: DriverHandle): Promise<void> {
    const runDir = this.agentRunDirs.get(h.ref);
    this.agentRunDirs.delete(h.ref);
    await this.docker.getContainer(h.ref).start();
    if (runDir) await waitForAgentSocket(runDir, { stillRunning: async () => (await this.inspect(h)).running });
  }

  async inspect(h: DriverHandle): Promise<DriverInspect> {
    try {
      const info = await this.docker.getContainer(h.ref).inspect();
      const running = info.State.Running || info.State.Restarting;
      return { running, exitCode: running ? undefined : info.State.ExitCode, oomKilled: info.State.OOMKilled };
    } catch (err) {
      if (isNotFound(err)) return { running: false, oomKilled: false };
      throw err;
    }
  }

  async stop(h: DriverHandle, graceMs: number): Promise<void> {
    const c = this.docker.getContainer(h.ref);
    const ignoreGone = (err: unknown) => { if (!isNotFound(err) && (err as { statusCode?: number }).statusCode !== 409) throw err; };
    if (!(await this.inspect(h)).running) return;
    if (graceMs > 0) {
      await c.kill({ signal: 'SIGTERM' }).catch(ignoreGone);
      const deadline = Date.now() + graceMs;
      while (Date.now() < deadline) {
        if (!(await this.inspect(h)).running) return;
        await sleep(25);
      }
    }
    await c.kill({ signal: 'SIGKILL' }).catch(ignoreGone);
    for (let i = 0; i < 400 && (await this.inspect(h)).running; i++) await sleep(25);
  }

  async remove(h: DriverHandle): Promise<void> {
    this.agentRunDirs.delete(h.ref);
    try {
      await this.docker.getContainer(h.ref).remove({ force: true, v: true });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  async listOwned(): Promise<DriverHandle[]> {
    const list = await this.docker.listContainers({ all: true, filters: { label: ['wegent.sandbox=1', `wegent.host=${this.opts.hostId}`] } });
    return list.map((c) => ({
      driver: 'docker' as const,
      sandboxId: c.Labels['wegent.sandbox.id'] ?? '',
      ref: c.Id,
      labels: { taskId: c.Labels['wegent.task'] ?? '', ownerId: c.Labels['wegent.owner'] ?? '', hostId: c.Labels['wegent.host'] ?? '', instanceId: c.Labels['wegent.instance'] ?? '' },
    }));
  }

  async *events(): AsyncGenerator<DriverEvent> {
    const stream = await this.docker.getEvents({ filters: { type: ['container'], label: ['wegent.sandbox=1', `wegent.host=${this.opts.hostId}`], event: ['die', 'oom'] } });
    // A passive watch: it must not keep a process alive on its own (a server has its listeners for that).
    (stream as unknown as { socket?: { unref?: () => void } }).socket?.unref?.();
    let buffered = '';
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        buffered += chunk.toString('utf8');
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          if (!line.trim()) continue;
          const ev = JSON.parse(line) as { status?: string; Action?: string; id?: string; Actor?: { Attributes?: Record<string, string> } };
          const attrs = ev.Actor?.Attributes ?? {};
          const handle: DriverHandle = {
            driver: 'docker', sandboxId: attrs['wegent.sandbox.id'] ?? '', ref: ev.id ?? '',
            labels: { taskId: attrs['wegent.task'] ?? '', ownerId: attrs['wegent.owner'] ?? '', hostId: attrs['wegent.host'] ?? '', instanceId: attrs['wegent.instance'] ?? '' },
          };
          const action = ev.Action ?? ev.status;
          if (action === 'oom') yield { handle, type: 'oom' };
          else if (action === 'die') yield { handle, type: 'exit', exitCode: Number(attrs.exitCode ?? NaN) };
        }
      }
    } finally {
      (stream as unknown as { destroy?: () => void }).destroy?.();
    }
  }

  async hostPids(h: DriverHandle): Promise<number[]> {
    try {
      const top = await this.docker.getContainer(h.ref).top() as { Titles: string[]; Processes: string[][] };
      const col = top.Titles.indexOf('PID');
      return top.Processes.map((p) => Number(p[col]));
    } catch {
      return [];
    }
  }

  async logs(h: DriverHandle): Promise<{ stdout: string; stderr: string }> {
    try {
      const buf = await this.docker.getContainer(h.ref).logs({ stdout: true, stderr: true, follow: false, tail: LOG_TAIL_LINES });
      return demux(buf as unknown as Buffer);
    } catch {
      return { stdout: '', stderr: '' };
    }
  }

  async stats(h: DriverHandle): Promise<{ cpuNs?: number }> {
    try {
      const s = await this.docker.getContainer(h.ref).stats({ stream: false }) as { cpu_stats?: { cpu_usage?: { total_usage?: number } } };
      return { cpuNs: s.cpu_stats?.cpu_usage?.total_usage };
    } catch {
      return {};
    }
  }
}
