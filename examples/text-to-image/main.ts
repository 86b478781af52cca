/**
 * Text → image demo: SD-1.5 at 512², then the CFM stage to 1024² (or 2048²), shown side by side. Uses the public
 * API only (the bundle imports /dist/index.js). The default model is the bundled tiny one (noise-like pictures).
 */
import { createRuntime, FMBoostPipeline, fileListModelFiles, type PathedFile, type RgbaResult, type Runtime } from '../../src/index.js';

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const ui = {
  prompt: $<HTMLInputElement>('prompt'),
  seed: $<HTMLInputElement>('seed'),
  steps: $<HTMLInputElement>('steps'),
  cfmSteps: $<HTMLInputElement>('cfm-steps'),
  size: $<HTMLSelectElement>('size'),
  modelUrl: $<HTMLInputElement>('model-url'),
  modelFiles: $<HTMLInputElement>('model-files'),
  drop: $('drop'),
  generate: $<HTMLButtonElement>('generate'),
  cancel: $<HTMLButtonElement>('cancel'),
  progress: $<HTMLProgressElement>('progress'),
  status: $('status'),
  error: $('error'),
  lowres: $<HTMLCanvasElement>('lowres'),
  boosted: $<HTMLCanvasElement>('boosted'),
  boostedCaption: $('boosted-caption'),
  download: $<HTMLAnchorElement>('download'),
};

/** What the page is doing, for people (status line) and for tests (body[data-state]). */
function setState(state: 'idle' | 'loading' | 'running' | 'done' | 'cancelled' | 'error', text: string): void {
  document.body.dataset.state = state;
  ui.status.textContent = text;
}

let rt: Runtime | undefined;
let loaded: { key: string; pipe: FMBoostPipeline } | undefined;
let dropped: (File | PathedFile)[] | undefined;
let running: AbortController | undefined;

async function pipeline(signal: AbortSignal): Promise<FMBoostPipeline> {
  const url = ui.modelUrl.value.trim();
  const key = dropped ? `files:${dropped.length}` : url || 'bundled tiny model';
  if (loaded?.key === key) return loaded.pipe;
  loaded?.pipe.dispose();
  loaded = undefined;
  rt ??= await createRuntime();
  setState('loading', `loading ${key}…`);
  const pipe = await FMBoostPipeline.load(rt, {
    model: dropped ? fileListModelFiles(dropped) : url || undefined,
    signal,
    onProgress: (p) => {
      ui.progress.max = Math.max(1, p.totalBytes);
      ui.progress.value = p.loadedBytes;
      ui.status.textContent = `loading ${(p.loadedBytes / 2 ** 20).toFixed(1)} / ${(p.totalBytes / 2 ** 20).toFixed(1)} MiB`;
    },
  });
  loaded = { key, pipe };
  return pipe;
}

function draw(canvas: HTMLCanvasElement, img: RgbaResult): void {
  canvas.width = img.width;
  canvas.height = img.height;
  canvas.getContext('2d')!.putImageData(new ImageData(new Uint8ClampedArray(img.data), img.width, img.height), 0, 0);
}

async function generate(): Promise<void> {
  running = new AbortController();
  const { signal } = running;
  ui.generate.disabled = true;
  ui.cancel.disabled = false;
  ui.error.textContent = '';
  ui.download.hidden = true;
  try {
    const pipe = await pipeline(signal);
    setState('running', 'starting…');
    const t0 = performance.now();
    const r = await pipe.generate({
      prompt: ui.prompt.value,
      seed: Number(ui.seed.value),
      steps: Number(ui.steps.value),
      size: Number(ui.size.value) as 512 | 1024 | 2048,
      // Empty: the CFM stage's own default number of ODE grid points.
      cfm: { steps: ui.cfmSteps.value ? Number(ui.cfmSteps.value) : undefined },
      signal,
      onProgress: (stage, step, total) => {
        ui.progress.max = Math.max(1, total);
        ui.progress.value = step;
        ui.status.textContent = `${stage} ${step}/${total}`;
      },
    });
    draw(ui.lowres, r.lowres);
    draw(ui.boosted, r.image);
    ui.boostedCaption.textContent = `${r.image.width}×${r.image.height} (seed ${r.seed})`;
    ui.boosted.toBlob((blob) => {
      if (!blob) return;
      if (ui.download.href) URL.revokeObjectURL(ui.download.href);
      ui.download.href = URL.createObjectURL(blob);
      ui.download.hidden = false;
    });
    (window as unknown as { fmboostDemo: unknown }).fmboostDemo = { image: [r.image.width, r.image.height], lowres: [r.lowres.width, r.lowres.height], seed: r.seed };
    setState('done', `done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } catch (e) {
    if (signal.aborted) setState('cancelled', 'cancelled');
    else {
      ui.error.textContent = e instanceof Error ? e.message : String(e);
      setState('error', 'failed');
    }
  } finally {
    running = undefined;
    ui.generate.disabled = false;
    ui.cancel.disabled = true;
  }
}

/** Files of a dropped folder with their relative paths (File objects from entries carry none). */
async function entryFiles(entry: FileSystemEntry, prefix = ''): Promise<PathedFile[]> {
  if (entry.isFile) {
    const file = await new Promise<File>((ok, fail) => (entry as FileSystemFileEntry).file(ok, fail));
    return [{ path: prefix + entry.name, file }];
  }
  const reader = (entry as FileSystemDirectoryEntry).createReader();
  const out: PathedFile[] = [];
  for (;;) {
    const batch = await new Promise<FileSystemEntry[]>((ok, fail) => reader.readEntries(ok, fail));
    if (batch.length === 0) return out;
    for (const e of batch) out.push(...(await entryFiles(e, `${prefix}${entry.name}/`)));
  }
}

ui.generate.addEventListener('click', () => void generate());
ui.cancel.addEventListener('click', () => running?.abort());
ui.modelFiles.addEventListener('change', () => {
  dropped = ui.modelFiles.files?.length ? Array.from(ui.modelFiles.files) : undefined;
  ui.drop.textContent = dropped ? `${dropped.length} files chosen` : 'drop model files here';
});
ui.drop.addEventListener('dragover', (e) => {
  e.preventDefault();
  ui.drop.classList.add('over');
});
ui.drop.addEventListener('dragleave', () => ui.drop.classList.remove('over'));
ui.drop.addEventListener('drop', async (e) => {
  e.preventDefault();
  ui.drop.classList.remove('over');
  const entries = [...(e.dataTransfer?.items ?? [])].map((i) => i.webkitGetAsEntry()).filter((x): x is FileSystemEntry => x !== null);
  dropped = (await Promise.all(entries.map((x) => entryFiles(x)))).flat();
  ui.drop.textContent = `${dropped.length} files dropped`;
});
setState('idle', 'idle');
