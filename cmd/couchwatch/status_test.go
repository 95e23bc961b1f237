package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/couch"
	"github.com/medic/couchwatch/couch/couchtest"
	"github.com/medic/couchwatch/haproxy/haproxytest"
)

func TestTimelineIsARing(t *testing.T) {
	tl := newTimeline(3)
	if ev, total := tl.events(); len(ev) != 0 || total != 0 {
		t.Fatalf("empty: %v %d", ev, total)
	}
	for i := range 5 {
		tl.add(Event{Text: string(rune('a' + i))})
	}
	ev, total := tl.events()
	var got []string
	for _, e := range ev {
		got = append(got, e.Text)
	}
	if strings.Join(got, "") != "edc" || total != 5 {
		t.Errorf("events %v (total %d), want the newest 3 newest first: e d c, total 5", got, total)
	}
}

func TestHistoryStep(t *testing.T) {
	for reconcile, want := range map[time.Duration]time.Duration{100 * time.Millisecond: time.Second, time.Second: 5 * time.Second, time.Minute: 5 * time.Second} {
		if got := historyStep(reconcile); got != want {
			t.Errorf("historyStep(%s) = %s, want %s", reconcile, got, want)
		}
	}
}

func TestHistoryKeepsOneSamplePerStepWithinTheSpan(t *testing.T) {
	h := newHistory(time.Minute, 10*time.Second)
	t0 := time.Date(2026, 12, 1, 2, 14, 0, 0, time.UTC)
	up := checks.Status{Node: "a", Verdict: checks.Up, Score: 0.5, ScoreKnown: true, LatencyEWMA: 3 * time.Millisecond}
	down := checks.Status{Node: "a", Verdict: checks.Down}
	for i := range 100 { // 100 passes, one a second
		st := up
		if i >= 90 {
			st = down
		}
		h.observe(t0.Add(time.Duration(i)*time.Second), []checks.Status{st})
	}
	s := h.series("a")
	if len(s) != 6 {
		t.Fatalf("%d samples, want 6 (60 s span / 10 s step)", len(s))
	}
	if !s[0].At.Equal(t0.Add(40*time.Second)) || !s[5].At.Equal(t0.Add(90*time.Second)) {
		t.Errorf("samples from %s to %s, want 40 s to 90 s", s[0].At.Sub(t0), s[5].At.Sub(t0))
	}
	if s[4].Score != 0.5 || s[4].LatencyMS != 3 || s[5].Score != -1 || s[5].LatencyMS != -1 {
		t.Errorf("samples %+v %+v: want 0.5/3 ms up, unknown (-1) once down", s[4], s[5])
	}
	if h.series("nobody") != nil {
		t.Error("a node never seen has a history")
	}
}

func TestChartIsSelfContainedSVG(t *testing.T) {
	now := time.Date(2026, 12, 1, 2, 14, 0, 0, time.UTC)
	var samples []Sample
	for i := range 20 {
		s := Sample{At: now.Add(-time.Duration(20-i) * 30 * time.Second), Score: float64(i) / 20, LatencyMS: float64(i)}
		if i == 10 {
			s.Score, s.LatencyMS = -1, -1 // a gap: the node was down
		}
		samples = append(samples, s)
	}
	svg := string(chart(samples, now))
	if !strings.HasPrefix(svg, "<svg") || !strings.HasSuffix(svg, "</svg>") {
		t.Fatalf("not one svg element: %.80s", svg)
	}
	if n := strings.Count(svg, "<polyline"); n != 4 || strings.Count(svg, "<circle") != 2 {
		t.Errorf("%d polylines, want 4 (two panels, each broken once by the gap) and a dot on each panel's newest point", n)
	}
	for _, bad := range []string{"<script", "href", "url(", "@font-face", "http"} {
		if strings.Contains(svg, bad) {
			t.Errorf("chart contains %q: it must need nothing from outside", bad)
		}
	}
	if !strings.Contains(svg, "latency ms (0-20): 19") {
		t.Errorf("latency panel label missing or wrong scale: %s", svg)
	}
}

func TestLostNodes(t *testing.T) {
	st := func(name string, v checks.Verdict, up couch.UpStatus) checks.Status {
		return checks.Status{ErlangName: name, Verdict: v, UpStatus: up}
	}
	members := []string{"a@h", "b@h", "c@h"}
	for _, tc := range []struct {
		name string
		in   []checks.Status
		want string
	}{
		{"healthy", []checks.Status{st("a@h", checks.Up, "ok"), st("b@h", checks.Up, "ok")}, ""},
		{"down", []checks.Status{st("a@h", checks.Up, "ok"), st("b@h", checks.Down, "ok")}, "b@h"},
		{"maintenance_mode true loses shards", []checks.Status{st("a@h", checks.Drain, couch.StatusMaintenanceMode)}, "a@h"},
		{"nolb keeps serving shards", []checks.Status{st("a@h", checks.Drain, couch.StatusNoLB)}, ""},
		{"never named, one member unaccounted for", []checks.Status{st("a@h", checks.Up, "ok"), st("b@h", checks.Up, "ok"), st("", checks.Down, "")}, "c@h"},
		{"never named, two unaccounted for: not guessed", []checks.Status{st("a@h", checks.Up, "ok"), st("", checks.Down, ""), st("", checks.Up, "")}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(lostNodes(tc.in, members), ","); got != tc.want {
				t.Errorf("lost %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPickDatabases(t *testing.T) {
	all := []string{"_replicator", "_users", "medic", "medic-user-alice-meta", "medic-user-bob-meta", "medic-users-meta"}
	got := strings.Join(pickDatabases(all, 4), ",")
	if got != "medic,_users,medic-users-meta,_replicator" {
		t.Errorf("picked %s: want CHT's own first, per-user databases dropped first", got)
	}
}

// getStatus reads /status.json.
func (s *stack) status() statusView {
	s.t.Helper()
	code, body := s.get("/status.json")
	var v statusView
	if err := json.Unmarshal([]byte(body), &v); code != http.StatusOK || err != nil {
		s.t.Fatalf("/status.json = %d, %v: %.300s", code, err, body)
	}
	return v
}

// waitStatus polls /status.json until cond holds.
func (s *stack) waitStatus(what string, cond func(statusView) bool) statusView {
	s.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		v := s.status()
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(v, "", " ")
			s.t.Fatalf("status never %s:\n%s", what, tail(string(b), 6000))
		}
		time.Sleep(20 * time.Millisecond) // polling couchwatch's HTTP state: no event to wait on
	}
}

func nodeOf(v statusView, server string) nodeView {
	for _, n := range v.Nodes {
		if n.Server == server {
			return n
		}
	}
	return nodeView{}
}

func hasEvent(v statusView, kind, server, text string) bool {
	for _, e := range v.Timeline {
		if e.Kind == kind && (server == "" || e.Server == server) && strings.Contains(e.Text, text) {
			return true
		}
	}
	return false
}

// chtShards makes the simulator a CHT cluster: q=12, n=1.
func chtShards(c *couchtest.Cluster) {
	c.SetConfig("cluster", "n", "1")
	c.SetConfig("cluster", "q", "12")
}

// The status page explains a crash and a hang, against a real HAProxy: names, the
// evidence with its age, the decision and HAProxy's state, the timeline, and the n=1
// blast radius (metric, page and log).
func TestStatusExplainsCrashAndHang(t *testing.T) {
	s := newStack(t, stackOpts{runtime: true, setup: chtShards, env: map[string]string{"COUCHWATCH_SHARDS_REFRESH": "1s"}})
	s.waitHTTP("/readyz", http.StatusOK)
	s.waitAll("ready", ready)
	v := s.waitStatus("named and read", func(v statusView) bool {
		for _, n := range v.Nodes {
			if n.ErlangName == "" || !n.Probe.Current || !n.HAProxy.Reported {
				return false
			}
		}
		return v.Blast.Known
	})
	for i, n := range v.Nodes {
		if want := s.node(i + 1).ErlangName(); n.ErlangName != want || n.Server != "couchdb-"+string(rune('1'+i)) {
			t.Errorf("node %d named %q / %q, want %q / couchdb-%d", i+1, n.ErlangName, n.Server, want, i+1)
		}
	}
	if v.Blast.DBs != len(couchtest.DefaultDatabases) || len(v.Blast.Lost) != 0 {
		t.Errorf("blast radius while healthy: %+v", v.Blast)
	}

	t.Run("crash", func(t *testing.T) {
		s.node(2).Stop()
		s.wait("couchdb-2", "maint", maint)
		v := s.waitStatus("showing the crash", func(v statusView) bool {
			// HAProxy's state as read at the start of a pass: the next pass shows maint.
			return nodeOf(v, "couchdb-2").Verdict == "down" && nodeOf(v, "couchdb-2").HAProxy.Admin == "maint" && len(v.Blast.Lost) > 0 &&
				hasEvent(v, evCommand, "couchdb-2", "state maint")
		})
		n := nodeOf(v, "couchdb-2")
		if n.Probe.Current || n.Probe.Failure == "" || n.Want.State != "maint" || n.HAProxy.Admin != "maint" || n.Rule == "" {
			t.Errorf("crashed node shown as %+v", n)
		}
		if !hasEvent(v, evVerdict, "couchdb-2", "up → down") {
			t.Errorf("no verdict event in the timeline: %+v", v.Timeline)
		}
		// n=1, q=12 over 3 nodes: the crashed node held a third of every database.
		for _, l := range v.Blast.Lost {
			if len(l.Ranges) != 4 || l.Of != 12 || strings.Join(l.Nodes, ",") != s.node(2).ErlangName() {
				t.Errorf("%s: %d of %d ranges on %v, want 4 of 12 on %s", l.DB, len(l.Ranges), l.Of, l.Nodes, s.node(2).ErlangName())
			}
		}
		if len(v.Blast.Lost) != len(couchtest.DefaultDatabases) || !v.Blast.LoginsAffected {
			t.Errorf("blast radius %+v: want every database and logins affected (_users)", v.Blast)
		}
		if got := s.metric("couchwatch_shard_ranges_unavailable", "database", "_users"); got != 4 {
			t.Errorf("couchwatch_shard_ranges_unavailable{_users} = %v, want 4", got)
		}
		if s.metric("couchwatch_shard_logins_affected") != 1 {
			t.Error("couchwatch_shard_logins_affected is not 1")
		}
		if !strings.Contains(s.logs.String(), "shard ranges unavailable") {
			t.Error("the blast radius was not logged")
		}
		_, page := s.get("/")
		for _, want := range []string{"LOGINS AFFECTED", "no answer", s.node(2).ErlangName(), "up → down", "<svg"} {
			if !strings.Contains(page, want) {
				t.Errorf("page lacks %q", want)
			}
		}
		if err := s.node(2).Start(); err != nil {
			t.Fatal(err)
		}
		s.wait("couchdb-2", "ready", ready)
		s.waitStatus("blast radius cleared", func(v statusView) bool { return v.Blast.Known && len(v.Blast.Lost) == 0 })
		if s.metric("couchwatch_shard_logins_affected") != 0 {
			t.Error("logins still affected after the node came back")
		}
	})

	t.Run("hang: the last ok is not shown as current", func(t *testing.T) {
		s.node(3).Hang()
		s.wait("couchdb-3", "maint", maint)
		v := s.waitStatus("showing the hang", func(v statusView) bool { return nodeOf(v, "couchdb-3").Verdict == "down" })
		n := nodeOf(v, "couchdb-3")
		if n.Probe.Current || n.Probe.UpStatus != "ok" || n.Probe.AnswerAge <= n.Probe.ProbeAge {
			t.Errorf("hung node's probe %+v: want the last answer (ok) older than the last probe, and not current", n.Probe)
		}
		if !strings.Contains(n.Probe.Failure, "timeout") {
			t.Errorf("failure %q, want the timeout", n.Probe.Failure)
		}
		s.node(3).Resume()
		s.wait("couchdb-3", "ready", func(x haproxytest.Server) bool { return ready(x) })
	})
}

// CouchDB's own metrics are re-exported per node with the credentials couchwatch has,
// types intact despite 3.4.3's HELP/TYPE quirk; a hung node's last good scrape stays.
func TestCouchDBMetricsReexported(t *testing.T) {
	s := newStack(t, stackOpts{env: map[string]string{"COUCHWATCH_COUCHDB_METRICS_INTERVAL": "100ms", "COUCHWATCH_COUCHDB_METRICS_TIMEOUT": "300ms"}})
	nodes := s.app.nodes
	waitMetric := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("never %s", what)
			}
			time.Sleep(20 * time.Millisecond) // the scrape loop runs on its own ticker
		}
	}
	waitMetric("scraped every node", func() bool {
		for _, n := range nodes {
			if s.metric("couchwatch_couchdb_metrics_scrape_success", "node", n.Name()) != 1 {
				return false
			}
		}
		return true
	})
	for _, n := range nodes {
		if got := s.metric("couchdb_couch_log_requests_total", "node", n.Name(), "level", "info"); got != 7 {
			t.Errorf("couchdb_couch_log_requests_total{node=%s,level=info} = %v, want the recorded 7", n.Name(), got)
		}
		if got := s.metric("couchdb_erlang_distribution_recv_oct_bytes_total", "node", n.Name(), "exported_node", "couchdb2@127.0.0.1"); got != 23920 {
			t.Errorf("CouchDB's own node label: %v, want 23920 under exported_node", got)
		}
	}
	_, body := s.get("/metrics")
	for _, want := range []string{"# TYPE couchdb_couch_log_requests_total counter", "# TYPE couchdb_collect_results_time_seconds summary",
		`couchdb_collect_results_time_seconds{node="` + nodes[0].Name() + `",quantile="0.99"} 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, s.cluster.Password()) {
		t.Error("/metrics leaks the password")
	}

	s.node(1).Hang()
	waitMetric("the hung node's scrape failing", func() bool {
		return s.metric("couchwatch_couchdb_metrics_scrape_success", "node", nodes[0].Name()) == 0
	})
	if got := s.metric("couchdb_couch_log_requests_total", "node", nodes[0].Name(), "level", "info"); got != 7 {
		t.Errorf("the hung node's last good scrape is gone: %v", got)
	}
	s.node(1).Resume()
}

// The Kubernetes flagger's log records (Info and up) reach the timeline with the
// CouchDB node in Node and the Kubernetes node in the text; the log itself is unchanged.
func TestTeeRecordsKubernetesActions(t *testing.T) {
	var buf bytes.Buffer
	tl := newTimeline(10)
	log := tl.tee(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})), evKube)
	l := log.With("node", "worker-2", "server", "couchdb-2.local", "reason", "saturated")
	l.Info("flag node")
	log.Debug("noise")
	log.Warn("not flagging: budget exhausted", "reason", "at most 1 node flagged")
	ev, _ := tl.events()
	if len(ev) != 2 {
		t.Fatalf("events %+v, want 2 (Debug is not a decision)", ev)
	}
	if e := ev[1]; e.Kind != evKube || e.Node != "couchdb-2.local" || e.Text != "flag node (kubernetes node worker-2)" || e.Reason != "saturated" {
		t.Errorf("flag event %+v", e)
	}
	if e := ev[0]; e.Text != "not flagging: budget exhausted" || e.Reason != "at most 1 node flagged" {
		t.Errorf("refusal event %+v", e)
	}
	if strings.Contains(buf.String(), "flag node") || !strings.Contains(buf.String(), "budget exhausted") {
		t.Errorf("the log's own level is not kept: %s", buf.String())
	}
}
