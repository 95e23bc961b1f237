package haproxy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/medic/couchwatch/haproxy"
	"github.com/medic/couchwatch/haproxy/haproxytest"
	"github.com/medic/couchwatch/internal/testenv"
)

// countingListener counts accepted connections by source address.
type countingListener struct {
	net.Listener
	mu   sync.Mutex
	from map[netip.Addr]int
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		if ap, perr := netip.ParseAddrPort(c.RemoteAddr().String()); perr == nil {
			l.mu.Lock()
			l.from[ap.Addr()]++
			l.mu.Unlock()
		}
	}
	return c, err
}

func (l *countingListener) count(a netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.from[a]
}

// A flood of the agent port from one client (bounded: 3 s or 50,000
// connections): every refusal is counted, the warnings come at most once per
// interval, and every agent check HAProxy makes meanwhile gets its answer.
func TestAgentFloodHAProxyChecksAnswered(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &countingListener{Listener: inner, from: map[netip.Addr]int{}}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	var answered atomic.Int64 // HAProxy's checks answered (they name their server)
	respond := func(server string) haproxy.AgentReply {
		if strings.HasPrefix(server, "n") {
			answered.Add(1)
		}
		return haproxy.AgentReply{Words: []string{"up", "ready"}}
	}
	logs := &testenv.LogBuffer{}
	m := metricsFor(t, prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- haproxy.NewAgentServer(respond, slog.New(slog.NewTextHandler(logs, nil)), m).Serve(ctx, ln)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	specs := threeServers(t)
	for i := range specs {
		specs[i].Extra = fmt.Sprintf(`check inter 500ms agent-check agent-inter 50ms agent-addr 127.0.0.1 agent-port %s agent-send "%s\n"`, port, specs[i].Name)
	}
	p := haproxytest.StartT(t, haproxytest.Options{Servers: specs})
	for _, s := range specs {
		p.WaitServer(t, backend, s.Name, func(s haproxytest.Server) bool { return s.Status == "UP" }, 5*time.Second)
	}

	// The flood comes from another loopback address than HAProxy's checks.
	flooder := netip.MustParseAddr("127.0.0.2")
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: flooder.AsSlice()}, Timeout: time.Second}
	const workers, maxConns, maxTime = 96, 50000, 3 * time.Second
	hapBefore, answeredBefore := ln.count(netip.MustParseAddr("127.0.0.1")), answered.Load()
	start := time.Now()
	var sent, unanswered atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < maxTime && sent.Add(1) <= maxConns {
				c, err := dialer.Dial("tcp", ln.Addr().String())
				if err != nil {
					continue
				}
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				b, _ := io.ReadAll(c) // sends nothing: held for the read wait, like CHT's HAProxy
				if len(b) == 0 {
					unanswered.Add(1)
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	hapChecks := ln.count(netip.MustParseAddr("127.0.0.1")) - hapBefore
	hapAnswered := answered.Load() - answeredBefore
	refused := testutil.ToFloat64(m.AgentRefused.WithLabelValues("max_connections")) + testutil.ToFloat64(m.AgentRefused.WithLabelValues("max_per_source"))
	warnings := strings.Count(logs.String(), "agent connections refused")
	t.Logf("flood: %d connections in %s, %d unanswered; HAProxy: %d checks, %d answered; refused metric %v; %d warning lines",
		min(sent.Load(), maxConns), elapsed.Round(time.Millisecond), unanswered.Load(), hapChecks, hapAnswered, refused, warnings)

	if unanswered.Load() == 0 {
		t.Fatal("the flood was never refused: it did not reach the caps")
	}
	// A check in flight when counting stopped may not be answered yet.
	if int64(hapChecks)-hapAnswered > int64(len(specs)) {
		t.Errorf("HAProxy made %d agent checks during the flood, %d were answered", hapChecks, hapAnswered)
	}
	if refused != float64(unanswered.Load()) {
		t.Errorf("refusals counted %v, the flood saw %d connections closed unanswered", refused, unanswered.Load())
	}
	if limit := 1 + int(elapsed/(10*time.Second)); warnings < 1 || warnings > limit {
		t.Errorf("%d refusal warnings in %s, want 1 to %d:\n%s", warnings, elapsed, limit, logs.String())
	}
	for name, s := range mustServers(t, p) {
		if s.Status != "UP" {
			t.Errorf("%s is %s after the flood, want UP", name, s.Status)
		}
	}
}

func mustServers(t *testing.T, p *haproxytest.Proc) map[string]haproxytest.Server {
	t.Helper()
	s, err := p.Servers(backend)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
