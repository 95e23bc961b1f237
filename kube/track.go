package kube

import "time"

// CouchLoad is what the checks know about one CouchDB node on one pass.
type CouchLoad struct {
	Server   string  // a COUCHDB_SERVERS host
	Degraded bool    // the verdict is Degraded (saturated)
	Score    float64 // load score, 0..1
	Known    bool    // false: no trustworthy verdict; never triggers an action
}

// serverTrack is the sustain/cool-down history of one CouchDB server.
type serverTrack struct {
	load      CouchLoad
	hotSince  time.Time // start of the current Degraded run; zero if none
	coolSince time.Time // start of the current run below ClearBelow; zero if none
}

// tracker turns a stream of loads into "hot" (Degraded for FlagAfter) and
// "cool" (not Degraded, score below ClearBelow for ClearAfter). It runs on
// every replica so that a new leader inherits the history. Not safe for
// concurrent use: the Controller guards it.
type tracker struct {
	flagAfter, clearAfter time.Duration
	clearBelow            float64
	servers               map[string]*serverTrack
}

func newTracker(cfg Config, servers []string) *tracker {
	t := &tracker{
		flagAfter:  cfg.FlagAfter,
		clearAfter: cfg.ClearAfter,
		clearBelow: cfg.ClearBelow,
		servers:    make(map[string]*serverTrack, len(servers)),
	}
	for _, s := range servers {
		t.servers[s] = &serverTrack{load: CouchLoad{Server: s}}
	}
	return t
}

// observe records one pass. Servers missing from loads, and loads that are not
// Known, lose their history: an Unknown gap never counts towards a sustain or
// a cool-down. Loads of servers that are not configured are ignored.
func (t *tracker) observe(now time.Time, loads []CouchLoad) {
	seen := make(map[string]bool, len(loads))
	for _, l := range loads {
		st, ok := t.servers[l.Server]
		if !ok {
			continue
		}
		seen[l.Server] = true
		st.load = l
		if !l.Known {
			st.hotSince, st.coolSince = time.Time{}, time.Time{}
			continue
		}
		if l.Degraded {
			if st.hotSince.IsZero() {
				st.hotSince = now
			}
		} else {
			st.hotSince = time.Time{}
		}
		if !l.Degraded && l.Score < t.clearBelow {
			if st.coolSince.IsZero() {
				st.coolSince = now
			}
		} else {
			st.coolSince = time.Time{}
		}
	}
	for s, st := range t.servers {
		if !seen[s] {
			*st = serverTrack{load: CouchLoad{Server: s}}
		}
	}
}

// serverState is a snapshot of one server for the planner.
type serverState struct {
	Known bool
	Hot   bool // Degraded for at least FlagAfter
	Cool  bool // calm for at least ClearAfter
	Score float64
}

func (t *tracker) snapshot(now time.Time) map[string]serverState {
	out := make(map[string]serverState, len(t.servers))
	for s, st := range t.servers {
		out[s] = serverState{
			Known: st.load.Known,
			Hot:   st.load.Known && !st.hotSince.IsZero() && now.Sub(st.hotSince) >= t.flagAfter,
			Cool:  st.load.Known && !st.coolSince.IsZero() && now.Sub(st.coolSince) >= t.clearAfter,
			Score: st.load.Score,
		}
	}
	return out
}
