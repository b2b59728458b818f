/* `goinfer keys create|list|show|update|revoke ...`: the virtual keys on the command line, on
 * the same ledger file as the running server (which picks up the change within a second). */
#ifndef GOINFER_KEYS_CLI_H
#define GOINFER_KEYS_CLI_H

/* argv[0] is "keys". Returns the process's exit status. */
int keys_cli(int argc, char **argv);

#endif
