package couchtest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type reply struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, method, url string, auth func(*http.Request)) reply {
	t.Helper()
	r, err := try(context.Background(), method, url, auth)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func try(ctx context.Context, method, url string, auth func(*http.Request)) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return reply{}, err
	}
	if auth != nil {
		auth(req)
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}, err
}

func basic(req *http.Request) { req.SetBasicAuth(DefaultUser, DefaultPassword) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAuthLikeRequireValidUser(t *testing.T) {
	c := NewClusterT(t, 1, Options{})
	n := c.Nodes()[0]

	r := do(t, "GET", n.URL()+"/_up", nil)
	if r.status != 401 || string(r.body) != bodyAuthReq {
		t.Fatalf("no auth: %d %s", r.status, r.body)
	}
	if got := r.header.Get("Server"); got != "CouchDB/3.4.3 (Erlang OTP/25)" {
		t.Fatalf("Server header %q", got)
	}
	if r := do(t, "GET", n.URL()+"/_up", basic); r.status != 200 || string(r.body) != `{"status":"ok","seeds":{}}`+"\n" {
		t.Fatalf("basic: %d %s", r.status, r.body)
	}
	bad := func(req *http.Request) { req.SetBasicAuth("medic", "nope") }
	if r := do(t, "GET", n.URL()+"/_up", bad); r.status != 401 {
		t.Fatalf("wrong basic: %d", r.status)
	}

	login := func(body string) *http.Response {
		resp, err := http.Post(n.URL()+"/_session", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := login(`{"name":"medic","password":"wrong"}`); resp.StatusCode != 401 {
		t.Fatalf("bad login: %d", resp.StatusCode)
	}
	resp := login(`{"name":"medic","password":"password"}`)
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "AuthSession" {
			cookie = ck
		}
	}
	if resp.StatusCode != 200 || cookie == nil {
		t.Fatalf("login: %d, cookie %v", resp.StatusCode, cookie)
	}
	withCookie := func(req *http.Request) { req.AddCookie(cookie) }
	if r := do(t, "GET", n.URL()+"/_membership", withCookie); r.status != 200 {
		t.Fatalf("cookie: %d %s", r.status, r.body)
	}
	c.ExpireSessions()
	if r := do(t, "GET", n.URL()+"/_membership", withCookie); r.status != 401 {
		t.Fatalf("expired cookie: %d", r.status)
	}
	st := n.Stats()
	if st.Logins != 1 || st.BasicAuth != 2 || st.Session != 2 || st.Up != 3 || st.Membership != 2 || st.Unauthorized != 4 {
		t.Fatalf("stats %+v", st)
	}
}

func TestEndpoints(t *testing.T) {
	c := NewClusterT(t, 3, Options{})
	n2 := c.Nodes()[1]
	get := func(path string) reply { return do(t, "GET", n2.URL()+path, basic) }

	if r := get("/_node/_local"); string(r.body) != `{"name":"couchdb2@127.0.0.1"}`+"\n" {
		t.Fatalf("_node/_local: %s", r.body)
	}
	if r := get("/_node/_local/_config/cluster/n"); string(r.body) != `"1"`+"\n" {
		t.Fatalf("cluster/n: %s", r.body)
	}
	c.SetConfig("cluster", "n", "2")
	if r := get("/_node/_local/_config/cluster/n"); string(r.body) != `"2"`+"\n" {
		t.Fatalf("cluster/n after SetConfig: %s", r.body)
	}
	if r := get("/_node/_local/_config/cluster/nope"); r.status != 404 {
		t.Fatalf("missing config: %d", r.status)
	}
	if r := get("/_active_tasks"); string(r.body) != "[]\n" {
		t.Fatalf("_active_tasks: %s", r.body)
	}
	if err := n2.SetActiveTasks("replication"); err != nil {
		t.Fatal(err)
	}
	if r := get("/_active_tasks"); !strings.Contains(string(r.body), `"node":"couchdb2@127.0.0.1"`) {
		t.Fatalf("_active_tasks replication not renamed: %.100s", r.body)
	}
	if err := n2.SetActiveTasks("bogus"); err == nil {
		t.Fatal("SetActiveTasks(bogus): no error")
	}
	r := get("/medic")
	var data map[string]string
	if err := json.Unmarshal(r.body, &data); err != nil || r.status != 200 || data["node"] != "couchdb2@127.0.0.1" {
		t.Fatalf("data request: %d %s", r.status, r.body)
	}
	if got := c.Targets(); got != strings.Join([]string{c.Nodes()[0].Addr(), n2.Addr(), c.Nodes()[2].Addr()}, ",") {
		t.Fatalf("Targets() = %q", got)
	}
}

func TestMaintenance(t *testing.T) {
	c := NewClusterT(t, 1, Options{})
	n := c.Nodes()[0]
	for mode, want := range map[string]string{"true": `{"status":"maintenance_mode"}`, "nolb": `{"status":"nolb"}`} {
		if err := n.SetMaintenance(mode); err != nil {
			t.Fatal(err)
		}
		r := do(t, "GET", n.URL()+"/_up", basic)
		if r.status != 404 || strings.TrimSpace(string(r.body)) != want {
			t.Fatalf("mode %s: %d %s", mode, r.status, r.body)
		}
		cfg := do(t, "GET", n.URL()+"/_node/_local/_config/couchdb/maintenance_mode", basic)
		if strings.TrimSpace(string(cfg.body)) != `"`+mode+`"` {
			t.Fatalf("config maintenance_mode: %s", cfg.body)
		}
	}
	if err := n.SetMaintenance("bogus"); err == nil {
		t.Fatal("bogus mode accepted")
	}
}

func allNodes(t *testing.T, n *Node) []string {
	t.Helper()
	var m struct {
		AllNodes     []string `json:"all_nodes"`
		ClusterNodes []string `json:"cluster_nodes"`
	}
	r := do(t, "GET", n.URL()+"/_membership", basic)
	if err := json.Unmarshal(r.body, &m); err != nil || len(m.ClusterNodes) != 3 {
		t.Fatalf("membership: %s (%v)", r.body, err)
	}
	return m.AllNodes
}

func TestMembership(t *testing.T) {
	c := NewClusterT(t, 3, Options{NetTickTime: 300 * time.Millisecond})
	n1, n3 := c.Nodes()[0], c.Nodes()[2]
	if got := allNodes(t, n1); len(got) != 3 {
		t.Fatalf("healthy: %v", got)
	}
	n3.Stop()
	if got := allNodes(t, n1); len(got) != 2 || got[1] != "couchdb2@127.0.0.1" {
		t.Fatalf("node3 stopped: all_nodes %v, want it gone at once", got)
	}
	if r := do(t, "GET", n1.URL()+"/_node/couchdb3@127.0.0.1/_system", basic); r.status != 412 || !strings.Contains(string(r.body), "nodedown") {
		t.Fatalf("peer _system of a stopped node: %d %s", r.status, r.body)
	}
	if err := n3.Start(); err != nil {
		t.Fatal(err)
	}
	n3.Hang()
	if got := allNodes(t, n1); len(got) != 3 {
		t.Fatalf("node3 just hung: all_nodes %v, want it still listed", got)
	}
	waitFor(t, "hung node leaves all_nodes after net_ticktime", func() bool { return len(allNodes(t, n1)) == 2 })
	n3.Resume()
	if got := allNodes(t, n1); len(got) != 3 {
		t.Fatalf("node3 resumed: all_nodes %v", got)
	}
	c.SetMissingFromPeers(2, true)
	if got := allNodes(t, n1); len(got) != 2 {
		t.Fatalf("node3 missing: all_nodes %v", got)
	}
	if got := allNodes(t, n3); len(got) != 3 {
		t.Fatalf("node3's own view: all_nodes %v", got)
	}
}

func TestStopResetsAndRefuses(t *testing.T) {
	c := NewClusterT(t, 1, Options{})
	n := c.Nodes()[0]
	addr := n.Addr()
	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	waitFor(t, "held connection tracked", func() bool { return n.OpenConns() == 1 })

	// A request stuck in latency is cut too.
	n.SetLatency(time.Minute)
	inflight := make(chan error, 1)
	go func() {
		_, err := try(context.Background(), "GET", n.URL()+"/_up", basic)
		inflight <- err
	}()
	waitFor(t, "request in flight", func() bool { return n.OpenConns() == 2 })

	n.Stop()
	_ = held.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := held.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("held connection read: %v, want connection reset", err)
	}
	select {
	case err := <-inflight:
		if err == nil {
			t.Fatal("in-flight request succeeded on a crashed node")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight request not cut by Stop")
	}
	if _, err := net.Dial("tcp", addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial stopped node: %v, want refused", err)
	}
	n.SetLatency(0)
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	if n.Addr() != addr {
		t.Fatalf("restarted on %s, want %s", n.Addr(), addr)
	}
	if r := do(t, "GET", n.URL()+"/_up", basic); r.status != 200 {
		t.Fatalf("after restart: %d", r.status)
	}
}

func TestHangAndResume(t *testing.T) {
	c := NewClusterT(t, 1, Options{})
	n := c.Nodes()[0]

	// A request in its latency when the node hangs stalls until Resume.
	n.SetLatency(100 * time.Millisecond)
	done := make(chan reply, 1)
	go func() {
		r, _ := try(context.Background(), "GET", n.URL()+"/_up", basic)
		done <- r
	}()
	waitFor(t, "request arrived", func() bool { return n.Stats().Up == 1 })
	n.Hang()

	// New requests: TCP accepted, no answer.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := try(ctx, "GET", n.URL()+"/_up", basic); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request to hung node: %v, want deadline exceeded", err)
	}
	select {
	case r := <-done:
		t.Fatalf("in-flight request answered while hung: %d", r.status)
	default:
	}
	n.Resume()
	select {
	case r := <-done:
		if r.status != 200 {
			t.Fatalf("stalled request after resume: %d", r.status)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stalled request did not complete after Resume")
	}
}

func TestFaults(t *testing.T) {
	c := NewClusterT(t, 1, Options{})
	n := c.Nodes()[0]
	for _, path := range []string{"/_up", "/_membership", "/_node/_local/_system", "/_active_tasks", "/medic"} {
		n.SetFault(Fault5xx)
		if r := do(t, "GET", n.URL()+path, basic); r.status != 500 || !strings.Contains(string(r.body), "unknown_error") {
			t.Fatalf("5xx %s: %d %s", path, r.status, r.body)
		}
		n.SetFault(FaultMalformed)
		var v any
		if r := do(t, "GET", n.URL()+path, basic); r.status != 200 || json.Unmarshal(r.body, &v) == nil {
			t.Fatalf("malformed %s: %d %s parses", path, r.status, r.body)
		}
		n.SetFault(FaultOversized)
		if r := do(t, "GET", n.URL()+path, basic); r.status != 200 || len(r.body) != OversizedBody {
			t.Fatalf("oversized %s: %d, %d bytes", path, r.status, len(r.body))
		}
	}
	n.SetFault(FaultNone)
	if r := do(t, "GET", n.URL()+"/_up", basic); r.status != 200 {
		t.Fatalf("no fault: %d", r.status)
	}
	for _, s := range []string{"none", "5xx", "malformed", "oversized"} {
		if f, err := ParseFault(s); err != nil || f.String() != s {
			t.Fatalf("ParseFault(%q) = %v, %v", s, f, err)
		}
	}
	if _, err := ParseFault("nope"); err == nil {
		t.Fatal("ParseFault(nope): no error")
	}
}

func TestLatency(t *testing.T) {
	c := NewClusterT(t, 1, Options{})
	n := c.Nodes()[0]
	n.SetLatency(100 * time.Millisecond)
	start := time.Now()
	do(t, "GET", n.URL()+"/_up", basic)
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Fatalf("latency 100ms: answered in %v", took)
	}

	// Saturation: the second data request, arriving while the first is in flight,
	// waits base + 2*d.
	n.SetLatency(200 * time.Millisecond)
	n.SetLatencyPerInflight(100 * time.Millisecond)
	var wg sync.WaitGroup
	wg.Go(func() { do(t, "GET", n.URL()+"/medic", basic) })
	waitFor(t, "first data request in flight", func() bool { return n.Stats().InFlight == 1 })
	start = time.Now()
	do(t, "GET", n.URL()+"/medic", basic)
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Fatalf("second data request answered in %v, want >= 400ms", took)
	}
	wg.Wait()
	if got := n.Stats(); got.InFlight != 0 || got.Data != 2 {
		t.Fatalf("stats %+v", got)
	}
}

func TestLoad(t *testing.T) {
	c := NewClusterT(t, 2, Options{})
	n := c.Nodes()[1]
	runQueue := func() (int, map[string]any) {
		var s struct {
			RunQueue      int            `json:"run_queue"`
			OSProcCount   int            `json:"os_proc_count"`
			MessageQueues map[string]any `json:"message_queues"`
		}
		r := do(t, "GET", n.URL()+"/_node/_local/_system", basic)
		if err := json.Unmarshal(r.body, &s); err != nil {
			t.Fatalf("_system: %v", err)
		}
		return s.RunQueue, s.MessageQueues
	}
	for _, tc := range []struct {
		level float64
		rq    int
		p99   float64
	}{{0, 0, -1}, {1, 110, 2}, {0.5, 55, 1}, {2, 110, 2}} {
		n.SetLoad(tc.level)
		rq, mq := runQueue()
		if rq < 0 || rq > tc.rq || (tc.level == 0 && rq != 0) {
			t.Fatalf("level %v: run_queue %d, want 0..%d", tc.level, rq, tc.rq)
		}
		cf, _ := mq["couch_file"].(map[string]any)
		if p99, ok := cf["99"].(float64); tc.p99 >= 0 && (!ok || p99 != tc.p99) {
			t.Fatalf("level %v: couch_file %v, want p99 %v", tc.level, cf, tc.p99)
		}
	}
	// Seen from node2, the recorded distribution peers are node1 and node3.
	var s struct {
		Distribution map[string]any `json:"distribution"`
	}
	r := do(t, "GET", n.URL()+"/_node/_local/_system", basic)
	if err := json.Unmarshal(r.body, &s); err != nil {
		t.Fatal(err)
	}
	_, has1 := s.Distribution["couchdb1@127.0.0.1"]
	_, has2 := s.Distribution["couchdb2@127.0.0.1"]
	if !has1 || has2 {
		t.Fatalf("node2's distribution peers: %v", s.Distribution)
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := Start(0, Options{}); err == nil {
		t.Fatal("0 nodes: no error")
	}
	if _, err := Start(2, Options{Ports: []int{1}}); err == nil {
		t.Fatal("ports mismatch: no error")
	}
	c := NewClusterT(t, 1, Options{})
	_, p, _ := net.SplitHostPort(c.Nodes()[0].Addr())
	busy, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Start(1, Options{Ports: []int{busy}}); err == nil {
		t.Fatal("busy port: no error")
	}
	c.Close()
	if err := c.Nodes()[0].Start(); err == nil {
		t.Fatal("Start after Close: no error")
	}
}
