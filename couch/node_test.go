package couch_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medic/couchwatch/couch"
	"github.com/medic/couchwatch/couch/couchtest"
)

const password = "s3cret-pw"

func startCluster(t *testing.T, n int) *couchtest.Cluster {
	t.Helper()
	return couchtest.NewClusterT(t, n, couchtest.Options{User: "medic", Password: password, NetTickTime: time.Minute})
}

func newNode(t *testing.T, c *couchtest.Cluster, i int, opt couch.Options) *couch.Node {
	t.Helper()
	targets, err := couch.ParseServers(c.Targets())
	if err != nil {
		t.Fatal(err)
	}
	n, err := couch.NewNode(targets[i], opt)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func adminOpts() couch.Options {
	return couch.Options{User: "medic", Password: password, Timeout: 2 * time.Second}
}

// checkErr asserts err is a *couch.Error with reason want that leaks no credential.
func checkErr(t *testing.T, err error, want couch.Reason) {
	t.Helper()
	var ce *couch.Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v (%T), want *couch.Error with reason %s", err, err, want)
	}
	if ce.Reason != want {
		t.Fatalf("reason = %s, want %s (err: %v)", ce.Reason, want, err)
	}
	if strings.Contains(err.Error(), password) {
		t.Fatalf("error %q leaks the password", err)
	}
}

func TestNodeHealthy(t *testing.T) {
	c := startCluster(t, 3)
	n := newNode(t, c, 1, adminOpts())
	ctx := context.Background()

	up, err := n.Up(ctx)
	if err != nil || up.Status != couch.StatusOK || up.HTTPStatus != 200 {
		t.Fatalf("Up = %+v, %v", up, err)
	}
	m, err := n.Membership(ctx)
	if err != nil || len(m.AllNodes) != 3 || len(m.ClusterNodes) != 3 {
		t.Fatalf("Membership = %+v, %v", m, err)
	}
	name, err := n.LocalName(ctx)
	if err != nil || name != "couchdb2@127.0.0.1" {
		t.Fatalf("LocalName = %q, %v", name, err)
	}
	sys, err := n.System(ctx)
	if err != nil || sys.RunQueue != 0 || len(sys.MessageQueues) == 0 {
		t.Fatalf("System = %+v, %v", sys.RunQueue, err)
	}
	tasks, err := n.ActiveTasks(ctx)
	if err != nil || len(tasks) != 0 {
		t.Fatalf("ActiveTasks = %v, %v", tasks, err)
	}
	v, err := n.ConfigValue(ctx, "cluster", "n")
	if err != nil || v != "1" {
		t.Fatalf("ConfigValue(cluster, n) = %q, %v", v, err)
	}
	_, err = n.ConfigValue(ctx, "cluster", "nope")
	checkErr(t, err, couch.ReasonHTTP4xx)
	if ce := (*couch.Error)(nil); !errors.As(err, &ce) || ce.Status != 404 || ce.Node != n.Name() || ce.Op != "config" {
		t.Fatalf("missing key: %+v", ce)
	}

	st := c.Nodes()[1].Stats()
	if st.Logins != 1 || st.BasicAuth != 0 || st.Unauthorized != 0 {
		t.Fatalf("stats %+v: want one login, no basic auth, no 401", st)
	}
	if u := n.URL(); u.User != nil || u.String() != c.Nodes()[1].URL() {
		t.Fatalf("URL() = %s, want %s", u, c.Nodes()[1].URL())
	}
	n.URL().Host = "changed"
	if n.URL().Host == "changed" {
		t.Fatal("URL() is not a copy")
	}
}

func TestNodeLoadedSystemAndTasks(t *testing.T) {
	c := startCluster(t, 1)
	sim := c.Nodes()[0]
	sim.SetLoad(1)
	if err := sim.SetActiveTasks("view_build"); err != nil {
		t.Fatal(err)
	}
	n := newNode(t, c, 0, adminOpts())
	sys, err := n.System(context.Background())
	// A loaded node's run_queue is spiky (0-110) and a load leaves idle JS processes.
	if err != nil || sys.RunQueue < 0 || sys.RunQueue > 110 || sys.OSProcCount != 32 || sys.MessageQueues["couch_file_p99"] != 2 {
		t.Fatalf("System = run_queue %d os %d queues %v, %v", sys.RunQueue, sys.OSProcCount, sys.MessageQueues["couch_file_p99"], err)
	}
	tasks, err := n.ActiveTasks(context.Background())
	if err != nil || len(tasks) != 6 {
		t.Fatalf("ActiveTasks = %d tasks, %v", len(tasks), err)
	}
}

func TestNodeMaintenanceIsNotAnError(t *testing.T) {
	c := startCluster(t, 1)
	n := newNode(t, c, 0, adminOpts())
	for mode, want := range map[string]couch.UpStatus{"true": couch.StatusMaintenanceMode, "nolb": couch.StatusNoLB, "": couch.StatusOK} {
		if err := c.Nodes()[0].SetMaintenance(mode); err != nil {
			t.Fatal(err)
		}
		up, err := n.Up(context.Background())
		if err != nil || up.Status != want {
			t.Fatalf("mode %q: Up = %+v, %v; want %s", mode, up, err, want)
		}
	}
}

func TestNodeSharedLoginAndRelogin(t *testing.T) {
	c := startCluster(t, 1)
	sim := c.Nodes()[0]
	n := newNode(t, c, 0, adminOpts())
	burst := func() {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, 32)
		for range 32 {
			wg.Go(func() {
				if _, err := n.Up(context.Background()); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	burst()
	if got := sim.Stats().Logins; got != 1 {
		t.Fatalf("logins after first burst = %d, want 1", got)
	}
	c.ExpireSessions() // every cookie now gets 401: one shared re-login, retried transparently
	burst()
	st := sim.Stats()
	if st.Logins != 2 {
		t.Fatalf("logins after expiry = %d, want 2", st.Logins)
	}
	if st.Unauthorized == 0 || st.BasicAuth != 0 {
		t.Fatalf("stats %+v: want some 401s and no basic auth", st)
	}
	// kivik calls share the session and its retry.
	c.ExpireSessions()
	if _, err := n.ConfigValue(context.Background(), "cluster", "n"); err != nil {
		t.Fatal(err)
	}
	if got := sim.Stats().Logins; got != 3 {
		t.Fatalf("logins after kivik re-login = %d, want 3", got)
	}
}

func TestNodeAuthFailures(t *testing.T) {
	c := startCluster(t, 1)
	t.Run("wrong password", func(t *testing.T) {
		n := newNode(t, c, 0, couch.Options{User: "medic", Password: password + "x", Timeout: time.Second})
		_, err := n.Up(context.Background())
		checkErr(t, err, couch.ReasonAuth)
		_, err = n.Membership(context.Background())
		checkErr(t, err, couch.ReasonAuth)
		if strings.Contains(err.Error(), password+"x") {
			t.Fatalf("error %q leaks the password", err)
		}
	})
	t.Run("a rejected login is not retried on every call", func(t *testing.T) {
		before := c.Nodes()[0].Stats().Session
		n := newNode(t, c, 0, couch.Options{User: "medic", Password: password + "y", Timeout: time.Second})
		for i := 0; i < 5; i++ {
			_, err := n.Up(context.Background())
			checkErr(t, err, couch.ReasonAuth)
		}
		if got := c.Nodes()[0].Stats().Session - before; got != 1 {
			t.Fatalf("%d login attempts for 5 calls with a wrong password, want 1 (pbkdf2 costs CouchDB)", got)
		}
	})
	t.Run("no user sends no auth", func(t *testing.T) {
		before := c.Nodes()[0].Stats()
		n := newNode(t, c, 0, couch.Options{Timeout: time.Second})
		_, err := n.Up(context.Background())
		checkErr(t, err, couch.ReasonAuth)
		after := c.Nodes()[0].Stats()
		if after.Session != before.Session || after.BasicAuth != before.BasicAuth {
			t.Fatalf("stats before %+v after %+v: want no login and no basic auth", before, after)
		}
	})
}

func TestNodeFailures(t *testing.T) {
	calls := map[string]func(context.Context, *couch.Node) error{
		"up":           func(ctx context.Context, n *couch.Node) error { _, err := n.Up(ctx); return err },
		"membership":   func(ctx context.Context, n *couch.Node) error { _, err := n.Membership(ctx); return err },
		"local_name":   func(ctx context.Context, n *couch.Node) error { _, err := n.LocalName(ctx); return err },
		"system":       func(ctx context.Context, n *couch.Node) error { _, err := n.System(ctx); return err },
		"active_tasks": func(ctx context.Context, n *couch.Node) error { _, err := n.ActiveTasks(ctx); return err },
		"config": func(ctx context.Context, n *couch.Node) error {
			_, err := n.ConfigValue(ctx, "cluster", "n")
			return err
		},
	}
	tests := []struct {
		name  string
		setup func(*couchtest.Node)
		want  couch.Reason
	}{
		{name: "5xx", setup: func(s *couchtest.Node) { s.SetFault(couchtest.Fault5xx) }, want: couch.ReasonHTTP5xx},
		{name: "malformed", setup: func(s *couchtest.Node) { s.SetFault(couchtest.FaultMalformed) }, want: couch.ReasonMalformed},
		{name: "oversized", setup: func(s *couchtest.Node) { s.SetFault(couchtest.FaultOversized) }, want: couch.ReasonTooLarge},
		{name: "stopped", setup: func(s *couchtest.Node) { s.Stop() }, want: couch.ReasonRefused},
		{name: "hung", setup: func(s *couchtest.Node) { s.Hang() }, want: couch.ReasonTimeout},
		{name: "slow", setup: func(s *couchtest.Node) { s.SetLatency(5 * time.Second) }, want: couch.ReasonTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := startCluster(t, 1)
			timeout := 3 * time.Second // generous: only the hang cases should hit it
			if tc.want == couch.ReasonTimeout {
				timeout = 300 * time.Millisecond
			}
			n := newNode(t, c, 0, couch.Options{User: "medic", Password: password, Timeout: timeout})
			if _, err := n.Up(context.Background()); err != nil { // log in and keep a connection
				t.Fatal(err)
			}
			tc.setup(c.Nodes()[0])
			for op, call := range calls {
				start := time.Now()
				err := call(context.Background(), n)
				checkErr(t, err, tc.want)
				// Loose for busy machines: a missing deadline hangs the call, it is not slow.
				if took := time.Since(start); took > timeout+10*time.Second {
					t.Fatalf("%s took %v with a %v timeout", op, took, timeout)
				}
				var ce *couch.Error
				errors.As(err, &ce)
				if ce.Op != op || ce.Node != n.Name() {
					t.Fatalf("%s: error op %q node %q", op, ce.Op, ce.Node)
				}
			}
		})
	}
}

func TestNodeCallerDeadlineWins(t *testing.T) {
	c := startCluster(t, 1)
	n := newNode(t, c, 0, couch.Options{User: "medic", Password: password, Timeout: time.Minute})
	c.Nodes()[0].Hang()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := n.Up(ctx) // the login itself hangs: the caller still leaves on time
	checkErr(t, err, couch.ReasonTimeout)
	if took := time.Since(start); took > 20*time.Second { // well under the node's own minute
		t.Fatalf("Up took %v with a 150ms caller deadline", took)
	}
}

func TestNodeWatch(t *testing.T) {
	c := startCluster(t, 1)
	sim := c.Nodes()[0]
	n := newNode(t, c, 0, adminOpts())
	ctx := context.Background()
	if _, err := n.Up(ctx); err != nil { // the probe's connection is the one watched
		t.Fatal(err)
	}

	t.Run("quiet node: the whole wait, the connection kept", func(t *testing.T) {
		before := sim.Stats().Conns
		start := time.Now()
		if n.Watch(ctx, 100*time.Millisecond) {
			t.Fatal("Watch reported a close on a healthy node")
		}
		if took := time.Since(start); took < 90*time.Millisecond {
			t.Fatalf("Watch returned after %v, want ~100ms", took)
		}
		if _, err := n.Up(ctx); err != nil {
			t.Fatal(err)
		}
		if got := sim.Stats().Conns - before; got != 0 {
			t.Fatalf("%d new connections for a watch and a probe, want 0 (one kept-alive connection)", got)
		}
	})
	t.Run("crash ends the wait at once", func(t *testing.T) {
		done := make(chan bool, 1)
		go func() { done <- n.Watch(ctx, time.Minute) }()
		waitFor(t, func() bool { return heldConns(sim) })
		time.Sleep(20 * time.Millisecond) // let Watch park its read
		start := time.Now()
		sim.Stop()
		select {
		case closed := <-done:
			if !closed {
				t.Fatal("Watch = false after a crash")
			}
			// Loose for busy machines; without the watch it would take the whole minute.
			if took := time.Since(start); took > 20*time.Second {
				t.Fatalf("Watch noticed the crash after %v", took)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Watch did not return after the node crashed")
		}
		start = time.Now()
		if n.Watch(ctx, 150*time.Millisecond) { // nothing to hold, dial refused: just waits
			t.Fatal("Watch = true with nothing to hold")
		}
		if took := time.Since(start); took < 140*time.Millisecond {
			t.Fatalf("Watch with the node down returned after %v, want the whole wait", took)
		}
		_, err := n.Up(ctx)
		checkErr(t, err, couch.ReasonRefused)
		if err := sim.Start(); err != nil {
			t.Fatal(err)
		}
		if _, err := n.Up(ctx); err != nil {
			t.Fatalf("Up after restart: %v", err)
		}
	})
	t.Run("hung node keeps the connection until the wait ends", func(t *testing.T) {
		sim.Hang()
		defer sim.Resume()
		if n.Watch(ctx, 100*time.Millisecond) {
			t.Fatal("Watch = true on a hung node")
		}
	})
	t.Run("cancel", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan bool, 1)
		go func() { done <- n.Watch(cctx, time.Minute) }()
		time.Sleep(20 * time.Millisecond)
		cancel()
		select {
		case closed := <-done:
			if closed {
				t.Fatal("Watch = true on cancel")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Watch ignored cancel")
		}
	})
}

// heldConns reports whether the simulated node has an open connection (the hold).
func heldConns(s *couchtest.Node) bool { return s.OpenConns() > 0 }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewNodeRejects(t *testing.T) {
	targets, err := couch.ParseServers("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	for name, opt := range map[string]couch.Options{
		"negative timeout":      {Timeout: -1},
		"negative body cap":     {MaxBody: -1},
		"password without user": {Password: "x"},
	} {
		if _, err := couch.NewNode(targets[0], opt); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := couch.NewNode(couch.Target{Name: "x"}, couch.Options{}); err == nil {
		t.Error("nil URL: no error")
	}
}

func TestNodeBodyCapWithoutContentLength(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		chunk := []byte(strings.Repeat(" ", 64<<10))
		for range 32 { // 2 MiB, chunked: no Content-Length to refuse early
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	targets, err := couch.ParseServers(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	n, err := couch.NewNode(targets[0], couch.Options{MaxBody: 1 << 20, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = n.System(context.Background())
	checkErr(t, err, couch.ReasonTooLarge)
	_, err = n.ConfigValue(context.Background(), "cluster", "n") // through kivik
	checkErr(t, err, couch.ReasonTooLarge)
}
