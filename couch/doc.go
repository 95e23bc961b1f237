// Package couch is couchwatch's CouchDB client: one Node per entry of
// COUCHDB_SERVERS, typed replies, and failures classified into a small set of
// Reasons. It knows no health policy.
//
// Every call carries its own deadline (the caller's or Options.Timeout, whichever is
// sooner) and reads at most Options.MaxBody bytes of reply. Every failure is an *Error
// whose Reason is usable as a metric label; no error ever holds a credential.
//
// # Authentication
//
// CHT runs CouchDB with require_valid_user = true, so even /_up needs auth, and Basic
// auth on every poll would cost a pbkdf2 hash per request on the server. A Node logs
// in once with POST /_session and sends the AuthSession cookie; on a 401 it logs in
// again, once, and retries the request. Concurrent callers share a single login.
//
// # Where kivik is used, and where not
//
// /_node/_local/_config goes through kivik (github.com/go-kivik/kivik/v4, couchdb
// driver), on an http.Client whose transport carries the deadline, the body cap and
// the session; so do the logins. The session itself is ours, not kivik's CookieAuth:
// kivik drops its cookie on a 401 but does not retry the request, so every session
// expiry would surface as a failed probe (and look like an auth outage); and its login
// runs on the first caller's context under a mutex the other callers cannot leave when
// their own deadline passes.
//
// The calls made every few hundred milliseconds (/_up, /_membership, /_system,
// /_active_tasks, /_node/_local) go through the Node's own small HTTP/1.1 client
// (wire.go): one fixed GET written and its reply read on the caller's goroutine, over a
// kept-alive connection. At 300 nodes that is ~800 calls a second, and net/http's
// per-connection goroutines and per-request allocations were most of couchwatch's CPU.
// Fetch and parse stay split: the parsers (ParseUp, ParseSystem, ...) do no I/O, walk
// the reply in place with a validating scanner (scan.go, fuzzed against encoding/json)
// and are table-tested and fuzzed on recorded CouchDB 3.4.3 replies. /_up's 404
// maintenance replies are answers, not errors. Importing kivik's couchdb driver
// registers it with kivik's driver registry (kivik's init, not ours).
//
// # Crash detection
//
// Watch parks a read on the /_up probe's idle keep-alive connection between probes and
// returns as soon as the peer closes or resets it, which is how a crashed CouchDB shows
// up within milliseconds, at no cost of an extra connection or goroutine per node.
package couch
