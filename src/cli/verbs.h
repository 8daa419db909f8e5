/* verbs.h - the table of `paramount <verb>` subcommands.
 *
 * One line per verb: VERB(name, function, one-line summary).  Each verb
 * lives in its own src/cli/cmd_<verb>.c and defines
 * `int cmd_<verb>(int argc, char **argv)` where argv[0] is the verb; it
 * returns the process exit status (see docs/cli.md).
 */
VERB("record", cmd_record, "run a command, record its paramount iterations, print per-rank timings")
VERB("run", cmd_run, "run a job, measure its PIs, move it to the best cluster for the objective")
VERB("resume", cmd_resume, "continue a run whose controller died, from its journal and last checkpoint")
VERB("up", cmd_up, "start a cluster of local nodes from a config, without a job")
VERB("nodes", cmd_nodes, "list a run's nodes: type, state, age, setup time, cost so far")
VERB("down", cmd_down, "terminate every node of a run (idempotent, works after a crash)")
VERB("node-exec", cmd_node_exec, "run a command inside a local node (also mpirun's rsh agent)")
VERB("report", cmd_report, "rebuild a run's metrics.csv, report.json and report.html from its journal")
VERB("experiment", cmd_experiment, "run the seed's two tests (heterogeneous -> ideal, then ideal from the start) and compare them")
