package couch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
)

// The parsers below do no I/O: they read one reply body (with encoding/json) and return
// either the typed value or an *Error whose Reason says what was wrong (Node is left
// empty for the caller to fill in). They never panic, whatever the input.

// ParseUp parses a /_up reply given its HTTP status. 200 {"status":"ok"} and the 404
// maintenance replies ({"status":"maintenance_mode"|"nolb"|"seeding"}) are successful
// probes; anything else is an *Error (auth, redirect, protocol, http_4xx, http_5xx or
// malformed).
func ParseUp(status int, r io.Reader) (Up, error) {
	return parseReader(r, "up", func(b []byte) (Up, error) { return parseUp(status, b) })
}

func parseUp(status int, b []byte) (Up, error) {
	const op = "up"
	if status != http.StatusOK && status != http.StatusNotFound {
		return Up{}, statusError(op, status, b, true)
	}
	var reply struct {
		Status *string `json:"status"`
	}
	err := json.Unmarshal(b, &reply)
	if err == nil && (reply.Status == nil || *reply.Status == "") {
		err = errors.New(`no "status" field`)
	}
	if err != nil {
		if status == http.StatusNotFound {
			// Not CouchDB's maintenance reply: a proxy, or a CouchDB without /_up.
			return Up{}, &Error{Op: op, Reason: ReasonHTTP4xx, Status: status, Err: errors.New("404 without a maintenance status")}
		}
		return Up{}, malformed(op, err)
	}
	us := UpStatus(*reply.Status)
	switch {
	case status == http.StatusOK && us == StatusOK:
	case status == http.StatusNotFound && (us == StatusMaintenanceMode || us == StatusNoLB || us == StatusSeeding):
	case status == http.StatusNotFound:
		return Up{}, &Error{Op: op, Reason: ReasonHTTP4xx, Status: status, Err: fmt.Errorf("404 with unknown status %.40q", us)}
	default:
		return Up{}, malformed(op, fmt.Errorf("status %.40q with HTTP %d", us, status))
	}
	return Up{Status: us, HTTPStatus: status}, nil
}

// ParseMembership parses a 200 /_membership reply. Both lists must be present.
// (Node.Membership reads the same reply through kivik, which decodes it the same way.)
func ParseMembership(r io.Reader) (Membership, error) {
	return parseReader(r, "membership", parseMembership)
}

func parseMembership(b []byte) (Membership, error) {
	var reply struct {
		AllNodes     []string `json:"all_nodes"`
		ClusterNodes []string `json:"cluster_nodes"`
	}
	if err := json.Unmarshal(b, &reply); err != nil {
		return Membership{}, malformed("membership", err)
	}
	m := Membership{AllNodes: reply.AllNodes, ClusterNodes: reply.ClusterNodes}
	if err := checkMembership(m); err != nil {
		return Membership{}, err
	}
	return m, nil
}

func checkMembership(m Membership) error {
	if m.AllNodes == nil || m.ClusterNodes == nil {
		return malformed("membership", errors.New("all_nodes or cluster_nodes missing"))
	}
	return nil
}

// ParseSystem parses a 200 /_node/_local/_system reply. run_queue is required; other
// fields default to 0. message_queues values are integers, or histogram objects
// ({"count","min","max","50","90","99"}, empty when idle) stored as "<name>_p99" and
// "<name>_max". Values of any other shape are ignored. A count outside 0..MaxCount
// (an overflowing or absurd run_queue, say) is malformed, never a very busy node.
func ParseSystem(r io.Reader) (System, error) {
	return parseReader(r, "system", parseSystem)
}

// MaxCount bounds every count ParseSystem accepts (queue lengths, process counts): an
// Erlang VM holds at most 2^27 processes, so anything above 2^32 is not a measurement.
const MaxCount = 1 << 32

// maxBytes bounds memory figures and uptime.
const maxBytes = 1 << 62

// parseReader reads r whole and parses it.
func parseReader[T any](r io.Reader, op string, parse func([]byte) (T, error)) (T, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		var zero T
		return zero, malformed(op, err)
	}
	return parse(b)
}

func parseSystem(b []byte) (System, error) {
	const op = "system"
	var reply struct {
		Uptime        *count                `json:"uptime"`
		RunQueue      *count                `json:"run_queue"`
		DirtyCPU      *count                `json:"run_queue_dirty_cpu"`
		OSProcCount   *count                `json:"os_proc_count"`
		ProcessCount  *count                `json:"process_count"`
		MessageQueues map[string]queueValue `json:"message_queues"`
		Memory        map[string]byteCount  `json:"memory"`
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); (len(t) == 0 || t[0] != '{') && json.Valid(b) {
		return System{}, malformed(op, errors.New("not an object"))
	}
	if err := json.Unmarshal(b, &reply); err != nil {
		return System{}, malformed(op, err)
	}
	if reply.RunQueue == nil {
		return System{}, malformed(op, fmt.Errorf("no %q field", "run_queue"))
	}
	s := System{RunQueue: int64(*reply.RunQueue)}
	for _, f := range []struct {
		v   *count
		dst *int64
	}{{reply.Uptime, &s.Uptime}, {reply.DirtyCPU, &s.RunQueueDirtyCPU}, {reply.OSProcCount, &s.OSProcCount}, {reply.ProcessCount, &s.ProcessCount}} {
		if f.v != nil {
			*f.dst = int64(*f.v)
		}
	}
	if reply.MessageQueues != nil {
		s.MessageQueues = make(map[string]int64, len(reply.MessageQueues))
		for name, q := range reply.MessageQueues {
			switch q.kind {
			case queueHistogram:
				s.MessageQueues[name+"_p99"] = q.p99
				s.MessageQueues[name+"_max"] = q.max
			case queueNumber:
				s.MessageQueues[name] = q.n
			}
		}
	}
	if reply.Memory != nil {
		s.Memory = make(map[string]int64, len(reply.Memory))
		for name, v := range reply.Memory {
			if v.ok {
				s.Memory[name] = v.n
			}
		}
	}
	return s, nil
}

// count is a JSON number that must be an integer in 0..MaxCount (a fraction is
// truncated); anything else fails the decode.
type count int64

func (c *count) UnmarshalJSON(b []byte) error {
	n, err := intIn(b, 0, MaxCount)
	*c = count(n)
	return typeError(err)
}

// typeError makes err an *json.UnmarshalTypeError, which encoding/json completes with
// the field's path ("message_queues.couch_server").
func typeError(err error) error {
	if err == nil {
		return nil
	}
	return &json.UnmarshalTypeError{Value: fmt.Sprintf("%.60v", err), Type: reflect.TypeFor[int64]()}
}

// byteCount is a memory figure: a number in 0..2^62, or (ok false) any other value,
// which is ignored.
type byteCount struct {
	n  int64
	ok bool
}

func (c *byteCount) UnmarshalJSON(b []byte) error {
	if !isNumber(b) {
		return nil
	}
	n, err := intIn(b, 0, maxBytes)
	c.n, c.ok = n, err == nil
	return typeError(err)
}

type queueKind uint8

const (
	queueIgnored queueKind = iota
	queueNumber
	queueHistogram
)

// queueValue is one message_queues entry: a count, a histogram object (its "99" and
// "max" kept when they are numbers) or anything else (ignored).
type queueValue struct {
	kind        queueKind
	n, p99, max int64
}

func (q *queueValue) UnmarshalJSON(b []byte) error {
	switch {
	case isNumber(b):
		n, err := intIn(b, 0, MaxCount)
		q.kind, q.n = queueNumber, n
		return typeError(err)
	case b[0] == '{':
		var h struct {
			P99 json.RawMessage `json:"99"`
			Max json.RawMessage `json:"max"`
		}
		if err := json.Unmarshal(b, &h); err != nil {
			return err
		}
		q.kind = queueHistogram
		for _, f := range []struct {
			raw json.RawMessage
			dst *int64
		}{{h.P99, &q.p99}, {h.Max, &q.max}} {
			if isNumber(f.raw) {
				n, err := intIn(f.raw, 0, MaxCount)
				if err != nil {
					return typeError(err)
				}
				*f.dst = n
			}
		}
	}
	return nil
}

func isNumber(raw json.RawMessage) bool {
	return len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9')
}

// intIn reads a JSON number as an integer in lo..hi; a fraction is truncated, a value
// out of range is an error.
func intIn(raw json.RawMessage, lo, hi int64) (int64, error) {
	if !isNumber(raw) {
		return 0, errors.New("not a number")
	}
	if i, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		if i < lo || i > hi {
			return 0, fmt.Errorf("%d out of range %d..%d", i, lo, hi)
		}
		return i, nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, errors.New("not a number")
	}
	if math.IsNaN(f) || f < float64(lo) || f > float64(hi) {
		return 0, fmt.Errorf("%.20s out of range %d..%d", raw, lo, hi)
	}
	return int64(f), nil
}

// ParseActiveTasks parses a 200 /_active_tasks reply: a JSON array of task objects.
func ParseActiveTasks(r io.Reader) ([]ActiveTask, error) {
	const op = "active_tasks"
	var raw []struct {
		Type     string          `json:"type"`
		Node     string          `json:"node"`
		Database string          `json:"database"`
		Progress json.RawMessage `json:"progress"`
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, malformed(op, err)
	}
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '[' {
		return nil, malformed(op, errors.New("not a JSON array"))
	}
	if err := decodeStrict(bytes.NewReader(data), &raw); err != nil {
		return nil, malformed(op, err)
	}
	tasks := make([]ActiveTask, 0, len(raw))
	for _, t := range raw {
		p, _ := intIn(t.Progress, 0, 100) // absent for replications
		tasks = append(tasks, ActiveTask{Type: t.Type, Node: t.Node, Database: t.Database, Progress: int(p)})
	}
	return tasks, nil
}

// decodeStrict decodes exactly one JSON value from r into v; trailing data is an error.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty body")
		}
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func malformed(op string, err error) *Error {
	return &Error{Op: op, Reason: ReasonMalformed, Err: err}
}

// couchToken is the shape of CouchDB's "error" field ("unauthorized", "nodedown").
var couchToken = regexp.MustCompile(`^[a-z][a-z_]{0,39}$`)

// statusError turns a non-success HTTP status into an *Error. It names CouchDB's
// "error" token when the body has one and, when withReason, its "reason" text (the
// Node redacts secrets from it and caps it; the login never quotes it). A 400 whose
// body says the request was plain HTTP to an HTTPS port (Go's and nginx's wording) is
// ReasonProtocol.
func statusError(op string, status int, body []byte, withReason bool) *Error {
	text := http.StatusText(status)
	if text == "" {
		text = "unknown status " + strconv.Itoa(status)
	}
	e := &Error{Op: op, Reason: reasonForStatus(status), Status: status, Err: errors.New(text)}
	if status == http.StatusBadRequest && bytes.Contains(body, []byte("HTTPS")) &&
		(bytes.Contains(body, []byte("HTTP request to an HTTPS server")) || bytes.Contains(body, []byte("plain HTTP request was sent to HTTPS port"))) {
		e.Reason, e.Err = ReasonProtocol, errors.New("plain HTTP to a TLS port (the server says so): use https://")
		return e
	}
	var reply struct {
		Error  string `json:"error"`
		Reason string `json:"reason"`
	}
	if json.Unmarshal(body, &reply) != nil || !couchToken.MatchString(reply.Error) {
		return e
	}
	if withReason && reply.Reason != "" {
		e.Err = fmt.Errorf("%s: %s", reply.Error, reply.Reason)
	} else {
		e.Err = errors.New(reply.Error)
	}
	return e
}

func reasonForStatus(status int) Reason {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return ReasonAuth
	case status >= 300 && status <= 399:
		return ReasonRedirect
	case status >= 500 && status <= 599:
		return ReasonHTTP5xx
	case status >= 400 && status <= 499:
		return ReasonHTTP4xx
	case status >= 200 && status <= 299:
		return ReasonMalformed // a success code CouchDB does not send for this call
	}
	return ReasonProtocol // 1xx as a final reply, or no HTTP status at all
}
