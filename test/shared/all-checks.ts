/**
 * Every FixtureCheck, run in Node by test/shared-checks.test.ts and in Chromium by test/browser/page.ts.
 * To add a check file, import its array here and spread it into the list: nothing else needs to change.
 */
import { attentionChecks } from './fixtures-attention.js';
import { cfmChecks } from './fixtures-cfm.js';
import type { FixtureCheck } from './fixture-check.js';
import { gemmChecks } from './fixtures-gemm.js';
import { miscChecks } from './fixtures-misc.js';
import { runtimeChecks } from './fixtures-runtime.js';
import { unetChecks } from './fixtures-unet.js';
import { vaeChecks } from './fixtures-vae.js';

export const allChecks: FixtureCheck[] = [
  ...runtimeChecks,
  ...gemmChecks,
  ...attentionChecks,
  ...miscChecks,
  ...vaeChecks,
  ...cfmChecks,
  ...unetChecks,
];
