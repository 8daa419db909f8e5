/* pihpc_c.c - a program instrumented for PI-HPC-Bench, and nothing else.
 *
 * It declares the four PI-HPC-Bench calls itself (as such programs do, with
 * no Paramount header) and links libparamount, proving that programs
 * already instrumented relink unchanged.  test_lib runs it as a child.
 * Usage: pihpc_c [ITERATIONS]   (default 5)
 */
#include <stdlib.h>
#include <time.h>

void init_timestep_(void);
void begin_timestep_(void);
void end_timestep_(void);
void exit_timestep_(void);

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 5;
  if (n < 0 || n > 1000000) n = 5;
  init_timestep_();
  struct timespec work = {0, 2000000}; /* 2 ms of "compute" */
  for (int i = 0; i < n; i++) {
    begin_timestep_();
    nanosleep(&work, NULL);
    end_timestep_();
  }
  exit_timestep_();
  return 0;
}
