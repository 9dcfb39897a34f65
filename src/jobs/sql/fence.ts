import type { ExpressionBuilder } from 'kysely';
import type { Database } from '../../db/tables.ts';
import type { Executor } from './executor.ts';

/** Which attempt an outcome belongs to: the worker's lease, or (for the rescuer) an expired one. */
export type Fence = { owner: string; attempts: number } | { expiredBefore: number; attempts: number };

/** The row of the attempt `fence` names, while it is still active under that lease (or expired lease). */
export function fenceOf(eb: ExpressionBuilder<Database, 'jobs'>, id: string, fence: Fence) {
  return eb.and([
    eb('id', '=', id),
    eb('state', '=', 'active'),
    eb('attempts', '=', fence.attempts),
    'owner' in fence ? eb('lease_owner', '=', fence.owner) : eb('lease_expires_at', '<', fence.expiredBefore),
  ]);
}

/** An update of the attempt `fence` names: it changes nothing once the job is no longer that attempt's. */
export function updateFenced(executor: Executor, id: string, fence: Fence) {
  return executor.updateTable('jobs').where((eb) => fenceOf(eb, id, fence));
}
