package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// cmd runs `couchwatch <args>` in process against the stack, as kubectl exec would in
// the container: the same environment as the running couchwatch.
func (s *stack) cmd(args ...string) (int, string, string) {
	s.t.Helper()
	env := envOf("COUCHWATCH_LISTEN", s.http, "COUCHDB_SERVERS", s.cluster.Targets(),
		"COUCHDB_USER", s.cluster.User(), "COUCHDB_PASSWORD", s.cluster.Password())
	var out, errb bytes.Buffer
	code := run(context.Background(), args, env, &out, &errb)
	return code, out.String(), errb.String()
}

func TestStatusCommand(t *testing.T) {
	s := newStack(t, stackOpts{runtime: true, setup: chtShards, env: map[string]string{"COUCHWATCH_SHARDS_REFRESH": "1s"}})
	s.waitAll("ready", ready)
	s.waitStatus("named", func(v statusView) bool { return v.Blast.Known && nodeOf(v, "couchdb-3").ErlangName != "" })
	s.node(3).Stop()
	s.wait("couchdb-3", "maint", maint)
	s.waitStatus("blast", func(v statusView) bool {
		return len(v.Blast.Lost) > 0 && nodeOf(v, "couchdb-3").HAProxy.Admin == "maint"
	})
	code, out, errs := s.cmd("status")
	if code != 0 {
		t.Fatalf("status = %d: %s", code, errs)
	}
	for _, want := range []string{"mode runtime", "couchdb3@127.0.0.1", "couchdb-3", "NO ANSWER", "maint stopped", "LOGINS AFFECTED",
		"_users: 4 of 12 ranges", "timeline (newest first", "up → down", "state maint"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, s.cluster.Password()) {
		t.Error("status prints the password")
	}
	if code, _, errs := s.cmd("status", "-addr", "127.0.0.1:1"); code != 1 || !strings.Contains(errs, "does not answer") {
		t.Errorf("status against nothing = %d %q", code, errs)
	}
}

// drain takes a node out the README's way and waits for its last session; it refuses
// what would break the capacity floor; undrain brings the node back.
func TestDrainCommand(t *testing.T) {
	s := newStack(t, stackOpts{runtime: true})
	s.waitAll("ready", ready)
	s.waitStatus("haproxy read", func(v statusView) bool {
		for _, n := range v.Nodes {
			if !serving(n) {
				return false
			}
		}
		return true
	})

	// One slow request on each server (leastconn spreads them); couchdb-2's lasts 1.5 s.
	s.node(2).SetLatencyPerInflight(1500 * time.Millisecond)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, "http://"+s.hap.FrontendAddr()+"/medic/_all_docs", nil)
			req.SetBasicAuth(s.cluster.User(), s.cluster.Password())
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	for deadline := time.Now().Add(10 * time.Second); s.node(2).Stats().InFlight != 1; {
		if time.Now().After(deadline) {
			t.Fatal("no request in flight on couchdb-2")
		}
		time.Sleep(5 * time.Millisecond) // the simulator's counter: no event to wait on
	}

	code, out, errs := s.cmd("drain", "couchdb-2")
	if code != 0 {
		t.Fatalf("drain = %d\n%s\n%s", code, out, errs)
	}
	if s.node(2).Stats().InFlight != 0 {
		t.Error("drain returned while couchdb-2 still served a request")
	}
	if !strings.Contains(out, "1 sessions") || !strings.Contains(out, "maintenance_mode = nolb (was false)") || !strings.Contains(out, "drained") {
		t.Errorf("drain output does not show the wait for the session:\n%s", out)
	}
	if m := s.node(2).Status().Maintenance; m != "nolb" {
		t.Errorf("couchdb-2 maintenance %q, want nolb", m)
	}
	s.wait("couchdb-2", "maint", maint)
	wg.Wait()

	t.Run("refused under the capacity floor", func(t *testing.T) {
		code, _, errs := s.cmd("drain", s.node(1).Addr())
		if code != 1 || !strings.Contains(errs, "refused") || !strings.Contains(errs, "capacity floor of 2") {
			t.Errorf("second drain = %d %q, want a refusal naming the floor", code, errs)
		}
		if m := s.node(1).Status().Maintenance; m != "" {
			t.Errorf("couchdb-1 put in maintenance %q despite the refusal", m)
		}
	})
	t.Run("unknown node", func(t *testing.T) {
		if code, _, errs := s.cmd("drain", "couchdb-9"); code != 1 || !strings.Contains(errs, `no node "couchdb-9"`) {
			t.Errorf("drain couchdb-9 = %d %q", code, errs)
		}
	})
	t.Run("undrain", func(t *testing.T) {
		code, out, errs := s.cmd("undrain", "couchdb2@127.0.0.1") // by its CouchDB name
		if code != 0 || !strings.Contains(out, "back in rotation") {
			t.Fatalf("undrain = %d\n%s\n%s", code, out, errs)
		}
		if m := s.node(2).Status().Maintenance; m != "" {
			t.Errorf("couchdb-2 maintenance %q after undrain", m)
		}
		s.wait("couchdb-2", "ready", ready)
	})
	v := s.status()
	if !hasEvent(v, evCommand, "couchdb-2", "state drain") || !hasEvent(v, evVerdict, "couchdb-2", "up → drain") {
		t.Errorf("the drain is not in the timeline: %+v", v.Timeline)
	}
}

func TestDrainRefusal(t *testing.T) {
	node := func(name, verdict, admin string) nodeView {
		return nodeView{Node: name, Verdict: verdict, HAProxy: haproxyView{Reported: true, Admin: admin, Op: "running"}}
	}
	for _, tc := range []struct {
		name string
		v    statusView
		want string
	}{
		{"single node: the last ready server", statusView{Nodes: []nodeView{node("a", "up", "ready")}}, "last ready server"},
		{"3 nodes, all ready", statusView{Nodes: []nodeView{node("a", "up", "ready"), node("b", "up", "ready"), node("c", "up", "ready")}}, ""},
		{"3 nodes, one down", statusView{Nodes: []nodeView{node("a", "up", "ready"), node("b", "down", "maint"), node("c", "up", "ready")}}, "capacity floor of 2"},
		{"MIN_READY above half", statusView{MinReady: 4, Nodes: []nodeView{node("a", "up", "ready"), node("b", "up", "ready"), node("c", "up", "ready"), node("d", "up", "ready")}}, "capacity floor of 4"},
		{"fail open", statusView{FailOpen: true, Nodes: []nodeView{node("a", "down", "ready"), node("b", "down", "ready")}}, "failing open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := drainRefusal(tc.v, tc.v.Nodes[0])
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("refusal %q, want %q", got, tc.want)
			}
		})
	}
}

// couchwatch status against a couchwatch serving TLS with basic auth
// (COUCHWATCH_WEB_CONFIG_FILE): -https, -ca-file, -user and COUCHWATCH_CLI_PASSWORD.
func TestStatusCommandTLSBasicAuth(t *testing.T) {
	const user, password = "operator", "op-93be1"
	path, _ := webConfig(t, user, password)
	ca := filepath.Join(filepath.Dir(path), "tls.crt") // the self-signed certificate
	s := newStack(t, stackOpts{env: map[string]string{"COUCHWATCH_WEB_CONFIG_FILE": path}})
	cmd := func(args ...string) (int, string, string) {
		env := envOf("COUCHWATCH_LISTEN", s.http, "COUCHWATCH_CLI_PASSWORD", password)
		var out, errb bytes.Buffer
		code := run(context.Background(), args, env, &out, &errb)
		return code, out.String(), errb.String()
	}
	if code, out, errs := cmd("status", "-https", "-ca-file", ca, "-user", user); code != 0 || !strings.Contains(out, "mode agent") {
		t.Errorf("status over TLS with the user = %d\n%s\n%s", code, out, errs)
	}
	if code, _, errs := cmd("status", "-https", "-ca-file", ca); code != 1 || !strings.Contains(errs, "wants basic auth") {
		t.Errorf("status without the user = %d %q, want the basic-auth hint", code, errs)
	}
	if code, _, errs := cmd("status", "-https", "-user", user); code != 1 || !strings.Contains(errs, "certificate") {
		t.Errorf("status with an unverified certificate = %d %q, want a certificate error", code, errs)
	}
}
