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
	if status != http.StatusOK && status != http.StatusNotFound {
		return Up{}, statusError("up", status, r)
	}
	return parseReader(r, "up", func(b []byte) (Up, error) { return parseUp(status, b) })
}

func parseUp(status int, b []byte) (Up, error) {
	const op = "up"
	if status != http.StatusOK && status != http.StatusNotFound {
		return Up{}, statusError(op, status, bytes.NewReader(b))
	}
	var st []byte
	found := false
	sc := scanner{b: b}
	err := sc.object(func(key []byte) error {
		if string(key) != "status" {
			return sc.skip()
		}
		v, err := sc.str()
		st, found = v, true
		return err
	})
	if err == nil {
		err = sc.end()
	}
	if err != nil {
		if status == http.StatusNotFound {
			return Up{}, &Error{Op: op, Reason: ReasonHTTP4xx, Status: status, Err: errors.New("404 without a maintenance status")}
		}
		return Up{}, malformed(op, err)
	}
	if !found || len(st) == 0 {
		if status == http.StatusNotFound {
			// Not CouchDB's maintenance reply: a proxy, or a CouchDB without /_up.
			return Up{}, &Error{Op: op, Reason: ReasonHTTP4xx, Status: status, Err: errors.New("404 without a maintenance status")}
		}
		return Up{}, malformed(op, errors.New(`no "status" field`))
	}
	var us UpStatus
	switch string(st) { // the known values without an allocation
	case string(StatusOK):
		us = StatusOK
	case string(StatusMaintenanceMode):
		us = StatusMaintenanceMode
	case string(StatusNoLB):
		us = StatusNoLB
	case string(StatusSeeding):
		us = StatusSeeding
	}
	switch {
	case status == http.StatusOK && us == StatusOK:
	case status == http.StatusNotFound && (us == StatusMaintenanceMode || us == StatusNoLB || us == StatusSeeding):
	case status == http.StatusNotFound:
		return Up{}, &Error{Op: op, Reason: ReasonHTTP4xx, Status: status, Err: fmt.Errorf("404 with unknown status %.40q", st)}
	default:
		return Up{}, malformed(op, fmt.Errorf("status %.40q with HTTP %d", st, status))
	}
	return Up{Status: us, HTTPStatus: status}, nil
}

// ParseMembership parses a 200 /_membership reply. Both lists must be present.
func ParseMembership(r io.Reader) (Membership, error) {
	return parseReader(r, "membership", parseMembership)
}

// parseMembership parses b. With N nodes every reply holds 2N names and every node is
// asked: the names are substrings of one copy of b, not N allocations.
func parseMembership(b []byte) (Membership, error) {
	const op = "membership"
	whole := string(b)
	sc := scanner{b: b}
	var m Membership
	list := func(dst *[]string) error {
		if sc.null() {
			*dst = nil
			return nil
		}
		out := []string{}
		err := sc.array(func() error {
			start := sc.peek()
			at := sc.i
			v, err := sc.str()
			if err != nil {
				if start != '"' {
					return errors.New("a list entry is not a string")
				}
				return err
			}
			switch {
			case len(v) == 0:
				out = append(out, "")
			case &v[0] == &b[at+1] && len(v) == sc.i-at-2: // v is the input itself
				out = append(out, whole[at+1:sc.i-1])
			default: // decoded escapes
				out = append(out, string(v))
			}
			return nil
		})
		*dst = out
		return err
	}
	err := sc.object(func(key []byte) error {
		switch string(key) {
		case "all_nodes":
			return list(&m.AllNodes)
		case "cluster_nodes":
			return list(&m.ClusterNodes)
		}
		return sc.skip()
	})
	if err == nil {
		err = sc.end()
	}
	if err != nil {
		return Membership{}, malformed(op, err)
	}
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
	return parseReader(r, "system", parseSystem)
}

// parseReader reads r whole and parses it: the parsers work in place on the bytes.
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
	var s System
	haveRunQueue := false
	sc := scanner{b: b}
	number := func(name string, dst *int64) error {
		n, err := sc.int()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		*dst = n
		return nil
	}
	queues := func() error {
		if sc.null() {
			return nil
		}
		s.MessageQueues = make(map[string]int64, 64)
		return sc.object(func(key []byte) error {
			switch sc.peek() {
			case '{': // a histogram: keep its p99 and max
				var p99, maxv int64
				err := sc.object(func(k []byte) error {
					var err error
					switch string(k) {
					case "99":
						p99, err = sc.int()
					case "max":
						maxv, err = sc.int()
					default:
						return sc.skip()
					}
					if errors.Is(err, errNotNumber) {
						err = nil
					}
					return err
				})
				if err != nil {
					return err
				}
				name := string(key)
				s.MessageQueues[name+"_p99"] = p99
				s.MessageQueues[name+"_max"] = maxv
				return nil
			case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
				n, err := sc.int()
				if err != nil {
					return err
				}
				s.MessageQueues[string(key)] = n
				return nil
			}
			return sc.skip() // neither a number nor a histogram: not ours to judge
		})
	}
	memory := func() error {
		if sc.null() {
			return nil
		}
		s.Memory = make(map[string]int64, 16)
		return sc.object(func(key []byte) error {
			n, err := sc.int()
			if errors.Is(err, errNotNumber) {
				return nil
			}
			if err == nil {
				s.Memory[string(key)] = n
			}
			return err
		})
	}
	if sc.peek() != '{' {
		if err := sc.skip(); err != nil {
			return System{}, malformed(op, err)
		}
		return System{}, malformed(op, errors.New("not an object"))
	}
	err := sc.object(func(key []byte) error {
		switch string(key) {
		case "uptime":
			return number("uptime", &s.Uptime)
		case "run_queue":
			haveRunQueue = true
			return number("run_queue", &s.RunQueue)
		case "run_queue_dirty_cpu":
			return number("run_queue_dirty_cpu", &s.RunQueueDirtyCPU)
		case "os_proc_count":
			return number("os_proc_count", &s.OSProcCount)
		case "process_count":
			return number("process_count", &s.ProcessCount)
		case "message_queues":
			return queues()
		case "memory":
			return memory()
		}
		return sc.skip()
	})
	if err == nil {
		err = sc.end()
	}
	if err != nil {
		return System{}, malformed(op, err)
	}
	if !haveRunQueue {
		return System{}, malformed(op, fmt.Errorf("no %q field", "run_queue"))
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
