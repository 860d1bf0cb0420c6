// Stand-in for signal-exit, which proper-lockfile uses to remove its locks when
// the process exits. Loading the real one pulls in node:assert (and with it
// stderr's stream) on every call, milliseconds for nothing here: the store's
// lock is released synchronously by each transaction, and a call that dies
// holding it is recovered by the next one from its pid (src/store/lock.ts).
module.exports = function onExit() {
  return function remove() {};
};
