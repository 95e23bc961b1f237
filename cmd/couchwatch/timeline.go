package main

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// timelineSize bounds the decision timeline: the last few hundred events, whatever the
// uptime (at ~150 bytes an event, under 100 KiB).
const timelineSize = 500

// Event kinds of the timeline.
const (
	evVerdict  = "verdict"   // a node's verdict changed
	evCommand  = "command"   // a HAProxy runtime command was sent (or logged in dry run)
	evRefused  = "refused"   // Plan refused a change (a safety rule)
	evBudget   = "budget"    // the load-drain budget was used up, or freed
	evFailOpen = "fail_open" // fail-open began or ended
	evHAProxy  = "haproxy"   // the runtime API failed or came back
	evKube     = "kube"      // a Kubernetes action (flag, clear, eviction, leadership)
	evShards   = "shards"    // shard ranges became unavailable or available again
)

// Event is one entry of the decision timeline. Text and Reason never hold secrets: they
// come from verdict reasons, HAProxy command texts and couchwatch's own log messages.
type Event struct {
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"`
	Node   string    `json:"node,omitempty"`
	Server string    `json:"server,omitempty"`
	Text   string    `json:"text"`
	Reason string    `json:"reason,omitempty"`
}

// timeline is a fixed-size ring of the newest events. It is safe for concurrent use.
type timeline struct {
	mu    sync.Mutex
	ring  []Event
	next  int // where the next event goes
	count int // events held (<= len(ring))
	total uint64
}

func newTimeline(size int) *timeline { return &timeline{ring: make([]Event, max(size, 1))} }

// add records e, dropping the oldest event when the ring is full.
func (t *timeline) add(e Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ring[t.next] = e
	t.next = (t.next + 1) % len(t.ring)
	t.count = min(t.count+1, len(t.ring))
	t.total++
}

// events returns the events held, newest first, and how many were ever recorded.
func (t *timeline) events() ([]Event, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Event, 0, t.count)
	for i := 1; i <= t.count; i++ {
		out = append(out, t.ring[(t.next-i+len(t.ring))%len(t.ring)])
	}
	return out, t.total
}

// teeHandler passes every record to the next handler and records those at Info and
// above in the timeline: the Kubernetes flagger logs its actions (transitions only), so
// its flags, clears, evictions and leadership changes reach the timeline unchanged.
type teeHandler struct {
	next  slog.Handler
	tl    *timeline
	kind  string
	attrs []slog.Attr
}

// tee returns a logger that also records log's Info+ records as events of kind.
func (t *timeline) tee(log *slog.Logger, kind string) *slog.Logger {
	return slog.New(&teeHandler{next: log.Handler(), tl: t, kind: kind})
}

func (h *teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *teeHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelInfo {
		e := Event{At: r.Time, Kind: h.kind, Text: r.Message}
		var extra []string
		visit := func(a slog.Attr) bool {
			v := a.Value.Resolve().String()
			switch a.Key {
			// The flagger's "node" is a Kubernetes node and its "server" a
			// COUCHDB_SERVERS host: the timeline's Node is the CouchDB node.
			case "node":
				if h.kind == evKube {
					e.Text += " (kubernetes node " + v + ")"
				} else {
					e.Node = v
				}
			case "server":
				if h.kind == evKube {
					e.Node = v
				} else {
					e.Server = v
				}
			case "reason", "err":
				extra = append(extra, v)
			case "pod":
				e.Text += " " + v
			}
			return true
		}
		for _, a := range h.attrs {
			visit(a)
		}
		r.Attrs(visit)
		e.Reason = strings.Join(extra, "; ")
		if e.At.IsZero() {
			e.At = time.Now()
		}
		h.tl.add(e)
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &teeHandler{next: h.next.WithAttrs(as), tl: h.tl, kind: h.kind, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

// WithGroup keeps the timeline's view flat: grouped attributes are still passed on to
// the next handler, and the keys the timeline reads are top-level ones.
func (h *teeHandler) WithGroup(name string) slog.Handler {
	return &teeHandler{next: h.next.WithGroup(name), tl: h.tl, kind: h.kind, attrs: h.attrs}
}
