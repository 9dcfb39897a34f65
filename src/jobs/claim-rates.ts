import { own } from '../own.ts';
import { unique } from './claim-plan.ts';
import type { EngineContext } from './context.ts';
import { type Candidate, rateScopes, takeStarts } from './policy.ts';
import type { Executor } from './sql/executor.ts';
import { readRate, writeRate } from './sql/rates.ts';

/**
 * Start rates in the claim: GCRA per rate scope (policy.ts `rateScopes` and `takeStarts`), with one
 * theoretical arrival time per scope in `job_rate_limits`. The claim asks how many starts each scope
 * grants its candidates, then spends the starts of the jobs it chose, in the same transaction.
 */
export class StartRates {
  readonly #ctx: Pick<EngineContext, 'settings' | 'typeOf'>;

  constructor(ctx: Pick<EngineContext, 'settings' | 'typeOf'>) {
    this.#ctx = ctx;
  }

  /**
   * How many of `candidates` each of their scopes lets start now, and when a start held back by a rate
   * may happen (null if none is held back).
   */
  async grant(
    trx: Executor,
    candidates: readonly Candidate[],
    now: number,
  ): Promise<{ granted: Map<string, number>; nextAt: number | null }> {
    const granted = new Map<string, number>();
    let nextAt: number | null = null;
    for (const [scope, rate] of this.#rates(candidates)) {
      const wanted = candidates.filter((c) => rateScopes(c).includes(scope)).length;
      const starts = takeStarts(await readRate(trx, scope), now, rate, wanted);
      granted.set(scope, starts.granted);
      if (starts.granted < wanted) nextAt = nextAt === null ? starts.nextAt : Math.min(nextAt, starts.nextAt);
    }
    return { granted, nextAt };
  }

  /** Records the starts of the jobs the claim chose. */
  async spend(trx: Executor, chosen: readonly Candidate[], now: number): Promise<void> {
    for (const [scope, rate] of this.#rates(chosen)) {
      const wanted = chosen.filter((c) => rateScopes(c).includes(scope)).length;
      const { tat } = takeStarts(await readRate(trx, scope), now, rate, wanted);
      await writeRate(trx, scope, Math.ceil(tat));
    }
  }

  /**
   * Start-rate limits of the candidates' rate scopes: a type's from config first, then the type's own; a
   * breaker key's from the types naming it (the strictest when several do).
   */
  #rates(candidates: readonly Candidate[]): Map<string, number> {
    const out = new Map<string, number>();
    for (const type of unique(candidates.map((c) => c.type))) {
      const rate = own(this.#ctx.settings.typeRatePerSecond, type) ?? this.#ctx.typeOf(type)?.ratePerSecond;
      if (rate) out.set(`type:${type}`, rate);
    }
    for (const c of candidates) {
      const rate = c.breakerKey === null ? undefined : this.#ctx.typeOf(c.type)?.keyRatePerSecond;
      if (!rate) continue;
      const scope = `key:${c.breakerKey}`;
      out.set(scope, Math.min(rate, out.get(scope) ?? Infinity));
    }
    return out;
  }
}
