package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/medic/couchwatch/couch/couchtest"
	"github.com/medic/couchwatch/haproxy/haproxytest"
	"github.com/medic/couchwatch/internal/testenv"
)

// childNofile, when set, makes this test binary run couchwatch itself under
// that RLIMIT_NOFILE (see startLimited) instead of the tests.
const childNofile = "COUCHWATCH_TEST_CHILD_NOFILE"

func TestMain(m *testing.M) {
	if v := os.Getenv(childNofile); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err == nil {
			err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: n})
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "child: set RLIMIT_NOFILE:", err)
			os.Exit(3)
		}
		os.Exit(run(context.Background(), nil, envconfig.OsLookuper(), os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// limited is couchwatch running in a child process under a small RLIMIT_NOFILE.
type limited struct {
	cmd  *exec.Cmd
	logs *testenv.LogBuffer
	http string
}

func startLimited(t *testing.T, nofile int, env map[string]string) *limited {
	t.Helper()
	l := &limited{logs: &testenv.LogBuffer{}}
	l.cmd = exec.Command(os.Args[0], "-test.run=^$")
	l.cmd.Env = append(os.Environ(), childNofile+"="+strconv.Itoa(nofile))
	for k, v := range env {
		l.cmd.Env = append(l.cmd.Env, k+"="+v)
	}
	l.cmd.Stdout, l.cmd.Stderr = l.logs, l.logs
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = l.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = l.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = l.cmd.Process.Kill()
			t.Error("couchwatch did not stop within 10s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("couchwatch log:\n%s", tail(l.logs.String(), 12000))
		}
	})
	addr := regexp.MustCompile(`msg="couchwatch starting".* http=(127\.0\.0\.1:\d+)`)
	deadline := time.Now().Add(20 * time.Second)
	for l.http == "" {
		if m := addr.FindStringSubmatch(l.logs.String()); m != nil {
			l.http = m[1]
			break
		}
		select {
		case <-exited:
			t.Fatalf("couchwatch exited: %v\n%s", l.cmd.ProcessState, l.logs.String())
		case <-time.After(20 * time.Millisecond): // polling a child's output: no event to wait on
		}
		if time.Now().After(deadline) {
			t.Fatalf("couchwatch did not start:\n%s", l.logs.String())
		}
	}
	return l
}

// fds counts the child's open descriptors.
func (l *limited) fds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", l.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// HTTP connections that send one request and never read (idle keep-alive
// once answered) and a /metrics reader that never reads, against couchwatch
// in its own process: 400 of them under `ulimit -n 200`, 2000 under 4096.
// Steering goes on meanwhile (a crashed node goes to maint and comes back, in
// HAProxy's own state), couchwatch never runs out of descriptors, and it
// holds no more than its HTTP cap of them.
func TestSteeringUnderFDLimit(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Fatalf("needs /proc: %v", err)
	}
	for _, tc := range []struct {
		nofile, conns, httpCap int
	}{{200, 400, 62}, {4096, 2000, 64}} {
		t.Run(fmt.Sprintf("nofile=%d/conns=%d", tc.nofile, tc.conns), func(t *testing.T) {
			steerUnderFlood(t, tc.nofile, tc.conns, tc.httpCap)
		})
	}
}

func steerUnderFlood(t *testing.T, nofile, conns, httpCap int) {
	cluster := couchtest.NewClusterT(t, 3, couchtest.Options{NetTickTime: time.Second, User: "medic", Password: "pw-7f3a9c"})
	var specs []haproxytest.ServerSpec
	var servers []string
	for i, n := range cluster.Nodes() {
		specs = append(specs, haproxytest.ServerSpec{Name: fmt.Sprintf("couchdb-%d", i+1), Addr: n.Addr()})
		servers = append(servers, n.Addr())
	}
	hap := haproxytest.StartT(t, haproxytest.Options{Servers: specs})
	env := fastEnv()
	env["COUCHWATCH_LOG_LEVEL"] = "info"
	env["COUCHDB_SERVERS"] = strings.Join(servers, ",")
	env["COUCHDB_USER"], env["COUCHDB_PASSWORD"] = cluster.User(), cluster.Password()
	env["COUCHWATCH_HAPROXY_SOCKET"] = hap.Socket()
	env["COUCHWATCH_LISTEN"] = "127.0.0.1:0"
	env["COUCHWATCH_AGENT_LISTEN"] = "127.0.0.1:0"
	env["COUCHWATCH_COUCHDB_METRICS"] = "false"
	cw := startLimited(t, nofile, env)
	waitServer := func(name, what string, cond func(haproxytest.Server) bool) {
		t.Helper()
		hap.WaitServer(t, backend, name, cond, 15*time.Second)
	}
	for _, s := range specs {
		waitServer(s.Name, "ready", ready)
	}
	baseline := cw.fds(t)

	// The slow reader first, so that it holds a slot, then the flood.
	var flood []net.Conn
	t.Cleanup(func() {
		for _, c := range flood {
			c.Close()
		}
	})
	dial := func(req string) {
		c, err := net.DialTimeout("tcp", cw.http, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", len(flood), err)
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		flood = append(flood, c)
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatalf("connection %d: %v", len(flood), err)
		}
	}
	dial("GET /metrics HTTP/1.1\r\nHost: couchwatch\r\n\r\n")
	for range conns {
		dial("GET /healthz HTTP/1.1\r\nHost: couchwatch\r\n\r\n")
	}
	peak := 0
	poll := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			peak = max(peak, cw.fds(t))
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond) // polling another process: no event to wait on
		}
		peak = max(peak, cw.fds(t))
	}
	// The server took what it will take of the flood.
	poll("the flood to be accepted", func() bool { return cw.fds(t) >= baseline+32 })

	// Steering under the flood: a crashed node goes to maint, then comes back.
	cluster.Nodes()[1].Stop()
	poll("couchdb-2 in maint", func() bool {
		s, err := hap.Servers(backend)
		return err == nil && maint(s["couchdb-2"])
	})
	if err := cluster.Nodes()[1].Start(); err != nil {
		t.Fatal(err)
	}
	poll("couchdb-2 ready", func() bool {
		s, err := hap.Servers(backend)
		return err == nil && ready(s["couchdb-2"])
	})
	logs := cw.logs.String()
	t.Logf("RLIMIT_NOFILE %d, %d HTTP connections + 1 slow /metrics reader: couchwatch holds %d descriptors before the flood, at most %d during it; %d EMFILE log lines",
		nofile, conns, baseline, peak, strings.Count(logs, "too many open files"))
	if strings.Contains(logs, "too many open files") {
		t.Errorf("couchwatch ran out of descriptors under the flood")
	}
	if peak > nofile-64 {
		t.Errorf("couchwatch held %d of %d descriptors during the flood, want at least 64 kept free for steering", peak, nofile)
	}
	// The HTTP cap, plus the probes' and HAProxy's connections coming and going.
	if limit := baseline + httpCap + 16; peak > limit {
		t.Errorf("couchwatch held %d descriptors during the flood, want at most %d (HTTP cap %d)", peak, limit, httpCap)
	}

	// Once the flood goes, HTTP serves again.
	for _, c := range flood {
		c.Close()
	}
	flood = nil
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + cw.http + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics after the flood: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if m := regexp.MustCompile(`(?m)^go_goroutines (\d+)`).FindStringSubmatch(string(b)); m != nil {
		t.Logf("after the flood: go_goroutines %s", m[1])
	}
}
