/* bench_run.c - placeholder until the three-way run bench lands (the
 * same burn job with paramount, clap-bot and the ideal cluster). */
int main(void) { return 0; }
