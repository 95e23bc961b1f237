// Package haproxy steers HAProxy through its runtime API and answers its agent-checks.
//
// A pass is level-triggered (Reconciler.Reconcile): Runtime.State reads the backend
// as HAProxy reports it, Plan (pure, deterministic) diffs it against the Desired state
// within the safety rules of DESIGN.md §3, and Runtime.Apply sends the commands in
// ';'-separated batches, checking every reply. Nothing set earlier is trusted: a
// reload wipes runtime changes and the next pass repairs them.
//
// # Relation to client-native
//
// The module pins github.com/haproxytech/client-native/v5 v5.1.15. Its runtime
// transport cannot meet our rules, so this package does the socket exchange itself
// (conn.go) and keeps client-native for what it does well: the argument validators
// (runtime.ServerStateValid, runtime.ServerWeightValid) that guard every command
// before it is sent. quirks_test.go pins each client-native behaviour we work around,
// against a real HAProxy 2.6, beside what Runtime does instead:
//
//   - Unix socket only: Config.Validate rejects "ipv4@", "tcp", host:port addresses.
//   - A new connection per command and a fixed 30 s deadline: Runtime sends a whole
//     batch per connection (at most 8 KiB / 256 commands, under tune.bufsize) and
//     bounds each exchange by the caller's context and Config.Timeout.
//   - "[4]" replies taken as success ("set server ... addr bogus" returns nil):
//     addr replies are judged by their text ("IP changed", "no need to change").
//   - Read errors ignored, partial replies passed on: every read error, early close,
//     missing or extra reply is an error (ErrTruncated, ErrMalformed), never a half
//     state.
//   - srv_admin_state parsed as hex (16, drain via track, read as maint): parsed here
//     as the decimal bit field HAProxy prints.
//   - No weight, connections or check status in its server model: "show stat" is read
//     in the same exchange as "show servers state".
//   - Reload() refuses 2.6, master-socket mode is broken on 2.6, and the HAProxy
//     version is cached in a package global: none of these is used.
//   - DESIGN.md says GetServersState on a missing backend returns empty and nil; on
//     2.6.12 through a plain stats socket it returns an error. Either way State
//     returns an error wrapping ErrNoBackend.
//
// # How HAProxy 2.6 answers a batch
//
// Measured: "set severity-output number;cmd1;cmd2\n" is answered with one reply per
// command, each ended by an empty line, then the connection is closed. A command
// that succeeds silently ("set server ... state|weight") answers only "\n". Errors
// carry "[3]: " ("No such server.", "Absolute weight can only be between 0 and 256
// inclusive."); "set server ... addr" answers "[4]: " both on success and on
// failure ("Invalid addr ..."); an unknown command answers "[6]: Unknown command".
// Without severity-output the same texts come without the prefix. HAProxy keeps
// executing the rest of a batch after an error, so each reply is attributed to its
// command and a failure becomes a *CommandError naming the command text.
//
// # Agent checks
//
// AgentServer answers HAProxy's agent-check (CHT's healthcheck on TCP 5555): it
// reads the optional agent-send line (up to 100 ms; CHT sends none), asks the
// AgentResponder, writes one line and closes.
package haproxy
