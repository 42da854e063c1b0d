export * from './types.js';
export * from './limits.js';
export { BwrapDriver, type BwrapDriverOptions } from './drivers/bwrap.js';
export { DockerDriver, type DockerDriverOptions } from './drivers/docker.js';
export { runToCompletion, type CompletedRun } from './drivers/run-to-completion.js';
export { detectCgroupLayout, createSandboxCgroup, removeSandboxCgroup, procsFiles, type CgroupLayout } from './drivers/cgroup.js';
export { buildExecutorRootfs, readImageManifest, hashTree, type ExecutorRootfs, type ImageManifest } from './image/rootfs.js';
export { ensureExecutorImage, pruneExecutorImages, executorImageRef, EXECUTOR_REPOSITORY } from './image/docker-image.js';
export { PortAllocator, InMemoryPortClaimStore, type PortClaimStore } from './ports/port-allocator.js';
export { FairScheduler, DEFAULT_SCHEDULER_LIMITS, type SchedulerLimits, type Slot, type QueuedEntry } from './pool/fair-scheduler.js';
export { InMemorySandboxRecordStore, type SandboxRecord, type SandboxRecordStore, type SandboxRecordFilter } from './pool/records.js';
export { SandboxPool, type SandboxPoolOptions, type AcquireRequest, type SandboxAgentHandle } from './pool/sandbox-pool.js';
export * as agentClient from './agent-client.js';
export {
  AgentCallError, ExecCancelledError, type AgentTarget, type ExecRequest, type ExecResult, type ExecOptions,
  type ReadFileRequest, type ReadFileResult, type WriteFileRequest, type WriteFileResult, type ListFilesRequest, type ListFilesResult,
} from './agent-client.js';
export { selectSandboxDriver, type DriverChoice } from './drivers/select.js';
export { startStdio, stopStdio, stdioStatus, type StdioConfig, type StdioStarted, type StdioStatus } from './agent-client.js';
export {
  ModelGateway, GATEWAY_MAX_BODY_BYTES, GATEWAY_MAX_CONCURRENT, GATEWAY_MAX_REQUESTS,
  type GatewayModel, type GatewayUsageRecord, type ModelGrant, type ModelGatewayOptions,
} from './gateway/model-gateway.js';
export { checkAddress, AddressRefusedError, METADATA_HOSTS, type AddressRules } from './gateway/address.js';
export { UsageReader, type TokenUsage } from './gateway/usage.js';
export { cloneWorkspace, checkGitUrl, redactUrl, type WorkspaceSpec, type CloneOptions } from './workspace/git-clone.js';
