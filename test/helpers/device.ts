import { createNodeRuntime } from '../../src/node/gpu.js';
import type { Runtime } from '../../src/runtime/runtime.js';

let shared: Promise<Runtime> | null = null;

/** One runtime per test file (vitest forks a process per file). Logs are silenced. */
export function testRuntime(): Promise<Runtime> {
  shared ??= createNodeRuntime({ log: () => {}, memoryBudgetBytes: 8 * 2 ** 30 });
  return shared;
}

/** A fresh runtime, for tests that destroy or exhaust theirs. */
export function freshRuntime(options: Parameters<typeof createNodeRuntime>[0] = {}): Promise<Runtime> {
  return createNodeRuntime({ log: () => {}, ...options });
}
