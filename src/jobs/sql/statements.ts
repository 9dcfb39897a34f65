import type { Dialect } from '../../db/database.ts';
import { candidates } from './candidates.ts';
import { insertPlainJobs } from './enqueue-plain.ts';
import { exclusive } from './exclusive.ts';
import type { ByDialect } from './executor.ts';
import { lockAttempt } from './fail.ts';
import { notify, notifyEach } from './notify.ts';
import { readyGroups } from './ready-groups.ts';
import { deleteFinished } from './retention.ts';
import { startJobs } from './start-jobs.ts';
import { markSucceededMany } from './succeed.ts';

/**
 * The engine's statements whose SQL differs by dialect, each written once per dialect in its own module.
 * The engine picks one dialect's set when it starts (EngineContext.statements), so no service asks which
 * dialect it runs on. The statements that read the same on both dialects are imported from their modules
 * directly.
 */
const byDialect = {
  exclusive,
  readyGroups,
  candidates,
  startJobs,
  insertPlainJobs,
  markSucceededMany,
  lockAttempt,
  deleteFinished,
  notify,
  notifyEach,
} satisfies Record<string, ByDialect<unknown>>;

export type JobStatements = { readonly [K in keyof typeof byDialect]: (typeof byDialect)[K][Dialect] };

export function statementsFor(dialect: Dialect): JobStatements {
  const picked: Partial<Record<keyof JobStatements, unknown>> = {};
  for (const [name, statement] of Object.entries(byDialect)) {
    picked[name as keyof JobStatements] = statement[dialect];
  }
  return picked as JobStatements;
}
