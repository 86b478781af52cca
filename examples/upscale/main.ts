/**
 * Upscaler demo: a picture → ×2 or ×4 through VAE encode → CFM → VAE decode. Loads only the VAE and the CFM stage
 * of the model (no text encoder or UNet download). Public API only; default model: the bundled tiny one.
 */
import { $, demoUi, dropZone, PipelineLoader, setState, showError, showImage, stageProgress, wireRun } from '../shared/demo.js';

const ui = {
  ...demoUi('upscale'),
  drop: $('drop'),
  file: $<HTMLInputElement>('file'),
  factor: $<HTMLSelectElement>('factor'),
  cfmSteps: $<HTMLInputElement>('cfm-steps'),
  input: $<HTMLCanvasElement>('input'),
  inputCaption: $('input-caption'),
  output: $<HTMLCanvasElement>('output'),
  outputCaption: $('output-caption'),
  download: $<HTMLAnchorElement>('download'),
};

const loader = new PipelineLoader(ui, { components: 'upscale' });
let picture: ImageData | undefined;

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
  ui.run.disabled = false;
  setState(ui, 'ready', 'ready');
}

wireRun(ui, async (signal) => {
  if (!picture) return;
  const pipe = await loader.get({ key: 'bundled tiny model (VAE and CFM stage)' }, signal);
  setState(ui, 'running', 'upscaling…');
  const r = await pipe.upscale(picture, {
    factor: Number(ui.factor.value) as 2 | 4,
    // Empty: the CFM stage's own default number of ODE grid points.
    cfm: { steps: ui.cfmSteps.value ? Number(ui.cfmSteps.value) : undefined },
    signal,
    onProgress: stageProgress(ui),
  });
  showImage(ui.output, r.image, ui.download);
  ui.outputCaption.textContent = `${r.image.width}×${r.image.height}`;
  (window as unknown as { fmboostDemo: unknown }).fmboostDemo = { image: [r.image.width, r.image.height] };
  setState(ui, 'done', 'done');
});

const fail = (e: unknown): void => showError(ui, e);
ui.file.addEventListener('change', () => {
  const f = ui.file.files?.[0];
  if (f) setPicture(f).catch(fail);
});
dropZone(
  ui.drop,
  async (data) => {
    const f = data.files[0];
    if (f) await setPicture(f);
  },
  fail,
);
setState(ui, 'idle', 'drop a picture');
