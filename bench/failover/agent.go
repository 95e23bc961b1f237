package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// chtAgent re-implements the decision of CHT's haproxy-healthcheck (check.py): on every
// agent connection, ask the FIRST CouchDB node for /_membership (1 s timeout) and answer
// "up" if every cluster_node is in all_nodes, else "down" (also on any error). The answer
// is the same for every server: all or nothing. Like check.py, it serves one agent
// connection at a time.
type chtAgent struct {
	first          string // host:port of the first node
	user, password string
	client         *http.Client
	mu             sync.Mutex // one check at a time, like check.py's print_lock
}

func newCHTAgent(first, user, password string) *chtAgent {
	return &chtAgent{first: first, user: user, password: password,
		client: &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}}
}

// serve answers agent connections on ln until ctx ends or ln is closed.
func (a *chtAgent) serve(ctx context.Context, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("agent accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			a.mu.Lock()
			reply := a.verdict(ctx)
			a.mu.Unlock()
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = io.WriteString(c, reply+"\n")
		}()
	}
}

// verdict is "up" or "down" for the whole cluster.
func (a *chtAgent) verdict(ctx context.Context) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.first+"/_membership", nil)
	if err != nil {
		return "down"
	}
	req.SetBasicAuth(a.user, a.password)
	resp, err := a.client.Do(req)
	if err != nil {
		return "down"
	}
	defer resp.Body.Close()
	var m struct {
		AllNodes     []string `json:"all_nodes"`
		ClusterNodes []string `json:"cluster_nodes"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&m) != nil {
		return "down"
	}
	if len(m.ClusterNodes) == 0 {
		return "down"
	}
	for _, n := range m.ClusterNodes {
		if !slices.Contains(m.AllNodes, n) {
			return "down"
		}
	}
	return "up"
}
