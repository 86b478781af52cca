/**
 * Runs every shared FixtureCheck inside headless Chromium (WebGPU on SwiftShader) and asserts each passes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allChecks } from '../shared/all-checks.js';
import { describeReport } from '../shared/check-report.js';
import { startHarness, type Harness } from './harness.js';

describe('browser: shared fixture checks', () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness();
    await h.openPage('/test/browser/index.html');
    await h.page.waitForFunction(() => typeof window.runChecks === 'function', { timeout: 60_000 });
  });

  afterAll(async () => {
    if (h) {
      await h.screenshot('browser-checks').catch(() => {});
      await h.close();
    }
  });

  it('uses WebGPU: navigator.gpu gives a real GPUDevice with adapter info', async () => {
    const info = await h.evaluate(() => window.webgpuInfo());
    expect(info.hasNavigatorGpu).toBe(true);
    expect(info.isGPUDevice).toBe(true);
    expect(info.adapter.name.length).toBeGreaterThan(0);
    expect(info.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 2 ** 20);
  });

  it('runs on the SwiftShader adapter the harness flags select', async () => {
    const info = await h.evaluate(() => window.webgpuInfo());
    const text = `${info.adapter.vendor} ${info.adapter.architecture} ${info.adapter.description}`.toLowerCase();
    expect(text, JSON.stringify(info.adapter)).toContain('swiftshader');
  });

  it('the page bundle lists the same checks as test/shared/all-checks.ts', async () => {
    const names = await h.evaluate(() => window.checkNames());
    expect(names).toEqual(allChecks.map((c) => c.name));
  });

  it('the in-page comparison reports a wrong result and an unknown check as failures', async () => {
    const report = await h.evaluate(() => window.runChecks(['harness/must-fail', 'no/such-check']));
    const [wrong, unknown] = report.checks;
    expect(wrong!.ok).toBe(false);
    expect(wrong!.outputs[0]!.bad).toBe(1);
    expect(wrong!.outputs[0]!.first[0]).toBe('[3] got 4, want 4.5');
    expect(unknown!.ok).toBe(false);
    expect(unknown!.error).toMatch(/no such check/);
  });

  it.each(allChecks.map((c) => c.name))('%s', async (name) => {
    const report = await h.evaluate((n) => window.runChecks([n]), name);
    const r = report.checks[0]!;
    expect(r.name).toBe(name);
    expect(r.ok, describeReport(r)).toBe(true);
  });

  it('no page errors were logged', () => {
    expect(h.pageErrors).toEqual([]);
  });
});
