import type { Insertable } from 'kysely';
import type { CreditLedgerTable } from '../../db/tables.ts';
import type { Executor } from './executor.ts';

/**
 * Credit balances and their ledger, the same statements on both dialects. A balance changes only in the
 * transaction that writes its ledger row (see credits.ts).
 */

/** Takes `amount` from a balance that holds it; answers the new balance, undefined when short. */
export async function takeCredits(
  trx: Executor,
  tenantId: string,
  amount: number,
): Promise<number | undefined> {
  const row = await trx
    .updateTable('tenants')
    .set((eb) => ({ credit_balance: eb('credit_balance', '-', amount) }))
    .where('id', '=', tenantId)
    .where('credit_balance', '>=', amount)
    .returning('credit_balance')
    .executeTakeFirst();
  return row === undefined ? undefined : row.credit_balance!;
}

/** Gives `amount` back to a tenant that holds a balance; answers the new balance, undefined without one. */
export async function giveCredits(
  trx: Executor,
  tenantId: string,
  amount: number,
): Promise<number | undefined> {
  const row = await trx
    .updateTable('tenants')
    .set((eb) => ({ credit_balance: eb('credit_balance', '+', amount) }))
    .where('id', '=', tenantId)
    .where('credit_balance', 'is not', null)
    .returning('credit_balance')
    .executeTakeFirst();
  return row === undefined ? undefined : row.credit_balance!;
}

/** The tenant's balance (null: it does not use credits; undefined: no such tenant). */
export async function creditBalance(trx: Executor, tenantId: string): Promise<number | null | undefined> {
  const row = await trx
    .selectFrom('tenants')
    .select('credit_balance')
    .where('id', '=', tenantId)
    .executeTakeFirst();
  return row?.credit_balance;
}

export async function insertLedgerRow(trx: Executor, row: Insertable<CreditLedgerTable>): Promise<void> {
  await trx.insertInto('credit_ledger').values(row).execute();
}
