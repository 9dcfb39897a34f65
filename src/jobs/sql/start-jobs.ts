import { type Selectable, sql } from 'kysely';
import type { JobsTable } from '../../db/tables.ts';
import { READY_STATES } from '../../glossary.ts';
import type { ByDialect, Executor } from './executor.ts';
import { literal } from './literals.ts';

export interface Start {
  /** The chosen jobs. */
  ids: readonly string[];
  /** Their tenants, each once: they had their turn. */
  tenants: readonly string[];
  workerId: string;
  leaseExpiresAt: number;
  now: number;
}

const READY = literal(READY_STATES);
const ACTIVE = literal('active');

/**
 * The claim's last step: marks the chosen jobs active under the worker's lease, counting the attempt, and
 * records that their tenants had their turn (so the next claim serves the others first). A job that left
 * the ready states meanwhile is not taken.
 */
export const startJobs: ByDialect<(trx: Executor, start: Start) => Promise<Selectable<JobsTable>[]>> = {
  // No data-modifying CTEs in SQLite; its statements cost no round trip anyway.
  sqlite: async (trx, { ids, tenants, workerId, leaseExpiresAt, now }) => {
    await trx
      .insertInto('job_turns')
      .values(tenants.map((tenant_id) => ({ tenant_id, claimed_at: now })))
      .onConflict((oc) => oc.column('tenant_id').doUpdateSet({ claimed_at: now }))
      .execute();
    return trx
      .updateTable('jobs')
      .set((eb) => ({
        state: 'active',
        attempts: eb('attempts', '+', 1),
        lease_owner: workerId,
        lease_expires_at: leaseExpiresAt,
        started_at: now,
        updated_at: now,
      }))
      .where('id', 'in', ids)
      .where('state', 'in', READY_STATES)
      .returningAll()
      .execute();
  },
  // Both in one statement.
  postgres: async (trx, { ids, tenants, workerId, leaseExpiresAt, now }) => {
    const { rows } = await sql<Selectable<JobsTable>>`
      with turns as (
        insert into job_turns (tenant_id, claimed_at)
        select tenant, ${now}::bigint from unnest(${tenants}::text[]) as tenant
        on conflict (tenant_id) do update set claimed_at = excluded.claimed_at
      )
      update jobs set state = ${ACTIVE}, attempts = attempts + 1, lease_owner = ${workerId},
                      lease_expires_at = ${leaseExpiresAt}, started_at = ${now}, updated_at = ${now}
      where id = any(${ids}::text[]) and state in (${READY})
      returning *`.execute(trx);
    return rows;
  },
};
