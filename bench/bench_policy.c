/* bench_policy.c - model-level bench of the policy (placeholder: the
 * discrete-time simulation of the canonical scenario comes next). */
int main(void) { return 0; }
