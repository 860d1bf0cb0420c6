// The goals of npm run bench (issue #12), in one place: each is the most a measured
// ratio may be for the target to count as met (README, "Performance").
export const TARGETS = {
  /** ADD+DEL over two bare starts of the same Node (node -e 0), clean environment; the standalone against its own Node. */
  cycle: 1.15,
  /** fsync + fdatasync per ADD and per DEL, on average over enough calls to include checkpoints. */
  syncs: 1,
  /** ADD+DEL at 4,096 live allocations over at 0. */
  at4096: 1.05,
  /** ADD+DEL at 65,000 live allocations over at 0. */
  at65000: 1.1,
  /** A burst of ADDs on one network: parallel over sequential, on 2 cores. */
  burst: 0.5,
  /** Peak memory of one ADD over node -e 0's. */
  memory: 1.2,
  /** --baseline: this build's ADD+DEL over the baseline's, in the same rounds (unchanged within noise). */
  baseline: 1.05,
  /** --store: ADD and DEL at --live allocations over at 0, the worse of the two. */
  store: 1.15,
};
