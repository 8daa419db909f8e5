/* verbs.h - the table of `paramount <verb>` subcommands.
 *
 * One line per verb: VERB(name, function, one-line summary).  Each verb
 * lives in its own src/cli/cmd_<verb>.c and defines
 * `int cmd_<verb>(int argc, char **argv)` where argv[0] is the verb; it
 * returns the process exit status (see docs/cli.md).
 */
VERB("record", cmd_record, "run a command, record its paramount iterations, print per-rank timings")
