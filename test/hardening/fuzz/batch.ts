// Running many cases and tallying what they did: one at a time (in process), or
// a few processes at a time (the executable) with a batch that changed a store
// run again one case at a time to name the culprit.
import { cleanupNode, prepareNode } from "./node-file";
import { type Exec, judge } from "./run";
import { checkStores, resetStores, storesDirty } from "./store";
import { type Tally, newTally, note } from "./tally";
import type { Case } from "./types";
import type { World } from "./world";

/** Cases 0..n-1, made one by one by `make` and run one at a time; the stores are checked (and put back) after each. */
export async function runEach(w: World, t: Tally, n: number, make: (i: number) => Case, exec: Exec): Promise<void> {
  for (let i = 0; i < n; i++) {
    const c = make(i);
    prepareNode(c);
    try {
      const o = await exec(c.env, c.stdin);
      note(t, c, o, judge(c, o));
    } finally {
      cleanupNode(c);
    }
    checkStores(t, c, w);
  }
}

/** The cases, `size` processes at a time; the stores are checked after each batch. */
export async function runBatches(w: World, t: Tally, cases: Case[], size: number, exec: Exec): Promise<void> {
  for (let i = 0; i < cases.length; i += size) {
    const batch = cases.slice(i, i + size);
    for (const c of batch) prepareNode(c);
    try {
      const outs = await Promise.all(batch.map((c) => exec(c.env, c.stdin)));
      for (const [k, c] of batch.entries()) note(t, c, outs[k]!, judge(c, outs[k]!));
    } finally {
      for (const c of batch) cleanupNode(c);
    }
    if (storesDirty(w)) {
      // Something in this batch changed a store: put it back and run the batch's cases one at a time to name the culprit.
      resetStores(w);
      const before = t.storeChanges + t.dirCreated;
      for (const c of batch) {
        prepareNode(c);
        try {
          await exec(c.env, c.stdin);
        } finally {
          cleanupNode(c);
        }
        checkStores(t, c, w);
      }
      if (t.storeChanges + t.dirCreated === before) {
        t.storeChanges++;
        for (const c of batch)
          t.violations.push({ c, problems: ["a store changed while this case ran in a batch (not reproduced alone)"] });
      }
    }
  }
}

/** One case (its node file already in place) run and judged, the stores checked: every problem found, none when it passed. */
export async function problemsOf(c: Case, w: World, exec: Exec): Promise<{ problems: string[]; stdout: string }> {
  const o = await exec(c.env, c.stdin);
  const j = judge(c, o);
  const tally = newTally();
  checkStores(tally, c, w);
  return { problems: [...j.problems, ...tally.violations.flatMap((v) => v.problems)], stdout: o.stdout };
}
