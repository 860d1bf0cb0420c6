// The goals of npm run bench, in one place: each is the most a measured ratio
// may be for the target to count as met (README, "Performance").
export const TARGETS = {
  /** Own work per ADD+DEL (cycle less two floors) over the floor, node -e 0. */
  ownWork: 0.15,
  /** The standalone build's ADD+DEL over the bundle's on this Node. */
  standalone: 0.6,
  /** ADD+DEL at 4,096 live allocations over at 0. */
  at4096: 1.15,
  /** A burst of ADDs on one network: parallel over sequential. */
  burst: 0.65,
  /** Peak memory of one ADD over node -e 0's. */
  memory: 1.2,
  /** --store: ADD and DEL at --live allocations over at 0, the worse of the two. */
  store: 1.15,
};
