import { newId } from '../db/ids.ts';
import { ConveyorError } from '../errors.ts';
import type { Executor } from './context.ts';

/**
 * Credit movements. A balance changes only together with a ledger row that records the movement and the
 * balance after it, in the caller's transaction, so the ledger always adds up to the balance.
 */
export interface Movement {
  tenantId: string;
  jobId: string | null;
  /** Credits, positive. */
  amount: number;
  reason: string;
  now: number;
  actor: string | null;
}

/** Takes credits from a tenant that holds a balance; 402 when it is short (roll the transaction back). */
export async function charge(trx: Executor, movement: Movement): Promise<void> {
  const charged = await trx
    .updateTable('tenants')
    .set((eb) => ({ credit_balance: eb('credit_balance', '-', movement.amount) }))
    .where('id', '=', movement.tenantId)
    .where('credit_balance', '>=', movement.amount)
    .returning('credit_balance')
    .executeTakeFirst();
  if (!charged) {
    const tenant = await trx
      .selectFrom('tenants')
      .select('credit_balance')
      .where('id', '=', movement.tenantId)
      .executeTakeFirst();
    const balance = tenant?.credit_balance ?? 0;
    throw new ConveyorError(
      'insufficient_credit',
      `${movement.reason} costs ${movement.amount} credits; the balance is ${balance}`,
      {
        extra: { cost: movement.amount, balance },
      },
    );
  }
  await record(trx, movement, -movement.amount, charged.credit_balance!);
}

/** Gives credits back (a dead or cancelled job); nothing for a tenant without a balance. */
export async function refund(trx: Executor, movement: Movement): Promise<void> {
  const updated = await trx
    .updateTable('tenants')
    .set((eb) => ({ credit_balance: eb('credit_balance', '+', movement.amount) }))
    .where('id', '=', movement.tenantId)
    .where('credit_balance', 'is not', null)
    .returning('credit_balance')
    .executeTakeFirst();
  if (updated) await record(trx, movement, movement.amount, updated.credit_balance!);
}

async function record(trx: Executor, movement: Movement, amount: number, balance: number) {
  await trx
    .insertInto('credit_ledger')
    .values({
      id: newId('crd', movement.now),
      tenant_id: movement.tenantId,
      job_id: movement.jobId,
      amount,
      balance,
      reason: movement.reason,
      actor: movement.actor,
      created_at: movement.now,
    })
    .execute();
}
