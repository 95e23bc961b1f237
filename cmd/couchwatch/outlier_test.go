package main

import (
	"strings"
	"testing"
	"time"

	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/haproxy"
)

// pass is one "show stat" reading: per server, the requests and failures since the last
// one and the response time.
type trafficPass map[string]struct {
	req, fail int64
	rtime     int
}

func TestDetectOutliers(t *testing.T) {
	servers := []string{"s1", "s2", "s3"}
	healthy := func(req int64) trafficPass {
		p := trafficPass{}
		for _, s := range servers {
			p[s] = struct {
				req, fail int64
				rtime     int
			}{req, 0, 5}
		}
		return p
	}
	with := func(p trafficPass, srv string, req, fail int64, rtime int) trafficPass {
		q := trafficPass{}
		for k, v := range p {
			q[k] = v
		}
		q[srv] = struct {
			req, fail int64
			rtime     int
		}{req, fail, rtime}
		return q
	}
	repeat := func(n int, p trafficPass) []trafficPass {
		out := make([]trafficPass, n)
		for i := range out {
			out[i] = p
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		passes   []trafficPass
		reset    int               // pass index at which the counters go back to zero (0: never)
		tcp      bool              // mode tcp: no hrsp_* columns
		want     map[string]string // server -> "failing" or "slow"
		noReason bool
	}{
		{name: "healthy cluster", passes: repeat(5, healthy(20)), want: map[string]string{}},
		{name: "one node fails half its requests", passes: repeat(5, with(healthy(20), "s2", 20, 10, 5)),
			want: map[string]string{"s2": "failing"}},
		{name: "a burst below the minimum count", passes: append(repeat(4, healthy(20)), with(healthy(20), "s2", 20, 4, 5)),
			want: map[string]string{}},
		{name: "a few failures among many requests", passes: repeat(5, with(healthy(100), "s2", 100, 5, 5)),
			want: map[string]string{}},
		{name: "every node fails alike: cluster-wide, no one singled out",
			passes: repeat(5, with(with(with(healthy(20), "s1", 20, 10, 5), "s2", 20, 10, 5), "s3", 20, 10, 5)),
			want:   map[string]string{}},
		{name: "two nodes failing: only one flagged (the cap)",
			passes: repeat(5, with(with(healthy(20), "s1", 20, 12, 5), "s2", 20, 18, 5)),
			want:   map[string]string{"s2": "failing"}},
		{name: "too little traffic to say", passes: repeat(3, with(healthy(1), "s2", 1, 1, 5)), want: map[string]string{}},
		{name: "response time far above the peers", passes: repeat(3, with(healthy(20), "s3", 20, 0, 400)),
			want: map[string]string{"s3": "slow"}},
		{name: "slow, but not far above slow peers",
			passes: repeat(3, with(with(with(healthy(20), "s1", 20, 0, 300), "s2", 20, 0, 300), "s3", 20, 0, 400)),
			want:   map[string]string{}},
		{name: "a reload resets the counters: no spurious burst", passes: repeat(5, healthy(20)), reset: 3,
			want: map[string]string{}},
		{name: "mode tcp: nothing to judge", passes: repeat(5, with(healthy(20), "s2", 20, 10, 5)), tcp: true,
			want: map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			var st outlierState
			var found map[string]outlierFinding
			total := map[string]haproxy.Traffic{}
			for i, p := range tc.passes {
				if tc.reset != 0 && i == tc.reset {
					total = map[string]haproxy.Traffic{}
				}
				var obs []haproxy.Server
				for _, name := range servers {
					x := p[name]
					tr := total[name]
					tr.HTTP = !tc.tcp
					tr.Responses += x.req
					tr.Resp5xx += x.fail
					tr.RespTimeMs = x.rtime
					total[name] = tr
					obs = append(obs, haproxy.Server{Name: name, Traffic: tr})
				}
				found, st = detectOutliers(st, obs, now)
				now = now.Add(time.Second)
			}
			got := map[string]string{}
			for srv, f := range found {
				kind := "slow"
				if f.Failing {
					kind = "failing"
				}
				got[srv] = kind
				if !strings.HasPrefix(f.Reason, "haproxy traffic: ") {
					t.Errorf("%s: reason %q", srv, f.Reason)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("findings %v, want %v", found, tc.want)
			}
			for srv, kind := range tc.want {
				if got[srv] != kind {
					t.Fatalf("findings %v, want %v", found, tc.want)
				}
			}
		})
	}
}

// A finding holds for outlierHold after the traffic is fine again, then clears; the old
// failures leave the window after outlierWindow.
func TestOutlierHoldAndClear(t *testing.T) {
	now := time.Unix(1000, 0)
	var st outlierState
	var found map[string]outlierFinding
	total := map[string]haproxy.Traffic{}
	step := func(failS2 int64) {
		var obs []haproxy.Server
		for _, name := range []string{"s1", "s2", "s3"} {
			tr := total[name]
			tr.HTTP = true
			tr.Responses += 20
			tr.RespTimeMs = 5
			if name == "s2" {
				tr.Resp5xx += failS2
			}
			total[name] = tr
			obs = append(obs, haproxy.Server{Name: name, Traffic: tr})
		}
		found, st = detectOutliers(st, obs, now)
		now = now.Add(time.Second)
	}
	for range 5 {
		step(10)
	}
	if _, ok := found["s2"]; !ok {
		t.Fatalf("s2 not flagged: %v", found)
	}
	for range int(outlierHold/time.Second) - 6 {
		step(0)
	}
	if _, ok := found["s2"]; !ok {
		t.Fatalf("s2 cleared before the hold time: %v", found)
	}
	for range 10 {
		step(0)
	}
	if len(found) != 0 {
		t.Fatalf("still flagged after the hold and a clean window: %v", found)
	}
}

func TestApplyOutliers(t *testing.T) {
	servers := map[string]string{"n1": "s1", "n2": "s2", "n3": "s3", "n4": "s4"}
	statuses := []checks.Status{
		{Node: "n1", Verdict: checks.Up, Reason: "ok"},
		{Node: "n2", Verdict: checks.Up, Reason: "ok", Score: 0.1, ScoreKnown: true},
		{Node: "n3", Verdict: checks.Down, Reason: "timeout"},
		{Node: "n4", Verdict: checks.Drain, Reason: "maintenance nolb"},
	}
	found := map[string]outlierFinding{
		"s1": {Failing: true, Reason: "haproxy traffic: 10 of 20 requests failed"},
		"s2": {Slow: true, Reason: "haproxy traffic: response time 400 ms, peers 5 ms"},
		"s3": {Failing: true, Reason: "haproxy traffic: 10 of 20 requests failed"},
		"s4": {Failing: true, Reason: "haproxy traffic: 10 of 20 requests failed"},
	}
	got := applyOutliers(statuses, servers, found)
	if got[0].Verdict != checks.Degraded || got[0].Reason != found["s1"].Reason {
		t.Errorf("failing up node: %+v, want degraded with the traffic reason", got[0])
	}
	if got[1].Verdict != checks.Up || got[1].Score != 1 || got[1].ScoreSignal != "haproxy_response_time" {
		t.Errorf("slow up node: %+v, want up with score 1 (weight falls, not drained)", got[1])
	}
	if got[2].Verdict != checks.Down || got[2].Reason != "timeout" || got[2].ScoreKnown ||
		got[3].Verdict != checks.Drain || got[3].Reason != "maintenance nolb" || got[3].ScoreKnown {
		t.Errorf("down and drain nodes changed: %+v %+v: the signal never marks a node down nor overrides maintenance", got[2], got[3])
	}
	if statuses[0].Verdict != checks.Up {
		t.Error("applyOutliers changed its input")
	}
}

// Behind CHT's retry-on all-retryable-errors a 500 is counted only as a retry (measured
// on HAProxy 2.6, haproxy.TestTrafficFromRealHAProxy): retries alone single a node out.
func TestOutlierRetriesCountAsFailures(t *testing.T) {
	now := time.Unix(1000, 0)
	var st outlierState
	var found map[string]outlierFinding
	total := map[string]haproxy.Traffic{}
	for range 5 {
		var obs []haproxy.Server
		for _, name := range []string{"s1", "s2", "s3"} {
			tr := total[name]
			tr.HTTP, tr.RespTimeMs = true, 5
			tr.Responses += 10
			if name == "s2" {
				tr.Retries += 10
				tr.Redispatches += 10
			}
			total[name] = tr
			obs = append(obs, haproxy.Server{Name: name, Traffic: tr})
		}
		found, st = detectOutliers(st, obs, now)
		now = now.Add(time.Second)
	}
	if f, ok := found["s2"]; !ok || !f.Failing || len(found) != 1 {
		t.Fatalf("findings %v, want s2 failing", found)
	}
}
