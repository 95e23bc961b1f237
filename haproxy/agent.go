package haproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// AgentReply is one agent-check answer: words such as "up", "ready", "drain",
// "maint", "down", "75%", and an optional comment HAProxy shows after '#'.
type AgentReply struct {
	Words   []string
	Comment string
}

// String is the reply as sent on the wire, e.g. "up ready\n" or "down #node2 refused\n".
func (a AgentReply) String() string {
	var b strings.Builder
	for i, w := range a.Words {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(oneLine(w))
	}
	if a.Comment != "" {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("#" + oneLine(a.Comment))
	}
	b.WriteByte('\n')
	return b.String()
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == 0 {
			return ' '
		}
		return r
	}, s)
}

// AgentResponder answers for a server: the string HAProxy sent with agent-send,
// trimmed, or "" when it sends nothing (CHT's config).
type AgentResponder func(server string) AgentReply

// Agent server limits.
const (
	// agentReadWait is how long to wait for an agent-send string; HAProxy without
	// agent-send sends nothing and waits for the reply.
	agentReadWait  = 100 * time.Millisecond
	agentWriteWait = time.Second
	agentMaxSend   = 256
	// AgentMaxConns is the default cap on connections served at once.
	AgentMaxConns = 64
	// agentRefusalLogEvery spaces the warnings about refused connections.
	agentRefusalLogEvery = 10 * time.Second
)

// Reasons a connection is refused (couchwatch_agent_refused_total).
const (
	refusedMaxConns  = "max_connections"
	refusedPerSource = "max_per_source"
)

func refusalReasons() []string { return []string{refusedMaxConns, refusedPerSource} }

// AgentServer answers HAProxy agent-checks, a drop-in for CHT's healthcheck on 5555.
type AgentServer struct {
	// MaxConns caps the connections served at once (default AgentMaxConns).
	// One source address gets at most a quarter of them, so a flood from one
	// client cannot starve HAProxy's own checks. Set before Serve.
	MaxConns int

	respond AgentResponder
	log     *slog.Logger
	m       *Metrics
	now     func() time.Time

	mu       sync.Mutex
	total    int
	bySource map[netip.Addr]int
	refused  int       // refusals since the last warning
	warned   time.Time // time of the last warning
}

// NewAgentServer returns an AgentServer; log and m may be nil.
func NewAgentServer(respond AgentResponder, log *slog.Logger, m *Metrics) *AgentServer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m, _ = NewMetrics(nil) // not registered: cannot fail
	}
	return &AgentServer{MaxConns: AgentMaxConns, respond: respond, log: log, m: m, now: time.Now, bySource: map[netip.Addr]int{}}
}

// Serve accepts agent-check connections on ln until ctx ends, then closes ln, waits
// for the connections in flight and returns nil. Other accept errors are returned.
// Connections over the caps are closed at once, counted, and warned about at
// most once per agentRefusalLogEvery.
func (s *AgentServer) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			_ = ln.Close()
			return fmt.Errorf("agent server accept: %w", err)
		}
		src := sourceOf(conn)
		if reason := s.admit(src); reason != "" {
			_ = conn.Close()
			s.refuse(reason, src)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.release(src)
			s.handle(conn)
		}()
	}
}

func sourceOf(conn net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(conn.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// admit takes a slot for a connection from src, or says why not.
func (s *AgentServer) admit(src netip.Addr) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	limit := max(1, s.MaxConns)
	switch {
	case s.total >= limit:
		return refusedMaxConns
	case s.bySource[src] >= max(1, limit/4):
		return refusedPerSource
	}
	s.total++
	s.bySource[src]++
	return ""
}

func (s *AgentServer) release(src netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.bySource[src]--; s.bySource[src] <= 0 {
		delete(s.bySource, src)
	}
}

// refuse counts a refusal and warns at most once per agentRefusalLogEvery,
// with the number refused since the last warning.
func (s *AgentServer) refuse(reason string, src netip.Addr) {
	s.m.AgentRefused.WithLabelValues(reason).Inc()
	s.mu.Lock()
	s.refused++
	now := s.now()
	if !s.warned.IsZero() && now.Sub(s.warned) < agentRefusalLogEvery {
		s.mu.Unlock()
		return
	}
	n := s.refused
	s.refused, s.warned = 0, now
	s.mu.Unlock()
	s.log.Warn("agent connections refused: too many connections", "refused", n, "reason", reason,
		"remote", src.String(), "max", s.MaxConns, "next_warning_after", agentRefusalLogEvery)
}

func (s *AgentServer) handle(conn net.Conn) {
	defer conn.Close()
	server := readAgentSend(conn)
	rep := s.respond(server)
	_ = conn.SetWriteDeadline(time.Now().Add(agentWriteWait))
	if _, err := conn.Write([]byte(rep.String())); err != nil {
		s.log.Debug("agent reply not sent", "server", server, "err", err)
		return
	}
	if len(rep.Words) > 0 && contains(agentWords(), strings.ToLower(rep.Words[0])) {
		s.m.AgentReplies.WithLabelValues(strings.ToLower(rep.Words[0])).Inc()
	}
}

// readAgentSend reads what HAProxy sent before waiting for the reply: up to a newline,
// agentMaxSend bytes, EOF, or agentReadWait, whichever comes first.
func readAgentSend(conn net.Conn) string {
	_ = conn.SetReadDeadline(time.Now().Add(agentReadWait))
	buf := make([]byte, agentMaxSend)
	n := 0
	for n < len(buf) {
		k, err := conn.Read(buf[n:])
		n += k
		if strings.IndexByte(string(buf[:n]), '\n') >= 0 || err != nil {
			break
		}
	}
	line, _, _ := strings.Cut(string(buf[:n]), "\n")
	return strings.TrimSpace(line)
}
