import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The Prometheus metrics of api.md §9, one registry per server. Labels never carry user ids, task
 * ids, names of private resources or message text.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly httpRequests = new Counter({ name: 'http_requests_total', help: 'HTTP requests answered', labelNames: ['method', 'route', 'status'] as const, registers: [this.registry] });
  readonly httpDuration = new Histogram({ name: 'http_request_duration_seconds', help: 'HTTP request duration', labelNames: ['method', 'route'] as const, buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers: [this.registry] });
  readonly socketConnections = new Gauge({ name: 'wegent_socket_connections', help: 'Open Socket.IO connections', registers: [this.registry] });
  readonly runs = new Counter({ name: 'wegent_runs_total', help: 'Runs that reached a terminal status', labelNames: ['status', 'mode'] as const, registers: [this.registry] });
  readonly turns = new Counter({ name: 'wegent_turns_total', help: 'Turns that ended', labelNames: ['status', 'shell_type'] as const, registers: [this.registry] });
  readonly timeToFirstToken = new Histogram({ name: 'wegent_time_to_first_token_seconds', help: 'From turn start to its first text delta', labelNames: ['protocol'] as const, buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30], registers: [this.registry] });
  readonly tokens = new Counter({ name: 'wegent_tokens_total', help: 'Model tokens', labelNames: ['direction', 'protocol', 'model_id'] as const, registers: [this.registry] });
  readonly modelErrors = new Counter({ name: 'wegent_model_errors_total', help: 'Turns failed by a runtime error code', labelNames: ['code'] as const, registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
