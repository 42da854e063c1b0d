/** The infrastructure seams of DESIGN.md §4 and their embedded implementations. */
export { BusChannels, InProcessEventBus, globToRegExp, type BusHandler, type BusMessage, type EventBus, type InProcessEventBusOptions, type Subscription } from './event-bus.js';
export { MemoryCache, type Cache, type CounterValue, type MemoryCacheOptions, type StreamSlice } from './cache.js';
export type { AdmissionLimits, ClaimedJob, Job, JobQueue, JobRecord, RemoveOutcome, WaitingPosition } from './job-queue.js';
export { StorageJobQueue, type StorageJobQueueOptions } from './storage-job-queue.js';
