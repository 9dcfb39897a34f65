import { type RawBuilder, sql } from 'kysely';
import type { JobState, Lane } from '../../glossary.ts';

/** A word of the glossary that SQL text may name. */
type Word = JobState | Lane;

/**
 * Glossary words (job states, lanes) as SQL literals, comma-separated: `literal(READY_STATES)` renders
 * `'queued', 'failed'`. The engine's SQL names states through this and never spells them: the words are
 * defined once, in src/glossary.ts.
 *
 * Literals, not bound parameters: the partial indexes (`jobs_ready`, `jobs_active`, ...) are defined on
 * literal state lists, and a planner uses a partial index only when it can prove the query's predicate
 * implies the index's, which it does from literals and not from parameters. Constant text also keeps the
 * statement one entry in SQLite's statement cache.
 */
export function literal(words: Word | readonly Word[]): RawBuilder<unknown> {
  const list: readonly Word[] = typeof words === 'string' ? [words] : words;
  return sql.raw(list.map((word) => `'${word.replaceAll("'", "''")}'`).join(', '));
}
