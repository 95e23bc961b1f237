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
// /_membership and /_node/_local/_config go through kivik (github.com/go-kivik/kivik/v4,
// couchdb driver), running on the Node's own http.Client so the deadline, the body cap
// and the session apply unchanged. The session itself is ours, not kivik's CookieAuth:
// kivik drops its cookie on a 401 but does not retry the request, so every session
// expiry would surface as a failed probe (and look like an auth outage); and its login
// runs on the first caller's context under a mutex the other callers cannot leave when
// their own deadline passes. /_up is plain net/http because its 404 maintenance
// replies are answers, not errors, and kivik turns every 404 into an error without
// the body; /_node/_local/_system, /_node/_local and /_active_tasks are plain net/http
// so that fetch and parse stay split: the parsers (ParseUp, ParseSystem, ...) do no
// I/O and are table-tested and fuzzed on recorded CouchDB 3.4.3 replies. Importing
// kivik's couchdb driver registers it with kivik's driver registry (kivik's init, not
// ours).
//
// # Crash detection
//
// Hold keeps an idle TCP connection open to the node and returns as soon as the peer
// closes or resets it, which is how a crashed CouchDB shows up within milliseconds.
package couch
