/**
 * The in-page side of the browser suite (bundled to dist/test/page.js, loaded by test/browser/index.html).
 * It runs the same FixtureChecks as Node, on the library's Runtime over navigator.gpu, compares inside the
 * page and hands JSON reports back to test/browser/ops.test.ts.
 */
import { setF16Compute } from '../../src/ops/gemm-compute.js';
import { createRuntime } from '../../src/runtime/gpu.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { allChecks } from '../shared/all-checks.js';
import { describeReport, runCheck, type CheckReport } from '../shared/check-report.js';
import { parseFixture, type FixtureCheck, type FixtureFile, type FixtureLoader } from '../shared/fixture-check.js';

export interface AdapterReport {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallback: boolean;
  /** Runtime.adapterName */
  name: string;
}

export interface PageReport {
  adapter: AdapterReport;
  userAgent: string;
  checks: CheckReport[];
  ms: number;
}

export interface WebGPUReport {
  hasNavigatorGpu: boolean;
  isGPUDevice: boolean;
  adapter: AdapterReport;
  features: string[];
  maxStorageBufferBindingSize: number;
}

/**
 * A control that must be reported as failing: it proves the in-page comparison can fail. Only run when
 * asked for by name.
 */
const mustFail: FixtureCheck = {
  name: 'harness/must-fail',
  async run(rt) {
    const t = rt.upload([1, 2, 3, 4], [4]);
    const actual = await rt.read(t);
    t.dispose();
    return { actual, expected: Float32Array.of(1, 2, 3, 4.5), atol: 1e-6, rtol: 0 };
  },
};

const fixtures = new Map<string, Promise<FixtureFile>>();
const load: FixtureLoader = (file) => {
  let hit = fixtures.get(file);
  if (!hit) {
    hit = fetch(`/test/fixtures/${file}`).then(async (res) => {
      if (!res.ok) throw new Error(`fixture ${file}: HTTP ${res.status}`);
      return parseFixture(await res.arrayBuffer());
    });
    fixtures.set(file, hit);
  }
  return hit;
};

let runtime: Promise<Runtime> | null = null;
function getRuntime(): Promise<Runtime> {
  // f16 compute (GPUs with shader-f16) off: the fixture checks use f32 tolerances.
  runtime ??= createRuntime({ log: (m) => console.info(m) }).then((rt) => {
    setF16Compute(rt, false);
    return rt;
  });
  return runtime;
}

function adapterReport(rt: Runtime): AdapterReport {
  return { ...rt.adapterInfo, name: rt.adapterName };
}

/** Runs the named checks (all of allChecks when omitted). Unknown names are reported as failed checks. */
async function runChecks(names?: string[]): Promise<PageReport> {
  const t0 = performance.now();
  const rt = await getRuntime();
  const known = [...allChecks, mustFail];
  const selected: (FixtureCheck | string)[] = names ? names.map((n) => known.find((c) => c.name === n) ?? n) : allChecks;
  const checks: CheckReport[] = [];
  for (const c of selected) {
    if (typeof c === 'string') checks.push({ name: c, ok: false, ms: 0, outputs: [], error: 'no such check in test/shared/all-checks.ts' });
    else checks.push(await runCheck(rt, c, load));
  }
  render(checks);
  return { adapter: adapterReport(rt), userAgent: navigator.userAgent, checks, ms: performance.now() - t0 };
}

async function webgpuInfo(): Promise<WebGPUReport> {
  const hasNavigatorGpu = typeof navigator !== 'undefined' && 'gpu' in navigator && Boolean(navigator.gpu);
  const rt = await getRuntime();
  return {
    hasNavigatorGpu,
    isGPUDevice: typeof GPUDevice !== 'undefined' && rt.device instanceof GPUDevice,
    adapter: adapterReport(rt),
    features: [...rt.device.features].sort(),
    maxStorageBufferBindingSize: rt.device.limits.maxStorageBufferBindingSize,
  };
}

/** Latest report per check across runChecks calls, so a screenshot shows the whole suite. */
const shown = new Map<string, CheckReport>();

function render(checks: CheckReport[]): void {
  for (const c of checks) shown.set(c.name, c);
  const pre = document.getElementById('results');
  if (!pre) return;
  pre.replaceChildren(
    ...[...shown.values()].map((c) => {
      const line = document.createElement('div');
      line.className = c.ok ? 'ok' : 'bad';
      line.textContent = `${c.ok ? 'PASS' : 'FAIL'} ${c.ms.toFixed(0).padStart(6)} ms  ${describeReport(c)}`;
      return line;
    }),
  );
}

declare global {
  interface Window {
    runChecks: typeof runChecks;
    checkNames: () => string[];
    webgpuInfo: typeof webgpuInfo;
  }
}

window.runChecks = runChecks;
window.checkNames = () => allChecks.map((c) => c.name);
window.webgpuInfo = webgpuInfo;
const status = document.getElementById('status');
if (status) status.textContent = `ready: ${allChecks.length} checks`;
