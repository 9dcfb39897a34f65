import { type RawBuilder, sql } from 'kysely';
import { READY_STATES } from '../../glossary.ts';
import type { ByDialect, Executor } from './executor.ts';
import { literal } from './literals.ts';

/** A group (lane/type/tenant) that holds ready jobs, and the run_at of its oldest one. */
export interface GroupHead {
  queue: string;
  head: number;
}

const READY = literal(READY_STATES);

/**
 * The groups with ready jobs, by a loose index scan over `jobs_ready`: a recursive query that hops from
 * one distinct `queue` value to the next, reading each group's oldest run_at on the way. Its cost grows
 * with the number of groups, not with the number of queued jobs.
 */
function scan(jobs: RawBuilder<unknown>) {
  return async (executor: Executor): Promise<GroupHead[]> => {
    const { rows } = await sql<{ queue: string; head: number }>`
      with recursive groups(queue) as (
        select (select queue from ${jobs} where state in (${READY}) order by queue limit 1)
        union all
        select (select queue from ${jobs} where state in (${READY}) and queue > groups.queue
                order by queue limit 1)
        from groups where groups.queue is not null
      )
      select queue,
             (select run_at from ${jobs} where state in (${READY}) and queue = groups.queue
              order by run_at limit 1) as head
      from groups where queue is not null`.execute(executor);
    return rows.map((r) => ({ queue: r.queue, head: Number(r.head) }));
  };
}

export const readyGroups: ByDialect<(executor: Executor) => Promise<GroupHead[]>> = {
  // SQLite would rather use jobs_state (an equality on state) and sort, which reads every ready job at
  // every step; INDEXED BY holds it to the index the loose scan needs.
  sqlite: scan(sql.raw('jobs indexed by jobs_ready')),
  postgres: scan(sql.raw('jobs')),
};
