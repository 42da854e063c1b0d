import type { ResolvedRuntimeConfig } from '../run/runtime-config.js';
import type { HostResolver } from '../network/address-policy.js';
import { calculatorTool } from './calculator.js';
import type { RuntimeTool } from './tool.js';
import { sandboxTools, type SandboxLease } from './sandbox-tools.js';
import { webFetchTool } from './web-fetch.js';

/** The built-in tools a Ghost gets when its `tools` list is absent (resources.md §10.1). */
export const DEFAULT_GHOST_TOOLS = ['calculator', 'web_fetch'] as const;

/**
 * The built-in tools of a member turn, in the Ghost's order. `sandbox` expands to exec, read_file,
 * write_file, list_files when the turn has a sandbox lease; a Code turn gets them whatever the list says
 * (at the end when unlisted). Unknown names are ignored (the server validated them at write time).
 */
export function builtinTools(ghostTools: readonly string[] | undefined, config: ResolvedRuntimeConfig, resolver?: HostResolver, sandbox?: SandboxLease): RuntimeTool[] {
  const names = ghostTools ?? DEFAULT_GHOST_TOOLS;
  const tools: RuntimeTool[] = [];
  for (const raw of names) {
    const name = raw.toLowerCase();
    if (tools.some((t) => t.name === name)) continue;
    if (name === 'sandbox') {
      if (sandbox && !tools.some((t) => t.name === 'exec')) tools.push(...sandboxTools(sandbox));
    } else if (name === 'calculator') tools.push(calculatorTool() as RuntimeTool);
    else if (name === 'web_fetch' && config.fetchEnabled) {
      tools.push(
        webFetchTool({
          privateHostsAllow: config.privateHostsAllow,
          denyHosts: config.fetchDenyHosts,
          maxBytes: config.fetchMaxBytes,
          timeoutMs: config.fetchTimeoutMs,
          version: config.version,
          resolver,
        }) as RuntimeTool,
      );
    }
  }
  if (sandbox && !tools.some((t) => t.name === 'exec')) tools.push(...sandboxTools(sandbox));
  return tools;
}
