import { readFileSync } from 'node:fs';
import { bytesSource } from '../../src/io/byte-source.js';
import { parseJson } from '../../src/io/config.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { loadWeights } from '../../src/io/weights.js';
import { CfmUNet, parseCfmUNetConfig } from '../../src/models/cfm-unet.js';
import { UNet2DConditionConfig } from '../../src/models/unet-2d-condition/config.js';
import { UNet2DConditionModel } from '../../src/models/unet-2d-condition/model.js';
import type { Runtime } from '../../src/runtime/runtime.js';

export const TINY = new URL('../../weights/tiny/', import.meta.url);

/** A copy of a safetensors file with the first value of `key` (F32) set to NaN. */
export function poisoned(path: string, key: string): Uint8Array {
  const b = new Uint8Array(readFileSync(new URL(path, TINY)));
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = Number(dv.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(b.subarray(8, 8 + n))) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const e = header[key];
  if (!e || e.dtype !== 'F32') throw new Error(`${path}: no F32 tensor '${key}'`);
  dv.setFloat32(8 + n + e.data_offsets[0], NaN, true);
  return b;
}

/** The tiny UNet with a NaN in conv_out.bias, loaded past the finite check. */
export async function poisonedUNet(rt: Runtime): Promise<UNet2DConditionModel> {
  const src = await SafetensorsFile.open(bytesSource(poisoned('unet/diffusion_pytorch_model.safetensors', 'conv_out.bias'), 'poisoned-unet'));
  const config = UNet2DConditionConfig.fromDiffusers(parseJson('unet/config.json', readFileSync(new URL('unet/config.json', TINY), 'utf8')));
  return new UNet2DConditionModel(await loadWeights(rt, src, { checkFinite: false }), config);
}

/** The tiny CFM network with a NaN in its output conv's bias, loaded past the finite check. */
export async function poisonedCfm(rt: Runtime): Promise<CfmUNet> {
  const src = await SafetensorsFile.open(bytesSource(poisoned('cfm/cfm.safetensors', 'out.2.bias'), 'poisoned-cfm'));
  const config = parseCfmUNetConfig(parseJson('cfm/config.json', readFileSync(new URL('cfm/config.json', TINY), 'utf8')));
  return new CfmUNet(await loadWeights(rt, src, { checkFinite: false }), config);
}

/** Rejection of a call (sync throws included), for tables of bad calls. */
export async function failure(run: () => unknown): Promise<unknown> {
  try {
    await run();
  } catch (e) {
    return e;
  }
  return undefined;
}
