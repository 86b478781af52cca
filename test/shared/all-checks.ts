/**
 * Every FixtureCheck, run in Node by test/shared-checks.test.ts and in Chromium by test/browser/page.ts.
 * To add a check file, import its array here and spread it into the list: nothing else needs to change.
 */
import type { FixtureCheck } from './fixture-check.js';
import { runtimeChecks } from './fixtures-runtime.js';

export const allChecks: FixtureCheck[] = [
  ...runtimeChecks,
];
