/** Shapes shared by the drivers and the pool (sandbox.md §2, §3, §5). */

export type DriverName = 'docker' | 'bwrap';

/** Resource limits applied to one sandbox; all sizes in MiB. */
export interface SandboxLimits {
  memoryMB: number;
  cpus: number;
  pids: number;
  tmpMB: number;
  diskMB: number;
  nofile: number;
}

export type WorkspaceMode = 'dir' | 'tmpfs';

/** Everything a driver needs to create one sandbox. */
export interface SandboxSpec {
  /** UUIDv7 of the sandbox; names the container, cgroup and state files. */
  id: string;
  /** Labels recorded on the container / state file: owner, task, host, instance. */
  labels: { taskId: string; ownerId: string; hostId: string; instanceId: string };
  limits: SandboxLimits;
  network: 'none' | 'egress';
  workspaceMode: WorkspaceMode;
  /** Host folder mounted at /workspace (mode `dir`); created by the caller. */
  workspaceDir: string;
  /** Host folder mounted at /run/wegent; created by the caller. */
  runDir: string;
  /** The main process; defaults to the sandbox agent. */
  command?: string[];
  /** Extra environment on top of the base environment (never the host's). */
  env?: Record<string, string>;
  /** Docker image reference; bwrap uses the executor rootfs. */
  image?: string;
}

/** A driver's name for one sandbox; serialisable so it can be stored in the record. */
export interface DriverHandle {
  driver: DriverName;
  sandboxId: string;
  /** Container id (docker) or state file path (bwrap). */
  ref: string;
  labels: SandboxSpec['labels'];
}

export interface DriverEnforcement {
  memory: boolean;
  cpu: boolean;
  pids: boolean;
  hardDiskQuota: boolean;
  noNetwork: boolean;
  publishPorts: boolean;
}

export interface DriverProbe {
  available: boolean;
  reason?: string;
  enforces: DriverEnforcement;
}

export interface DriverInspect {
  running: boolean;
  exitCode?: number;
  oomKilled: boolean;
}

export interface DriverEvent {
  handle: DriverHandle;
  type: 'exit' | 'oom';
  exitCode?: number;
}

/** A way to run isolated sandboxes on this host. */
export interface SandboxDriver {
  readonly name: DriverName;
  probe(): Promise<DriverProbe>;
  /** Created, not started. */
  create(spec: SandboxSpec): Promise<DriverHandle>;
  start(h: DriverHandle): Promise<void>;
  inspect(h: DriverHandle): Promise<DriverInspect>;
  /** SIGTERM everything, SIGKILL after graceMs; resolves when no process of the sandbox remains. */
  stop(h: DriverHandle, graceMs: number): Promise<void>;
  /** Removes the container / cgroup / state file; idempotent. */
  remove(h: DriverHandle): Promise<void>;
  /** Sandboxes this driver created on this host (labels / state files), for reaping. */
  listOwned(): Promise<DriverHandle[]>;
  events(): AsyncIterable<DriverEvent>;
  /** Host pids of every process of the sandbox (the host's view, for checks and kills). */
  hostPids(h: DriverHandle): Promise<number[]>;
  /** Output of the main process so far (bounded). */
  logs(h: DriverHandle): Promise<{ stdout: string; stderr: string }>;
  /** CPU time used so far, when the driver can tell. */
  stats(h: DriverHandle): Promise<{ cpuNs?: number }>;
}

export type SandboxState = 'Created' | 'Running' | 'Completed' | 'Failed' | 'Cleanup' | 'Deleted';

export type CompletedReason = 'IDLE_TIMEOUT' | 'LIFETIME_LIMIT' | 'TASK_DELETED' | 'USER_STOPPED' | 'EVICTED' | 'SHUTDOWN';
export type FailedReason =
  | 'DRIVER_ERROR' | 'IMAGE_MISSING' | 'CLONE_FAILED' | 'READY_TIMEOUT'
  | 'CRASHED' | 'OOM' | 'AGENT_UNRESPONSIVE' | 'KILL_TIMEOUT' | 'DISK_QUOTA';
export type StopReason = CompletedReason | FailedReason;

/** Thrown when a driver cannot do what was asked; `code` is a record `stateReason`. */
export class SandboxError extends Error {
  constructor(readonly code: FailedReason | 'SANDBOX_UNAVAILABLE' | 'SANDBOX_QUEUE_TIMEOUT' | 'CANCELLED' | 'NO_FREE_PORT', message: string) {
    super(message);
    this.name = 'SandboxError';
  }
}
