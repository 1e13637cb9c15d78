import { describeIssues, fail, ok, type Result, SamplePolicy } from '@edgeloop/protocol';

/*
 * The sample policy from desired state. Desired carries it loosely (a JSON object), so one bad
 * policy never makes the whole desired state unreadable; here it is parsed with protocol's
 * SamplePolicy. A refused policy leaves the one in force unchanged and says why.
 */

export type PolicyDecision = {
  /** The policy in force after this desired state: the new one, or the old one when refused. */
  readonly policy: SamplePolicy | null;
  /** Why the desired policy was refused; null when it was taken. */
  readonly error: string | null;
  /** True when `policy` differs from the one before (taken or cleared). */
  readonly changed: boolean;
};

export function parseSamplePolicy(input: unknown): Result<SamplePolicy, 'invalid_policy'> {
  const parsed = SamplePolicy.safeParse(input);
  if (!parsed.success) return fail('invalid_policy', `sample policy refused: ${describeIssues(parsed.error.issues)}`);
  return ok(parsed.data);
}

/**
 * What a desired `samplePolicy` does to the policy in force: absent keeps it, null clears it
 * (capture off, the spool still drains), an object replaces it when it parses and is refused
 * (old policy kept, error set) when it does not.
 */
export function decidePolicy(current: SamplePolicy | null, desired: unknown): PolicyDecision {
  if (desired === undefined) return { policy: current, error: null, changed: false };
  if (desired === null) return { policy: null, error: null, changed: current !== null };
  const parsed = parseSamplePolicy(desired);
  if (!parsed.ok) return { policy: current, error: parsed.error.message.slice(0, 1024), changed: false };
  return { policy: parsed.value, error: null, changed: true };
}
