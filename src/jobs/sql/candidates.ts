import { sql } from 'kysely';
import { type Lane, READY_STATES } from '../../glossary.ts';
import type { Candidate } from '../policy.ts';
import type { ByDialect, Executor } from './executor.ts';
import { literal } from './literals.ts';

type Row = {
  id: string;
  lane: Lane;
  type: string;
  tenant_id: string;
  run_at: number;
  breaker_key: string | null;
};

const READY = literal(READY_STATES);

/** The claim's candidates: for each group (`queue`) of `limits`, its oldest due jobs, at most its limit. */
export type Candidates = (
  trx: Executor,
  limits: ReadonlyMap<string, number>,
  now: number,
) => Promise<Candidate[]>;

export const candidates: ByDialect<Candidates> = {
  // SQLite answers in-process in microseconds, so a query per group costs less than building one
  // statement per shape of claim (which would defeat the statement cache).
  sqlite: async (trx, limits, now) => {
    const rows: Row[] = [];
    for (const [queue, n] of limits) {
      // INDEXED BY for the same reason as in the group scan: left alone, SQLite reads every ready job by state.
      const found = await sql<Row>`
        select id, lane, type, tenant_id, run_at, breaker_key from jobs indexed by jobs_ready
        where state in (${READY}) and queue = ${queue} and run_at <= ${now}
        order by run_at, id limit ${n}`.execute(trx);
      rows.push(...found.rows);
    }
    return rows.map(toCandidate);
  },
  // One round trip for all groups; SKIP LOCKED passes over a job that a cancel or replay holds.
  postgres: async (trx, limits, now) => {
    const queues = [...limits.keys()];
    const counts = queues.map((q) => limits.get(q)!);
    const { rows } = await sql<Row>`
      select c.* from unnest(${queues}::text[], ${counts}::int[]) as g(queue, n)
      cross join lateral (
        select id, lane, type, tenant_id, run_at, breaker_key from jobs
        where state in (${READY}) and queue = g.queue and run_at <= ${now}
        order by run_at, id limit g.n
        for update skip locked
      ) c`.execute(trx);
    return rows.map(toCandidate);
  },
};

function toCandidate(r: Row): Candidate {
  return {
    id: r.id,
    lane: r.lane,
    type: r.type,
    tenantId: r.tenant_id,
    runAt: Number(r.run_at),
    breakerKey: r.breaker_key,
  };
}
