package haproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
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
	agentMaxConns  = 64
	agentMaxSend   = 256
)

// AgentServer answers HAProxy agent-checks, a drop-in for CHT's healthcheck on 5555.
type AgentServer struct {
	respond AgentResponder
	log     *slog.Logger
	m       *Metrics
}

// NewAgentServer returns an AgentServer; log and m may be nil.
func NewAgentServer(respond AgentResponder, log *slog.Logger, m *Metrics) *AgentServer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	return &AgentServer{respond: respond, log: log, m: m}
}

// Serve accepts agent-check connections on ln until ctx ends, then closes ln, waits
// for the connections in flight and returns nil. Other accept errors are returned.
// At most agentMaxConns connections are served at once; extra ones are closed.
func (s *AgentServer) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, agentMaxConns)
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
		select {
		case sem <- struct{}{}:
		default:
			s.log.Warn("agent connection refused: too many connections", "remote", conn.RemoteAddr().String())
			_ = conn.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.handle(conn)
		}()
	}
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
