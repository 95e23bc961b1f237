// Package couch is couchwatch's CouchDB client: one Node per entry of
// COUCHDB_SERVERS, typed replies, and failures classified into a small set of
// Reasons. It knows no health policy.
//
// Every call carries its own deadline (the caller's or Options.Timeout, whichever is
// sooner). Every byte read from a node is capped: the status line and headers at
// MaxHeaderBytes (net/http's Transport.MaxResponseHeaderBytes), the body at
// Options.MaxBody. Every failure is an *Error whose Reason is usable as a metric label
// and whose text is redacted: no password or session cookie survives in it, even when
// the server (or a proxy, or a malformed status line) quoted the request back.
//
// # The standard libraries
//
// Calls go through net/http (three transports per node, below one guard that caps the
// body and refuses redirects), kivik where it has the call (/_membership,
// /_node/_local/_config), and encoding/json for every parse. Fetch and parse stay
// split: the parsers (ParseUp, ParseSystem, ...) do no I/O and are table-tested and
// fuzzed on recorded CouchDB 3.4.3 replies, and FuzzReadReply feeds arbitrary bytes
// through the real transport. /_up's 404 maintenance replies are answers, not errors.
// Importing kivik's couchdb driver registers it with kivik's driver registry (kivik's
// init, not ours).
//
// An own HTTP/1.1 client and JSON scanner served the probes until 2026-12-01, written for
// a 300-node CPU target. On the standard libraries couchwatch uses 0.25 % of a core and
// 44.9 MiB at 3 nodes, 1.00 % and 47.3 MiB at 30 (bench/scale, targets 1 %/48 MiB and
// 3 %/64 MiB), so none of that code stays.
//
// # Authentication
//
// CHT runs CouchDB with require_valid_user = true, so even /_up needs auth, and Basic
// auth on every poll would cost a pbkdf2 hash per request on the server. A Node logs
// in once with POST /_session and sends the AuthSession cookie; on a 401 it logs in
// again, once, and retries the request. That is the one re-login path, an
// http.RoundTripper under every transport, kivik's included; concurrent callers share a
// single login. A rejected login, or a session rejected right after it was issued, is
// not retried for 10 s. It is not kivik's CookieAuth: that drops its cookie on a 401
// but does not retry the request, so every session expiry would surface as a failed
// probe, and its login runs on the first caller's context under a mutex the other
// callers cannot leave when their own deadline passes.
//
// # Crash detection
//
// The /_up probe has a transport of its own with one kept-alive connection, dialled
// through a net.Conn wrapper. Between probes net/http keeps a read parked on that idle
// connection; when the node closes or resets it (a crashed CouchDB's kernel does so at
// once) the wrapper sees the read fail without our own close, and Watch and Closed
// report it within milliseconds, at no cost of an extra connection or goroutine.
// UpFresh asks /_up on a new connection for a second opinion.
package couch
