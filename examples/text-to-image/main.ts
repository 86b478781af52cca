/**
 * Text → image demo: SD-1.5 at 512², then the CFM stage to 1024² (or 2048²), shown side by side. Uses the public
 * API only (the bundle imports /dist/index.js). The default model is the bundled tiny one (noise-like pictures).
 */
import { fileListModelFiles, type PathedFile } from '../../src/index.js';
import { $, demoUi, droppedFiles, dropZone, PipelineLoader, setState, showError, showImage, stageProgress, wireRun, type ModelChoice } from '../shared/demo.js';

const ui = {
  ...demoUi('generate'),
  prompt: $<HTMLInputElement>('prompt'),
  seed: $<HTMLInputElement>('seed'),
  steps: $<HTMLInputElement>('steps'),
  cfmSteps: $<HTMLInputElement>('cfm-steps'),
  size: $<HTMLSelectElement>('size'),
  modelUrl: $<HTMLInputElement>('model-url'),
  modelFiles: $<HTMLInputElement>('model-files'),
  drop: $('drop'),
  lowres: $<HTMLCanvasElement>('lowres'),
  boosted: $<HTMLCanvasElement>('boosted'),
  boostedCaption: $('boosted-caption'),
  download: $<HTMLAnchorElement>('download'),
};

const loader = new PipelineLoader(ui);
let dropped: (File | PathedFile)[] | undefined;

/** Dropped or picked files win over the URL field; both empty: the bundled tiny model. */
function modelChoice(): ModelChoice {
  if (dropped) return { key: `files:${dropped.length}`, input: fileListModelFiles(dropped) };
  const url = ui.modelUrl.value.trim();
  return url ? { key: url, input: url } : { key: 'bundled tiny model' };
}

wireRun(ui, async (signal) => {
  ui.download.hidden = true;
  const pipe = await loader.get(modelChoice(), signal);
  setState(ui, 'running', 'starting…');
  const t0 = performance.now();
  const r = await pipe.generate({
    prompt: ui.prompt.value,
    seed: Number(ui.seed.value),
    steps: Number(ui.steps.value),
    size: Number(ui.size.value) as 512 | 1024 | 2048,
    // Empty: the CFM stage's own default number of ODE grid points.
    cfm: { steps: ui.cfmSteps.value ? Number(ui.cfmSteps.value) : undefined },
    signal,
    onProgress: stageProgress(ui),
  });
  showImage(ui.lowres, r.lowres);
  showImage(ui.boosted, r.image, ui.download);
  ui.boostedCaption.textContent = `${r.image.width}×${r.image.height} (seed ${r.seed})`;
  (window as unknown as { fmboostDemo: unknown }).fmboostDemo = { image: [r.image.width, r.image.height], lowres: [r.lowres.width, r.lowres.height], seed: r.seed };
  setState(ui, 'done', `done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
});

ui.modelFiles.addEventListener('change', () => {
  dropped = ui.modelFiles.files?.length ? Array.from(ui.modelFiles.files) : undefined;
  ui.drop.textContent = dropped ? `${dropped.length} files chosen` : 'drop model files here';
});
dropZone(
  ui.drop,
  async (data) => {
    dropped = await droppedFiles(data);
    ui.drop.textContent = `${dropped.length} files dropped`;
  },
  (e) => showError(ui, e),
);
setState(ui, 'idle', 'idle');
