// Shared by the unit tests: the CniError a call throws.
import { expect } from "vitest";
import { CniError } from "../../src/errors";

/** Run fn and return the CniError it throws; fail the test if it throws nothing else. */
export function failure(fn: () => unknown): CniError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CniError);
    return err as CniError;
  }
  throw new Error("expected a CniError");
}
