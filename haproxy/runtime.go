package haproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	cnruntime "github.com/haproxytech/client-native/v5/runtime"
)

// Batch limits: HAProxy 2.6 accepted a 39 KB line here, but tune.bufsize (16 KiB by
// default) is the documented bound, so each connection carries at most this much.
const (
	maxBatchBytes = 8 << 10
	maxBatchCmds  = 256
)

// Runtime talks to one HAProxy's admin socket. It is safe for concurrent use; each
// exchange uses its own connection.
type Runtime struct {
	cfg    Config
	path   string
	log    *slog.Logger
	closed atomic.Bool
}

// NewRuntime checks cfg and returns a Runtime. It does not connect yet.
func NewRuntime(cfg Config, log *slog.Logger) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("haproxy runtime config: %w", err)
	}
	cfg = cfg.withDefaults()
	path, err := socketPath(cfg.Socket)
	if err != nil {
		return nil, fmt.Errorf("haproxy runtime config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runtime{cfg: cfg, path: path, log: log}, nil
}

// Config returns the configuration in use, defaults applied.
func (r *Runtime) Config() Config { return r.cfg }

var errClosed = errors.New("haproxy runtime closed")

// State reads backend's servers ("show servers state" joined with "show stat", in one
// exchange). A backend HAProxy does not know is an error wrapping ErrNoBackend.
func (r *Runtime) State(ctx context.Context, backend string) (Observed, error) {
	if r.closed.Load() {
		return Observed{}, errClosed
	}
	if backend == "" {
		backend = r.cfg.Backend
	}
	cmds := []string{"show servers state " + backend, "show stat " + backend + " 4 -1"}
	reps, err := exchange(ctx, r.path, r.cfg.Timeout, cmds)
	if err != nil {
		return Observed{}, fmt.Errorf("haproxy state %s: %w", backend, err)
	}
	for i, rep := range reps {
		if rep.severity >= 0 && rep.severity <= 3 {
			err := error(&CommandError{Command: cmds[i], Severity: rep.severity, Reply: rep.text})
			if strings.Contains(rep.text, "Can't find backend") || strings.Contains(rep.text, "No such proxy") {
				err = fmt.Errorf("%w: %w", ErrNoBackend, err)
			}
			return Observed{}, fmt.Errorf("haproxy state %s: %w", backend, err)
		}
	}
	servers, err := parseServersState(backend, reps[0].text)
	if err != nil {
		return Observed{}, fmt.Errorf("haproxy state %s: %w", backend, err)
	}
	stats, err := parseStat(backend, reps[1].text)
	if err != nil {
		return Observed{}, fmt.Errorf("haproxy state %s: %w", backend, err)
	}
	for i := range servers {
		st, ok := stats[servers[i].Name]
		if !ok {
			return Observed{}, fmt.Errorf("haproxy state %s: %w: server %s missing from show stat", backend, ErrMalformed, servers[i].Name)
		}
		servers[i].Weight = st.weight
		servers[i].CurConns = st.scur
		servers[i].Status = st.status
		servers[i].CheckDesc = st.checkStatus
		servers[i].AgentDesc = st.agentStatus
		servers[i].Traffic = st.traffic
	}
	return Observed{Backend: backend, Servers: servers}, nil
}

// Apply sends cmds in batches, in order, and checks every reply. Error-shaped replies are
// joined into the returned error, each a *CommandError naming its command; a
// transport failure stops at the failing batch.
func (r *Runtime) Apply(ctx context.Context, cmds []Command) error {
	results, err := r.apply(ctx, cmds)
	if err != nil {
		return err
	}
	return errors.Join(results...)
}

// apply returns one result per command (nil = accepted). When a batch cannot be
// exchanged at all it also returns that error, and every command of that batch and
// the later ones carries it as its result (it may or may not have been applied).
func (r *Runtime) apply(ctx context.Context, cmds []Command) ([]error, error) {
	if r.closed.Load() {
		return nil, errClosed
	}
	results := make([]error, len(cmds))
	for _, c := range cmds {
		if err := checkCommand(c); err != nil {
			return nil, fmt.Errorf("haproxy apply: %w", err)
		}
	}
	for start := 0; start < len(cmds); {
		end, size := start, 0
		for end < len(cmds) && end-start < maxBatchCmds && (end == start || size+len(cmds[end].Text)+1 <= maxBatchBytes) {
			size += len(cmds[end].Text) + 1
			end++
		}
		texts := make([]string, 0, end-start)
		for _, c := range cmds[start:end] {
			texts = append(texts, c.Text)
		}
		reps, err := exchange(ctx, r.path, r.cfg.Timeout, texts)
		if err != nil {
			for i := start; i < len(cmds); i++ {
				results[i] = fmt.Errorf("%s: not confirmed: %w", cmds[i].Text, err)
			}
			return results, fmt.Errorf("haproxy apply (commands %d-%d of %d, first %q): %w", start+1, end, len(cmds), texts[0], err)
		}
		for i, rep := range reps {
			results[start+i] = checkReply(cmds[start+i], rep)
		}
		start = end
	}
	return results, nil
}

// checkCommand refuses a command that is not one couchwatch means to send, using
// client-native's validators for the state and weight arguments; relative weights
// ("50%") are refused too (DESIGN.md §4).
func checkCommand(c Command) error {
	f := strings.Fields(c.Text)
	if c.Op == OpShutdown {
		if len(f) != 4 || f[0] != "shutdown" || f[1] != "sessions" || f[2] != "server" || !strings.Contains(f[3], "/") {
			return fmt.Errorf("command %q: invalid shutdown command", c.Text)
		}
		return nil
	}
	if len(f) < 4 || f[0] != "set" || f[1] != "server" || !strings.Contains(f[2], "/") {
		return fmt.Errorf("command %q: not a 'set server <backend>/<server> ...' command", c.Text)
	}
	switch c.Op {
	case OpState:
		if len(f) != 5 || f[3] != "state" || !cnruntime.ServerStateValid(f[4]) {
			return fmt.Errorf("command %q: invalid state command", c.Text)
		}
	case OpWeight:
		if len(f) != 5 || f[3] != "weight" || strings.HasSuffix(f[4], "%") || !cnruntime.ServerWeightValid(f[4]) {
			return fmt.Errorf("command %q: invalid weight command (absolute 0-256 only)", c.Text)
		}
	case OpAddr:
		if f[3] != "addr" || (len(f) != 5 && (len(f) != 7 || f[5] != "port")) {
			return fmt.Errorf("command %q: invalid addr command", c.Text)
		}
	default:
		return fmt.Errorf("command %q: unknown op %q", c.Text, c.Op)
	}
	return nil
}

// checkReply decides whether HAProxy accepted a command. "set server ... state" and
// "... weight" answer nothing on success; "... addr" answers with severity 4 both
// when it worked ("IP changed from ...", "no need to change ...") and when it did
// not ("Invalid addr ..."), so its text decides.
func checkReply(c Command, rep reply) error {
	ok := rep.text == ""
	if c.Op == "addr" && (rep.severity == 4 || rep.severity == -1) {
		ok = strings.HasPrefix(rep.text, "IP changed from") ||
			strings.HasPrefix(rep.text, "no need to change") ||
			strings.HasPrefix(rep.text, "port changed from")
	}
	if ok {
		return nil
	}
	return &CommandError{Command: c.Text, Severity: rep.severity, Reply: rep.text}
}

// Close marks the Runtime closed; no connection is held between exchanges.
func (r *Runtime) Close() error {
	r.closed.Store(true)
	return nil
}
