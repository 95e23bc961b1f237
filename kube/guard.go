package kube

import (
	"errors"
	"fmt"
	"time"
)

// ErrDryRun is returned by the guard when a write is allowed but dry-run is on:
// the caller logs what it would have done instead.
var ErrDryRun = errors.New("dry run: not written")

// BudgetError refuses a flag that would exceed the budget.
type BudgetError struct {
	Node    string
	Flagged int // nodes already flagged
	Allowed int // min(MaxFlagged, nodes hosting CouchDB - 1)
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("flag node %s: budget exhausted (%d of %d allowed flagged)", e.Node, e.Flagged, e.Allowed)
}

// CooldownError refuses an eviction during the cool-down after the last one.
type CooldownError struct{ Until time.Time }

func (e *CooldownError) Error() string {
	return fmt.Sprintf("evict: cooling down until %s", e.Until.Format(time.RFC3339))
}

// guard holds every budget, cool-down and the dry-run switch in one place.
type guard struct {
	maxFlagged int
	dryRun     bool
	nextEvict  time.Time
}

// allowedFlags is how many nodes may be flagged: MaxFlagged, and never every
// node that hosts CouchDB.
func (g *guard) allowedFlags(couchHosts int) int {
	return max(0, min(g.maxFlagged, couchHosts-1))
}

// flag decides whether node may be flagged while flagged others already are.
func (g *guard) flag(node string, flagged, couchHosts int) error {
	if allowed := g.allowedFlags(couchHosts); flagged >= allowed {
		return &BudgetError{Node: node, Flagged: flagged, Allowed: allowed}
	}
	if g.dryRun {
		return ErrDryRun
	}
	return nil
}

// clear decides whether a flag may be removed (always, unless dry-run).
func (g *guard) clear() error {
	if g.dryRun {
		return ErrDryRun
	}
	return nil
}

// evict decides whether an eviction may happen now.
func (g *guard) evict(now time.Time) error {
	if now.Before(g.nextEvict) {
		return &CooldownError{Until: g.nextEvict}
	}
	if g.dryRun {
		return ErrDryRun
	}
	return nil
}

// evicted starts a cool-down of d from now.
func (g *guard) evicted(now time.Time, d time.Duration) { g.nextEvict = now.Add(d) }
