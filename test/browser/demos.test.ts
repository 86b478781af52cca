/**
 * The HTML demos in headless Chromium (SwiftShader) on the bundled tiny model: text-to-image at 1024² next to its
 * 512² source, Cancel, the upscaler, and how the model travels: Range requests only for the files a demo needs,
 * and a second load served from the Cache API (no weight bytes sent again). Screenshots go to test-output/.
 */
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, TEST_OUTPUT, startHarness, type Harness } from './harness.js';

const SLOW = 1_800_000;
const TINY = '/weights/tiny/';
const WEIGHTS = ['text_encoder/model.safetensors', 'unet/diffusion_pytorch_model.safetensors', 'vae/diffusion_pytorch_model.safetensors', 'cfm/cfm.safetensors'];
const TOKENIZER = '/weights/tokenizer/bpe_simple_vocab_16e6.txt.gz';

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
}, 300_000);
afterAll(() => h?.close());

async function setValue(id: string, value: string): Promise<void> {
  await h.page.$eval(`#${id}`, (el, v) => {
    (el as HTMLInputElement).value = v;
  }, value);
}

/** Waits until the demo leaves `from` states, and returns the state it reached. */
async function settle(states: string[]): Promise<string> {
  await h.page.waitForFunction((s: string[]) => s.includes(document.body.dataset.state ?? ''), { timeout: SLOW, polling: 250 }, states);
  return h.evaluate(() => document.body.dataset.state ?? '');
}

async function demoResult(): Promise<{ image: number[]; lowres?: number[] }> {
  return h.evaluate(() => (window as unknown as { fmboostDemo: { image: number[]; lowres?: number[] } }).fmboostDemo);
}

function fileSize(path: string): number {
  return statSync(join(REPO_ROOT, path)).size;
}

describe('text-to-image demo', () => {
  it('generates 1024² beside its 512² source, fetching the weights with Range requests', { timeout: SLOW }, async () => {
    h.server.resetCounters();
    await h.openPage('/examples/text-to-image/');
    await setValue('steps', '1');
    await setValue('cfm-steps', '2');
    await h.page.select('#size', '1024');
    await h.page.click('#generate');
    const state = await settle(['done', 'error']);
    expect(state, await h.evaluate(() => document.getElementById('error')!.textContent)).toBe('done');
    const r = await demoResult();
    expect(r.image).toEqual([1024, 1024]);
    expect(r.lowres).toEqual([512, 512]);
    const canvases = await h.evaluate(() => ['lowres', 'boosted'].map((id) => [(document.getElementById(id) as HTMLCanvasElement).width, (document.getElementById(id) as HTMLCanvasElement).height]));
    expect(canvases).toEqual([[512, 512], [1024, 1024]]);
    // The link appears once the canvas is encoded as a PNG (canvas.toBlob is asynchronous).
    await h.page.waitForFunction(() => !(document.getElementById('download') as HTMLAnchorElement).hidden, { timeout: 60_000 });
    expect(await h.evaluate(() => (document.getElementById('download') as HTMLAnchorElement).href)).toMatch(/^blob:/);
    await h.screenshot('demo-text-to-image');

    for (const f of WEIGHTS) {
      const path = TINY + f;
      const requests = h.server.requests(path);
      expect(requests.length, path).toBeGreaterThan(0);
      // Every read is a Range request (the one request without is the HEAD size probe), and no byte is fetched twice.
      expect(requests.filter((r) => !r.startsWith('bytes=')).length, `${path}: ${requests.join(' | ')}`).toBeLessThanOrEqual(1);
      expect(requests.filter((r) => r.startsWith('bytes=')).length).toBeGreaterThan(0);
      expect(h.server.bytesServed(path)).toBeLessThanOrEqual(fileSize(path));
    }
    expect(h.server.bytesServed(TOKENIZER)).toBe(fileSize(TOKENIZER));
    expect(h.pageErrors).toEqual([]);
  });

  it('loads the model from the Cache API the second time (no weight bytes served)', { timeout: SLOW }, async () => {
    h.server.resetCounters();
    await h.openPage('/examples/text-to-image/');
    await setValue('steps', '1');
    await h.page.select('#size', '512');
    await h.page.click('#generate');
    expect(await settle(['done', 'error'])).toBe('done');
    expect((await demoResult()).image).toEqual([512, 512]);
    for (const f of WEIGHTS) expect(h.server.bytesServed(TINY + f), f).toBe(0);
    expect(h.server.bytesServed(TOKENIZER)).toBe(0);
  });

  it('Cancel stops a run and the page stays usable', { timeout: SLOW }, async () => {
    await setValue('steps', '6');
    await h.page.select('#size', '1024');
    await h.page.click('#generate');
    await h.page.waitForFunction(() => /^(denoise|decode-lowres|upsample|refine) /.test(document.getElementById('status')!.textContent ?? ''), { timeout: SLOW, polling: 50 });
    await h.page.click('#cancel');
    expect(await settle(['done', 'cancelled', 'error'])).toBe('cancelled');
    expect(await h.evaluate(() => (document.getElementById('generate') as HTMLButtonElement).disabled)).toBe(false);
    await h.screenshot('demo-text-to-image-cancelled');
  });
});

describe('upscale demo', () => {
  it('doubles a dropped picture, downloading only the VAE and the CFM stage', { timeout: SLOW }, async () => {
    mkdirSync(TEST_OUTPUT, { recursive: true });
    const input = join(TEST_OUTPUT, 'demo-upscale-input.png');
    const png = new PNG({ width: 70, height: 48 });
    for (let y = 0; y < 48; y++) {
      for (let x = 0; x < 70; x++) {
        const i = (y * 70 + x) * 4;
        png.data[i] = x * 3;
        png.data[i + 1] = y * 5;
        png.data[i + 2] = (x ^ y) * 4;
        png.data[i + 3] = 255;
      }
    }
    writeFileSync(input, PNG.sync.write(png));
    await h.openPage('/examples/upscale/');
    // A cold cache, so the byte counters show what this demo downloads.
    await h.evaluate(() => caches.delete('fmboost-models-v1'));
    h.server.resetCounters();
    const file = await h.page.$('#file');
    await (file as import('puppeteer-core').ElementHandle<HTMLInputElement>).uploadFile(input);
    expect(await settle(['ready', 'error'])).toBe('ready');
    expect(await h.evaluate(() => document.getElementById('input-caption')!.textContent)).toMatch(/^64×48 \(cropped from 70×48\)/);
    await setValue('cfm-steps', '2');
    await h.page.click('#upscale');
    expect(await settle(['done', 'error'])).toBe('done');
    expect((await demoResult()).image).toEqual([128, 96]);
    await h.screenshot('demo-upscale');
    expect(h.server.bytesServed(TINY + 'vae/diffusion_pytorch_model.safetensors')).toBeGreaterThan(0);
    expect(h.server.bytesServed(TINY + 'cfm/cfm.safetensors')).toBeGreaterThan(0);
    expect(h.server.bytesServed(TINY + 'text_encoder/model.safetensors')).toBe(0);
    expect(h.server.bytesServed(TINY + 'unet/diffusion_pytorch_model.safetensors')).toBe(0);
    expect(h.server.bytesServed(TOKENIZER)).toBe(0);
    expect(h.pageErrors).toEqual([]);
  });
});
