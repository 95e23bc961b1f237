package haproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSplitReplies(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		n       int
		want    []reply
		wantErr error
	}{
		{name: "silent successes", raw: "\n\n\n", n: 3, want: []reply{{-1, ""}, {-1, ""}, {-1, ""}}},
		{
			name: "mixed, as HAProxy 2.6 answers a batch",
			raw:  "\n\n[3]: No such server.\n\n[4]: Invalid addr 'bogus' by 'stats socket command'\n\n\n",
			n:    5,
			want: []reply{{-1, ""}, {-1, ""}, {3, "No such server."}, {4, "Invalid addr 'bogus' by 'stats socket command'"}, {-1, ""}},
		},
		{name: "multi-line body", raw: "\n1\n# h\nl1\nl2\n\n", n: 2, want: []reply{{-1, ""}, {-1, "1\n# h\nl1\nl2"}}},
		{name: "missing reply", raw: "\n\n", n: 3, wantErr: ErrTruncated},
		{name: "cut mid reply", raw: "\n1\n# be_id be_name\n3 couchdb", n: 2, wantErr: ErrTruncated},
		{name: "extra bytes", raw: "\n\ngarbage", n: 2, wantErr: ErrMalformed},
		{name: "empty", raw: "", n: 1, wantErr: ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := splitReplies(tt.raw, tt.n)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if got != nil {
					t.Fatalf("got partial replies %+v with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("reply %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// fakeSocket serves one unix socket; handle gets each connection and the line read.
func fakeSocket(t *testing.T, handle func(c net.Conn, line string)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fake.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				n, _ := c.Read(buf)
				handle(c, string(buf[:n]))
			}()
		}
	}()
	return path
}

func newTestRuntime(t *testing.T, path string, timeout time.Duration) *Runtime {
	t.Helper()
	rt, err := NewRuntime(Config{Socket: path, Timeout: timeout}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func TestRuntimeBrokenPeers(t *testing.T) {
	state := "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n" +
		"3 couchdb-servers 1 n1 127.0.0.1 2 0 1 1 1 1 0 2 0 0 0 0 - 15984 - 0 0 - - 0\n"
	tests := []struct {
		name    string
		answer  string // written then the connection is closed
		wantErr error
	}{
		{name: "closes without answering", answer: "", wantErr: ErrTruncated},
		{name: "closes mid reply", answer: "\n" + state[:len(state)-20], wantErr: ErrTruncated},
		{name: "state but no stat", answer: "\n" + state + "\n", wantErr: ErrTruncated},
		{name: "garbage", answer: "\nhello\n\nworld\n\n", wantErr: ErrMalformed},
		{name: "garbage stat", answer: "\n" + state + "\n# pxname,svname\nfoo\n\n", wantErr: ErrMalformed},
		{name: "server missing from stat", answer: "\n" + state + "\n# pxname,svname,scur,status,weight,check_status,agent_status\ncouchdb-servers,BACKEND,0,UP,1,,\n\n", wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := fakeSocket(t, func(c net.Conn, _ string) { io.WriteString(c, tt.answer) })
			rt := newTestRuntime(t, path, time.Second)
			obs, err := rt.State(context.Background(), "")
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("State err = %v, want %v", err, tt.wantErr)
			}
			if len(obs.Servers) != 0 {
				t.Fatalf("half state returned with an error: %+v", obs)
			}
		})
	}
}

func TestRuntimeNeverAnswers(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	path := fakeSocket(t, func(c net.Conn, _ string) { <-release })
	rt := newTestRuntime(t, path, 200*time.Millisecond)
	start := time.Now()
	_, err := rt.State(context.Background(), "")
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("State err = %v, want deadline exceeded", err)
	}
	// The socket never answers: returning at all is the deadline's doing. The bound only
	// tells the Config.Timeout apart from the test's own, and is loose for busy machines.
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("State took %s with a 200ms timeout", d)
	}
	// The caller's context is honoured too, even with a long Config.Timeout.
	rt = newTestRuntime(t, path, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	err = rt.Apply(ctx, []Command{{Server: "n1", Op: "state", Text: "set server b/n1 state drain"}})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 20*time.Second { // < Config.Timeout (1m)
		t.Fatalf("Apply err = %v after %s, want deadline exceeded quickly", err, time.Since(start))
	}
}

func TestRuntimeSocketMissing(t *testing.T) {
	rt := newTestRuntime(t, filepath.Join(t.TempDir(), "nope.sock"), time.Second)
	if _, err := rt.State(context.Background(), ""); err == nil {
		t.Fatal("State on a missing socket: want an error")
	}
	if err := rt.Apply(context.Background(), []Command{{Op: "state", Text: "set server b/n1 state drain"}}); err == nil {
		t.Fatal("Apply on a missing socket: want an error")
	}
}

func TestApplyBatches(t *testing.T) {
	lines := make(chan string, 100)
	path := fakeSocket(t, func(c net.Conn, line string) {
		lines <- line
		n := strings.Count(line, ";") + 1
		io.WriteString(c, strings.Repeat("\n", n))
	})
	rt := newTestRuntime(t, path, time.Second)
	var cmds []Command
	for i := range 600 {
		_ = i
		cmds = append(cmds, Command{Server: "n", Op: "weight", Text: "set server couchdb-servers/some-long-server-name weight 100"})
	}
	if err := rt.Apply(context.Background(), cmds); err != nil {
		t.Fatal(err)
	}
	close(lines)
	total, batches := 0, 0
	for l := range lines {
		batches++
		if len(l) > maxBatchBytes+len(severityPrefix)+2 {
			t.Errorf("batch of %d bytes, limit %d", len(l), maxBatchBytes)
		}
		if !strings.HasPrefix(l, severityPrefix+";") || !strings.HasSuffix(l, "\n") {
			t.Errorf("batch %.40q: want severity prefix and one line", l)
		}
		total += strings.Count(l, "weight 100")
	}
	if total != 600 || batches < 2 {
		t.Fatalf("sent %d commands in %d batches, want 600 in several", total, batches)
	}
}

func TestApplyRefusesBadCommands(t *testing.T) {
	rt := newTestRuntime(t, filepath.Join(t.TempDir(), "unused.sock"), time.Second)
	for _, c := range []Command{
		{Op: "weight", Text: "set server b/n1 weight 50%"},
		{Op: "weight", Text: "set server b/n1 weight 300"},
		{Op: "state", Text: "set server b/n1 state up"},
		{Op: "state", Text: "set server b/n1 state drain;shutdown sessions server b/n1"},
		{Op: "addr", Text: "set server b/n1 addr 1.2.3.4 port"},
		{Op: "health", Text: "set server b/n1 health down"},
		{Op: "state", Text: "disable server b/n1"},
	} {
		if err := rt.Apply(context.Background(), []Command{c}); err == nil || strings.Contains(err.Error(), "dial") {
			t.Errorf("Apply(%q) = %v, want refusal before dialing", c.Text, err)
		}
	}
}
