package couchtest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// getWithin is a GET that gives up after d; it reports whether an answer came.
func getWithin(t *testing.T, url string, auth func(*http.Request), d time.Duration) (reply, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	r, err := try(ctx, "GET", url, auth)
	if errors.Is(err, context.DeadlineExceeded) {
		return reply{}, false
	}
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return r, true
}

func taskNodes(t *testing.T, body []byte) []string {
	t.Helper()
	var tasks []struct {
		Node string `json:"node"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal(body, &tasks); err != nil {
		t.Fatalf("_active_tasks %s: %v", body, err)
	}
	var out []string
	for _, task := range tasks {
		out = append(out, task.Node)
	}
	return out
}

// DESIGN.md §5: /_active_tasks is cluster-wide, and blocks on healthy nodes while a
// peer hangs (until net_ticktime); a stopped peer is left out at once.
func TestActiveTasksClusterWide(t *testing.T) {
	c := NewClusterT(t, 3, Options{NetTickTime: 500 * time.Millisecond})
	n1, n2, n3 := c.Nodes()[0], c.Nodes()[1], c.Nodes()[2]
	if err := n2.SetActiveTasks("view_build"); err != nil {
		t.Fatal(err)
	}
	if err := n3.SetActiveTasks("replication"); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes() {
		got := taskNodes(t, do(t, "GET", n.URL()+"/_active_tasks", basic).body)
		want := []string{"couchdb2@127.0.0.1", "couchdb2@127.0.0.1", "couchdb2@127.0.0.1", "couchdb2@127.0.0.1",
			"couchdb2@127.0.0.1", "couchdb2@127.0.0.1", "couchdb3@127.0.0.1"}
		if !slices.Equal(got, want) {
			t.Fatalf("%s lists tasks of %v, want %v", n.ErlangName(), got, want)
		}
	}

	n3.Hang()
	if _, ok := getWithin(t, n1.URL()+"/_active_tasks", basic, 150*time.Millisecond); ok {
		t.Fatal("node1's _active_tasks answered at once while node3 hangs")
	}
	if r := do(t, "GET", n1.URL()+"/_up", basic); r.status != 200 {
		t.Fatalf("node1 /_up while node3 hangs: %d", r.status)
	}
	// After net_ticktime the hung node is nodedown: the call answers without it.
	start := time.Now()
	got := taskNodes(t, do(t, "GET", n1.URL()+"/_active_tasks", basic).body)
	if len(got) != 6 || slices.Contains(got, "couchdb3@127.0.0.1") {
		t.Fatalf("after net_ticktime: %v", got)
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Fatalf("waited %v for net_ticktime 500ms", waited)
	}
	n3.Resume()
	n3.Stop()
	if r, ok := getWithin(t, n1.URL()+"/_active_tasks", basic, 5*time.Second); !ok || len(taskNodes(t, r.body)) != 6 {
		t.Fatalf("stopped peer: answered %v, %s", ok, r.body)
	}
}

// DESIGN.md §5: idle QuickJS processes stay in os_proc_count after a load, and CHT's
// os_process_limit is 1000.
func TestIdleJSProcessesAndLimit(t *testing.T) {
	c := NewClusterT(t, 1, Options{})
	n := c.Nodes()[0]
	procs := func() int {
		var s struct {
			OSProcCount int `json:"os_proc_count"`
		}
		if err := json.Unmarshal(do(t, "GET", n.URL()+"/_node/_local/_system", basic).body, &s); err != nil {
			t.Fatal(err)
		}
		return s.OSProcCount
	}
	if got := procs(); got != 0 {
		t.Fatalf("fresh node: os_proc_count %d", got)
	}
	n.SetLoad(1)
	n.SetLoad(0)
	if got := procs(); got < 25 || got > 40 {
		t.Fatalf("after a load: os_proc_count %d, want the 25-40 idle processes CouchDB keeps", got)
	}
	n.Stop()
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	if got := procs(); got != 0 {
		t.Fatalf("restarted: os_proc_count %d", got)
	}
	if r := do(t, "GET", n.URL()+"/_node/_local/_config/query_server_config/os_process_limit", basic); string(r.body) != `"1000"`+"\n" {
		t.Fatalf("os_process_limit: %d %s", r.status, r.body)
	}
}

// DESIGN.md §5: run_queue under load has median ~1, p90 ~30, max ~110; _system takes
// 100-700 ms on the loaded node.
func TestSpikyRunQueue(t *testing.T) {
	c := NewClusterT(t, 1, Options{Seed: 7})
	n := c.Nodes()[0]
	var rq []int64
	for range 4000 {
		v, d := n.loadSample(1, systemLatencyMin, systemLatencyMax)
		if d < systemLatencyMin || d > systemLatencyMax {
			t.Fatalf("_system delay %v outside 100-700ms", d)
		}
		rq = append(rq, v)
	}
	slices.Sort(rq)
	median, p90, top := rq[len(rq)/2], rq[len(rq)*9/10], rq[len(rq)-1]
	if median > 2 || p90 < 20 || p90 > 40 || top < 80 || top > 110 {
		t.Fatalf("run_queue median %d p90 %d max %d, want ~1, ~30, <=110", median, p90, top)
	}
	if v, d := n.loadSample(0, systemLatencyMin, systemLatencyMax); v != 0 || d != 0 {
		t.Fatalf("idle sample %d %v", v, d)
	}
	// Through HTTP: the loaded reply is slow and its run_queue changes between samples.
	n.SetLoad(1)
	seen := map[int]bool{}
	for range 3 {
		start := time.Now()
		var s struct {
			RunQueue int `json:"run_queue"`
		}
		if err := json.Unmarshal(do(t, "GET", n.URL()+"/_node/_local/_system", basic).body, &s); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < systemLatencyMin {
			t.Fatalf("loaded _system answered in %v, want >= 100ms", took)
		}
		seen[s.RunQueue] = true
	}
	if len(seen) < 2 {
		t.Fatalf("run_queue %v: the same in 3 loaded samples", seen)
	}
}

// DESIGN.md §5, the auth coupling: while the node holding the admin's _users shard
// hangs, every authenticated request on every node waits until net_ticktime, an
// unauthenticated one still gets a fast 401 from healthy nodes and nothing from the
// paused one. Stopping that node does not do this.
func TestAuthCoupling(t *testing.T) {
	const tick = 1500 * time.Millisecond
	c := NewClusterT(t, 3, Options{NetTickTime: tick})
	shard := c.UsersShardNode()
	if shard != c.Nodes()[0] {
		t.Fatalf("users shard on %v, want couchdb1 by default", shard)
	}
	n2 := c.Nodes()[1]
	shard.Hang()
	hungAt := time.Now()
	if _, ok := getWithin(t, n2.URL()+"/_up", basic, 200*time.Millisecond); ok {
		t.Fatal("authenticated /_up on a healthy node answered while the _users shard hangs")
	}
	resp, err := http.Post(n2.URL()+"/_session", "application/json", strings.NewReader(`{"name":"medic","password":"password"}`))
	if err == nil {
		resp.Body.Close()
		if time.Since(hungAt) < tick {
			t.Fatalf("login answered %d before net_ticktime", resp.StatusCode)
		}
	}
	if r, ok := getWithin(t, n2.URL()+"/_up", nil, 5*time.Second); !ok || r.status != 401 {
		t.Fatalf("unauthenticated /_up on a healthy node: answered %v, %d; want a fast 401", ok, r.status)
	}
	if _, ok := getWithin(t, shard.URL()+"/_up", nil, 200*time.Millisecond); ok {
		t.Fatal("unauthenticated /_up on the paused node answered")
	}
	// After net_ticktime the read fails fast and the config admin is used again.
	if r := do(t, "GET", n2.URL()+"/_up", basic); r.status != 200 || time.Since(hungAt) < tick {
		t.Fatalf("after net_ticktime: %d after %v", r.status, time.Since(hungAt))
	}
	shard.Resume()
	shard.Stop()
	if r, ok := getWithin(t, n2.URL()+"/_up", basic, 5*time.Second); !ok || r.status != 200 {
		t.Fatalf("users shard stopped: /_up answered %v, %d; want 200 at once", ok, r.status)
	}

	// The ways out: an admin _users doc (cached), or /_up without credentials.
	c2 := NewClusterT(t, 2, Options{NetTickTime: time.Minute, AdminUserDoc: true})
	c2.Nodes()[0].Hang()
	if r, ok := getWithin(t, c2.Nodes()[1].URL()+"/_up", basic, 5*time.Second); !ok || r.status != 200 {
		t.Fatalf("admin _users doc: /_up answered %v, %d", ok, r.status)
	}
	c3 := NewClusterT(t, 2, Options{NetTickTime: time.Minute})
	c3.SetConfig("chttpd", "require_valid_user_except_for_up", "true")
	c3.Nodes()[0].Hang()
	if r, ok := getWithin(t, c3.Nodes()[1].URL()+"/_up", nil, 5*time.Second); !ok || r.status != 200 {
		t.Fatalf("require_valid_user_except_for_up: unauthenticated /_up answered %v, %d", ok, r.status)
	}
	if _, ok := getWithin(t, c3.Nodes()[1].URL()+"/_up", basic, 200*time.Millisecond); ok {
		t.Fatal("require_valid_user_except_for_up: an authenticated /_up still reads _users, and should wait")
	}
}

// DESIGN.md §5: maintenance_mode = true makes the node's shards unavailable to the
// whole cluster under n=1 (500 read_failure, 412 nodedown via peers); nolb keeps
// serving them.
func TestMaintenanceTrueMakesDataUnavailable(t *testing.T) {
	c := NewClusterT(t, 3, Options{})
	n1, n2 := c.Nodes()[0], c.Nodes()[1]
	id := ""
	for i := range 100 {
		if c.DocShardNode("medic", "doc"+itoa64(int64(i))) == n1 {
			id = "doc" + itoa64(int64(i))
			break
		}
	}
	if id == "" {
		t.Fatal("no document on node1's shards among 100")
	}
	url := n2.URL() + "/medic/" + id
	if r := do(t, "GET", url, basic); r.status != 200 {
		t.Fatalf("healthy read: %d", r.status)
	}
	if err := n1.SetMaintenance("nolb"); err != nil {
		t.Fatal(err)
	}
	if r := do(t, "GET", url, basic); r.status != 200 {
		t.Fatalf("nolb: read via a peer %d, want 200", r.status)
	}
	if err := n1.SetMaintenance("true"); err != nil {
		t.Fatal(err)
	}
	if r := do(t, "GET", url, basic); r.status != 500 || !strings.Contains(string(r.body), "read_failure") {
		t.Fatalf("maintenance_mode true: read via a peer %d %s, want 500 read_failure", r.status, r.body)
	}
	if r := do(t, "GET", n2.URL()+"/_node/couchdb1@127.0.0.1/_system", basic); r.status != 412 || !strings.Contains(string(r.body), "nodedown") {
		t.Fatalf("maintenance_mode true: peer _system %d %s, want 412 nodedown", r.status, r.body)
	}
	if r := do(t, "GET", n2.URL()+"/medic", basic); r.status != 200 {
		t.Fatalf("other requests: %d", r.status)
	}
}
