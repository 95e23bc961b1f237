package main

import (
	"errors"
	"runtime/debug"
	"testing"
	"time"

	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/haproxy"
)

// /readyz is ready once every node has its first verdict (as the README says), and in
// runtime mode once HAProxy answered; a pass alone is not enough.
func TestNotReady(t *testing.T) {
	at := time.Unix(1700000000, 0)
	st := func(vs ...checks.Verdict) []checks.Status {
		var out []checks.Status
		for _, v := range vs {
			out = append(out, checks.Status{Verdict: v})
		}
		return out
	}
	obs := &haproxy.Observed{}
	tests := []struct {
		name    string
		last    passState
		runtime bool
		want    string
	}{
		{"no pass", passState{}, false, "no pass yet"},
		{"first pass, no verdict yet", passState{at: at, statuses: st(checks.Unknown, checks.Unknown, checks.Unknown)}, false,
			"waiting for the first verdicts: 3 of 3 nodes unknown"},
		{"one node still unknown", passState{at: at, statuses: st(checks.Up, checks.Down, checks.Unknown)}, false,
			"waiting for the first verdicts: 1 of 3 nodes unknown"},
		{"no nodes", passState{at: at}, false, "waiting for the first verdicts: 0 of 0 nodes unknown"},
		{"every verdict, agent mode", passState{at: at, statuses: st(checks.Up, checks.Down, checks.Drain)}, false, ""},
		{"every verdict, haproxy not read", passState{at: at, statuses: st(checks.Up)}, true, "haproxy runtime api not read yet"},
		{"every verdict, haproxy error", passState{at: at, statuses: st(checks.Up), haproxyErr: errors.New("dial unix: refused")}, true,
			"haproxy runtime api: dial unix: refused"},
		{"every verdict, haproxy read", passState{at: at, statuses: st(checks.Up, checks.Degraded), observed: obs}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := notReady(tt.last, tt.runtime); got != tt.want {
				t.Fatalf("notReady = %q, want %q", got, tt.want)
			}
		})
	}
}

// couchwatch_build_info{revision}: -ldflags wins, else go build's VCS stamp.
func TestBuildRevision(t *testing.T) {
	stamp := func(kv ...string) *debug.BuildInfo {
		info := &debug.BuildInfo{}
		for i := 0; i+1 < len(kv); i += 2 {
			info.Settings = append(info.Settings, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return info
	}
	tests := []struct {
		name string
		set  string
		info *debug.BuildInfo
		ok   bool
		want string
	}{
		{"ldflags", "0123abc", stamp("vcs.revision", "fff"), true, "0123abc"},
		{"vcs stamp", "unknown", stamp("vcs.revision", "89ab", "vcs.modified", "false"), true, "89ab"},
		{"vcs stamp, dirty", "unknown", stamp("vcs.revision", "89ab", "vcs.modified", "true"), true, "89ab-dirty"},
		{"no stamp (-buildvcs=false)", "unknown", stamp("-trimpath", "true"), true, "unknown"},
		{"no build info", "unknown", nil, false, "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := buildRevision(tt.set, tt.info, tt.ok); got != tt.want {
				t.Fatalf("buildRevision = %q, want %q", got, tt.want)
			}
		})
	}
}
