import type { Kysely, Transaction } from 'kysely';
import type { Dialect } from '../../db/database.ts';
import type { Database } from '../../db/tables.ts';

/** Where a statement runs: the pool, or a transaction (the caller's or the engine's). */
export type Executor = Kysely<Database> | Transaction<Database>;

/**
 * A statement written once per dialect, the two side by side. `undefined` marks a statement that one
 * dialect has no way to run (SQLite cannot NOTIFY another process), so the caller asks for a capability,
 * not for a dialect.
 */
export type ByDialect<T> = Readonly<Record<Dialect, T>>;
