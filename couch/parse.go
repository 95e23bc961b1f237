package couch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
)

// The parsers below do no I/O: they read one reply body and return either the typed
// value or an *Error whose Reason says what was wrong (Node is left empty for the
// caller to fill in). They never panic, whatever the input.

// ParseUp parses a /_up reply given its HTTP status. 200 {"status":"ok"} and the 404
// maintenance replies ({"status":"maintenance_mode"|"nolb"|"seeding"}) are successful
// probes; anything else is an *Error (auth, http_4xx, http_5xx or malformed).
func ParseUp(status int, r io.Reader) (Up, error) {
	const op = "up"
	if status != http.StatusOK && status != http.StatusNotFound {
		return Up{}, statusError(op, status, r)
	}
	var body struct {
		Status *string `json:"status"`
	}
	if err := decodeStrict(r, &body); err != nil {
		if status == http.StatusNotFound {
			return Up{}, &Error{Op: op, Reason: ReasonHTTP4xx, Status: status, Err: errors.New("404 without a maintenance status")}
		}
		return Up{}, malformed(op, err)
	}
	if body.Status == nil || *body.Status == "" {
		if status == http.StatusNotFound {
			// Not CouchDB's maintenance reply: a proxy, or a CouchDB without /_up.
			return Up{}, &Error{Op: op, Reason: ReasonHTTP4xx, Status: status, Err: errors.New("404 without a maintenance status")}
		}
		return Up{}, malformed(op, errors.New(`no "status" field`))
	}
	st := UpStatus(*body.Status)
	switch {
	case status == http.StatusOK && st == StatusOK:
	case status == http.StatusNotFound && (st == StatusMaintenanceMode || st == StatusNoLB || st == StatusSeeding):
	case status == http.StatusNotFound:
		return Up{}, &Error{Op: op, Reason: ReasonHTTP4xx, Status: status, Err: fmt.Errorf("404 with unknown status %.40q", *body.Status)}
	default:
		return Up{}, malformed(op, fmt.Errorf("status %.40q with HTTP %d", *body.Status, status))
	}
	return Up{Status: st, HTTPStatus: status}, nil
}

// ParseMembership parses a 200 /_membership reply. Both lists must be present.
func ParseMembership(r io.Reader) (Membership, error) {
	var body struct {
		AllNodes     []string `json:"all_nodes"`
		ClusterNodes []string `json:"cluster_nodes"`
	}
	if err := decodeStrict(r, &body); err != nil {
		return Membership{}, malformed("membership", err)
	}
	m := Membership{AllNodes: body.AllNodes, ClusterNodes: body.ClusterNodes}
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
// "<name>_max". Values of any other shape are ignored.
func ParseSystem(r io.Reader) (System, error) {
	const op = "system"
	// One typed pass: the nested objects are decoded with the document, not re-scanned.
	var doc *struct {
		Uptime        json.RawMessage            `json:"uptime"`
		RunQueue      json.RawMessage            `json:"run_queue"`
		DirtyCPU      json.RawMessage            `json:"run_queue_dirty_cpu"`
		OSProcCount   json.RawMessage            `json:"os_proc_count"`
		ProcessCount  json.RawMessage            `json:"process_count"`
		MessageQueues map[string]json.RawMessage `json:"message_queues"`
		Memory        map[string]json.RawMessage `json:"memory"`
	}
	if err := decodeStrict(r, &doc); err != nil {
		return System{}, malformed(op, err)
	}
	if doc == nil {
		return System{}, malformed(op, errors.New("not an object"))
	}
	var s System
	fields := []struct {
		key      string
		raw      json.RawMessage
		dst      *int64
		required bool
	}{
		{"uptime", doc.Uptime, &s.Uptime, false},
		{"run_queue", doc.RunQueue, &s.RunQueue, true},
		{"run_queue_dirty_cpu", doc.DirtyCPU, &s.RunQueueDirtyCPU, false},
		{"os_proc_count", doc.OSProcCount, &s.OSProcCount, false},
		{"process_count", doc.ProcessCount, &s.ProcessCount, false},
	}
	for _, f := range fields {
		if f.raw == nil {
			if f.required {
				return System{}, malformed(op, fmt.Errorf("no %q field", f.key))
			}
			continue
		}
		n, err := jsonInt(f.raw)
		if err != nil {
			return System{}, malformed(op, fmt.Errorf("%s: %w", f.key, err))
		}
		*f.dst = n
	}
	if doc.MessageQueues != nil {
		s.MessageQueues = make(map[string]int64, len(doc.MessageQueues))
		for name, q := range doc.MessageQueues {
			if n, err := jsonInt(q); err == nil {
				s.MessageQueues[name] = n
				continue
			}
			var hist *struct {
				P99 json.RawMessage `json:"99"`
				Max json.RawMessage `json:"max"`
			}
			if json.Unmarshal(q, &hist) != nil || hist == nil {
				continue // neither a number nor a histogram: not ours to judge
			}
			p99, _ := jsonInt(hist.P99)
			maxv, _ := jsonInt(hist.Max)
			s.MessageQueues[name+"_p99"] = p99
			s.MessageQueues[name+"_max"] = maxv
		}
	}
	if doc.Memory != nil {
		s.Memory = make(map[string]int64, len(doc.Memory))
		for k, m := range doc.Memory {
			if n, err := jsonInt(m); err == nil {
				s.Memory[k] = n
			}
		}
	}
	return s, nil
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
		p, _ := jsonInt(t.Progress) // absent for replications
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

// jsonInt reads a JSON number as an int64; fractions are truncated, out-of-range
// values saturate.
func jsonInt(raw json.RawMessage) (int64, error) {
	raw = bytes.TrimSpace(raw)
	// Fast path: a plain integer, as CouchDB sends them (no reflection, no re-scan).
	if i, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return i, nil
	}
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, errors.New("not a number")
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil || n == "" {
		return 0, errors.New("not a number")
	}
	if i, err := n.Int64(); err == nil {
		return i, nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, errors.New("not a number")
	}
	switch {
	case math.IsNaN(f):
		return 0, errors.New("not a number")
	case f >= math.MaxInt64:
		return math.MaxInt64, nil
	case f <= math.MinInt64:
		return math.MinInt64, nil
	}
	return int64(f), nil
}

func malformed(op string, err error) *Error {
	return &Error{Op: op, Reason: ReasonMalformed, Err: err}
}

// statusError turns a non-success HTTP status into an *Error, quoting CouchDB's
// "error" field when the body has one (never more than a few bytes of it).
func statusError(op string, status int, body io.Reader) *Error {
	e := &Error{Op: op, Reason: reasonForStatus(status), Status: status, Err: errors.New(http.StatusText(status))}
	if body == nil {
		return e
	}
	var reply struct {
		Error  string `json:"error"`
		Reason string `json:"reason"`
	}
	if json.NewDecoder(io.LimitReader(body, 4096)).Decode(&reply) == nil && reply.Error != "" {
		e.Err = fmt.Errorf("%.60s: %.120s", reply.Error, reply.Reason)
	}
	return e
}

func reasonForStatus(status int) Reason {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return ReasonAuth
	case status >= 500 && status <= 599:
		return ReasonHTTP5xx
	case status >= 400 && status <= 499:
		return ReasonHTTP4xx
	}
	return ReasonOther
}
