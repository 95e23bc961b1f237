package couch

import (
	"errors"
	"strconv"
	"time"
)

// UpStatus is the "status" field of a /_up reply.
type UpStatus string

// The statuses CouchDB 3.x reports on /_up. Everything but StatusOK comes with HTTP 404.
const (
	StatusOK              UpStatus = "ok"
	StatusMaintenanceMode UpStatus = "maintenance_mode"
	StatusNoLB            UpStatus = "nolb"
	StatusSeeding         UpStatus = "seeding"
)

// Up is a parsed /_up reply. A 404 maintenance reply is a successful probe (the node
// answered and said what it wants); only transport, auth and malformed replies are errors.
type Up struct {
	Status     UpStatus
	HTTPStatus int
}

// Membership is a parsed /_membership reply as seen from one node.
type Membership struct {
	AllNodes     []string // nodes the answering node is connected to now
	ClusterNodes []string // configured members
}

// System holds the saturation signals of /_node/_local/_system that couchwatch uses.
type System struct {
	Uptime           int64
	RunQueue         int64
	RunQueueDirtyCPU int64
	OSProcCount      int64
	ProcessCount     int64
	// MessageQueues holds the queue length of each named process (couch_server,
	// rexi_server, rexi_buffer, ...). Processes reported as histograms (couch_file,
	// couch_db_updater) are stored under "<name>_p99" (their 99th percentile) and
	// "<name>_max".
	MessageQueues map[string]int64
	// Memory in bytes by category ("total", "processes", "binary", ...).
	Memory map[string]int64
}

// ActiveTask is one entry of /_active_tasks (only the fields couchwatch uses).
type ActiveTask struct {
	Type     string // indexer, database_compaction, view_compaction, replication, ...
	Node     string
	Database string
	Progress int
}

// Reason classifies a failed call into a small, bounded set usable as a metric label.
type Reason string

// The failure reasons; Classify maps any error to one of them.
const (
	ReasonRefused   Reason = "refused"   // connection refused, or closed/reset before a reply: process gone
	ReasonTimeout   Reason = "timeout"   // deadline hit: hung or overloaded node
	ReasonDNS       Reason = "dns"       // the host name does not resolve
	ReasonTLS       Reason = "tls"       // certificate not trusted or not for this host, handshake refused
	ReasonProtocol  Reason = "protocol"  // not HTTP, or the wrong one: https to a plain port, http to a TLS port, garbage
	ReasonRedirect  Reason = "redirect"  // 3xx: something in between redirects; never followed
	ReasonHTTP5xx   Reason = "http_5xx"  // server error
	ReasonHTTP4xx   Reason = "http_4xx"  // unexpected client error (not auth)
	ReasonAuth      Reason = "auth"      // 401/403 even after re-login, or login refused
	ReasonMalformed Reason = "malformed" // body is not the JSON we expect, or a value out of range
	ReasonTooLarge  Reason = "too_large" // headers or body over their caps
	ReasonOther     Reason = "other"     // anything else
)

// Reasons returns every Reason, in a fixed order (for metric label sets).
func Reasons() []Reason {
	return []Reason{ReasonRefused, ReasonTimeout, ReasonDNS, ReasonTLS, ReasonProtocol, ReasonRedirect,
		ReasonHTTP5xx, ReasonHTTP4xx, ReasonAuth, ReasonMalformed, ReasonTooLarge, ReasonOther}
}

// Error is the error type every Node method returns for a failed call. It never holds
// a credential: a Node removes the password and session cookies from Err's text, even
// when the server quoted them back (see Node).
type Error struct {
	Op     string // "up", "membership", "system", ...
	Node   string
	Reason Reason
	Status int // HTTP status if one was received, else 0
	Err    error
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return "couch " + e.Op + " " + e.Node + ": " + string(e.Reason) + " (HTTP " + strconv.Itoa(e.Status) + "): " + errString(e.Err)
	}
	return "couch " + e.Op + " " + e.Node + ": " + string(e.Reason) + ": " + errString(e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Classify returns the Reason of err: the one carried by *Error, ReasonOther otherwise.
func Classify(err error) Reason {
	var ce *Error
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return ReasonOther
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// Default limits.
const (
	DefaultMaxBody = 1 << 20 // 1 MiB: a _system reply is ~5 KiB
	DefaultTimeout = 2 * time.Second
	// MaxHeaderBytes caps the status line and headers of every reply (CouchDB's are
	// ~300 bytes): a node sending an endless header line or a header flood is cut off
	// there, with ReasonTooLarge.
	MaxHeaderBytes = 16 << 10
)
