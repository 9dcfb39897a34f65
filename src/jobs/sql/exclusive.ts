import { type Kysely, sql } from 'kysely';
import type { Database } from '../../db/tables.ts';
import type { ByDialect, Executor } from './executor.ts';

/** An arbitrary constant naming the claim lock among the database's advisory locks. */
const CLAIM_LOCK = 0x636f6e76; // "conv"

export type Exclusive = <T>(db: Kysely<Database>, work: (trx: Executor) => Promise<T>) => Promise<T>;

/**
 * A transaction that no other exclusive one runs alongside (see EngineContext.exclusive for why).
 *
 * SQLite: a plain transaction; BEGIN IMMEDIATE already serialises writers.
 *
 * PostgreSQL: a transaction-scoped advisory lock. The BEGIN, the lock and `synchronous_commit = off` go
 * in one round trip (a multi-statement simple query), and the commit does not wait for its WAL flush.
 */
export const exclusive: ByDialect<Exclusive> = {
  sqlite: (db, work) => db.transaction().execute(work),
  postgres: (db, work) =>
    db.connection().execute(async (connection) => {
      await sql
        .raw(`begin; set local synchronous_commit = off; select pg_advisory_xact_lock(${CLAIM_LOCK})`)
        .execute(connection);
      let result: Awaited<ReturnType<typeof work>>;
      try {
        result = await work(connection);
      } catch (error) {
        await sql
          .raw('rollback')
          .execute(connection)
          .catch(() => {});
        throw error;
      }
      await sql.raw('commit').execute(connection);
      return result;
    }),
};
