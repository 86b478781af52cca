/**
 * Browser leg of `npm run bench:peers`: bundled to dist/bench/peers-page.js (with tfjs and onnxruntime-web) and
 * opened by bench/peers.ts in headless Chromium through bench/peers/index.html. Query: ?quick=1&only=a,b
 */
import * as tf from '@tensorflow/tfjs-core';
import { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import * as ort from 'onnxruntime-web/webgpu';
import { createRuntime } from '../../src/runtime/gpu.js';
import { markdown, oursEngine, ortEngine, runSuite, tfjsEngine, type Engine } from './suite.js';

async function main(): Promise<void> {
  const q = new URLSearchParams(location.search);
  const quick = q.get('quick') === '1';
  const only = q.get('only')?.split(',').filter(Boolean);
  const log = (line: string) => {
    console.log(line);
    document.getElementById('log')!.textContent += line + '\n';
  };
  const rt = await createRuntime({ log });
  const engines: Engine[] = [oursEngine(rt)];
  const notes: string[] = [`${navigator.userAgent}`];
  try {
    engines.push(await tfjsEngine(tf, WebGPUBackend, rt.device));
  } catch (e) {
    notes.push(`tfjs-webgpu unavailable: ${(e as Error).message}`);
  }
  try {
    ort.env.wasm.wasmPaths = '/node_modules/onnxruntime-web/dist/';
    ort.env.wasm.numThreads = 1;
    ort.env.logLevel = 'error';
    ort.env.webgpu.device = rt.device;
    engines.push(ortEngine(ort, false, rt.device), ortEngine(ort, true, rt.device));
  } catch (e) {
    notes.push(`onnxruntime-web unavailable: ${(e as Error).message}`);
  }
  const report = await runSuite('browser (headless Chromium)', rt, engines, { quick, log, only }, notes);
  const peers = engines.slice(1).map((e) => e.name);
  window.__peers = { report, peers, markdown: markdown(report, peers) };
}

main().catch((e: unknown) => {
  window.__peers = { error: String((e as Error)?.stack ?? e) };
});
