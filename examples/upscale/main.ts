/**
 * Upscaler demo: a picture → ×2 or ×4 through VAE encode → CFM → VAE decode. Loads only the VAE and the CFM stage
 * of the model (no text encoder or UNet download). Public API only; default model: the bundled tiny one.
 */
import { createRuntime, FMBoostPipeline, type Runtime } from '../../src/index.js';

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const ui = {
  drop: $('drop'),
  file: $<HTMLInputElement>('file'),
  factor: $<HTMLSelectElement>('factor'),
  cfmSteps: $<HTMLInputElement>('cfm-steps'),
  upscale: $<HTMLButtonElement>('upscale'),
  cancel: $<HTMLButtonElement>('cancel'),
  progress: $<HTMLProgressElement>('progress'),
  status: $('status'),
  error: $('error'),
  input: $<HTMLCanvasElement>('input'),
  inputCaption: $('input-caption'),
  output: $<HTMLCanvasElement>('output'),
  outputCaption: $('output-caption'),
  download: $<HTMLAnchorElement>('download'),
};

function setState(state: 'idle' | 'loading' | 'ready' | 'running' | 'done' | 'cancelled' | 'error', text: string): void {
  document.body.dataset.state = state;
  ui.status.textContent = text;
}

let rt: Runtime | undefined;
let pipe: FMBoostPipeline | undefined;
let picture: ImageData | undefined;
let running: AbortController | undefined;

/** Draws the picture cropped to edges that are multiples of 8 (what the VAE needs) and keeps its pixels. */
async function setPicture(file: File): Promise<void> {
  const bmp = await createImageBitmap(file);
  const W = bmp.width - (bmp.width % 8);
  const H = bmp.height - (bmp.height % 8);
  if (W === 0 || H === 0) throw new Error(`the picture is ${bmp.width}×${bmp.height}; at least 8×8 is needed`);
  ui.input.width = W;
  ui.input.height = H;
  const ctx = ui.input.getContext('2d')!;
  ctx.drawImage(bmp, 0, 0);
  picture = ctx.getImageData(0, 0, W, H);
  ui.inputCaption.textContent = `${W}×${H}${W !== bmp.width || H !== bmp.height ? ` (cropped from ${bmp.width}×${bmp.height})` : ''}`;
  ui.upscale.disabled = false;
  setState('ready', 'ready');
}

async function upscale(): Promise<void> {
  if (!picture) return;
  running = new AbortController();
  const { signal } = running;
  ui.upscale.disabled = true;
  ui.cancel.disabled = false;
  ui.error.textContent = '';
  try {
    if (!pipe) {
      rt ??= await createRuntime();
      setState('loading', 'loading the VAE and CFM stage…');
      pipe = await FMBoostPipeline.load(rt, {
        components: 'upscale',
        signal,
        onProgress: (p) => {
          ui.progress.max = Math.max(1, p.totalBytes);
          ui.progress.value = p.loadedBytes;
        },
      });
    }
    setState('running', 'upscaling…');
    const r = await pipe.upscale(picture, {
      factor: Number(ui.factor.value) as 2 | 4,
      // Empty: the CFM stage's own default number of ODE grid points.
      cfm: { steps: ui.cfmSteps.value ? Number(ui.cfmSteps.value) : undefined },
      signal,
      onProgress: (stage, step, total) => {
        ui.progress.max = Math.max(1, total);
        ui.progress.value = step;
        ui.status.textContent = `${stage} ${step}/${total}`;
      },
    });
    ui.output.width = r.image.width;
    ui.output.height = r.image.height;
    ui.output.getContext('2d')!.putImageData(new ImageData(new Uint8ClampedArray(r.image.data), r.image.width, r.image.height), 0, 0);
    ui.outputCaption.textContent = `${r.image.width}×${r.image.height}`;
    ui.output.toBlob((blob) => {
      if (!blob) return;
      ui.download.href = URL.createObjectURL(blob);
      ui.download.hidden = false;
    });
    (window as unknown as { fmboostDemo: unknown }).fmboostDemo = { image: [r.image.width, r.image.height] };
    setState('done', 'done');
  } catch (e) {
    if (signal.aborted) setState('cancelled', 'cancelled');
    else {
      ui.error.textContent = e instanceof Error ? e.message : String(e);
      setState('error', 'failed');
    }
  } finally {
    running = undefined;
    ui.upscale.disabled = false;
    ui.cancel.disabled = true;
  }
}

function fail(e: unknown): void {
  ui.error.textContent = e instanceof Error ? e.message : String(e);
  setState('error', 'failed');
}

ui.file.addEventListener('change', () => {
  const f = ui.file.files?.[0];
  if (f) setPicture(f).catch(fail);
});
ui.drop.addEventListener('dragover', (e) => {
  e.preventDefault();
  ui.drop.classList.add('over');
});
ui.drop.addEventListener('dragleave', () => ui.drop.classList.remove('over'));
ui.drop.addEventListener('drop', (e) => {
  e.preventDefault();
  ui.drop.classList.remove('over');
  const f = e.dataTransfer?.files[0];
  if (f) setPicture(f).catch(fail);
});
ui.upscale.addEventListener('click', () => void upscale());
ui.cancel.addEventListener('click', () => running?.abort());
setState('idle', 'drop a picture');
