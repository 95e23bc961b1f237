package main

import (
	"sync"
	"time"

	"github.com/medic/couchwatch/checks"
)

// The status page's charts: each node's load score and latency over historySpan, one
// sample per step at most: five reconcile intervals, within [1 s, 5 s]. Memory is fixed:
// at most 900 samples per node.
const historySpan = 15 * time.Minute

func historyStep(reconcile time.Duration) time.Duration {
	return min(max(5*reconcile, time.Second), 5*time.Second)
}

// Sample is one point of a node's history. Score is -1 when unknown (node down, no
// _system sample yet); LatencyMS is -1 when the node did not answer.
type Sample struct {
	At        time.Time `json:"at"`
	Score     float64   `json:"load_score"`
	LatencyMS float64   `json:"latency_ms"`
}

// history keeps a ring of samples per node.
type history struct {
	step time.Duration
	size int

	mu    sync.Mutex
	nodes map[string]*sampleRing
}

type sampleRing struct {
	buf   []Sample
	next  int
	count int
}

func newHistory(span, step time.Duration) *history {
	return &history{step: step, size: max(int(span/step), 1), nodes: map[string]*sampleRing{}}
}

// observe records the statuses of one pass, at most one sample per node per step.
func (h *history) observe(now time.Time, statuses []checks.Status) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, st := range statuses {
		r := h.nodes[st.Node]
		if r == nil {
			r = &sampleRing{buf: make([]Sample, h.size)}
			h.nodes[st.Node] = r
		}
		if r.count > 0 && now.Sub(r.buf[(r.next-1+h.size)%h.size].At) < h.step {
			continue
		}
		s := Sample{At: now, Score: -1, LatencyMS: -1}
		if st.ScoreKnown && st.Verdict != checks.Down {
			s.Score = st.Score
		}
		if st.Verdict != checks.Down && st.Verdict != checks.Unknown {
			s.LatencyMS = float64(st.LatencyEWMA.Microseconds()) / 1000
		}
		r.buf[r.next] = s
		r.next = (r.next + 1) % h.size
		r.count = min(r.count+1, h.size)
	}
}

// series returns node's samples, oldest first.
func (h *history) series(node string) []Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.nodes[node]
	if r == nil {
		return nil
	}
	out := make([]Sample, 0, r.count)
	for i := r.count; i >= 1; i-- {
		out = append(out, r.buf[(r.next-i+h.size)%h.size])
	}
	return out
}
