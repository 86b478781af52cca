/**
 * What both demos share: one runtime, loading a pipeline once per model choice with a byte progress bar, the
 * Run/Cancel cycle with its page state, showing a result with a download link, and drop zones. Public API only
 * (scripts/build.mjs bundles this into each demo and points '../../src/index.js' at the built /dist/index.js).
 */
import { createRuntime, FMBoostPipeline, type FMBoostLoadOptions, type GenerateStage, type ModelInput, type PathedFile, type RgbaResult, type Runtime } from '../../src/index.js';

export const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

export type DemoState = 'idle' | 'loading' | 'ready' | 'running' | 'done' | 'cancelled' | 'error';

/** The elements every demo page has. */
export interface DemoUi {
  run: HTMLButtonElement;
  cancel: HTMLButtonElement;
  progress: HTMLProgressElement;
  status: HTMLElement;
  error: HTMLElement;
}

/** The common elements by their ids: `run` is the page's action button (Generate, Upscale). */
export function demoUi(runId: string): DemoUi {
  return { run: $<HTMLButtonElement>(runId), cancel: $<HTMLButtonElement>('cancel'), progress: $<HTMLProgressElement>('progress'), status: $('status'), error: $('error') };
}

/** What the page is doing, for people (status line) and for tests (body[data-state]). */
export function setState(ui: DemoUi, state: DemoState, text: string): void {
  document.body.dataset.state = state;
  ui.status.textContent = text;
}

export function showProgress(ui: DemoUi, value: number, max: number, text?: string): void {
  ui.progress.max = Math.max(1, max);
  ui.progress.value = value;
  if (text !== undefined) ui.status.textContent = text;
}

/** An onProgress for generate/upscale: the bar follows the steps of the current stage. */
export function stageProgress(ui: DemoUi): (stage: GenerateStage, step: number, total: number) => void {
  return (stage, step, total) => showProgress(ui, step, total, `${stage} ${step}/${total}`);
}

/** A model choice: what to load and a key that says when it changed. Undefined input: the bundled tiny model. */
export interface ModelChoice {
  key: string;
  input?: ModelInput;
}

/**
 * Keeps one runtime and the pipeline of the last model choice: `get` loads only when the choice changed (the old
 * pipeline's weights are freed first), reporting downloaded bytes on the page.
 */
export class PipelineLoader {
  private rt: Runtime | undefined;
  private loaded: { key: string; pipe: FMBoostPipeline } | undefined;

  constructor(
    private readonly ui: DemoUi,
    private readonly options: Omit<FMBoostLoadOptions, 'model' | 'signal' | 'onProgress'> = {},
  ) {}

  async get(choice: ModelChoice, signal: AbortSignal): Promise<FMBoostPipeline> {
    if (this.loaded?.key === choice.key) return this.loaded.pipe;
    this.loaded?.pipe.dispose();
    this.loaded = undefined;
    this.rt ??= await createRuntime();
    setState(this.ui, 'loading', `loading ${choice.key}…`);
    const pipe = await FMBoostPipeline.load(this.rt, {
      ...this.options,
      model: choice.input,
      signal,
      onProgress: (p) => showProgress(this.ui, p.loadedBytes, p.totalBytes, `loading ${(p.loadedBytes / 2 ** 20).toFixed(1)} / ${(p.totalBytes / 2 ** 20).toFixed(1)} MiB`),
    });
    this.loaded = { key: choice.key, pipe };
    return pipe;
  }
}

/**
 * Wires the run and Cancel buttons: a click runs `task` with a fresh AbortSignal; while it runs only Cancel is
 * enabled; it ends in 'cancelled' when aborted, 'error' (message shown) when it threw, else the task set the state.
 */
export function wireRun(ui: DemoUi, task: (signal: AbortSignal) => Promise<void>): void {
  let running: AbortController | undefined;
  ui.run.addEventListener('click', async () => {
    if (running) return;
    running = new AbortController();
    const { signal } = running;
    ui.run.disabled = true;
    ui.cancel.disabled = false;
    ui.error.textContent = '';
    try {
      await task(signal);
    } catch (e) {
      if (signal.aborted) setState(ui, 'cancelled', 'cancelled');
      else showError(ui, e);
    } finally {
      running = undefined;
      ui.run.disabled = false;
      ui.cancel.disabled = true;
    }
  });
  ui.cancel.addEventListener('click', () => running?.abort());
}

export function showError(ui: DemoUi, e: unknown): void {
  ui.error.textContent = e instanceof Error ? e.message : String(e);
  setState(ui, 'error', 'failed');
}

/** Draws an RGBA result on a canvas; with a link, offers the canvas as a PNG download. */
export function showImage(canvas: HTMLCanvasElement, img: RgbaResult, download?: HTMLAnchorElement): void {
  canvas.width = img.width;
  canvas.height = img.height;
  canvas.getContext('2d')!.putImageData(new ImageData(new Uint8ClampedArray(img.data), img.width, img.height), 0, 0);
  if (!download) return;
  download.hidden = true;
  canvas.toBlob((blob) => {
    if (!blob) return;
    if (download.href) URL.revokeObjectURL(download.href);
    download.href = URL.createObjectURL(blob);
    download.hidden = false;
  });
}

/** Makes `el` a drop target: highlighted while something is dragged over it, `onDrop` gets the drop's DataTransfer. */
export function dropZone(el: HTMLElement, onDrop: (data: DataTransfer) => void | Promise<void>, onError: (e: unknown) => void): void {
  el.addEventListener('dragover', (e) => {
    e.preventDefault();
    el.classList.add('over');
  });
  el.addEventListener('dragleave', () => el.classList.remove('over'));
  el.addEventListener('drop', (e) => {
    e.preventDefault();
    el.classList.remove('over');
    if (e.dataTransfer) Promise.resolve(onDrop(e.dataTransfer)).catch(onError);
  });
}

/** Files of a dropped folder with their relative paths (File objects from entries carry none). */
export async function droppedFiles(data: DataTransfer): Promise<PathedFile[]> {
  const entries = [...data.items].map((i) => i.webkitGetAsEntry()).filter((x): x is FileSystemEntry => x !== null);
  return (await Promise.all(entries.map((x) => entryFiles(x)))).flat();
}

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
