package haproxy

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestAgentReplyString(t *testing.T) {
	tests := []struct {
		r    AgentReply
		want string
	}{
		{AgentReply{Words: []string{"up", "ready"}}, "up ready\n"},
		{AgentReply{Words: []string{"down"}, Comment: "node2 refused"}, "down #node2 refused\n"},
		{AgentReply{Words: []string{"drain"}, Comment: "line\nbreak"}, "drain #line break\n"},
		{AgentReply{Words: []string{"up", "75%"}}, "up 75%\n"},
		{AgentReply{}, "\n"},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.r, got, tt.want)
		}
	}
}

func startAgent(t *testing.T, respond AgentResponder) (string, *Metrics) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := mustMetrics(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewAgentServer(respond, nil, m).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return ln.Addr().String(), m
}

func ask(t *testing.T, addr, send string) (string, time.Duration) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	start := time.Now()
	if send != "" {
		io.WriteString(c, send)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), time.Since(start)
}

func TestAgentServer(t *testing.T) {
	addr, m := startAgent(t, func(server string) AgentReply {
		switch server {
		case "":
			return AgentReply{Words: []string{"up", "ready"}}
		case "n2":
			return AgentReply{Words: []string{"down"}, Comment: "n2 refused"}
		}
		return AgentReply{Words: []string{"maint"}}
	})
	// How fast is not asserted (a busy machine can delay any answer past a bound): the
	// per-server answer itself shows the agent-send line was read, not waited out.
	if got, d := ask(t, addr, "n2\n"); got != "down #n2 refused\n" {
		t.Errorf("with agent-send: %q after %s, want the server's own answer", got, d)
	}
	if got, _ := ask(t, addr, "  n9 \r\n"); got != "maint\n" {
		t.Errorf("trimmed agent-send: %q", got)
	}
	if got, d := ask(t, addr, ""); got != "up ready\n" || d < agentReadWait/2 {
		t.Errorf("without agent-send: %q after %s, want the cluster answer after the read wait", got, d)
	}
	if got := testutil.ToFloat64(m.AgentReplies.WithLabelValues("up")); got != 1 {
		t.Errorf("up replies = %v", got)
	}
	if got := testutil.ToFloat64(m.AgentReplies.WithLabelValues("down")); got != 1 {
		t.Errorf("down replies = %v", got)
	}
}

// A client that never reads, sends or closes does not hold the server: it is cut
// off, and the other connections are still served.
func TestAgentServerBounded(t *testing.T) {
	addr, _ := startAgent(t, func(string) AgentReply { return AgentReply{Words: []string{"up"}} })
	var idle []net.Conn
	for range AgentMaxConns + 10 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	// Each idle client gets its answer and is closed, within the read wait.
	for _, c := range idle[:3] {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil || !strings.HasPrefix(string(b), "up") && len(b) != 0 {
			t.Fatalf("idle client: %q, %v", b, err)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		got, _ := ask(t, addr, "x\n")
		if got == "up\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server stopped answering under idle clients (last %q)", got)
		}
	}
}
