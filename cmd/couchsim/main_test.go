package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medic/couchwatch/couch/couchtest"
)

func post(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestControl(t *testing.T) {
	c := couchtest.NewClusterT(t, 3, couchtest.Options{})
	srv := httptest.NewServer(newControl(c))
	defer srv.Close()
	n2 := c.Nodes()[1]

	if code, _ := post(t, srv.URL+"/nodes/2/stop"); code != 200 || n2.Running() {
		t.Fatalf("stop: %d, running %v", code, n2.Running())
	}
	if _, err := net.Dial("tcp", n2.Addr()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial after stop: %v", err)
	}
	if code, _ := post(t, srv.URL+"/nodes/2/start"); code != 200 || !n2.Running() {
		t.Fatalf("start: %d", code)
	}
	for _, tc := range []struct {
		path  string
		check func(couchtest.Status) bool
	}{
		{"/nodes/2/hang", func(s couchtest.Status) bool { return s.Hung }},
		{"/nodes/2/resume", func(s couchtest.Status) bool { return !s.Hung }},
		{"/nodes/2/maintenance?mode=nolb", func(s couchtest.Status) bool { return s.Maintenance == "nolb" }},
		{"/nodes/2/load?level=0.9", func(s couchtest.Status) bool { return s.Load == 0.9 }},
		{"/nodes/2/fault?f=5xx", func(s couchtest.Status) bool { return s.Fault == couchtest.Fault5xx }},
		{"/nodes/2/latency?d=250ms", func(s couchtest.Status) bool { return s.Latency == 250*time.Millisecond }},
		{"/nodes/2/latency-per-inflight?d=10ms", func(s couchtest.Status) bool { return s.PerInflight == 10*time.Millisecond }},
		{"/nodes/2/missing?v=true", func(s couchtest.Status) bool { return s.Missing }},
	} {
		if code, body := post(t, srv.URL+tc.path); code != 200 || !tc.check(n2.Status()) {
			t.Fatalf("%s: %d %s, status %+v", tc.path, code, body, n2.Status())
		}
	}
	for _, bad := range []string{"/nodes/9/stop", "/nodes/x/stop", "/nodes/2/explode", "/nodes/2/load?level=2", "/nodes/2/fault?f=x", "/nodes/2/maintenance?mode=x"} {
		if code, _ := post(t, srv.URL+bad); code < 400 {
			t.Fatalf("%s: %d, want an error", bad, code)
		}
	}
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "COUCHDB_SERVERS="+c.Targets()) || !strings.Contains(string(b), "couchdb2@127.0.0.1") ||
		!strings.Contains(string(b), "usage") {
		t.Fatalf("status page:\n%s", b)
	}
}

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		code := run(ctx, []string{"-nodes", "2", "-control", "127.0.0.1:0"}, pw, io.Discard)
		pw.Close()
		done <- code
	}()
	sc := bufio.NewScanner(pr)
	var servers, control string
	for (servers == "" || control == "") && sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "COUCHDB_SERVERS="); ok {
			servers = v
		}
		if v, ok := strings.CutPrefix(line, "control "); ok {
			control = v
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if len(strings.Split(servers, ",")) != 2 || control == "" {
		t.Fatalf("servers %q control %q", servers, control)
	}
	req, _ := http.NewRequest("GET", "http://"+strings.Split(servers, ",")[0]+"/_up", nil)
	req.SetBasicAuth(couchtest.DefaultUser, couchtest.DefaultPassword)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("node /_up: %v %v", resp, err)
	}
	resp.Body.Close()
	if code, _ := post(t, control+"nodes/1/hang"); code != 200 {
		t.Fatalf("hang via control: %d", code)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("run exited %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not stop on cancel")
	}
	if code := run(context.Background(), []string{"-control", "0.0.0.0:1"}, io.Discard, io.Discard); code != 2 {
		t.Fatalf("non-loopback control: exit %d, want 2", code)
	}
}
